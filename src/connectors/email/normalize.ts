/**
 * One raw RFC 5322 mail → one inbound event. mailparser decodes MIME, transfer encodings,
 * charsets (windows-1251, KOI8-R, ... via iconv-lite) and RFC 2047 encoded words; we pick the
 * identity, threading headers and bodies, store every attachment and inline image in the object
 * store (Outlook's winmail.dat unpacked into the files inside it: winmail.ts) and mark automated
 * mail. Unlabelled 8-bit Cyrillic (windows-1251, KOI8-R, CP866…) is read as such, each header
 * field and file name in its own charset (charset.ts).
 * The event stays within the byte budget (budget.ts): a body too long for it rides cut, and whole
 * in the object store. What mailparser cannot read, a mail without a usable sender (nobody to
 * answer: identity.ts says whom), one nested deeper than MAX_MIME_DEPTH (mime-depth.ts), or one whose headers
 * alone overflow the budget comes back as `invalid` with the reason, to be parked.
 */
import { simpleParser, type AddressObject, type ParsedMail } from 'mailparser';
import { MediaTooLargeError, type MediaStore } from '../../core/media.js';
import { errorMessage } from '../../core/errors.js';
import type { Attachment, InboundEventInput } from '../../core/schema.js';
import { eventId } from '../contract.js';
import { BODY_MAX_BYTES, EVENT_MAX_BYTES, SUBJECT_MAX_CHARS, jsonBytes, prefixWithin } from './budget.js';
import { legacyFileName, misdecoded, relabelLegacyText } from './charset.js';
import { MAX_MESSAGE_ID_CHARS, copyHeaders, effectiveMessageId, platformId } from './ids.js';
import { authenticationOf, type AuthenticationPolicy } from './authentication.js';
import { pickSender } from './identity.js';
import { MAX_MIME_DEPTH, mimeDepth } from './mime-depth.js';
import { classify } from './loop-guard.js';
import { trimReply } from './trim.js';
import { unpackWinmail, type MailPart } from './winmail.js';
import { withUtf7WordsDecoded } from './utf7-words.js';
import { brokenBase64Contents } from './broken-base64.js';

export interface NormalizeDeps {
  channel: string;
  account: string;
  media: MediaStore;
  maxAttachmentBytes: number;
  maxBodyChars: number;
  ours: { addresses: ReadonlySet<string>; domains: ReadonlySet<string> };
  /** Every own address (this entry's mailboxes and aliases, then the other email entries'), lower case: told to the router, which never copies them on a reply. */
  ownAddresses: readonly string[];
  /** Whose Authentication-Results are believed (authentication.ts); absent: only a fail in the topmost header counts. */
  authentication?: AuthenticationPolicy;
}

export type Normalized = { kind: 'event'; event: InboundEventInput & { type: 'message.inbound' } } | { kind: 'invalid'; reason: string };

/** `note` replaces the body when the mail was too large to download (headers only). */
export async function normalizeMail(raw: Buffer, mailbox: string, deps: NormalizeDeps, note?: string): Promise<Normalized> {
  // Refused before parsing, with a reason that names the nesting (mailparser would only say it
  // met too many nodes, or work through thousands of levels).
  if (mimeDepth(raw) > MAX_MIME_DEPTH) return { kind: 'invalid', reason: `MIME nesting deeper than ${MAX_MIME_DEPTH} levels (multipart or message/rfc822 parts inside each other)` };
  let mail: ParsedMail;
  try {
    // UTF-7 encoded-words made UTF-8 ones (utf7-words.ts); every other use of `raw` keeps the bytes as sent.
    const readable = withUtf7WordsDecoded(raw);
    mail = await parse(readable);
    const relabelled = misdecoded(mail) ? relabelLegacyText(readable) : null;
    if (relabelled) mail = await parse(relabelled);
  } catch (err) {
    return { kind: 'invalid', reason: `mailparser could not read the mail: ${errorMessage(err)}` };
  }
  const picked = pickSender(mail);
  if (!picked.ok) {
    const tried = picked.refused.length > 0 ? picked.refused.join('; ') : 'no From, Reply-To, Sender or Return-Path header';
    return { kind: 'invalid', reason: `no usable sender address (${tried}): nobody to answer` };
  }
  const sender = picked.mailbox;
  const from = sender.address;
  const messageId = effectiveMessageId(mail.messageId, raw);
  const pid = platformId(mailbox, messageId, { from, headers: copyHeaders(raw) });
  const replyTo = mail.replyTo?.value.find((a) => a.address)?.address?.toLowerCase();
  const verdict = classify(mail, from, messageId, deps.ours);
  // Judged against the From header's domain: that is what DMARC aligns with. A sender taken from
  // a fallback header proves nothing anyway (the router says so).
  const authentication = authenticationOf(mail, from, deps.authentication ?? NO_TRUST);

  // A body mailparser found nothing in (a multipart without its boundary, say) is kept whole as
  // message.eml and the text says so: before, the customer's words became an empty message.
  const unreadable = note === undefined && !mail.text?.trim() && !mail.html && mail.attachments.length === 0 && bodyWithoutParts(mail, raw);
  // Broken base64 is not stored as the garbage bytes mailparser made of it: named under the text.
  const broken = brokenBase64Contents(raw);
  const unreadableFiles = broken.length > 0 ? mail.attachments.filter((a) => broken.some((b) => b.equals(a.content))) : [];
  const readableParts = unreadableFiles.length > 0 ? mail.attachments.filter((a) => !unreadableFiles.includes(a)) : mail.attachments;
  const winmail = unpackWinmail(readableParts, !!mail.text?.trim() || !!mail.html);
  // What was not unpacked is said under the text, outside what trimming may cut (ticketText).
  const subject = prefixWithin(mail.subject ?? '', SUBJECT_MAX_CHARS, Infinity);
  const subjectNote = subject.length < (mail.subject ?? '').length ? [`[the subject was ${mail.subject!.length} characters long: only its first ${subject.length} are kept]`] : [];
  const brokenNotes = unreadableFiles.map((a, i) => `[the attachment ${a.filename ? `«${legacyFileName(a.filename)}»` : `${i + 1} (${a.contentType})`} could not be read: its base64 encoding is broken (damaged on the way), so it was not stored; ask the sender to send it again]`);
  const allNotes = [...winmail.notes, ...brokenNotes, ...subjectNote];
  const notes = allNotes.length > 0 ? `\n\n${allNotes.join('\n')}` : '';
  const ownText = mail.text?.trim() ? mail.text : (winmail.body ?? mail.text ?? '');
  const body = note ?? (unreadable ? `[${unreadableWhy(mail)}: the whole mail is attached as message.eml]` : `${ownText}${notes}`.replace(/^\n+/, ''));
  const ticketText = (full: string) => (notes && full.endsWith(notes) ? `${trimReply(full.slice(0, -notes.length))}${notes}`.replace(/^\n+/, '') : trimReply(full));
  const attachments: Attachment[] = [];
  let wholeTextStored = false;
  const keptText = async (maxBytes: number) => {
    const cut = prefixWithin(body, deps.maxBodyChars, maxBytes - 200); // room for the note
    if (cut.length === body.length) return body;
    if (!wholeTextStored) attachments.unshift(await store(deps, Buffer.from(body, 'utf8'), { name: 'message.txt', mimeType: 'text/plain', kind: 'document' }));
    wholeTextStored = true;
    return `${cut}\n[… ${body.length - cut.length} more characters not shown: the whole text is in the attachment message.txt]`;
  };
  const fullText = await keptText(BODY_MAX_BYTES);
  let html = mail.html || undefined;
  const moveHtml = async () => {
    attachments.push(await store(deps, Buffer.from(html!, 'utf8'), { name: 'message.html', mimeType: 'text/html', kind: 'document' }));
    html = undefined;
  };
  // Too big to ride in the event: kept whole in the object store instead.
  if (html && prefixWithin(html, deps.maxBodyChars, BODY_MAX_BYTES).length < html.length) await moveHtml();
  for (const [i, a] of winmail.parts.entries()) attachments.push(await storeAttachment(deps, a, i));
  if (unreadable) attachments.push(await store(deps, raw, { name: 'message.eml', mimeType: 'message/rfc822', kind: 'document' }));

  const event: InboundEventInput & { type: 'message.inbound' } = {
    type: 'message.inbound',
    id: eventId(deps.channel, deps.account, pid),
    conversation: { id: mailbox.toLowerCase(), kind: 'email', title: subject || undefined },
    sender: {
      id: from,
      displayName: sender.name || undefined,
      handles: replyTo && replyTo !== from ? { email: from, replyTo } : { email: from },
    },
    text: ticketText(fullText),
    fullText,
    html,
    format: 'plain',
    attachments,
    email: {
      messageId,
      inReplyTo: firstId(mail.inReplyTo),
      references: idList(mail.references),
      subject,
      from,
      to: addresses(mail.to),
      cc: addresses(mail.cc),
      replyTo,
      senderHeader: picked.header,
      ...(picked.refused.length > 0 ? { senderNote: `sender taken from ${picked.header}: ${picked.refused.join('; ')}` } : {}),
      ownAddresses: [...deps.ownAddresses],
      ...(authentication ? { authentication } : {}),
    },
    automated: verdict.automated,
    bounceOf: verdict.bounceOf,
    platform: { messageId: pid, sentAt: mail.date && !Number.isNaN(mail.date.getTime()) ? mail.date.toISOString() : undefined },
  };
  // Over the budget with bodies within theirs: the headers and attachment list are large too.
  // The HTML goes first (it is in the object store whole), then the text shrinks to what is left.
  if (jsonBytes(event) > EVENT_MAX_BYTES && event.html) {
    await moveHtml();
    event.html = undefined;
  }
  if (jsonBytes(event) > EVENT_MAX_BYTES) {
    const rest = jsonBytes({ ...event, text: '', fullText: '' });
    const room = Math.floor((EVENT_MAX_BYTES - rest - 1024) / 2); // 1 KiB for the message.txt entry
    if (room < 4096) return { kind: 'invalid', reason: `the event would be ${rest} bytes even without its body (limit ${EVENT_MAX_BYTES}): headers or attachment list too large` };
    event.fullText = await keptText(room);
    event.text = ticketText(event.fullText);
  }
  return { kind: 'event', event };
}

const NO_TRUST: AuthenticationPolicy = { trustedAuthServIds: [], requireAuthenticatedSender: false };

function parse(source: Buffer): Promise<ParsedMail> {
  return simpleParser(source, { keepCidLinks: true, skipTextToHtml: true, skipImageLinks: true });
}

async function storeAttachment(deps: NormalizeDeps, a: MailPart, index: number): Promise<Attachment> {
  const mimeType = (a.contentType || 'application/octet-stream').toLowerCase();
  const inline = !!a.cid && (a.related || a.contentDisposition === 'inline');
  const kind = inline ? 'inline' : mimeType.startsWith('image/') ? 'image' : mimeType.startsWith('audio/') ? 'audio' : mimeType.startsWith('video/') ? 'video' : 'document';
  const name = (a.filename && legacyFileName(a.filename)) || `${inline ? 'inline' : 'attachment'}-${index + 1}${extensionFor(mimeType)}`;
  return store(deps, a.content, { name, mimeType, kind, contentId: a.cid || undefined });
}

async function store(deps: NormalizeDeps, bytes: Buffer, meta: { name: string; mimeType: string; kind: string; contentId?: string }): Promise<Attachment> {
  const limit = Math.min(deps.maxAttachmentBytes, deps.media.maxBytes);
  if (bytes.byteLength > limit) {
    return deps.media.failed({ ...meta, size: bytes.byteLength }, `attachment is ${bytes.byteLength} bytes; the limit is ${limit} bytes`);
  }
  try {
    return await deps.media.put(bytes, meta);
  } catch (err) {
    if (err instanceof MediaTooLargeError) return deps.media.failed({ ...meta, size: bytes.byteLength }, err.message);
    throw err; // the object store is down: do not publish half a mail, retry it later
  }
}

function addresses(field: AddressObject | AddressObject[] | undefined): string[] {
  if (!field) return [];
  const out: string[] = [];
  for (const group of Array.isArray(field) ? field : [field]) {
    for (const a of group.value) {
      if (a.address) out.push(a.address.toLowerCase());
      for (const member of a.group ?? []) if (member.address) out.push(member.address.toLowerCase());
    }
  }
  return out;
}

/** mailparser gives a string for one id and an array for several; some clients put several in one header. */
function idList(v: string | string[] | undefined): string[] {
  if (!v) return [];
  const out: string[] = [];
  for (const s of Array.isArray(v) ? v : [v]) {
    const ids = s.match(/<[^<>\s]+>/g);
    if (ids) out.push(...ids);
    else if (s.trim()) out.push(`<${s.trim()}>`);
  }
  // No mail of anyone's goes by a longer id (effectiveMessageId): such a one names nothing, and
  // twenty of them in the ticket's reference chain outgrew a NATS message.
  return out.filter((id) => id.length <= MAX_MESSAGE_ID_CHARS);
}

function firstId(v: string | undefined): string | undefined {
  return idList(v)[0];
}

const EXTENSIONS: Record<string, string> = {
  'image/png': '.png', 'image/jpeg': '.jpg', 'image/gif': '.gif', 'text/plain': '.txt', 'text/html': '.html',
  'application/pdf': '.pdf', 'message/rfc822': '.eml', 'message/delivery-status': '.txt', 'text/rfc822-headers': '.txt',
};
function extensionFor(mimeType: string): string {
  return EXTENSIONS[mimeType] ?? '';
}

/**
 * Bytes after the header block that mailparser could not have read: a multipart without its
 * boundary (it finds no parts), or a single part with text it decoded to nothing. A multipart
 * with its boundary and no text (a subject-only mail's empty alternative) is just empty.
 */
function bodyWithoutParts(mail: ParsedMail, raw: Buffer): boolean {
  const ct = mail.headers.get('content-type') as { value?: string; params?: Record<string, string> } | undefined;
  if (ct?.value?.toLowerCase().startsWith('multipart/') && ct.params?.boundary) return false;
  const text = raw.toString('latin1');
  const end = /\r?\n\r?\n/.exec(text);
  return !!end && /\S/.test(text.slice(end.index + end[0].length));
}

/** Why the body could not be read, as far as the header says. */
function unreadableWhy(mail: ParsedMail): string {
  const ct = mail.headers.get('content-type') as { value?: string; params?: Record<string, string> } | undefined;
  const type = ct?.value?.toLowerCase() ?? '';
  if (type.startsWith('multipart/') && !ct?.params?.boundary) return `the body could not be read (${type} without a boundary)`;
  return `the body could not be read${type ? ` (${type})` : ''}`;
}
