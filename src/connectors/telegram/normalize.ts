/**
 * One Telegram update → at most one normalized event (without attachments, which need downloads).
 * Pure: no network, so every rule here is testable on plain update objects.
 */
import type { InboundEventInput, StructuredPart } from '../../core/schema.js';
import { eventId } from '../contract.js';
import { entitiesToHtml, type Entity } from './format.js';

export interface TgUser {
  id: number;
  is_bot?: boolean;
  first_name?: string;
  last_name?: string;
  username?: string;
  language_code?: string;
}

export interface TgFileRef {
  file_id: string;
  file_size?: number;
  file_name?: string;
  mime_type?: string;
}

export interface TgMessage {
  message_id: number;
  message_thread_id?: number;
  is_topic_message?: boolean;
  /** Set on every item of an album: the items arrive as separate updates. */
  media_group_id?: string;
  date: number;
  edit_date?: number;
  chat: { id: number; type: 'private' | 'group' | 'supergroup' | 'channel'; title?: string; username?: string; first_name?: string; last_name?: string; is_forum?: boolean };
  from?: TgUser;
  text?: string;
  caption?: string;
  entities?: Entity[];
  caption_entities?: Entity[];
  reply_to_message?: { message_id: number; from?: TgUser };
  photo?: Array<TgFileRef & { width: number; height: number }>;
  document?: TgFileRef;
  voice?: TgFileRef;
  audio?: TgFileRef;
  video?: TgFileRef;
  video_note?: TgFileRef;
  animation?: TgFileRef;
  sticker?: TgFileRef & { emoji?: string; is_animated?: boolean; is_video?: boolean };
  contact?: { phone_number: string; first_name: string; last_name?: string; user_id?: number; vcard?: string };
  location?: { latitude: number; longitude: number };
  venue?: { location: { latitude: number; longitude: number }; title: string; address?: string };
  poll?: unknown;
  dice?: unknown;
  game?: unknown;
  story?: unknown;
  invoice?: unknown;
  paid_media?: unknown;
  giveaway?: unknown;
  giveaway_winners?: unknown;
}

/** Content we cannot represent as text, files or parts, but which a person deliberately sent. */
const UNSUPPORTED_CONTENT = ['poll', 'dice', 'game', 'story', 'invoice', 'paid_media', 'giveaway', 'giveaway_winners'] as const;

export type TgMemberStatus = 'creator' | 'administrator' | 'member' | 'restricted' | 'left' | 'kicked';

/** The bot's own membership changed: blocked/unblocked in a private chat, added/removed/promoted in a group. */
export interface TgChatMemberUpdated {
  chat: TgMessage['chat'];
  from?: TgUser;
  date: number;
  old_chat_member?: { status: TgMemberStatus; user?: TgUser };
  new_chat_member: { status: TgMemberStatus; user?: TgUser };
}

export interface TgUpdate {
  update_id: number;
  message?: TgMessage;
  edited_message?: TgMessage;
  my_chat_member?: TgChatMemberUpdated;
}

/** Why an update was skipped: a bounded label for omnigate_skipped_updates_total. */
export type SkipCode = 'unhandled_update_type' | 'channel_post' | 'own_message' | 'groups_off' | 'not_addressed' | 'service_message';

export interface BotIdentity {
  id: number;
  username: string;
}

export interface PendingFile {
  fileId: string;
  size?: number;
  name: string;
  mimeType: string;
  kind: string;
}

export type Normalized =
  | { kind: 'event'; event: InboundEventInput; files: PendingFile[] }
  | { kind: 'skip'; code: SkipCode; reason: string; loopGuard?: true }
  | { kind: 'invalid'; reason: string };

export interface NormalizeOptions {
  /** Judge the mention rule on the whole album (the connector does), not on this item. */
  addressed?: boolean;
}

/** 9999-12-31T23:59:59Z, the last second an ISO time with a four-digit year can say. */
const MAX_UNIX_SECONDS = 253_402_300_799;

/** Why `t` is no time Telegram could have sent, or undefined when it is one. */
export function refusedTime(t: unknown): string | undefined {
  if (typeof t === 'number' && Number.isSafeInteger(t) && t >= 0 && t <= MAX_UNIX_SECONDS) return undefined;
  return `${JSON.stringify(t) ?? String(t)} is not a time Telegram could have sent (whole seconds since 1970, up to the year 9999)`;
}

export function platformId(chatId: number | string, messageId: number | string): string {
  return `${chatId}:${messageId}`;
}

export function normalizeUpdate(u: TgUpdate, account: string, bot: BotIdentity, groups: 'mention' | 'all' | 'off', opts: NormalizeOptions = {}): Normalized {
  if (typeof u?.update_id !== 'number') return { kind: 'invalid', reason: 'update has no numeric update_id' };
  const m = u.message ?? u.edited_message;
  if (!m) return { kind: 'skip', code: 'unhandled_update_type', reason: `update type not handled (${Object.keys(u).filter((k) => k !== 'update_id').join(',') || 'empty'})` };
  if (typeof m.message_id !== 'number' || !m.chat || typeof m.chat.id !== 'number' || typeof m.date !== 'number') {
    return { kind: 'invalid', reason: 'message lacks message_id, chat.id or date' };
  }
  // Telegram ids have at most 52 significant bits: one past 2^53 arrived rounded (two chats would
  // share an id), and 1.5 is no id. Refused naming the field instead of stored as another chat's.
  for (const [field, id] of [['chat.id', m.chat.id], ['message_id', m.message_id], ['from.id', m.from?.id]] as const) {
    if (id !== undefined && !Number.isSafeInteger(id)) return { kind: 'invalid', reason: `${field}: ${id} is not a whole number Telegram could have sent (ids have at most 52 bits)` };
  }
  // A time past what a date can hold made the event's ISO time throw, parked as "Invalid time
  // value" without the field; one before 1970 would be stored as sent then.
  for (const [field, t] of [['date', m.date], ['edit_date', m.edit_date]] as const) {
    const refused = t === undefined ? undefined : refusedTime(t);
    if (refused) return { kind: 'invalid', reason: `${field}: ${refused}` };
  }
  if (m.chat.type === 'channel') return { kind: 'skip', code: 'channel_post', reason: 'channel posts are not conversations' };
  if (m.from?.id === bot.id) return { kind: 'skip', code: 'own_message', reason: 'our own message', loopGuard: true };
  const isGroup = m.chat.type === 'group' || m.chat.type === 'supergroup';
  if (isGroup && groups === 'off') return { kind: 'skip', code: 'groups_off', reason: 'group messages disabled' };
  if (isGroup && groups === 'mention' && !(opts.addressed ?? addressesBot(m, bot))) return { kind: 'skip', code: 'not_addressed', reason: 'group message not addressed to the bot' };

  const conversation = {
    id: String(m.chat.id),
    threadId: m.is_topic_message && m.message_thread_id ? String(m.message_thread_id) : undefined,
    kind: isGroup ? ('group' as const) : ('private' as const),
    title: m.chat.title ?? ([m.chat.first_name, m.chat.last_name].filter(Boolean).join(' ') || undefined),
  };
  const from = m.from;
  const sender = {
    id: String(from?.id ?? m.chat.id),
    displayName: from ? [from.first_name, from.last_name].filter(Boolean).join(' ') || from.username : conversation.title,
    handles: (from?.username ? { username: `@${from.username}` } : {}) as Record<string, string>,
    language: from?.language_code,
    isBot: from?.is_bot,
  };
  const pid = platformId(m.chat.id, m.message_id);
  const rawText = m.text ?? m.caption ?? '';
  if (typeof rawText !== 'string') return { kind: 'invalid', reason: 'text or caption is not a string' };
  let text = rawText;
  const html = entitiesToHtml(text, m.text !== undefined ? m.entities : m.caption_entities);

  if (u.edited_message) {
    return {
      kind: 'event',
      files: [],
      event: {
        type: 'message.edited',
        id: eventId('telegram', account, `edit:${pid}:${m.edit_date ?? u.update_id}`),
        conversation,
        sender,
        targetPlatformMessageId: pid,
        text,
        html,
        platform: { messageId: pid, editedAt: m.edit_date ? new Date(m.edit_date * 1000).toISOString() : undefined },
      },
    };
  }

  const parts: StructuredPart[] = [];
  if (m.contact) {
    parts.push({
      type: 'contact',
      name: [m.contact.first_name, m.contact.last_name].filter(Boolean).join(' '),
      phone: m.contact.phone_number,
      userId: m.contact.user_id ? String(m.contact.user_id) : undefined,
      vcard: m.contact.vcard,
    });
  }
  const loc = m.venue?.location ?? m.location;
  if (loc) parts.push({ type: 'location', latitude: loc.latitude, longitude: loc.longitude, title: m.venue?.title });
  const files = pendingFiles(m);
  if (!text && files.length === 0 && parts.length === 0) {
    // Joins, pins, title changes, topic creation...: chat housekeeping, not a customer message.
    const unsupported = UNSUPPORTED_CONTENT.find((k) => m[k] !== undefined);
    if (!unsupported) return { kind: 'skip', code: 'service_message', reason: 'service message' };
    // A poll or a dice roll is still something the customer sent: keep it visible, never drop it.
    text = `[unsupported Telegram content: ${unsupported}]`;
  }
  // In a forum topic every message "replies" to the topic's opening service message; only a
  // reply to another message is a real reply.
  const reply = m.reply_to_message;
  const isRealReply = !!reply && !(m.is_topic_message && reply.message_id === m.message_thread_id);

  return {
    kind: 'event',
    files,
    event: {
      type: 'message.inbound',
      id: eventId('telegram', account, pid),
      conversation,
      sender,
      text,
      html,
      format: 'plain',
      attachments: [],
      parts,
      replyTo: isRealReply ? platformId(m.chat.id, reply!.message_id) : undefined,
      automated: from?.is_bot ? 'bot' : undefined,
      platform: { messageId: pid, sentAt: new Date(m.date * 1000).toISOString(), sentAtBy: 'platform' },
    },
  };
}

export function addressesBot(m: TgMessage, bot: BotIdentity): boolean {
  const reply = m.reply_to_message;
  if (reply?.from?.id === bot.id && !(m.is_topic_message && reply.message_id === m.message_thread_id)) return true;
  const text = m.text ?? m.caption ?? '';
  const given = m.text !== undefined ? m.entities : m.caption_entities;
  const entities = Array.isArray(given) ? given : [];
  const handle = `@${bot.username}`.toLowerCase();
  return entities.some((e) => {
    const value = text.slice(e.offset, e.offset + e.length).toLowerCase();
    if (e.type === 'mention') return value === handle;
    if (e.type === 'bot_command') return !value.includes('@') || value.endsWith(handle);
    if (e.type === 'text_mention') return e.user?.id === bot.id;
    return false;
  });
}

function pendingFiles(m: TgMessage): PendingFile[] {
  const out: PendingFile[] = [];
  const add = (f: TgFileRef | undefined, kind: string, name: string, mimeType: string) => {
    if (f?.file_id) out.push({ fileId: f.file_id, size: f.file_size, name: f.file_name ?? name, mimeType: f.mime_type ?? mimeType, kind });
  };
  if (Array.isArray(m.photo) && m.photo.length > 0) {
    const largest = m.photo.reduce((a, b) => ((b.file_size ?? b.width * b.height) > (a.file_size ?? a.width * a.height) ? b : a));
    add(largest, 'image', `photo-${m.message_id}.jpg`, 'image/jpeg');
  }
  add(m.document, 'document', `document-${m.message_id}`, 'application/octet-stream');
  add(m.voice, 'voice', `voice-${m.message_id}.ogg`, 'audio/ogg');
  add(m.audio, 'audio', `audio-${m.message_id}.mp3`, 'audio/mpeg');
  add(m.video, 'video', `video-${m.message_id}.mp4`, 'video/mp4');
  add(m.video_note, 'video', `video-note-${m.message_id}.mp4`, 'video/mp4');
  add(m.animation, 'video', `animation-${m.message_id}.mp4`, 'video/mp4');
  if (m.sticker) {
    const ext = m.sticker.is_animated ? 'tgs' : m.sticker.is_video ? 'webm' : 'webp';
    const mime = m.sticker.is_animated ? 'application/x-tgsticker' : m.sticker.is_video ? 'video/webm' : 'image/webp';
    add(m.sticker, 'sticker', `sticker-${m.message_id}.${ext}`, mime);
  }
  return out;
}
