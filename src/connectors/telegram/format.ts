/**
 * Text in and out of Telegram: entities to HTML for the event, and safe outbound chunks.
 * Telegram offsets count UTF-16 code units, which is what JavaScript string indices are.
 */
export const MESSAGE_LIMIT = 4096;

export interface Entity {
  type: string;
  offset: number;
  length: number;
  url?: string;
  language?: string;
  user?: { id: number };
}

const TAGS: Record<string, [string, string] | undefined> = {
  bold: ['<b>', '</b>'],
  italic: ['<i>', '</i>'],
  underline: ['<u>', '</u>'],
  strikethrough: ['<s>', '</s>'],
  spoiler: ['<tg-spoiler>', '</tg-spoiler>'],
  code: ['<code>', '</code>'],
  blockquote: ['<blockquote>', '</blockquote>'],
  expandable_blockquote: ['<blockquote>', '</blockquote>'],
};

export function escapeHtml(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');
}

/** Renders text with its entities as HTML (Telegram's own HTML subset), or undefined without entities. */
export function entitiesToHtml(text: string, entities: Entity[] | undefined): string | undefined {
  const formatting = (entities ?? []).filter((e) => TAGS[e.type] || e.type === 'text_link' || e.type === 'pre' || e.type === 'text_mention');
  if (formatting.length === 0) return undefined;
  const opens = new Map<number, string[]>();
  const closes = new Map<number, string[]>();
  for (const e of formatting) {
    let open: string;
    let close: string;
    if (e.type === 'text_link') [open, close] = [`<a href="${escapeHtml(e.url ?? '')}">`, '</a>'];
    else if (e.type === 'text_mention') [open, close] = [`<a href="tg://user?id=${e.user?.id ?? ''}">`, '</a>'];
    else if (e.type === 'pre') [open, close] = [e.language ? `<pre><code class="language-${escapeHtml(e.language)}">` : '<pre>', e.language ? '</code></pre>' : '</pre>'];
    else [open, close] = TAGS[e.type]!;
    (opens.get(e.offset) ?? opens.set(e.offset, []).get(e.offset)!).push(open);
    (closes.get(e.offset + e.length) ?? closes.set(e.offset + e.length, []).get(e.offset + e.length)!).unshift(close);
  }
  let out = '';
  for (let i = 0; i <= text.length; i++) {
    out += (closes.get(i) ?? []).join('') + (opens.get(i) ?? []).join('');
    if (i < text.length) out += escapeHtml(text[i]!);
  }
  return out;
}

/**
 * Splits text into chunks of at most `limit` UTF-16 units, preferring paragraph, then line,
 * then word boundaries, and never splitting a surrogate pair.
 */
export function splitText(text: string, limit = MESSAGE_LIMIT): string[] {
  const chunks: string[] = [];
  let rest = text;
  while (rest.length > limit) {
    let cut = -1;
    for (const sep of ['\n\n', '\n', ' ']) {
      const at = rest.lastIndexOf(sep, limit - sep.length);
      if (at > limit / 2) {
        cut = at + sep.length;
        break;
      }
    }
    if (cut < 0) {
      cut = limit;
      const code = rest.charCodeAt(cut - 1);
      if (code >= 0xd800 && code <= 0xdbff) cut--; // keep the surrogate pair together
    }
    chunks.push(rest.slice(0, cut).trimEnd());
    rest = rest.slice(cut).trimStart();
  }
  if (rest.length > 0 || chunks.length === 0) chunks.push(rest);
  return chunks;
}

const ALLOWED = new Set(['b', 'strong', 'i', 'em', 'u', 'ins', 's', 'strike', 'del', 'a', 'code', 'pre', 'blockquote', 'tg-spoiler']);

/**
 * Reduces agent HTML to the subset Telegram accepts with parse_mode HTML: unknown tags are
 * dropped (their text kept), <br> and block ends become newlines, entities stay escaped.
 */
export function toTelegramHtml(html: string): string {
  return html
    .replace(/<br\s*\/?>/gi, '\n')
    .replace(/<\/(p|div|li|h[1-6])>/gi, '\n')
    .replace(/<(\/?)([a-z][a-z0-9-]*)([^>]*)>/gi, (_m, slash: string, tag: string, attrs: string) => {
      const t = tag.toLowerCase();
      if (!ALLOWED.has(t)) return '';
      if (t === 'a' && !slash) {
        const href = /href\s*=\s*"([^"]*)"/i.exec(attrs)?.[1];
        return href ? `<a href="${href}">` : '<a>';
      }
      return `<${slash}${t}>`;
    })
    .replace(/\n{3,}/g, '\n\n')
    .trim();
}
