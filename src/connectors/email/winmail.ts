/**
 * Outlook's `winmail.dat` (TNEF, application/ms-tnef) replaced by the files inside it, so the
 * agent gets the customer's scan or screenshot instead of a file nothing opens. The original is
 * dropped when everything in it was unpacked (it would only be a second, unreadable copy); it is
 * kept, and the body says why, whenever something was not: a broken or truncated TNEF, a bad
 * checksum, an embedded Outlook item, a formatted body that is the only text and could not be read.
 * The formatted body (RTF, HTML) becomes message.rtf / message.html only for a mail that has no
 * plain text: otherwise it is a copy of the text the ticket already has, and is left out.
 */
import { sniffMediaType } from '../../core/media-sniff.js';
import { isTnef, parseTnef, type TnefContents } from './tnef.js';

/** More files than this in one winmail.dat is not a customer's mail: it is kept whole. */
export const MAX_TNEF_FILES = 100;

const TNEF_TYPES = new Set(['application/ms-tnef', 'application/vnd.ms-tnef']);

/** The fields of a mailparser attachment the connector stores. */
export interface MailPart {
  content: Buffer;
  filename?: string;
  contentType: string;
  contentDisposition?: string;
  cid?: string;
  related?: boolean;
}

export interface Unpacked<P extends MailPart> {
  /** The attachments to store: the mail's own, with each winmail.dat replaced by (or followed by) its files. */
  parts: Array<P | MailPart>;
  /** The plain-text body a TNEF carried, for a mail that has none of its own. */
  body?: string;
  /** Lines for the body: what was not unpacked and why. */
  notes: string[];
}

/** `hasText`: the mail has a readable body of its own, so a formatted copy inside the TNEF adds nothing. */
export function unpackWinmail<P extends MailPart>(attachments: readonly P[], hasText: boolean, maxFiles = MAX_TNEF_FILES): Unpacked<P> {
  const out: Unpacked<P> = { parts: [], notes: [] };
  for (const a of attachments) {
    const labelled = TNEF_TYPES.has((a.contentType || '').toLowerCase());
    const label = a.filename || 'winmail.dat';
    if (!labelled && (a.filename ?? '').toLowerCase() !== 'winmail.dat') {
      out.parts.push(a);
      continue;
    }
    if (!isTnef(a.content)) {
      // A file merely named winmail.dat is someone's own file: only a TNEF label makes it news.
      if (labelled) out.notes.push(`[${label} is labelled TNEF but is not one (no TNEF signature): attached as it came]`);
      out.parts.push(a);
      continue;
    }
    const parsed = parseTnef(a.content, maxFiles);
    if (!parsed.ok) {
      out.notes.push(`[${label} (Outlook TNEF) could not be unpacked: ${parsed.reason}; attached as it came]`);
      out.parts.push(a);
      continue;
    }
    const c = parsed.contents;
    const withText = hasText || !!c.body;
    const files = [...filesOf(c), ...(withText ? [] : formattedBody(c))];
    out.parts.push(...files);
    out.body ??= c.body;
    const why = keepReasons(c, withText);
    if (why.length > 0) {
      out.notes.push(`[${label} (Outlook TNEF): ${files.length} file(s) unpacked; the original is attached too: ${why.join('; ')}]`);
      out.parts.push(a);
    }
  }
  return out;
}

function filesOf(c: TnefContents): MailPart[] {
  const parts: MailPart[] = [];
  for (const f of c.files) {
    if (!f.data) continue;
    parts.push({
      content: f.data,
      filename: f.name,
      contentType: f.mimeType?.toLowerCase() || sniffMediaType(f.data, f.name ?? ''),
      contentDisposition: 'attachment',
      cid: f.contentId,
    });
  }
  return parts;
}

function formattedBody(c: TnefContents): MailPart[] {
  const parts: MailPart[] = [];
  if (c.rtf) parts.push({ content: c.rtf, filename: 'message.rtf', contentType: 'application/rtf', contentDisposition: 'attachment' });
  if (c.html) parts.push({ content: c.html, filename: 'message.html', contentType: 'text/html', contentDisposition: 'attachment' });
  return parts;
}

function keepReasons(c: TnefContents, hasText: boolean): string[] {
  const why: string[] = [];
  for (const f of c.files) if (f.missing) why.push(`${f.name ? `«${f.name}» is ` : 'one attachment is '}${f.missing}`);
  if (c.badChecksums.length > 0) why.push(`checksum mismatch (${c.badChecksums.slice(0, 3).join(', ')}${c.badChecksums.length > 3 ? ', …' : ''}): the unpacked files may be damaged`);
  if (c.rtfProblem && !hasText && !c.html) why.push(`its text could not be read (${c.rtfProblem})`);
  if (c.files.length === 0 && !c.body && !c.rtf && !c.html && !c.rtfProblem) why.push('nothing was found in it');
  return why;
}
