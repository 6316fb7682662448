/** Long text cut for channels that cap one message (Telegram and WhatsApp Cloud 4,096 units). */

/**
 * Where to cut text into chunks of at most `limit` UTF-16 units: paragraph, then line, then word
 * boundaries, never inside a surrogate pair. Ranges index the original string (whitespace at the
 * cut is left out), so entity offsets can be re-based per chunk.
 */
export function splitRanges(text: string, limit: number): Array<[number, number]> {
  const ranges: Array<[number, number]> = [];
  let start = 0;
  while (text.length - start > limit) {
    let cut = -1;
    for (const sep of ['\n\n', '\n', ' ']) {
      const at = text.lastIndexOf(sep, start + limit - sep.length);
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
