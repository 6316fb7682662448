/**
 * One Baileys message (proto WebMessageInfo) → one normalized inbound event, plus what still has
 * to be fetched (media) and what to remember for quoting. Pure: the connector does the I/O.
 *
 * Platform ids are `<chat JID>:<message id>` with the chat JID after @lid → phone mapping, so a
 * quote or a reaction from the customer points at the same id the original message got.
 */
import type { InboundEventInput, StructuredPart } from '../../core/schema.js';
import { eventId } from '../contract.js';
import {
  isJidBroadcast,
  isJidGroup,
  isJidNewsletter,
  isLidUser,
  jidNormalizedUser,
  normalizeMessageContent,
  proto,
  type WAMessage,
} from './baileys.js';
import type { proto as P } from '@whiskeysockets/baileys';

export interface PendingMedia {
  kind: 'image' | 'video' | 'audio' | 'voice' | 'document' | 'sticker';
  name: string;
  mimeType: string;
  size?: number;
}

/** Enough of the customer's message to quote it in a reply (bounded: text only, no media bytes). */
export interface StoredQuote {
  platformId: string;
  key: { remoteJid: string; id: string; participant?: string; fromMe: false };
  text: string;
}

export type Normalized =
  | { kind: 'skip'; reason: string; loopGuard?: true }
  | { kind: 'invalid'; reason: string }
  | { kind: 'event'; event: InboundEventInput; media?: PendingMedia; quote?: StoredQuote };

export interface NormalizeContext {
  channel: string;
  account: string;
  /** Our own JIDs (phone and LID), normalized: never ticket our own messages. */
  self: Set<string>;
  groups: 'all' | 'mention' | 'off';
  /** @lid → phone-number JID where Baileys told us the mapping; otherwise the JID unchanged. */
  resolve(jid: string): string;
}

type ContextInfo = P.IContextInfo | null | undefined;

export function platformId(chat: string, messageId: string): string {
  return `${chat}:${messageId}`;
}

/** 9999-12-31T23:59:59Z, the last second an ISO time with a four-digit year can say. */
const MAX_UNIX_SECONDS = 253_402_300_799;

export function toSeconds(t: WAMessage['messageTimestamp']): number | undefined {
  if (t === null || t === undefined) return undefined;
  return typeof t === 'number' ? t : Number(t.toString());
}

export function normalizeMessage(msg: WAMessage, c: NormalizeContext): Normalized {
  const key = msg.key;
  if (!key?.remoteJid || !key.id) return { kind: 'invalid', reason: 'message key without remoteJid or id' };
  const rawChat = key.remoteJid;
  if (key.fromMe) return { kind: 'skip', reason: 'our own message (loop guard)', loopGuard: true };
  if (rawChat === 'status@broadcast' || isJidBroadcast(rawChat) || isJidNewsletter(rawChat)) return { kind: 'skip', reason: 'status, broadcast or channel' };
  const group = !!isJidGroup(rawChat);
  if (group && c.groups === 'off') return { kind: 'skip', reason: 'group messages are off' };
  const rawSender = group ? key.participant : rawChat;
  if (!rawSender) return { kind: 'invalid', reason: 'group message without participant' };
  const senderJid = c.resolve(jidNormalizedUser(rawSender));
  if (c.self.has(senderJid)) return { kind: 'skip', reason: 'our own message (loop guard)', loopGuard: true };
  const chat = group ? rawChat : senderJid;
  const content = normalizeMessageContent(msg.message);
  if (!content) return { kind: 'skip', reason: 'no content (receipt, stub or undecryptable)' };

  const pid = platformId(chat, key.id);
  const sender = {
    id: senderJid,
    displayName: msg.pushName || undefined,
    handles: handlesOf(senderJid, rawSender),
  };
  const conversation = { id: chat, kind: group ? ('group' as const) : ('private' as const) };
  const sentAt = toSeconds(msg.messageTimestamp);
  // A time past what a date can hold threw below, parked as "Invalid time value" without the field.
  if (sentAt !== undefined && !(Number.isSafeInteger(sentAt) && sentAt >= 0 && sentAt <= MAX_UNIX_SECONDS)) {
    return { kind: 'invalid', reason: `messageTimestamp: ${String(msg.messageTimestamp)} is not a time WhatsApp could have sent (whole seconds since 1970, up to the year 9999)` };
  }
  const platform = { messageId: pid, ...(sentAt ? { sentAt: new Date(sentAt * 1000).toISOString(), sentAtBy: 'platform' as const } : {}) };
  const id = eventId(c.channel, c.account, pid);
  const targetId = (k: P.IMessageKey | null | undefined) => (k?.id ? platformId(k.remoteJid ? c.resolve(k.remoteJid) : chat, k.id) : undefined);

  const protocol = content.protocolMessage;
  if (protocol) {
    const target = targetId(protocol.key);
    if (protocol.type === proto.Message.ProtocolMessage.Type.REVOKE && target) {
      return { kind: 'event', event: { type: 'message.deleted', id, conversation, sender, targetPlatformMessageId: target, platform: { messageId: pid } } };
    }
    if (protocol.type === proto.Message.ProtocolMessage.Type.MESSAGE_EDIT && target && protocol.editedMessage) {
      const edited = normalizeMessageContent(protocol.editedMessage);
      const text = edited?.conversation ?? edited?.extendedTextMessage?.text ?? edited?.imageMessage?.caption ?? edited?.videoMessage?.caption ?? '';
      return { kind: 'event', event: { type: 'message.edited', id, conversation, sender, targetPlatformMessageId: target, text, platform: { messageId: pid } } };
    }
    return { kind: 'skip', reason: `protocol message ${protocol.type}` };
  }

  let text = '';
  let contextInfo: ContextInfo;
  let media: PendingMedia | undefined;
  const parts: StructuredPart[] = [];
  if (content.conversation) {
    text = content.conversation;
  } else if (content.extendedTextMessage) {
    text = content.extendedTextMessage.text ?? '';
    contextInfo = content.extendedTextMessage.contextInfo;
  } else if (content.imageMessage) {
    const m = content.imageMessage;
    text = m.caption ?? '';
    contextInfo = m.contextInfo;
    media = pending('image', m.mimetype, m.fileLength, `image-${key.id}`);
  } else if (content.videoMessage) {
    const m = content.videoMessage;
    text = m.caption ?? '';
    contextInfo = m.contextInfo;
    media = pending('video', m.mimetype, m.fileLength, `video-${key.id}`);
  } else if (content.audioMessage) {
    const m = content.audioMessage;
    contextInfo = m.contextInfo;
    media = pending(m.ptt ? 'voice' : 'audio', m.mimetype, m.fileLength, `${m.ptt ? 'voice' : 'audio'}-${key.id}`);
  } else if (content.documentMessage) {
    const m = content.documentMessage;
    text = m.caption ?? '';
    contextInfo = m.contextInfo;
    media = pending('document', m.mimetype, m.fileLength, m.fileName || m.title || `document-${key.id}`);
  } else if (content.stickerMessage) {
    const m = content.stickerMessage;
    contextInfo = m.contextInfo;
    media = pending('sticker', m.mimetype ?? 'image/webp', m.fileLength, `sticker-${key.id}`);
  } else if (content.locationMessage || content.liveLocationMessage) {
    const m = (content.locationMessage ?? content.liveLocationMessage)!;
    contextInfo = m.contextInfo;
    const title = [('name' in m ? m.name : undefined), ('address' in m ? m.address : undefined)].filter(Boolean).join(', ') || undefined;
    parts.push({ type: 'location', latitude: m.degreesLatitude ?? 0, longitude: m.degreesLongitude ?? 0, ...(title ? { title } : {}) });
  } else if (content.contactMessage || content.contactsArrayMessage) {
    const list = content.contactMessage ? [content.contactMessage] : (content.contactsArrayMessage?.contacts ?? []);
    contextInfo = content.contactMessage?.contextInfo ?? content.contactsArrayMessage?.contextInfo;
    for (const card of list) parts.push(contactPart(card));
  } else if (content.reactionMessage) {
    const r = content.reactionMessage;
    const target = targetId(r.key);
    if (!target) return { kind: 'invalid', reason: 'reaction without a target message key' };
    if (!r.text) return { kind: 'skip', reason: 'reaction removed' };
    parts.push({ type: 'reaction', emoji: r.text, targetPlatformMessageId: target });
  } else {
    const type = Object.keys(content).find((k) => k !== 'messageContextInfo' && k !== 'senderKeyDistributionMessage');
    if (!type) return { kind: 'skip', reason: 'no user-visible content' };
    // A poll, a button reply, a product...: the agent still sees that the customer wrote.
    text = `[WhatsApp ${type.replace(/Message$/, '')}]`;
  }

  if (group && c.groups === 'mention' && !addressesUs(contextInfo, c)) return { kind: 'skip', reason: 'group message not addressed to us' };
  const replyTo = contextInfo?.stanzaId ? platformId(chat, contextInfo.stanzaId) : undefined;
  const event: InboundEventInput = {
    type: 'message.inbound',
    id,
    conversation,
    sender,
    text,
    parts,
    ...(replyTo ? { replyTo } : {}),
    platform,
  };
  const quote: StoredQuote = {
    platformId: pid,
    key: { remoteJid: rawChat, id: key.id, ...(key.participant ? { participant: key.participant } : {}), fromMe: false },
    text: text || (media ? `[${media.kind}]` : parts[0] ? `[${parts[0].type}]` : ''),
  };
  return { kind: 'event', event, media, quote: parts[0]?.type === 'reaction' ? undefined : quote };
}

function pending(kind: PendingMedia['kind'], mimeType: string | null | undefined, size: unknown, name: string): PendingMedia {
  const mime = mimeType || 'application/octet-stream';
  const n = size === null || size === undefined ? undefined : Number(String(size));
  return { kind, mimeType: mime, name: name.includes('.') ? name : `${name}${extensionFor(mime)}`, ...(n !== undefined && Number.isFinite(n) ? { size: n } : {}) };
}

function extensionFor(mime: string): string {
  const sub = mime.split(';')[0]!.split('/')[1] ?? '';
  const known: Record<string, string> = { jpeg: '.jpg', png: '.png', webp: '.webp', mp4: '.mp4', ogg: '.ogg', mpeg: '.mp3', pdf: '.pdf' };
  return known[sub] ?? (sub && /^[a-z0-9]{1,5}$/.test(sub) ? `.${sub}` : '');
}

function contactPart(card: P.Message.IContactMessage): StructuredPart {
  const vcard = card.vcard ?? undefined;
  // vCards from WhatsApp carry the number as TEL;...;waid=79161234567:+7 916 123-45-67
  const waid = vcard?.match(/waid=(\d+)/)?.[1];
  const tel = vcard?.match(/^TEL[^:]*:(.+)$/m)?.[1]?.trim();
  const phone = waid ? `+${waid}` : tel;
  return { type: 'contact', name: card.displayName || 'contact', ...(phone ? { phone } : {}), ...(waid ? { userId: `${waid}@s.whatsapp.net` } : {}), ...(vcard ? { vcard } : {}) };
}

function handlesOf(jid: string, raw: string): Record<string, string> {
  const handles: Record<string, string> = { jid };
  const user = jid.split('@')[0]!;
  if (jid.endsWith('@s.whatsapp.net') && /^\d+$/.test(user)) handles.phone = `+${user}`;
  const rawUser = jidNormalizedUser(raw);
  if (isLidUser(rawUser)) handles.lid = rawUser;
  return handles;
}

function addressesUs(ctx: ContextInfo, c: NormalizeContext): boolean {
  if (!ctx) return false;
  const mentioned = (ctx.mentionedJid ?? []).some((j: string) => c.self.has(c.resolve(jidNormalizedUser(j))));
  const quotedUs = !!ctx.participant && c.self.has(c.resolve(jidNormalizedUser(ctx.participant)));
  return mentioned || quotedUs;
}
