/**
 * Text in and out of Telegram. Inbound: entities → HTML for the event. Outbound: agent HTML →
 * plain text + Telegram `entities` (no parse_mode, so nothing can fail to parse or needs escaping),
 * then split past 4096 units with every entity clipped to its chunk.
 * Telegram offsets count UTF-16 code units, which is what JavaScript string indices are.
 */
import { splitRanges, splitTextAt } from '../../core/text-split.js';

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

/**
 * The link schemes we render or send: http(s) and tg. Anything else (javascript:, data:, file:...)
 * is kept as plain text, inbound and outbound alike.
 */
export function isSafeLinkUrl(url: unknown): url is string {
  return typeof url === 'string' && /^(https?:\/\/|tg:\/\/)/i.test(url);
}

/** The opening and closing tag of an entity, or undefined for one we do not render (or cannot render safely). */
function tagsOf(e: Entity): [string, string] | undefined {
  if (e.type === 'text_link') return isSafeLinkUrl(e.url) ? [`<a href="${escapeHtml(e.url)}">`, '</a>'] : undefined;
  if (e.type === 'text_mention') return Number.isSafeInteger(e.user?.id) ? [`<a href="tg://user?id=${e.user!.id}">`, '</a>'] : undefined;
  if (e.type === 'pre') {
    return typeof e.language === 'string' && e.language ? [`<pre><code class="language-${escapeHtml(e.language)}">`, '</code></pre>'] : ['<pre>', '</pre>'];
  }
  return TAGS[e.type];
}

const isHigh = (c: number) => c >= 0xd800 && c <= 0xdbff;
const isLow = (c: number) => c >= 0xdc00 && c <= 0xdfff;

/**
 * An entity's range clamped to the text, widened to whole characters (an offset inside a
 * surrogate pair takes the whole pair); undefined when nothing of the text is left.
 */
function rangeOf(e: Entity, text: string): { start: number; end: number } | undefined {
  if (typeof e.offset !== 'number' || typeof e.length !== 'number' || Number.isNaN(e.offset) || Number.isNaN(e.length)) return undefined;
  let start = Math.max(0, Math.trunc(Math.min(e.offset, text.length)));
  let end = Math.min(text.length, Math.trunc(Math.max(0, e.offset + e.length)));
  if (end <= start) return undefined;
  if (start > 0 && isLow(text.charCodeAt(start)) && isHigh(text.charCodeAt(start - 1))) start--;
  if (end < text.length && isLow(text.charCodeAt(end)) && isHigh(text.charCodeAt(end - 1))) end++;
  return { start, end };
}

/**
 * Renders text with its entities as HTML (Telegram's own HTML subset), or undefined without
 * entities to render. Always well-formed whatever the entities say: ranges clamped to the text,
 * never inside a surrogate pair, and entities that overlap without nesting split so that each
 * piece nests (as Telegram's own clients render them).
 */
export function entitiesToHtml(text: string, entities: Entity[] | undefined): string | undefined {
  if (!Array.isArray(entities) || typeof text !== 'string') return undefined;
  interface Span { start: number; end: number; open: string; close: string; order: number }
  const spans: Span[] = [];
  entities.forEach((e, order) => {
    if (!e || typeof e !== 'object') return;
    const tags = tagsOf(e);
    const range = tags && rangeOf(e, text);
    if (tags && range) spans.push({ ...range, open: tags[0], close: tags[1], order });
  });
  if (spans.length === 0) return undefined;
  // Outer first: earlier start, then longer; ties in the order Telegram listed them.
  spans.sort((a, b) => a.start - b.start || b.end - a.end || a.order - b.order);
  const bounds = [...new Set(spans.flatMap((s) => [s.start, s.end]))].sort((a, b) => a - b);
  const open: Span[] = [];
  let out = '';
  let pos = 0;
  let next = 0;
  for (const at of bounds) {
    out += escapeHtml(text.slice(pos, at));
    pos = at;
    if (open.some((s) => s.end === at)) {
      // Close down to the outermost span ending here; the ones inside it that go on are reopened.
      const reopen: Span[] = [];
      while (open.some((s) => s.end === at)) {
        const s = open.pop()!;
        out += s.close;
        if (s.end !== at) reopen.unshift(s);
      }
      for (const s of reopen) {
        out += s.open;
        open.push(s);
      }
    }
    for (; next < spans.length && spans[next]!.start === at; next++) {
      out += spans[next]!.open;
      open.push(spans[next]!);
    }
  }
  return out + escapeHtml(text.slice(pos));
}

/** Telegram's cut: see core/text-split.ts. */
export function splitText(text: string, limit = MESSAGE_LIMIT): string[] {
  return splitTextAt(text, limit);
}

export interface FormattedChunk {
  text: string;
  entities: Entity[];
}

/** Splits formatted text, clipping each entity to the chunk(s) it falls in. */
export function splitFormatted(text: string, entities: Entity[], limit = MESSAGE_LIMIT): FormattedChunk[] {
  return splitRanges(text, limit).map(([s, e]) => {
    const clipped: Entity[] = [];
    for (const ent of entities) {
      const from = Math.max(ent.offset, s);
      const to = Math.min(ent.offset + ent.length, e);
      if (to > from) clipped.push({ ...ent, offset: from - s, length: to - from });
    }
    return { text: text.slice(s, e), entities: clipped };
  });
}

const ENTITY_OF_TAG: Record<string, string | undefined> = {
  b: 'bold', strong: 'bold', i: 'italic', em: 'italic', u: 'underline', ins: 'underline',
  s: 'strikethrough', strike: 'strikethrough', del: 'strikethrough', code: 'code', pre: 'pre',
  blockquote: 'blockquote', 'tg-spoiler': 'spoiler', a: 'text_link',
};
const BLOCK_END = /^(p|div|li|h[1-6]|tr|ul|ol|table|blockquote|pre)$/;
const SKIP_CONTENT = /^(script|style|head|title)$/;
const NAMED: Record<string, string> = {
  amp: '&', lt: '<', gt: '>', quot: '"', apos: "'", nbsp: '\u00a0', laquo: '«', raquo: '»', mdash: '—', ndash: '–',
  hellip: '…', bdquo: '„', ldquo: '“', rdquo: '”', lsquo: '‘', rsquo: '’', sbquo: '‚', copy: '©', reg: '®', trade: '™',
  deg: '°', times: '×', middot: '·', bull: '•', euro: '€', shy: '\u00ad', numero: '№', plusmn: '±', minus: '−',
};

/** Decodes HTML character references; unknown named ones stay as written (they are just text). */
export function decodeEntities(s: string): string {
  return s.replace(/&(#x[0-9a-f]{1,6}|#[0-9]{1,7}|[a-z][a-z0-9]{1,31});/gi, (all, ref: string) => {
    if (ref[0] === '#') {
      const code = ref[1] === 'x' || ref[1] === 'X' ? parseInt(ref.slice(2), 16) : parseInt(ref.slice(1), 10);
      return code > 0 && code <= 0x10ffff ? String.fromCodePoint(code) : all;
    }
    return NAMED[ref.toLowerCase()] ?? all;
  });
}

/**
 * Agent HTML → the plain text Telegram shows plus the entities that format it. Tolerates what
 * helpdesk editors produce: unknown tags (text kept), unbalanced tags, &nbsp; and friends,
 * bare < and &. Whitespace collapses as in a browser, except inside <pre>.
 */
export function htmlToEntities(html: string): FormattedChunk {
  let text = '';
  const entities: Entity[] = [];
  const open: Array<{ tag: string; entity?: Entity }> = [];
  let skipUntil = '';
  let preDepth = 0;
  // Block boundaries end a line once; editors wrap every line in <p>, so no blank lines between.
  const newline = () => {
    if (text.length > 0 && !text.endsWith('\n')) text = text.replace(/[ \t]+$/, '') + '\n';
  };
  const appendText = (raw: string) => {
    let s = decodeEntities(raw);
    if (preDepth === 0) {
      s = s.replace(/[ \t\r\n\f]+/g, ' ');
      if (text.length === 0 || /[ \n]$/.test(text)) s = s.replace(/^ +/, '');
    }
    text += s;
  };
  const tagPattern = /<(\/?)([a-zA-Z][a-zA-Z0-9-]*)((?:[^>"']|"[^"]*"|'[^']*')*)>|<!--[\s\S]*?-->/g;
  let last = 0;
  for (let m = tagPattern.exec(html); m; m = tagPattern.exec(html)) {
    const before = html.slice(last, m.index);
    last = tagPattern.lastIndex;
    if (!skipUntil) appendText(before);
    if (m[2] === undefined) continue; // a comment
    const closing = m[1] === '/';
    const tag = m[2].toLowerCase();
    if (skipUntil) {
      if (closing && tag === skipUntil) skipUntil = '';
      continue;
    }
    if (SKIP_CONTENT.test(tag)) {
      if (!closing && !/\/\s*$/.test(m[3] ?? '')) skipUntil = tag;
      continue;
    }
    if (tag === 'br') {
      text = text.replace(/[ \t]+$/, '') + '\n';
      continue;
    }
    if (!closing) {
      if (tag === 'li') {
        newline();
        text += '• ';
      }
      let type = ENTITY_OF_TAG[tag];
      const attrs = m[3] ?? '';
      if (tag === 'span' && /class\s*=\s*["']?tg-spoiler/i.test(attrs)) type = 'spoiler';
      let entity: Entity | undefined;
      if (type === 'text_link') {
        const href = decodeEntities(/href\s*=\s*(?:"([^"]*)"|'([^']*)'|([^\s>]+))/i.exec(attrs)?.slice(1).find((x) => x !== undefined) ?? '');
        entity = isSafeLinkUrl(href) ? { type, offset: text.length, length: 0, url: href } : undefined;
      } else if (type === 'code' && open.some((o) => o.entity?.type === 'pre')) {
        const pre = [...open].reverse().find((o) => o.entity?.type === 'pre')!.entity!;
        const lang = /class\s*=\s*["']?language-([\w+#-]+)/i.exec(attrs)?.[1];
        if (lang) pre.language = lang;
      } else if (type) {
        if (tag === 'pre' || tag === 'blockquote') newline();
        entity = { type, offset: text.length, length: 0 };
        if (tag === 'pre') preDepth++;
      }
      if (!/\/\s*$/.test(attrs)) open.push({ tag, entity });
      continue;
    }
    const at = open.map((o) => o.tag).lastIndexOf(tag);
    if (at >= 0) {
      for (const o of open.splice(at)) close(o);
    }
    if (BLOCK_END.test(tag)) newline();
  }
  if (!skipUntil) appendText(html.slice(last));
  for (const o of open.splice(0).reverse()) close(o);

  function close(o: { tag: string; entity?: Entity }): void {
    if (o.tag === 'pre') preDepth = Math.max(0, preDepth - 1);
    if (!o.entity) return;
    o.entity.length = text.length - o.entity.offset;
    entities.push(o.entity);
  }

  // Trim the ends and keep every entity inside the text that is left.
  const lead = text.length - text.replace(/^\s+/, '').length;
  const trimmed = text.trim();
  const kept: Entity[] = [];
  for (const e of entities) {
    const from = Math.max(0, e.offset - lead);
    const to = Math.min(trimmed.length, e.offset + e.length - lead);
    if (to > from) kept.push({ ...e, offset: from, length: to - from });
  }
  kept.sort((a, b) => a.offset - b.offset || b.length - a.length);
  return { text: trimmed, entities: kept };
}
