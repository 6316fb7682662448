/**
 * What the thread index (bucket omni_threads, tickets.ts) is keyed by: conversations and their
 * tickets' epochs, Message-IDs, platform message ids, change markers, and each conversation's floor.
 * Values are hashed: chat ids and Message-IDs contain any characters.
 */
import { normalizeMessageId } from '../core/message-id.js';
import { hashKey } from '../core/subjects.js';

/**
 * A conversation's floor (key IndexKeys.conversationFloor): epochs below `epoch` were evicted
 * with their tickets (eviction.ts); the conversation's next ticket is bound at `epoch` or later.
 * Written before the bindings and records it explains are removed, and only ever raised.
 */
export interface Floor {
  epoch: number;
  /** The newest ticket evicted below the floor: named in the log of the ticket that follows it. */
  ticket: string;
  at: string;
}

/** Index keys in omni_threads. */
export const IndexKeys = {
  conversation: (channel: string, account: string, conversationId: string, threadId?: string) =>
    `conv.${hashKey(`${channel}\u0000${account}\u0000${conversationId}\u0000${threadId ?? ''}`)}`,
  /**
   * The binding of a conversation's n-th ticket: epoch 0 is the conversation key itself (as
   * written by versions before epochs), a new ticket after close is epoch n+1. Each is written
   * once, create-only, and never re-pointed.
   */
  conversationEpoch: (conversationKey: string, epoch: number) => (epoch === 0 ? conversationKey : `${conversationKey}.${epoch}`),
  /** Where the conversation's bindings start after evictions (see Floor). */
  conversationFloor: (conversationKey: string) => `${conversationKey}.floor`,
  /** Marker that an edit or deletion event was applied (router.ts processChange). */
  changeEvent: (eventId: string) => `ev.${hashKey(eventId)}`,
  /**
   * Our own sent mail's Message-ID, written only by the delivery recorder on a sent (not failed)
   * outcome: its echo is recognised (bounces.ts isOurEcho), and replies to it thread by it before
   * `mid.` is asked (threading.ts), which any inbound mail's Message-ID may have written first.
   */
  ownMessageId: (messageId: string) => `out.${hashKey(normalizeMessageId(messageId))}`,
  /** A received mail's Message-ID (never one of our shape: threading.ts hasOurShape), and our sent mail's too. */
  emailMessageId: (messageId: string) => `mid.${hashKey(normalizeMessageId(messageId))}`,
  /** A new mail's ticket when another sender's mail already holds its Message-ID (inbound-ticket.ts). */
  emailMessageIdOfSender: (messageId: string, sender: string) => `mid.${hashKey(`${normalizeMessageId(messageId)}\u0000${sender.toLowerCase()}`)}`,
  platformMessage: (channel: string, account: string, platformMessageId: string) =>
    `pm.${hashKey(`${channel}\u0000${account}\u0000${platformMessageId}`)}`,
} as const;
