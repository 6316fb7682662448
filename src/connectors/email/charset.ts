/**
 * Old Russian mailers send raw 8-bit Cyrillic (windows-1251, KOI8-R, CP866, ISO-8859-5, Mac)
 * without saying so: headers without RFC 2047 words, text parts without a charset (or labelled
 * us-ascii), or labelled with a charset they are not in (utf-8) or one nobody knows (`x-foo-bar`).
 * mailparser reads those bytes as UTF-8 and every letter becomes U+FFFD. When that happened, the
 * raw mail is rewritten for a second parse: header fields that are not valid UTF-8 are transcoded
 * to UTF-8, encoded words and text parts whose label is absent, ASCII, UTF-8 or unknown and whose
 * bytes are not valid UTF-8 get a legacy charset named. Valid UTF-8 and parts in a charset that
 * exists are left exactly as they were.
 *
 * The text parts share one charset, guessed from all of them. Each header field (Subject, From,
 * To, a part's Content-Disposition with its file name) is guessed from its own bytes: the mailer
 * that wrote the body is often not what wrote the subject (a 1C export's subject in windows-1251
 * over a KOI8-R body) or named the file (a scanner's). The body's charset only breaks a tie.
 */
import { isUtf8 } from 'node:buffer';
import iconv from 'iconv-lite';
import type { ParsedMail } from 'mailparser';
import { CYRILLIC, decodeCyrillic, guessCyrillic, type Cyrillic } from './cyrillic.js';

/** True when mailparser put U+FFFD into what becomes the ticket (subject, sender, bodies). */
export function misdecoded(mail: ParsedMail): boolean {
  const has = (s: string | false | undefined) => !!s && s.includes('\ufffd');
  return has(mail.subject) || has(mail.from?.text) || has(mail.text) || has(mail.html);
}

/** The mail with its unlabelled legacy 8-bit text made readable, or null when none was found. */
export function relabelLegacyText(raw: Buffer): Buffer | null {
  const s = raw.toString('latin1'); // one char per byte: offsets and bytes survive the round trip
  // First pass: gather the legacy body text, so its charset is guessed from all of it at once.
  const survey: Walk = { fix: false, samples: [], found: false };
  fixEntity(s, survey, 'text/plain', 0);
  if (!survey.found) return null;
  const body = survey.samples.length > 0 ? guessCyrillic(Buffer.concat(survey.samples), survey.declared) : survey.declared;
  const out = fixEntity(s, { fix: true, body, samples: [], found: false }, 'text/plain', 0);
  return out === s ? null : Buffer.from(out, 'latin1');
}

/**
 * An attachment's file name sent as raw 8-bit legacy bytes (a mailer that labels its text but
 * not its headers): mailparser reads bytes that are not UTF-8 one per character (latin1), so
 * «Счёт.pdf» in windows-1251 arrives as "Ñ÷¸ò.pdf". Read again in the likeliest legacy charset
 * for its own bytes (cyrillic.ts) when that gives words of Cyrillic letters only; a Western name
 * ("café.pdf", "Müller.doc") would come out with Latin and Cyrillic in one word, and is left.
 */
export function legacyFileName(name: string): string {
  // Two 8-bit characters at least: one alone ("Ñ.txt") is as likely Western as a one-letter word.
  if (!/[\x80-\xff][^]*[\x80-\xff]/.test(name) || /[^\x00-\xff]/.test(name)) return name;
  const bytes = Buffer.from(name, 'latin1');
  // Not `legacy()`: mailparser tried UTF-8 already, and a short cp866 name can look like broken UTF-8.
  if (isUtf8(bytes)) return name;
  const read = decodeCyrillic(bytes, guessCyrillic(bytes));
  return mixesScripts(read) || !/\p{Script=Cyrillic}/u.test(read) ? name : read;
}

/** A word with Cyrillic and other letters: what a Western name («café», «Müller») becomes read as Cyrillic. */
function mixesScripts(read: string): boolean {
  return (read.match(/\p{L}+/gu) ?? []).some((w) => /\p{Script=Cyrillic}/u.test(w) && /[^\p{Script=Cyrillic}]/u.test(w));
}

/** A survey (`fix` false) collects the legacy body bytes and notes whether anything is legacy. */
interface Walk {
  fix: boolean;
  /** The text parts' charset: guessed from their legacy bytes, or the first Cyrillic label. */
  body?: Cyrillic;
  declared?: Cyrillic;
  samples: Uint8Array[];
  found: boolean;
}

/**
 * Bytes above 0x7F that form well-formed UTF-8 sequences, and the others. Three-byte sequences
 * for U+0800–U+1FFF (Samaritan to Greek Extended) and U+2400–U+2BFF (box drawing, Braille,
 * dingbats) are not counted as UTF-8: CP866 puts р–я at E0–EF and а–п, А–Я at 80–AF, so its
 * words read as such sequences («сверки» holds E1 A2 A5, «ки» A8 after E0 AA).
 */
function scan(bytes: Uint8Array): { utf8: number; other: number } {
  const r = { utf8: 0, other: 0 };
  for (let i = 0; i < bytes.length; i++) {
    const b = bytes[i]!;
    if (b < 0x80) continue;
    const n = b >= 0xc2 && b <= 0xdf ? 1 : b >= 0xe0 && b <= 0xef ? 2 : b >= 0xf0 && b <= 0xf4 ? 3 : 0;
    let ok = n > 0;
    for (let k = 1; ok && k <= n; k++) ok = i + k < bytes.length && (bytes[i + k]! & 0xc0) === 0x80;
    if (ok && n === 2) {
      const cp = ((b & 0x0f) << 12) | ((bytes[i + 1]! & 0x3f) << 6) | (bytes[i + 2]! & 0x3f);
      ok = !((cp >= 0x800 && cp < 0x2000) || (cp >= 0x2400 && cp < 0x2c00));
    }
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

function fixEntity(s: string, w: Walk, defaultType: string, depth: number): string {
  if (depth > 20) return s;
  const [rawHead, sep, body] = splitEntity(s);
  const head = fieldsOf(rawHead).map((field) => fixField(field, w)).join('\n');
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
  if (type.startsWith('text/') && labelled) w.declared ??= cyrillicLabel(labelled);
  if (!type.startsWith('text/') || (labelled && !mayRelabel(labelled))) return head + sep + body;
  const cte = /^content-transfer-encoding:[ \t]*([^\s;]+)/im.exec(unfolded)?.[1]?.toLowerCase();
  const bytes = cte === 'base64' ? Buffer.from(body, 'base64') : cte === 'quoted-printable' ? unQp(body) : Buffer.from(body, 'latin1');
  if (!legacy(bytes)) return head + sep + body;
  w.samples.push(bytes);
  w.found = true;
  return w.fix && w.body ? withCharset(head, sep, w.body) + body : head + sep + body;
}

/** A header block's fields, each with its continuation lines (split on LF; a CR stays on its line). */
function fieldsOf(head: string): string[] {
  return head === '' ? [''] : head.split(/\n(?![ \t])/);
}

/**
 * One header field read on its own: its raw 8-bit bytes and the encoded words whose label hides
 * legacy bytes (see mayRelabel) are guessed together, the body's charset breaking a tie only.
 */
function fixField(field: string, w: Walk): string {
  const rawBytes = Buffer.from(field, 'latin1');
  const raw = /[\x80-\xff]/.test(field) && legacy(rawBytes);
  const words = legacyWords(field);
  if (!raw && words.length === 0) return field;
  w.found = true;
  if (!w.fix) return field;
  const sample = Buffer.concat([...(raw ? [rawBytes] : []), ...words]);
  const cyrillic = guessCyrillic(sample, w.body);
  // A Western name («café.pdf», «Müller») read as Cyrillic mixes scripts in a word: it is Western.
  const charset = mixesScripts(decodeCyrillic(sample, cyrillic)) ? 'windows-1252' : cyrillic;
  const relabelled = words.length > 0 ? fixEncodedWords(field, charset) : field;
  return raw ? transcode(relabelled, charset) : relabelled;
}

/** TextDecoder's name for a label, as one of ours; undefined for any other charset. */
function cyrillicLabel(label: string): Cyrillic | undefined {
  let name: string;
  try {
    name = new TextDecoder(label).encoding;
  } catch {
    return undefined; // not a charset TextDecoder knows: not one of ours either
  }
  const ours = name === 'x-mac-cyrillic' ? 'maccyrillic' : name;
  return CYRILLIC.find((c) => c === ours);
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

/** The bytes of a field's RFC 2047 words whose label hides legacy bytes (see mayRelabel). */
function legacyWords(field: string): Buffer[] {
  const out: Buffer[] = [];
  for (const m of field.matchAll(ENCODED_WORD)) {
    const bytes = legacyWordBytes(m[1]!, m[2]!, m[3]!);
    if (bytes) out.push(bytes);
  }
  return out;
}

function legacyWordBytes(label: string, enc: string, data: string): Buffer | undefined {
  if (!mayRelabel(label.split('*')[0]!.toLowerCase())) return undefined; // RFC 2231 language suffix
  const bytes = enc.toLowerCase() === 'b' ? Buffer.from(data, 'base64') : unQp(data.replace(/_/g, ' '));
  return legacy(bytes) ? bytes : undefined;
}

/** Those words' label becomes the field's legacy charset. */
function fixEncodedWords(field: string, charset: Cyrillic | 'windows-1252'): string {
  return field.replace(ENCODED_WORD, (word, label: string, enc: string, data: string) => (legacyWordBytes(label, enc, data) ? `=?${charset}?${enc}?${data}?=` : word));
}

function splitEntity(s: string): [string, string, string] {
  const empty = /^\r?\n/.exec(s);
  if (empty) return ['', empty[0], s.slice(empty[0].length)];
  const m = /\r?\n\r?\n/.exec(s);
  return m ? [s.slice(0, m.index), m[0], s.slice(m.index + m[0].length)] : [s, '', ''];
}

function withCharset(head: string, sep: string, charset: Cyrillic): string {
  const line = /^content-type:[^\r\n]*(?:\r?\n[ \t][^\r\n]*)*/im;
  if (line.test(head)) {
    return head.replace(line, (h) => (/charset\s*=/i.test(h) ? h.replace(/charset\s*=\s*"?[^";\s]*"?/i, `charset=${charset}`) : `${h.trimEnd()}; charset=${charset}`)) + sep;
  }
  const eol = sep.startsWith('\r\n') ? '\r\n' : '\n';
  return head ? `${head}${eol}Content-Type: text/plain; charset=${charset}${sep}` : `Content-Type: text/plain; charset=${charset}${eol}${sep}`;
}

/** A field's bytes (line breaks are ASCII in all of these charsets, and stay where they were) as UTF-8. */
function transcode(field: string, charset: Cyrillic | 'windows-1252'): string {
  return Buffer.from(iconv.decode(Buffer.from(field, 'latin1'), charset), 'utf8').toString('latin1');
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
