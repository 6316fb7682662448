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
 *
 * The Subject had the same fault: nodemailer cut "Re: Не работает оплата картой [#T-1010]" into
 * "Re: Не работает оп" | "лата картой [#T-1010" | "]", so such readers showed "оп лата" and
 * "[#T-1010 ]", and the broken token no longer threaded the customer's answer. It is encoded the
 * same way (subjectHeader) and handed to nodemailer as a prepared header, which it writes as is.
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
  return encodeWords(name, MAX_BYTES);
}

/**
 * RFC 2047 words for a subject; undefined when nodemailer may write it as it is (printable
 * ASCII that holds nothing a reader would take for an encoded word). The first word shares its
 * line with "Subject: ", so it is shorter: every line stays within RFC 2047's 76 characters.
 */
export function encodeSubject(subject: string): string[] | undefined {
  if (/^[\x20-\x7e]*$/.test(subject) && !subject.includes('=?')) return undefined;
  return encodeWords(subject, Math.floor((MAX_WORD + 1 - 'Subject: '.length - PREFIX.length - SUFFIX.length) / 4) * 3);
}

/** The Subject value (words folded onto lines of their own) for a prepared header, or undefined. */
export function subjectHeader(subject: string): string | undefined {
  return encodeSubject(subject)?.join('\r\n ');
}

/** A ticket token such as "[#T-1042]": never cut, even inside a word too long for one encoded word. */
const TOKEN = /\[#[^\s\]]{1,30}\]/y;

/**
 * Base64 words holding whole words with their following space (a reader joins adjacent encoded
 * words, the space inside them survives); a word longer than one encoded word goes by code
 * points, a ticket token as one piece. `firstBytes` caps the first word.
 */
function encodeWords(text: string, firstBytes: number): string[] {
  const chunks: string[] = [];
  let current = '';
  const limit = () => (chunks.length === 0 ? firstBytes : MAX_BYTES);
  const flush = () => {
    if (current) chunks.push(current);
    current = '';
  };
  for (const piece of text.match(/\S+\s*|\s+/g) ?? []) {
    if (bytes(current + piece) <= limit()) {
      current += piece;
      continue;
    }
    flush();
    if (bytes(piece) <= limit()) {
      current = piece;
      continue;
    }
    for (const atom of atoms(piece)) {
      if (current && bytes(current + atom) > limit()) flush();
      current += atom;
    }
  }
  flush();
  return chunks.map(word);
}

/** Code points, with each ticket token kept as one. */
function* atoms(piece: string): Generator<string> {
  for (let i = 0; i < piece.length; ) {
    TOKEN.lastIndex = i;
    const token = TOKEN.exec(piece);
    const atom = token ? token[0] : String.fromCodePoint(piece.codePointAt(i)!);
    yield atom;
    i += atom.length;
  }
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
