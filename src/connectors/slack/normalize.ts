/**
 * A Slack message event → at most one normalized event. Pure: user names and files are resolved
 * by the connector afterwards. The event's shape was checked by parseEnvelope (shape.ts) first.
 */
import type { InboundEventInput } from '../../core/schema.js';

type Conversation = InboundEventInput['conversation'];
import { eventId } from '../contract.js';
import type { SlackFile, SlackMessageEvent } from './shape.js';
import { slackToPlain, type NameOf } from './text.js';

export type { SlackFile, SlackMessageEvent } from './shape.js';

export interface Scope {
  account: string;
  botUserId: string;
  channels: ReadonlySet<string>;
  /** Threads we took a message from: their replies continue the conversation without a mention. */
  knownThread: (channel: string, threadTs: string) => boolean;
  /** Names for `<@U…>` mentions in the text, from what is already known (no Web API call). */
  nameOf?: NameOf;
}

export type Normalized =
  /** `thread`: the channel thread this message belongs to, to be remembered so its replies follow. */
  | { kind: 'event'; event: InboundEventInput; userId?: string; files: SlackFile[]; thread?: string }
  | { kind: 'skip'; reason: string; loopGuard?: true }
  | { kind: 'invalid'; reason: string };

export const platformId = (channel: string, ts: string) => `${channel}:${ts}`;

/**
 * The thread an event replies in (for an edit or deletion, the thread of the message it touches,
 * which Slack names in the nested `message` / `previous_message`, not on the event itself), so the
 * connector can look up whether we took a message from that thread before normalizing.
 */
export function threadOf(e: SlackMessageEvent): string | undefined {
  if (e.subtype === 'message_changed') return e.message?.thread_ts ?? e.message?.ts;
  if (e.subtype === 'message_deleted') return e.previous_message?.thread_ts ?? e.deleted_ts;
  return e.thread_ts;
}

const isDm = (e: SlackMessageEvent) => e.channel_type === 'im' || e.channel.startsWith('D');

/**
 * The conversation of an event: a DM, or a channel thread (a top-level post starts its own). One
 * function for posts, replies, edits and deletions alike, so a change carries the conversation
 * of the message it changes: the same order key, partition and router lane, behind its original.
 * Read from the event alone (before normalizing), so the connector can queue the event in its
 * conversation's line as it arrives (publish-order.ts).
 */
export function conversationOf(e: SlackMessageEvent): Conversation {
  if (isDm(e)) return { id: e.channel, kind: 'private' };
  return { id: e.channel, threadId: threadOf(e) ?? e.ts, kind: 'channel' };
}

export function normalizeMessage(e: SlackMessageEvent, scope: Scope): Normalized {
  const dm = isDm(e);
  const conversation = conversationOf(e);

  // Edits and deletions only matter for messages that are part of a conversation we keep: a DM,
  // a support channel, or a thread a mention started. Elsewhere they are someone else's chatter.
  const inScope = (threadTs: string) => dm || scope.channels.has(e.channel) || scope.knownThread(e.channel, threadTs);

  if (e.subtype === 'message_changed') {
    const m = e.message;
    if (!m) return { kind: 'invalid', reason: 'event.message: required for subtype message_changed' };
    if (m.bot_id || !m.user || m.user === scope.botUserId) return { kind: 'skip', reason: 'our own or a bot edit', loopGuard: true };
    // Slack also sends message_changed for unfurls and thread bookkeeping: only a real edit counts.
    if (!m.edited && m.text === e.previous_message?.text) return { kind: 'skip', reason: 'message_changed without an edit' };
    if (!inScope(conversation.threadId ?? m.ts)) return { kind: 'skip', reason: 'edit outside our conversations' };
    return {
      kind: 'event',
      files: [],
      userId: m.user,
      event: {
        type: 'message.edited',
        id: eventId('slack', scope.account, `edit:${e.channel}:${m.ts}:${m.edited?.ts ?? e.event_ts ?? e.ts}`),
        conversation,
        sender: { id: m.user, handles: {} },
        targetPlatformMessageId: platformId(e.channel, m.ts),
        text: slackToPlain(m.text ?? '', scope.nameOf),
        platform: { messageId: platformId(e.channel, m.ts) },
      },
    };
  }
  if (e.subtype === 'message_deleted') {
    if (!e.deleted_ts) return { kind: 'invalid', reason: 'event.deleted_ts: required for subtype message_deleted' };
    const prev = e.previous_message;
    if (prev && (prev.bot_id || prev.user === scope.botUserId)) return { kind: 'skip', reason: 'our own or a bot message deleted', loopGuard: true };
    if (!inScope(conversation.threadId ?? e.deleted_ts)) return { kind: 'skip', reason: 'deletion outside our conversations' };
    return {
      kind: 'event',
      files: [],
      event: {
        type: 'message.deleted',
        id: eventId('slack', scope.account, `delete:${e.channel}:${e.deleted_ts}`),
        conversation,
        targetPlatformMessageId: platformId(e.channel, e.deleted_ts),
        platform: { messageId: platformId(e.channel, e.deleted_ts) },
      },
    };
  }
  if (e.subtype && e.subtype !== 'file_share' && e.subtype !== 'thread_broadcast') return { kind: 'skip', reason: `subtype ${e.subtype}` };
  if (e.bot_id || !e.user || e.user === scope.botUserId) return { kind: 'skip', reason: 'bot or our own message (loop guard)', loopGuard: true };

  const threadTs = e.thread_ts ?? e.ts;
  const mentioned = (e.text ?? '').includes(`<@${scope.botUserId}>`);
  if (!dm) {
    const inSupportChannel = scope.channels.has(e.channel);
    const continuing = e.thread_ts !== undefined && scope.knownThread(e.channel, e.thread_ts);
    if (!inSupportChannel && !mentioned && !continuing) return { kind: 'skip', reason: 'channel message not for the bot' };
  }
  const pid = platformId(e.channel, e.ts);
  return {
    kind: 'event',
    userId: e.user,
    files: e.files ?? [],
    // Also for a mention inside someone else's thread: the conversation is that thread, so the
    // customer's next replies there must follow without mentioning the bot again.
    thread: dm ? undefined : threadTs,
    event: {
      type: 'message.inbound',
      id: eventId('slack', scope.account, pid),
      conversation,
      sender: { id: e.user, handles: {} },
      // slackToPlain resolved Slack's markup and entities: what is left is the text as typed.
      text: slackToPlain(e.text ?? '', scope.nameOf),
      format: 'plain',
      attachments: [],
      parts: [],
      replyTo: e.thread_ts && e.thread_ts !== e.ts ? platformId(e.channel, e.thread_ts) : undefined,
      platform: { messageId: pid, sentAt: new Date(Number(e.ts) * 1000).toISOString(), sentAtBy: 'platform' },
    },
  };
}
