/**
 * The media type of an upload that did not say what it is. `curl --data-binary @invoice.pdf`
 * sends `application/x-www-form-urlencoded` unless told otherwise, and that was stored as the
 * file's type: a helpdesk offered a PDF as a form, and a channel sent a photo as a document of that
 * type. Such a file is typed by its first bytes, and only for formats whose signature cannot be
 * mistaken; anything else is `application/octet-stream`, which claims nothing.
 */

/** Leading bytes and the type they mean. */
const SIGNATURES: ReadonlyArray<readonly [prefix: Buffer, type: string]> = [
  [Buffer.from('%PDF-'), 'application/pdf'],
  [Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]), 'image/png'],
  [Buffer.from([0xff, 0xd8, 0xff]), 'image/jpeg'],
  [Buffer.from('GIF87a'), 'image/gif'],
  [Buffer.from('GIF89a'), 'image/gif'],
  // Voice notes (Opus) and Vorbis alike: the container is what a player needs to know.
  [Buffer.from('OggS'), 'audio/ogg'],
  [Buffer.from([0x50, 0x4b, 0x03, 0x04]), 'application/zip'],
  [Buffer.from([0x50, 0x4b, 0x05, 0x06]), 'application/zip'], // an empty archive
];

/**
 * Office documents are ZIP archives: which one, only the name tells without unpacking. The bytes
 * must be a ZIP for the name to count, so a renamed file is not taken for a document.
 */
const OFFICE_BY_EXTENSION: Readonly<Record<string, string>> = {
  docx: 'application/vnd.openxmlformats-officedocument.wordprocessingml.document',
  xlsx: 'application/vnd.openxmlformats-officedocument.spreadsheetml.sheet',
  pptx: 'application/vnd.openxmlformats-officedocument.presentationml.presentation',
};

export const UNKNOWN_MEDIA_TYPE = 'application/octet-stream';

/** The type `bytes` (named `name`) show themselves to be, or application/octet-stream. */
export function sniffMediaType(bytes: Uint8Array, name: string): string {
  const head = Buffer.from(bytes.buffer, bytes.byteOffset, Math.min(bytes.byteLength, 16));
  const type = SIGNATURES.find(([prefix]) => head.subarray(0, prefix.length).equals(prefix))?.[1];
  if (type === 'application/zip') return OFFICE_BY_EXTENSION[/\.([a-z]+)$/i.exec(name)?.[1]?.toLowerCase() ?? ''] ?? type;
  return type ?? UNKNOWN_MEDIA_TYPE;
}

/**
 * Whether a declared type says nothing of the file: none at all, or the form type clients send
 * by default (`curl --data-binary`, `-d`), which no file upload means.
 */
export function saysNothing(declared: string | undefined): boolean {
  const type = (declared ?? '').split(';')[0]!.trim().toLowerCase();
  return type === '' || type === 'application/x-www-form-urlencoded';
}
