import { describe, expect, it } from 'vitest';
import { z } from 'zod';
import { loadAll } from '../../src/cli.js';
import { configWarnings, describeConfig } from '../../src/config-check.js';
import { unknownKeys } from '../../src/core/strict-keys.js';
import { writeConfig } from '../helpers/process.js';

const SECRET = '0123456789abcdef';
const site = { type: 'webhook', account: 'site', secret: SECRET };

/** The config error for `config`, as `omnigate check-config` prints it. */
async function errorFor(config: Record<string, unknown>): Promise<string> {
  const err = await loadAll(writeConfig(config), {}).then(
    () => undefined,
    (e: Error) => e,
  );
  if (!err) throw new Error('expected a config error');
  return err.message;
}

describe('strict configuration: each mistake is an error naming the key', () => {
  it.each<[string, Record<string, unknown>, RegExp]>([
    ['a misspelt section', { router: { cssat: { enabled: true } } }, /router\.cssat: unknown key "cssat"; did you mean "csat"\?/],
    ['a misspelt key deep down', { router: { sla: { businessHours: { timezon: 'Europe/Moscow' } } } }, /router\.sla\.businessHours\.timezon: .*did you mean "timezone"/],
    ['a misspelt top-level key', { webhook: [] }, /webhook: unknown key "webhook"; did you mean "webhooks"\?/],
    ['an unknown key with nothing close', { router: { flux: 1 } }, /router\.flux: unknown key "flux"; known keys here: enabled, ticketPrefix/],
    ['a misspelt key in an array item', { api: { tokens: [{ name: 'a', tokn: 'x'.repeat(20) }] } }, /api\.tokens\[0\]\.tokn: .*did you mean "token"/],
    ['a misspelt connector option', { connectors: [{ ...site, callbackUrll: 'http://x' }] }, /connectors\[0\]\.callbackUrll: .*did you mean "callbackUrl"/],
    ['a misspelt common connector key', { connectors: [{ ...site, enabeld: false }] }, /connectors\[0\]\.enabeld: .*did you mean "enabled"/],
    ['a misspelt nested connector option', {
      connectors: [{ type: 'email', account: 'mail', mailboxes: [{ address: 'a@b.ru', imap: { host: 'h', user: 'u', pass: 'p', prot: 993 }, smtp: { host: 'h' } }] }],
    }, /connectors\[0\]\.mailboxes\[0\]\.imap\.prot: .*did you mean "port"/],
    ['requireAuthenticatedSender without trustedAuthServIds', {
      connectors: [{ type: 'email', account: 'mail', requireAuthenticatedSender: true, mailboxes: [{ address: 'a@b.ru', imap: { host: 'h', user: 'u', pass: 'p' }, smtp: { host: 'h' } }] }],
    }, /connectors\[0\]\.requireAuthenticatedSender: needs trustedAuthServIds/],
    ['an authserv-id that is no host name', {
      connectors: [{ type: 'email', account: 'mail', trustedAuthServIds: ['mx.example.ru; dmarc=pass'], mailboxes: [{ address: 'a@b.ru', imap: { host: 'h', user: 'u', pass: 'p' }, smtp: { host: 'h' } }] }],
    }, /connectors\[0\]\.trustedAuthServIds\[0\]: not a host name/],
    ['25:00 in business hours', { router: { sla: { businessHours: { from: '25:00' } } } }, /router\.sla\.businessHours\.from: .*HH:MM/],
    ['an interval with 25:00', { router: { sla: { businessHours: { hours: ['09:00-25:00'] } } } }, /router\.sla\.businessHours\.hours\[0\]: .*not an interval/],
    ['a weekday written as a name', { router: { sla: { businessHours: { days: ['пн', 'вт'] } } } }, /router\.sla\.businessHours\.days\[0\]: an ISO weekday number, 1 = Monday … 7 = Sunday/],
    ['Sunday written as 0', { router: { sla: { businessHours: { days: [0, 1] } } } }, /router\.sla\.businessHours\.days\[0\]: an ISO weekday number, 1 = Monday … 7 = Sunday/],
    ['a webhook URL without its scheme', { webhooks: [{ name: 'hd', url: 'helpdesk.example.ru:8443/hook', secret: SECRET }] }, /webhooks\[0\]\.url: an http:\/\/ or https:\/\/ URL .*has the scheme "helpdesk\.example\.ru:" \(write "https:\/\/" before the host\)/],
    ['a callbackUrl without its scheme', { connectors: [{ ...site, callbackUrl: 'shop.example.ru:8080/replies' }] }, /connectors\[0\]\.callbackUrl: an http:\/\/ or https:\/\/ URL/],
    ['a Telegram apiRoot that is no URL', { connectors: [{ type: 'telegram', account: 'bot', token: '123456:ABCDEFGHIJKL', apiRoot: 'api.telegram.org' }] }, /connectors\[0\]\.apiRoot: an http:\/\/ or https:\/\/ URL .*"api\.telegram\.org" is no URL/],
    ['a calendar with no working day', { router: { sla: { businessHours: { days: [] } } } }, /router\.sla\.businessHours\.days: at least one working day/],
    ['an empty working day', { router: { sla: { businessHours: { from: '18:00', to: '18:00' } } } }, /router\.sla\.businessHours\.to: .*empty/],
    ['an unknown time zone', { router: { sla: { businessHours: { timezone: 'Moscow' } } } }, /router\.sla\.businessHours\.timezone: an IANA time zone/],
    ['checkInterval: 0s', { router: { sla: { checkInterval: '0s' } } }, /router\.sla\.checkInterval: more than 0/],
    ['firstResponse: 0', { router: { sla: { firstResponse: 0 } } }, /router\.sla\.firstResponse: more than 0/],
    ['a rating window of 0s', { router: { csat: { window: '0s' } } }, /router\.csat\.window: more than 0/],
    ['escalation to an unconfigured account', { connectors: [site], router: { sla: { enabled: true, escalate: { channel: 'telegram', account: 'leads', conversationId: '1' } } } }, /router\.sla\.escalate: escalation goes to telegram\/leads, which is not a configured connector.*enabled connectors: webhook\/site/],
    ['escalation to a disabled connector', { connectors: [site, { ...site, account: 'leads', enabled: false }], router: { sla: { escalate: { channel: 'webhook', account: 'leads', conversationId: '1' } } } }, /escalation goes to webhook\/leads, a connector that is disabled/],
    ['a misspelt webhook event', { webhooks: [{ name: 'hd', url: 'http://x.ru', secret: SECRET, events: ['ticket.creatd'] }] }, /webhooks\[0\]\.events\[0\]: unknown event "ticket\.creatd" \(did you mean "ticket\.created"\?\)/],
    ['an unknown language', { router: { language: 'de' } }, /router\.language:/],
    ['a misspelt text name', { router: { texts: { autoAcknowledgement: 'x' } } }, /router\.texts\.autoAcknowledgement: .*did you mean "autoAcknowledge"/],
    ['an unknown placeholder', { router: { texts: { satisfactionRequest: 'Оцените {tiket}' } } }, /router\.texts\.satisfactionRequest: unknown placeholder \{tiket\}; this text may use \{ticket\}, \{name\}/],
  ])('%s', async (_name, config, expected) => {
    expect(await errorFor(config)).toMatch(expected);
  });

  it('reports every problem of a config at once, each naming its key', async () => {
    const message = await errorFor({
      connectors: [{ ...site, callbackUrll: 'http://x' }, { type: 'telegram', account: 'bot' }, { ...site }, { type: 'fax', account: 'f' }],
      helpdesks: [{ type: 'zammad', id: 'z' }],
    });
    for (const expected of [
      /connectors\[0\]\.callbackUrll: .*did you mean "callbackUrl"/,
      /connectors\[1\]\.token: /,
      /connectors\[2\]\.account: duplicate account "site"/,
      /connectors\[3\]\.type: unknown connector type "fax"/,
      /helpdesks\[0\]\.url: /,
    ]) expect(message).toMatch(expected);
    // The same with an environment override set (the usual case in Kubernetes): still every problem.
    const withEnv = await loadAll(writeConfig({ connectors: [{ ...site, callbackUrll: 'http://x' }, { ...site }] }), { OMNIGATE_NATS__URL: 'nats://127.0.0.1:4222' }).then(() => '', (e: Error) => e.message);
    expect(withEnv).toMatch(/callbackUrll[^]*\n  and connectors\[1\]\.account: duplicate account/);
    // An unknown key, a wrong core value and entries' own mistakes: all in one run (the first stage hid the rest).
    const across = await errorFor({ nats: { duplicateWindw: '2m' }, http: { port: 'abc' }, connectors: [{ ...site, callbackUrll: 'http://x' }, { type: 'telegrm', account: 'a' }] });
    for (const expected of [/nats\.duplicateWindw: unknown key/, /http\.port: /, /connectors\[0\]\.callbackUrll: /, /connectors\[1\]\.type: unknown connector type "telegrm"/]) expect(across).toMatch(expected);
    expect(across).not.toMatch(/Unrecognized key/);
    // An entry's own common key wrong (an account that is no subject token, enabled as a string):
    // its module's own mistakes are named in the same run, not after the common key is mended.
    const ownToo = await errorFor({ connectors: [{ ...site, account: 'my site', callbackUrll: 'http://x' }, { type: 'telegram', account: 'bot', enabled: 'yes' }] });
    for (const expected of [/connectors\[0\]\.account: /, /connectors\[0\]\.callbackUrll: .*did you mean "callbackUrl"/, /connectors\[1\]\.enabled: /, /connectors\[1\]\.token: /]) expect(ownToo).toMatch(expected);
    const helpdeskToo = await errorFor({ helpdesks: [{ type: 'zammad', id: 'a b' }] });
    for (const expected of [/helpdesks\[0\]\.id: /, /helpdesks\[0\]\.url: /]) expect(helpdeskToo).toMatch(expected);
    // The top-level schema: all of its problems too.
    expect(await errorFor({ http: { port: 'abc' }, router: { reopenWindow: 'forever' } })).toMatch(/http\.port: [^]*\n  and router\.reopenWindow: a duration/);
  });

  it('reads a schema it was never told about (keys other branches add are known by their schema)', () => {
    const schema = z.object({ a: z.object({ tls: z.object({ ca: z.string() }).optional() }).prefault({}), list: z.array(z.object({ x: z.number() })).default([]) });
    expect(unknownKeys(schema, { a: { tls: { ca: 'x', cert: 'y' } }, list: [{ x: 1 }, { y: 2 }] }).map((u) => [u.path.join('.'), u.suggestion])).toEqual([
      ['a.tls.cert', undefined],
      ['list.1.y', 'x'],
    ]);
    const loose = z.object({ type: z.string() }).passthrough();
    expect(unknownKeys(loose, { type: 'x', anything: 1 })).toEqual([]);
  });

  it('accepts a correct config and check-config shows channels, timers with their hours, and the escalation target', async () => {
    const { loaded, factories } = await loadAll(
      writeConfig({
        connectors: [site, { ...site, account: 'leads' }],
        retention: { tickets: '3y', attachments: '1y' },
        router: {
          language: 'en',
          autoAcknowledge: { enabled: true },
          csat: { enabled: true, delay: '1d' },
          sla: {
            enabled: true,
            firstResponse: '90m',
            noAnswer: '2h',
            businessHours: { timezone: 'Asia/Yekaterinburg', days: [1, 2, 3, 4, 5, 6], hours: ['09:00-13:00', '14:00-18:00', '22:00-02:00'], holidays: ['2027-01-01'] },
            escalate: { channel: 'webhook', account: 'leads', conversationId: 'lead-chat' },
          },
        },
      }),
      {},
    );
    const screen = describeConfig(loaded, factories, new Date('2027-01-15T12:00:00Z'));
    expect(screen).toContain('webhook/site (webhook)');
    expect(screen).toContain('router.sla.businessHours.timezone: Asia/Yekaterinburg (UTC+05:00 now)');
    expect(screen).not.toContain('Warning');
    expect(screen).toContain('first response within 1 h 30 min of business time');
    expect(screen).toContain('business hours: Mon–Sat, 9:00–13:00, 14:00–18:00, 22:00–2:00 Yekaterinburg time (UTC+05:00); 1 holiday(s): 2027-01-01');
    expect(screen).toContain('night intervals run past midnight: 22:00–2:00 (next day)');
    expect(screen).toContain('asked once per ticket 1 d (clock time)');
    // What docs/data.md promises, and which tickets it is (the sweeper takes resolved ones too).
    expect(screen).toContain('Retention   resolved or closed tickets 3 years (1095 d), attachments 1 year (365 d), in transit 7 d');
    expect(screen).toMatch(/Escalation {2}SLA breaches and low ratings → webhook\/leads, chat lead-chat/);
    expect(screen.split('\n').length).toBeLessThan(25);
  });
});

describe('time zones in check-config', () => {
  it('accepts an Etc/GMT±N zone but shows its real offset and warns that its sign is inverted', async () => {
    const { loaded, factories } = await loadAll(
      writeConfig({ connectors: [site], router: { language: 'en', sla: { enabled: true, businessHours: { timezone: 'Etc/GMT+3' } } }, reports: { timezone: 'Europe/Moscow' } }),
      {},
    );
    const screen = describeConfig(loaded, factories, new Date('2027-07-15T12:00:00Z'));
    expect(screen).toContain('  router.sla.businessHours.timezone: Etc/GMT+3 (UTC−03:00 now)');
    expect(screen).toContain('  reports.timezone: Europe/Moscow (UTC+03:00 now)');
    const warnings = configWarnings(loaded);
    expect(warnings).toEqual([expect.stringMatching(/^router\.sla\.businessHours\.timezone: Etc\/GMT\+3 is UTC−03:00, not UTC\+03:00: .*sign is inverted/)]);
    // At the top of the summary, where it is read first.
    expect(screen.split('\n')[2]).toBe(`Warning: ${warnings[0]}`);
  });

  it('shows the default zone of business hours even with SLA off (reports count in it)', async () => {
    const { loaded, factories } = await loadAll(writeConfig({ connectors: [site] }), {});
    expect(describeConfig(loaded, factories, new Date('2027-01-15T12:00:00Z'))).toContain('router.sla.businessHours.timezone: Europe/Moscow (UTC+03:00 now)');
    expect(configWarnings(loaded)).toEqual([]);
  });
});

describe('forged-sender warning in check-config', () => {
  const mail = (extra: Record<string, unknown>) => ({ type: 'email', account: 'mail', ...extra, mailboxes: [{ address: 'a@b.ru', imap: { host: 'h', user: 'u', pass: 'p' }, smtp: { host: 'h' } }] });
  it('warns, in one line naming the entry, when an email entry trusts no Authentication-Results server', async () => {
    const { loaded, factories } = await loadAll(writeConfig({ connectors: [mail({})] }), {});
    expect(configWarnings(loaded, factories)).toEqual([expect.stringMatching(/^email\/mail: trustedAuthServIds is not set: a mail with a forged From joins that sender's tickets unless/)]);
    expect(describeConfig(loaded, factories)).toContain('Warning: email/mail: trustedAuthServIds is not set');
  });

  it('warns about a mail server reached without TLS, but not about a relay on this host', async () => {
    const plain = { secure: false, starttls: false };
    const entry = {
      type: 'email', account: 'mail', trustedAuthServIds: ['mx.example.ru'],
      mailboxes: [
        { address: 'a@b.ru', imap: { host: '127.0.0.1', port: 1143, user: 'u', pass: 'p', ...plain }, smtp: { host: 'smtp.yandex.ru', port: 25, ...plain } },
        { address: 'c@b.ru', imap: { host: 'imap.b.ru', user: 'u', pass: 'p' }, smtp: { host: 'localhost', port: 25, ...plain } },
      ],
    };
    const { loaded, factories } = await loadAll(writeConfig({ connectors: [entry] }), {});
    expect(configWarnings(loaded, factories)).toEqual([expect.stringMatching(/^email\/mail: mailboxes\[0\]\.smtp: no TLS to smtp\.yandex\.ru \(secure: false, starttls: false\): .*set starttls: true/)]);
  });

  it('says nothing with trustedAuthServIds set', async () => {
    const { loaded, factories } = await loadAll(writeConfig({ connectors: [mail({ trustedAuthServIds: ['MX.Example.ru'], requireAuthenticatedSender: true })] }), {});
    expect(configWarnings(loaded, factories)).toEqual([]);
    expect((loaded.connectors[0]!.options as { trustedAuthServIds: string[] }).trustedAuthServIds).toEqual(['mx.example.ru']);
  });
});

describe('unknown keys of a request body', () => {
  it('stops at the first when asked to (a body of 150,000 unknown keys got a suggestion for each: 1.5 s of the event loop)', () => {
    const schema = z.strictObject({ text: z.string(), sender: z.strictObject({ id: z.string() }) });
    const body: Record<string, unknown> = { text: 'x', sender: { id: 'a', nmae: 'b' } };
    for (let i = 0; i < 150_000; i++) body[`k${i}`] = i;
    const first = unknownKeys(schema, body, [], 1);
    expect(first).toEqual([expect.objectContaining({ path: ['sender', 'nmae'], key: 'nmae' })]);
    expect(unknownKeys(schema, { text: 'x', txet: 1, other: 2 }).map((u) => u.key)).toEqual(['txet', 'other']);
  });
});
