import { isUtf8 } from 'node:buffer';

/**
 * The text of a JSON body in the charset its Content-Type declares. JSON on the wire is UTF-8
 * (RFC 8259), but 1C systems and old .NET clients send `application/json; charset=windows-1251`
 * (or koi8-r, cp866, utf-16le): read as UTF-8, their Cyrillic was refused as "not valid UTF-8".
 * Charsets are WHATWG labels read by TextDecoder (Node's ICU), so `cp1251` is windows-1251 and
 * `latin1` is windows-1252, as in a browser.
 */

/** A Content-Type's `charset` parameter, unquoted and in lower case; undefined when it has none. */
export function charsetParameter(header: string): string | undefined {
  for (const param of header.split(';').slice(1)) {
    const eq = param.indexOf('=');
    if (eq >= 0 && param.slice(0, eq).trim().toLowerCase() === 'charset') return param.slice(eq + 1).trim().replace(/^"(.*)"$/, '$1').trim().toLowerCase();
  }
  return undefined;
}

/** TextDecoder's name for a charset label (`cp1251` → `windows-1251`), or undefined when it reads no such charset. */
export function encodingOf(label: string): string | undefined {
  try {
    return new TextDecoder(label).encoding;
  } catch {
    return undefined; // ERR_ENCODING_NOT_SUPPORTED: unknown, or one Node does not decode (iso-2022-kr)
  }
}

/** A body's text; `valid` false when some bytes are not of `charset` (they became U+FFFD in `text`). */
export type DecodedJson = { text: string; charset: string; valid: boolean } | { utf16: 'mark' | 'zeros' };

/**
 * Decodes a JSON body in `charset` (TextDecoder's name; UTF-8 when none is declared). A UTF-8
 * byte-order mark means UTF-8 whatever the header says (as the WHATWG decode algorithm has it) and
 * is no part of the text. UTF-16 is read only when declared (`utf16` otherwise, for the caller
 * to name), its byte order from its mark or, without one, from where the zero byte of the first
 * character is: JSON starts with an ASCII character.
 */
export function decodeJson(raw: Buffer, charset = 'utf-8'): DecodedJson {
  // .NET, PowerShell and 1C senders often put one first; RFC 8259 lets a reader ignore it, and it
  // was refused as "not valid JSON".
  if (raw[0] === 0xef && raw[1] === 0xbb && raw[2] === 0xbf) return { text: raw.toString('utf8', 3), charset: 'utf-8', valid: isUtf8(raw.subarray(3)) };
  const utf16 = charset === 'utf-16le' || charset === 'utf-16be';
  const marked = raw[0] === 0xff && raw[1] === 0xfe ? 'utf-16le' : raw[0] === 0xfe && raw[1] === 0xff ? 'utf-16be' : undefined;
  if (marked) return utf16 ? decode(raw, marked) : { utf16: 'mark' };
  // "{" then a zero byte, or a zero byte then "{": JSON text in UTF-16 without a mark.
  const zeros = raw.length >= 4 && ((raw[0] === 0 && raw[1] !== 0 && raw[2] === 0) || (raw[0] !== 0 && raw[1] === 0 && raw[3] === 0));
  if (utf16) return decode(raw, zeros && raw[0] === 0 ? 'utf-16be' : zeros ? 'utf-16le' : charset);
  if (zeros) return { utf16: 'zeros' };
  if (charset === 'utf-8') return { text: raw.toString('utf8'), charset, valid: isUtf8(raw) };
  // A label that lies: UTF-8 sent as `charset=us-ascii` or `iso-8859-1` (what many HTTP libraries
  // write by default) was stored as "ÐŸÑ€Ð¸Ð²ÐµÑ‚". Text in a legacy charset with letters beyond
  // ASCII is practically never valid UTF-8, so bytes that are and hold such letters are UTF-8.
  if (isUtf8(raw) && raw.some((b) => b >= 0x80)) return { text: raw.toString('utf8'), charset: 'utf-8', valid: true };
  return decode(raw, charset);
}

function decode(raw: Buffer, charset: string): DecodedJson {
  // Not `ignoreBOM`: Node's windows-1252 decoder drops a 0xFF byte with it. A UTF-16 mark matches
  // `charset` here (decodeJson took the byte order from it) and is taken off by the decoder.
  try {
    return { text: windows1252(new TextDecoder(charset, { fatal: true }).decode(raw), charset), charset, valid: true };
  } catch {
    return { text: new TextDecoder(charset).decode(raw), charset, valid: false };
  }
}

/**
 * What windows-1252 has at 0x80–0x9F (€, ‚, „, …, ‘, ’, “, ”, –, —, ™). Some Node releases (20 from
 * 20.18.3, 22 from 22.13, 24 before its fix: nodejs/node#56542) decode those bytes as Latin-1's C1
 * controls, so `charset=iso-8859-1` from a Windows client stored U+0092 for its apostrophe. The
 * five bytes windows-1252 leaves undefined map to themselves: a correct decoder's text is unchanged.
 */
const CP1252_HIGH = '€\x81‚ƒ„…†‡ˆ‰Š‹Œ\x8dŽ\x8f\x90‘’“”•–—˜™š›œ\x9džŸ';

function windows1252(text: string, charset: string): string {
  return charset === 'windows-1252' ? text.replace(/[\x80-\x9f]/g, (c) => CP1252_HIGH[c.charCodeAt(0) - 0x80]!) : text;
}
