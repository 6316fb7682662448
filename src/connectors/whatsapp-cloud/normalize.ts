/**
 * Cloud API webhook messages → normalized inbound events. Identities use the same JID form as
 * the Baileys transport (`<wa_id>@s.whatsapp.net`), so one customer is one contact whichever
 * transport carried the message. Platform ids are the wamid (unique per number).
 */
import type { InboundEventInput, StructuredPart } from '../../core/schema.js';
import { eventId } from '../contract.js';
import type { CloudContact, CloudMedia, CloudMessage } from './payload.js';

export type { CloudContact, CloudMedia, CloudMessage, CloudStatus } from './payload.js';

export interface PendingCloudMedia {
  mediaId: string;
  kind: 'image' | 'video' | 'audio' | 'voice' | 'document' | 'sticker';
  name: string;
  mimeType: string;
}

export type CloudNormalized =
  /** `code`: a bounded label for omnigate_skipped_updates_total. */
  | { kind: 'skip'; code: 'system_message' | 'reaction_removed'; reason: string }
  | { kind: 'invalid'; reason: string }
  | { kind: 'event'; event: InboundEventInput; media?: PendingCloudMedia };

export const jidOf = (waId: string) => `${waId}@s.whatsapp.net`;

/**
 * One message checked against the CloudMessage schema (payload.ts), with the change's readable
 * contacts (for the profile name).
 */
export function normalizeCloudMessage(m: CloudMessage, contacts: readonly CloudContact[], channel: string, account: string): CloudNormalized {
  if (m.type === 'system') return { kind: 'skip', code: 'system_message', reason: 'system message (number change)' };
  const jid = jidOf(m.from);
  const profile = contacts.find((c) => c.wa_id === m.from)?.profile?.name;
  const sender = { id: jid, ...(profile ? { displayName: profile } : {}), handles: { jid, phone: `+${m.from}`, wa_id: m.from } };
  const platform = { messageId: m.id, ...(m.timestamp ? { sentAt: new Date(m.timestamp * 1000).toISOString(), sentAtBy: 'platform' as const } : {}) };
  let text = '';
  let media: PendingCloudMedia | undefined;
  const parts: StructuredPart[] = [];
  const mediaOf = (kind: PendingCloudMedia['kind'], c: CloudMedia | null | undefined, fallbackMime: string): PendingCloudMedia | undefined => {
    if (!c?.id) return undefined;
    const mimeType = c.mime_type || fallbackMime;
    const ext = mimeType.split(';')[0]!.split('/')[1] ?? 'bin';
    return { mediaId: c.id, kind, mimeType, name: c.filename || `${kind}-${c.id}.${ext === 'jpeg' ? 'jpg' : ext}` };
  };
  switch (m.type) {
    case 'text':
      text = m.text?.body ?? '';
      break;
    case 'image':
    case 'video':
    case 'document':
      text = m[m.type]?.caption ?? '';
      media = mediaOf(m.type, m[m.type], m.type === 'image' ? 'image/jpeg' : m.type === 'video' ? 'video/mp4' : 'application/octet-stream');
      break;
    case 'audio':
      media = mediaOf(m.audio?.voice ? 'voice' : 'audio', m.audio, 'audio/ogg');
      break;
    case 'sticker':
      media = mediaOf('sticker', m.sticker, 'image/webp');
      break;
    case 'location':
      if (!m.location) return { kind: 'invalid', reason: 'location message without location' };
      parts.push({
        type: 'location', latitude: m.location.latitude, longitude: m.location.longitude,
        ...(m.location.name || m.location.address ? { title: [m.location.name, m.location.address].filter(Boolean).join(', ') } : {}),
      });
      break;
    case 'contacts':
      for (const c of m.contacts ?? []) {
        const phone = c.phones?.[0];
        parts.push({
          type: 'contact', name: c.name?.formatted_name || c.name?.first_name || 'contact',
          ...(phone?.phone ? { phone: phone.phone } : {}), ...(phone?.wa_id ? { userId: jidOf(phone.wa_id) } : {}),
        });
      }
      break;
    case 'reaction':
      if (!m.reaction?.message_id) return { kind: 'invalid', reason: 'reaction without message_id' };
      if (!m.reaction.emoji) return { kind: 'skip', code: 'reaction_removed', reason: 'reaction removed' };
      parts.push({ type: 'reaction', emoji: m.reaction.emoji, targetPlatformMessageId: m.reaction.message_id });
      break;
    case 'button':
      text = m.button?.text ?? m.button?.payload ?? '';
      break;
    case 'interactive':
      text = m.interactive?.button_reply?.title ?? m.interactive?.list_reply?.title ?? '';
      break;
    default: {
      // "unsupported" and future types: the agent still sees that the customer wrote.
      const why = m.errors?.[0]?.title ?? m.errors?.[0]?.message;
      text = `[WhatsApp ${m.type} message${why ? `: ${why}` : ''}]`;
    }
  }
  const event: InboundEventInput = {
    type: 'message.inbound',
    id: eventId(channel, account, m.id),
    conversation: { id: jid, kind: 'private' },
    sender,
    text,
    parts,
    ...(m.context?.id ? { replyTo: m.context.id } : {}),
    platform,
  };
  return { kind: 'event', event, media };
}
