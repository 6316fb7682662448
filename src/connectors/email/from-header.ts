/**
 * Our From header with the display name encoded so every common reader shows it whole.
 * nodemailer encodes a non-ASCII name as base64 words of at most 52 characters, so
 * "Служба поддержки" becomes two words split inside "поддержки"; RFC 2047 readers join
 * adjacent words, but some (older Outlook builds, several webmail and mobile clients) put a
 * space between them and show "Служба поддержк и". Here the name is one encoded word when it
 * fits RFC 2047's 75 characters, and otherwise split only at spaces, the space kept inside the
 * earlier word, so a reader that inserts a space shows at worst a double space; a single word
 * longer than that is split between characters, never inside a UTF-8 sequence. nodemailer has
 * no option for this, so the message is built by its MailComposer with a bare address and the
 * From line replaced before sending.
 */

const MAX_WORD = 75;
const PREFIX = '=?UTF-8?B?';
const SUFFIX = '?=';
/** UTF-8 bytes whose base64 fits one word: (75 - 12) / 4 * 3, rounded down to whole quanta. */
const MAX_BYTES = Math.floor((MAX_WORD - PREFIX.length - SUFFIX.length) / 4) * 3;

const word = (text: string) => `${PREFIX}${Buffer.from(text, 'utf8').toString('base64')}${SUFFIX}`;
const bytes = (text: string) => Buffer.byteLength(text, 'utf8');

/** RFC 2047 words for a display name; undefined when it needs no encoding (printable ASCII). */
export function encodeDisplayName(name: string): string[] | undefined {
  if (/^[\x20-\x7e]*$/.test(name)) return undefined;
  const chunks: string[] = [];
  let current = '';
  // Pieces are words with their following space; a piece too long on its own goes by code points.
  for (const piece of name.match(/\S+\s*|\s+/g) ?? []) {
    if (bytes(current + piece) <= MAX_BYTES) {
      current += piece;
      continue;
    }
    if (current) chunks.push(current);
    current = '';
    for (const ch of piece) {
      if (bytes(current + ch) > MAX_BYTES) {
        chunks.push(current);
        current = '';
      }
      current += ch;
    }
  }
  if (current) chunks.push(current);
  return chunks.map(word);
}

/** `From:` header line(s), folded between words, for a name and address. */
export function fromHeader(name: string | undefined, address: string): string | undefined {
  const words = name ? encodeDisplayName(name) : undefined;
  if (!words) return undefined;
  return `From: ${[...words, `<${address}>`].join('\r\n ')}`;
}

/**
 * Replaces the From field of a built message (the composer wrote it with the bare address) by
 * `header`. Only the header block is touched.
 */
export function replaceFrom(message: Buffer, header: string): Buffer {
  const end = message.indexOf('\r\n\r\n');
  const head = message.subarray(0, end < 0 ? message.length : end).toString('latin1');
  const lines = head.split('\r\n');
  const at = lines.findIndex((l) => /^from:/i.test(l));
  if (at < 0) throw new Error('the composed message has no From header');
  let stop = at + 1;
  while (stop < lines.length && /^[ \t]/.test(lines[stop]!)) stop++;
  lines.splice(at, stop - at, header);
  return Buffer.concat([Buffer.from(lines.join('\r\n'), 'latin1'), end < 0 ? Buffer.alloc(0) : message.subarray(end)]);
}
