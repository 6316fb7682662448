/**
 * Old Russian mailers send raw 8-bit windows-1251, KOI8-R or CP866 without saying so: headers without
 * RFC 2047 words, text parts without a charset (or labelled us-ascii), or labelled with a charset
 * they are not in (utf-8) or one nobody knows (`x-foo-bar`). mailparser reads those bytes as UTF-8
 * and every letter becomes U+FFFD. When that happened, the raw mail is rewritten for a second
 * parse: header lines that are not valid UTF-8 are transcoded to UTF-8, encoded words and text
 * parts whose label is absent, ASCII, UTF-8 or unknown and whose bytes are not valid UTF-8 get the
 * legacy charset named. Valid UTF-8 and parts in a charset that exists are left exactly as they were.
 */
import { isUtf8 } from 'node:buffer';
import iconv from 'iconv-lite';
import type { ParsedMail } from 'mailparser';

type Legacy = 'windows-1251' | 'koi8-r' | 'ibm866';

/** True when mailparser put U+FFFD into what becomes the ticket (subject, sender, bodies). */
export function misdecoded(mail: ParsedMail): boolean {
  const has = (s: string | false | undefined) => !!s && s.includes('\ufffd');
  return has(mail.subject) || has(mail.from?.text) || has(mail.text) || has(mail.html);
}

/** The mail with its unlabelled legacy 8-bit text made readable, or null when none was found. */
export function relabelLegacyText(raw: Buffer): Buffer | null {
  const s = raw.toString('latin1'); // one char per byte: offsets and bytes survive the round trip
  // First pass: gather the legacy text, so the charset is guessed from all of it at once.
  const survey: Walk = { samples: [] };
  fixEntity(s, survey, 'text/plain', 0);
  if (survey.samples.length === 0) return null;
  const out = fixEntity(s, { charset: guess(Buffer.concat(survey.samples)), samples: [] }, 'text/plain', 0);
  return out === s ? null : Buffer.from(out, 'latin1');
}

/**
 * An attachment's file name sent as raw 8-bit legacy bytes (a mailer that labels its text but
 * not its headers): mailparser reads bytes that are not UTF-8 one per character (latin1), so
 * «Счёт.pdf» in windows-1251 arrives as "Ñ÷¸ò.pdf". Read again in the likeliest legacy charset
 * when that gives words of Cyrillic letters only; a Western name ("café.pdf", "Müller.doc")
 * would come out with Latin and Cyrillic in one word, and is left as it was.
 */
export function legacyFileName(name: string): string {
  // Two 8-bit characters at least: one alone ("Ñ.txt") is as likely Western as a one-letter word.
  if (!/[\x80-\xff][^]*[\x80-\xff]/.test(name) || /[^\x00-\xff]/.test(name)) return name;
  const bytes = Buffer.from(name, 'latin1');
  // Not `legacy()`: mailparser tried UTF-8 already, and a short cp866 name can look like broken UTF-8.
  if (isUtf8(bytes)) return name;
  const read = new TextDecoder(guess(bytes)).decode(bytes);
  const words = read.match(/\p{L}+/gu) ?? [];
  const mixed = words.some((w) => /\p{Script=Cyrillic}/u.test(w) && /[^\p{Script=Cyrillic}]/u.test(w));
  return mixed || !/\p{Script=Cyrillic}/u.test(read) ? name : read;
}

/** Without a charset a walk only collects the legacy bytes it would convert. */
interface Walk {
  charset?: Legacy;
  samples: Uint8Array[];
}

/** Bytes above 0x7F that form well-formed UTF-8 sequences, and the others. */
function scan(bytes: Uint8Array): { utf8: number; other: number } {
  const r = { utf8: 0, other: 0 };
  for (let i = 0; i < bytes.length; i++) {
    const b = bytes[i]!;
    if (b < 0x80) continue;
    const n = b >= 0xc2 && b <= 0xdf ? 1 : b >= 0xe0 && b <= 0xef ? 2 : b >= 0xf0 && b <= 0xf4 ? 3 : 0;
    let ok = n > 0;
    for (let k = 1; ok && k <= n; k++) ok = i + k < bytes.length && (bytes[i + k]! & 0xc0) === 0x80;
    if (ok) {
      r.utf8 += n + 1;
      i += n;
    } else r.other++;
  }
  return r;
}

/**
 * Not valid UTF-8, and mostly not even UTF-8 gone bad (one broken sequence in UTF-8 text stays
 * UTF-8). A tie is legacy: a short windows-1251 word can hold a pair that happens to be valid
 * UTF-8 («Пётр» starts with CF B8), and UTF-8 text with as many broken bytes as good ones is
 * not UTF-8 either.
 */
function legacy(bytes: Uint8Array): boolean {
  if (isUtf8(bytes)) return false;
  const r = scan(bytes);
  return r.other >= r.utf8;
}

/**
 * Each charset puts the Cyrillic letters at other bytes (windows-1251 alphabetically, KOI8-R by
 * Latin transliteration), so the wrong one yields rare letters: the charset whose reading has
 * more of the ten most frequent Russian letters wins.
 */
function guess(sample: Uint8Array): Legacy {
  const frequent = (cs: Legacy) => (new TextDecoder(cs).decode(sample).match(/[оеаинтсрвл]/giu) ?? []).length;
  // windows-1251 first: it wins a tie (the commonest in mail from Russian Windows machines).
  let best: Legacy = 'windows-1251';
  for (const cs of ['koi8-r', 'ibm866'] as const) if (frequent(cs) > frequent(best)) best = cs;
  return best;
}

function fixEntity(s: string, w: Walk, defaultType: string, depth: number): string {
  if (depth > 20) return s;
  const [rawHead, sep, body] = splitEntity(s);
  const head = fixEncodedWords(rawHead, w)
    .split('\n')
    .map((line) => {
      const bytes = Buffer.from(line, 'latin1');
      if (!/[\x80-\xff]/.test(line) || !legacy(bytes)) return line;
      w.samples.push(bytes);
      return w.charset ? transcode(line, w.charset) : line;
    })
    .join('\n');
  const unfolded = head.replace(/\r?\n[ \t]+/g, ' ');
  const ct = /^content-type:[ \t]*([^;\s]+)(.*)$/im.exec(unfolded);
  const type = (ct?.[1] ?? defaultType).toLowerCase();
  const params = ct?.[2] ?? '';
  if (type.startsWith('multipart/')) {
    const boundary = /;\s*boundary\s*=\s*(?:"([^"]+)"|([^;\s]+))/i.exec(params);
    const b = boundary?.[1] ?? boundary?.[2];
    const inner = b ? fixMultipart(body, b, type === 'multipart/digest' ? 'message/rfc822' : 'text/plain', w, depth) : body;
    return head + sep + inner;
  }
  const labelled = /;\s*charset\s*=\s*"?([^";\s]+)/i.exec(params)?.[1]?.toLowerCase();
  if (!type.startsWith('text/') || (labelled && !mayRelabel(labelled))) return head + sep + body;
  const cte = /^content-transfer-encoding:[ \t]*([^\s;]+)/im.exec(unfolded)?.[1]?.toLowerCase();
  const bytes = cte === 'base64' ? Buffer.from(body, 'base64') : cte === 'quoted-printable' ? unQp(body) : Buffer.from(body, 'latin1');
  if (!legacy(bytes)) return head + sep + body;
  w.samples.push(bytes);
  return w.charset ? withCharset(head, sep, w.charset) + body : head + sep + body;
}

function fixMultipart(body: string, boundary: string, childType: string, w: Walk, depth: number): string {
  const delimiter = new RegExp(`(?:^|\\r?\\n)--${boundary.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}(--)?[ \\t]*(?=\\r?\\n|$)`, 'g');
  let out = '';
  let from = 0;
  let inPart = false;
  for (let m = delimiter.exec(body); m; m = delimiter.exec(body)) {
    const segment = body.slice(from, m.index);
    out += inPart ? fixPart(segment, childType, w, depth) : segment;
    out += m[0];
    from = m.index + m[0].length;
    inPart = !m[1];
    if (!inPart) break;
  }
  const rest = body.slice(from);
  return out + (inPart ? fixPart(rest, childType, w, depth) : rest);
}

/** A part starts with the line break that ends its delimiter line. */
function fixPart(segment: string, type: string, w: Walk, depth: number): string {
  const lead = /^\r?\n/.exec(segment)?.[0] ?? '';
  return lead + fixEntity(segment.slice(lead.length), w, type, depth + 1);
}

/**
 * A label a legacy text may hide behind: none that names its bytes (ASCII, or UTF-8 they are
 * not), or a charset that does not exist. Asked of iconv-lite, which mailparser decodes with
 * (TextDecoder does not know cp855 or cp1125, which are real).
 */
function mayRelabel(label: string): boolean {
  if (ASCII_OR_UTF8.has(label)) return true;
  return !iconv.encodingExists(label);
}

const ASCII_OR_UTF8 = new Set(['us-ascii', 'ascii', 'utf-8', 'utf8', 'unicode-1-1-utf-8', 'x-unicode20utf8']);

const ENCODED_WORD = /=\?([^?\s]+)\?([bBqQ])\?([^?\s]*)\?=/g;

/** RFC 2047 words whose label hides legacy bytes (see mayRelabel): the label becomes the legacy charset. */
function fixEncodedWords(head: string, w: Walk): string {
  return head.replace(ENCODED_WORD, (word, label: string, enc: string, data: string) => {
    const charset = label.split('*')[0]!.toLowerCase(); // RFC 2231 language suffix
    if (!mayRelabel(charset)) return word;
    const bytes = enc.toLowerCase() === 'b' ? Buffer.from(data, 'base64') : unQp(data.replace(/_/g, ' '));
    if (!legacy(bytes)) return word;
    w.samples.push(bytes);
    return w.charset ? `=?${w.charset}?${enc}?${data}?=` : word;
  });
}

function splitEntity(s: string): [string, string, string] {
  const empty = /^\r?\n/.exec(s);
  if (empty) return ['', empty[0], s.slice(empty[0].length)];
  const m = /\r?\n\r?\n/.exec(s);
  return m ? [s.slice(0, m.index), m[0], s.slice(m.index + m[0].length)] : [s, '', ''];
}

function withCharset(head: string, sep: string, charset: Legacy): string {
  const line = /^content-type:[^\r\n]*(?:\r?\n[ \t][^\r\n]*)*/im;
  if (line.test(head)) {
    return head.replace(line, (h) => (/charset\s*=/i.test(h) ? h.replace(/charset\s*=\s*"?[^";\s]*"?/i, `charset=${charset}`) : `${h.trimEnd()}; charset=${charset}`)) + sep;
  }
  const eol = sep.startsWith('\r\n') ? '\r\n' : '\n';
  return head ? `${head}${eol}Content-Type: text/plain; charset=${charset}${sep}` : `Content-Type: text/plain; charset=${charset}${eol}${sep}`;
}

function transcode(line: string, charset: Legacy): string {
  const cr = line.endsWith('\r') ? '\r' : '';
  const text = new TextDecoder(charset).decode(Buffer.from(cr ? line.slice(0, -1) : line, 'latin1'));
  return Buffer.from(text, 'utf8').toString('latin1') + cr;
}

function unQp(body: string): Buffer {
  const bytes: number[] = [];
  const s = body.replace(/=\r?\n/g, '');
  for (let i = 0; i < s.length; i++) {
    const hex = s[i] === '=' ? s.slice(i + 1, i + 3) : '';
    if (/^[0-9A-Fa-f]{2}$/.test(hex)) {
      bytes.push(parseInt(hex, 16));
      i += 2;
    } else bytes.push(s.charCodeAt(i) & 0xff);
  }
  return Buffer.from(bytes);
}
