/** Long text cut for channels that cap one message (Telegram and WhatsApp Cloud 4,096 units). */

/** A sentence's end: its punctuation (kept with it, closing quotes and brackets too), then white space. */
const SENTENCE_END = /[.!?…](?:[»"'”’)\]]*)(?=\s)/g;

/** What starts a sentence after the space: a capital, a digit, an opening quote or bracket, a dash (dialogue). */
const SENTENCE_START = /[\p{Lu}\d«"„“‘'(\[—–-]/u;

/** A short word in lower case before a full stop: an abbreviation (т. д., ул., кв., см.), not a sentence's end. */
const ABBREVIATION = /(?:^|[^\p{L}])\p{Ll}\p{L}{0,2}$/u;

/**
 * Whether the punctuation matched at `m` ends a sentence: what follows the space starts one, and
 * a full stop does not close a short lower-case word. «и т. д. конец» was cut after «т.».
 */
function endsSentence(text: string, m: RegExpExecArray): boolean {
  const next = /\S/.exec(text.slice(m.index + m[0].length, m.index + m[0].length + 8));
  if (next && !SENTENCE_START.test(next[0])) return false;
  return text[m.index] !== '.' || !ABBREVIATION.test(text.slice(Math.max(0, m.index - 4), m.index));
}

/** The end of the last sentence that ends after `from` and by `to` (exclusive of the space after it), or -1. */
function lastSentenceEnd(text: string, from: number, to: number): number {
  let found = -1;
  SENTENCE_END.lastIndex = from;
  for (let m = SENTENCE_END.exec(text); m && m.index + m[0].length <= to; m = SENTENCE_END.exec(text)) if (endsSentence(text, m)) found = m.index + m[0].length;
  return found;
}

/**
 * Where to cut text into chunks of at most `limit` UTF-16 units: paragraph, then line, then
 * sentence, then word boundaries, never inside a surrogate pair. A sentence before a word: a
 * 4,100-character reply cut at its last word sent the customer a second message of one word
 * («дней.»). Ranges index the original string (whitespace at the cut is left out), so entity
 * offsets can be re-based per chunk.
 */
export function splitRanges(text: string, limit: number): Array<[number, number]> {
  const ranges: Array<[number, number]> = [];
  let start = 0;
  while (text.length - start > limit) {
    let cut = -1;
    for (const sep of ['\n\n', '\n', SENTENCE_END, ' '] as const) {
      const at = typeof sep === 'string' ? text.lastIndexOf(sep, start + limit - sep.length) : lastSentenceEnd(text, Math.floor(start + limit / 2), start + limit);
      if (at > start + limit / 2) {
        cut = at;
        break;
      }
    }
    if (cut < 0) {
      cut = start + limit;
      const code = text.charCodeAt(cut - 1);
      if (code >= 0xd800 && code <= 0xdbff) cut--; // keep the surrogate pair together
    }
    let end = cut;
    while (end > start && /\s/.test(text[end - 1]!)) end--;
    if (end > start) ranges.push([start, end]);
    start = cut;
    while (start < text.length && /\s/.test(text[start]!)) start++;
  }
  if (start < text.length || ranges.length === 0) ranges.push([start, text.length]);
  return ranges;
}

export function splitTextAt(text: string, limit: number): string[] {
  return splitRanges(text, limit).map(([s, e]) => text.slice(s, e));
}
