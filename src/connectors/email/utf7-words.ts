/**
 * RFC 2047 encoded-words in UTF-7 (`=?utf-7?Q?+BCEERwRRBEI-?=`, `=?UTF-7?B?...?=`), which old
 * mailers and some gateways still write in a Subject or a From name. libmime will not decode
 * UTF-7 (a filter scanning for "<script>" misses `+ADw-script+AD4-`), so the subject reached the
 * ticket as "+BCEERwRRBEI-". Here, in the top-level header only, each run of such words is
 * rewritten as one UTF-8 encoded-word before the mail is parsed: the text is then the customer's,
 * and whatever it says (markup included) is text like any other, shown escaped as any subject is.
 * The body and the headers of inner parts are left as they are.
 */
import iconv from 'iconv-lite';

/** One UTF-7 encoded-word (charset with an optional RFC 2231 language), and the white space before the next one. */
const WORD = '=\\?(?:utf-?7|unicode-1-1-utf-7)(?:\\*[^?]*)?\\?([bBqQ])\\?([^?\\s]*)\\?=';
const RUN = new RegExp(`${WORD}(?:[ \\t]*(?:\\r?\\n)?[ \\t]+${WORD})*`, 'gi');
const ONE = new RegExp(WORD, 'gi');

/** `raw` with the UTF-7 encoded-words of its header made UTF-8 ones; `raw` itself when it has none. */
export function withUtf7WordsDecoded(raw: Buffer): Buffer {
  const end = headerEnd(raw);
  const header = raw.subarray(0, end).toString('latin1');
  if (!/=\?(?:utf-?7|unicode-1-1-utf-7)/i.test(header)) return raw;
  const rewritten = header.replace(RUN, (run) => {
    // Adjacent words are one text (RFC 2047 §6.2): a shifted run may be split between them.
    const bytes = Buffer.concat([...run.matchAll(ONE)].map((m) => wordBytes(m[1]!, m[2]!)));
    return `=?utf-8?B?${Buffer.from(iconv.decode(bytes, 'utf7'), 'utf8').toString('base64')}?=`;
  });
  return Buffer.concat([Buffer.from(rewritten, 'latin1'), raw.subarray(end)]);
}

function wordBytes(encoding: string, text: string): Buffer {
  if (encoding.toLowerCase() === 'b') return Buffer.from(text, 'base64');
  return Buffer.from(text.replace(/_/g, ' ').replace(/=([0-9a-fA-F]{2})/g, (_, h: string) => String.fromCharCode(parseInt(h, 16))), 'latin1');
}

/** Where the top-level header ends (its blank line), or the whole mail when there is none. */
function headerEnd(raw: Buffer): number {
  const crlf = raw.indexOf('\r\n\r\n');
  const lf = raw.indexOf('\n\n');
  const ends = [crlf, lf].filter((i) => i >= 0);
  return ends.length > 0 ? Math.min(...ends) : raw.length;
}
