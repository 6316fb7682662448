/**
 * Byte budgets for what goes on the bus. NATS refuses a message over its max_payload (1 MB by
 * default) and the shared publisher cannot make such an event smaller, so the connector keeps
 * every event well under it. Sizes are counted the way the event travels: as JSON, in UTF-8,
 * where a Cyrillic letter is 2 bytes and a quote or a newline is an escape of 2.
 */

/** The whole inbound event. The router wraps it in a log entry and a ticket event: leave it room. */
export const EVENT_MAX_BYTES = 800 * 1024;
/** Each of `fullText` and `html` (and `text`, which is cut from `fullText`). */
export const BODY_MAX_BYTES = 240 * 1024;
/**
 * A subject longer than this is cut (a note in the text says how long it was). It rides four
 * times in the router's ticket event (the ticket's subject and title, the mail's subject and
 * conversation title): a 380 KB subject, one header within mailparser's limit, made that event
 * larger than a NATS message, and the router retried it every 10 s for ever while the sender's
 * later mail waited behind it (outside trial t11). The web form takes 1,000 too.
 */
export const SUBJECT_MAX_CHARS = 1000;

/** Bytes of `value` as JSON. */
export function jsonBytes(value: unknown): number {
  return Buffer.byteLength(JSON.stringify(value) ?? '', 'utf8');
}

/** The longest prefix of `s` of at most `maxChars` UTF-16 units and `maxBytes` bytes as a JSON string; never splits a surrogate pair. */
export function prefixWithin(s: string, maxChars: number, maxBytes: number): string {
  let bytes = 2; // the quotes
  let i = 0;
  const end = Math.min(s.length, maxChars);
  while (i < end) {
    const c = s.charCodeAt(i);
    let units = 1;
    let size: number;
    if (c === 0x22 || c === 0x5c || c === 0x08 || c === 0x09 || c === 0x0a || c === 0x0c || c === 0x0d) size = 2;
    else if (c < 0x20) size = 6;
    else if (c < 0x80) size = 1;
    else if (c < 0x800) size = 2;
    else if (c >= 0xd800 && c <= 0xdbff) {
      const next = s.charCodeAt(i + 1);
      if (next >= 0xdc00 && next <= 0xdfff) {
        if (i + 2 > end) break;
        units = 2;
        size = 4;
      } else size = 6; // a lone surrogate is written as \udxxx
    } else if (c >= 0xdc00 && c <= 0xdfff) size = 6;
    else size = 3;
    if (bytes + size > maxBytes) break;
    bytes += size;
    i += units;
  }
  return i === s.length ? s : s.slice(0, i);
}
