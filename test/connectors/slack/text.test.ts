/**
 * Slack's text format both ways, without a gateway: what slack.test.ts shows end to end, here
 * for every markup form Slack documents and for text that only looks like markup or entities.
 */
import { describe, expect, it } from 'vitest';
import { escapeMrkdwn, slackToPlain } from '../../../src/connectors/slack/text.js';

describe('slack text', () => {
  it('decodes the three entities once, keeping Cyrillic and a literal "&lt;" the sender typed', () => {
    expect(slackToPlain('Иван: a &lt; b &amp; c &gt; d')).toBe('Иван: a < b & c > d');
    expect(slackToPlain('пишите &amp;lt; вместо &lt;')).toBe('пишите &lt; вместо <');
    expect(slackToPlain('&quot;как есть&quot; &#39;')).toBe('&quot;как есть&quot; &#39;');
  });

  it('turns mentions, channel links, broadcasts and links into readable text', () => {
    const names: Record<string, string> = { U1: 'Мария' };
    const plain = (t: string) => slackToPlain(t, (id) => names[id]);
    expect(plain('<@U1> и <@U2>, гляньте')).toBe('@Мария и @U2, гляньте');
    expect(plain('<@W3|пётр>')).toBe('@пётр');
    expect(plain('в <#C123|поддержка> и <#C456>')).toBe('в #поддержка и #C456');
    expect(plain('<!here> <!channel> <!subteam^S1|@дежурные> <!date^1392734382^{date}|24 февраля>')).toBe('@here @channel @дежурные 24 февраля');
    expect(plain('см. <https://example.com/a?x=1&amp;y=2|инструкцию &amp; FAQ>')).toBe('см. инструкцию & FAQ (https://example.com/a?x=1&y=2)');
    expect(plain('<https://example.com/путь>')).toBe('https://example.com/путь');
    expect(plain('<http://example.com|example.com> <mailto:help@example.com|help@example.com> <mailto:a@b.c>')).toBe('example.com help@example.com a@b.c');
  });

  it('escapeMrkdwn round-trips: what the agent wrote is what the customer sent back reads as', () => {
    for (const text of ['Проверьте <настройки> & повторите', 'a &lt; b', '<@U1> не упоминание', '&amp;&amp; <> >< &', 'обычный *жирный* _курсив_']) {
      expect(slackToPlain(escapeMrkdwn(text))).toBe(text);
    }
    expect(escapeMrkdwn('a < b & c')).toBe('a &lt; b &amp; c');
  });
});
