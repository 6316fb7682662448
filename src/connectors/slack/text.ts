/**
 * Slack's message text format both ways. Slack escapes only &, < and > in text and uses <…> for
 * its own markup (mentions, channel links, URLs), so inbound text is readable only after the
 * markup is turned into words and the three entities are decoded; outbound, escaping the same
 * three characters keeps the agent's text from being read as markup.
 */

/** Looks up a user's display name without a Web API call; undefined when not known. */
export type NameOf = (userId: string) => string | undefined;

const ENTITIES: Record<string, string> = { '&lt;': '<', '&gt;': '>', '&amp;': '&' };

/** One pass, so `&amp;lt;` (a literal "&lt;" the sender typed) stays "&lt;". */
export function decodeEntities(text: string): string {
  return text.replace(/&(?:lt|gt|amp);/g, (m) => ENTITIES[m]!);
}

/**
 * Slack text → plain text: `<@U123>` → `@name` (or `@U123`), `<#C123|general>` → `#general`,
 * `<!here>` → `@here`, `<url|label>` → `label (url)`, `<url>` → `url`, entities decoded.
 */
export function slackToPlain(text: string, nameOf: NameOf = () => undefined): string {
  let out = '';
  let last = 0;
  for (const m of text.matchAll(/<([^<>]*)>/g)) {
    out += decodeEntities(text.slice(last, m.index)) + markupToPlain(m[1]!, nameOf);
    last = m.index + m[0].length;
  }
  return out + decodeEntities(text.slice(last));
}

function markupToPlain(inner: string, nameOf: NameOf): string {
  const bar = inner.indexOf('|');
  const target = bar < 0 ? inner : inner.slice(0, bar);
  const label = bar < 0 ? undefined : decodeEntities(inner.slice(bar + 1));
  if (target.startsWith('@')) {
    const id = target.slice(1);
    return `@${label?.replace(/^@/, '') || nameOf(id) || id}`;
  }
  if (target.startsWith('#')) return `#${label || target.slice(1)}`;
  if (target.startsWith('!')) {
    // <!here>, <!channel>, <!everyone>, <!subteam^S123|@team>, <!date^…|fallback>
    if (label) return label;
    const word = target.slice(1).split('^')[0]!;
    return `@${word}`;
  }
  const url = decodeEntities(target);
  if (!label) return url.replace(/^mailto:/, '');
  // Slack links a typed "example.com" as <http://example.com|example.com>: the label says it all.
  const bare = url.replace(/^mailto:/, '').replace(/^[a-z][a-z0-9+.-]*:\/\//i, '').replace(/\/$/, '');
  return label === url || label === bare ? label : `${label} (${url})`;
}

/** Slack mrkdwn needs only &, < and > escaped; everything else is the agent's formatting. */
export function escapeMrkdwn(text: string): string {
  return text.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
}
