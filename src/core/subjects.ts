import { createHash } from 'node:crypto';

/**
 * Subject, stream, bucket and consumer names: the bus layout in one place (docs/events.md).
 */

export const Streams = {
  inbound: 'OMNI_IN',
  outbound: 'OMNI_OUT',
  status: 'OMNI_STATUS',
  events: 'OMNI_EVENTS',
  log: 'OMNI_LOG',
  deadLetter: 'OMNI_DLQ',
  /** one message per ticket number allocated: the stream sequence is the number (tickets.ts) */
  ticketNumbers: 'OMNI_TICKET_NO',
} as const;

export const Buckets = {
  tickets: 'omni_tickets',
  /** thread keys, email Message-IDs and platform message ids → ticket id */
  threads: 'omni_threads',
  /** counters (ticket numbers) */
  meta: 'omni_meta',
  /** processed-event markers and command idempotency results */
  dedup: 'omni_dedup',
  /** connector checkpoints (offsets, UIDs), auth state and current connector state */
  state: 'omni_state',
  /** single-runner leases (bucket TTL: a dead holder's lease expires) */
  leases: 'omni_leases',
  /** create-only guards that make compare-and-set hold on servers where it does not (cas-guard.ts) */
  casGuards: 'omni_cas_guards',
} as const;

export const MEDIA_BUCKET = 'omni_media';

export const Subjects = {
  /** Unpartitioned: what versions before partitioning published, still consumed (docs/architecture.md#ownership-of-conversations). */
  inbound: (channel: string, account: string) => `omni.in.${channel}.${account}`,
  /** The partition of the event's conversation as the last token (partitionOf). */
  inboundPartition: (channel: string, account: string, partition: number) => `omni.in.${channel}.${account}.${partition}`,
  inboundPartitionFilter: (partition: number) => `omni.in.*.*.${partition}`,
  inboundUnpartitioned: 'omni.in.*.*',
  inboundAll: 'omni.in.>',
  /** Whether some router consumer reads `subject`: omni.in.<channel>.<account>, or that with a partition below `partitions` (`7`, never `07`). */
  isInboundConsumed: (subject: string, partitions: number) => {
    const t = subject.split('.');
    if (t[0] !== 'omni' || t[1] !== 'in' || (t.length !== 4 && t.length !== 5) || t.slice(2).some((token) => token === '')) return false;
    return t.length === 4 || (/^(0|[1-9]\d*)$/.test(t[4]!) && Number(t[4]) < partitions);
  },
  /**
   * The read subject a message stored on an unread one is sent back to (a replay of an
   * `unread_subject` letter): omni.in.<channel>.<account> of its own tokens, which the router
   * always reads; undefined when it names no account.
   */
  inboundReadOf: (subject: string): string | undefined => {
    const t = subject.split('.');
    return t[0] === 'omni' && t[1] === 'in' && t.length >= 4 && t[2] && t[3] ? `omni.in.${t[2]}.${t[3]}` : undefined;
  },
  outbound: (channel: string, account: string) => `omni.out.${channel}.${account}`,
  outboundAll: 'omni.out.>',
  status: (channel: string, account: string) => `omni.status.${channel}.${account}`,
  statusAll: 'omni.status.>',
  ticketLog: (ticketId: string) => `omni.ticket.${ticketId}.log`,
  ticketLogAll: 'omni.ticket.*.log',
  ticketEvent: (kind: string) => `omni.events.ticket.${kind}`,
  connectorEvent: (channel: string, account: string) => `omni.events.connector.${channel}.${account}`,
  conversationEvent: (channel: string, account: string) => `omni.events.conversation.${channel}.${account}`,
  /** Audit trail of what was done to stored data (schema-audit.ts). */
  auditEvent: (kind: 'erasure' | 'export') => `omni.events.audit.${kind}`,
  eventsAll: 'omni.events.>',
  deadLetter: (source: string) => `omni.dlq.${source}`,
  deadLetterAll: 'omni.dlq.>',
  ticketNumber: 'omni.ticketno',
  command: (name: 'reply' | 'note' | 'status' | 'link') => `omni.cmd.${name}`,
  /** Request/reply (core NATS): a dead letter of omni.dlq.<suffix> taken back by the part that parked it. */
  replay: (deadLetterSuffix: string) => `omni.replay.${deadLetterSuffix}`,
  /** Request/reply, answered by every replica (no queue group): the connectors it hosts. */
  consoleConnectors: 'omni.console.connectors',
  /** Request/reply: the replica hosting the connector restarts it. */
  consoleRestart: (channel: string, account: string) => `omni.console.restart.${channel}.${account}`,
} as const;

export const Consumers = {
  /** Unpartitioned inbound subjects (and, on a deployment from before partitioning, everything). */
  router: 'router',
  routerPartition: (partition: number) => `router-p${partition}`,
  routerStatus: 'router-status',
  outbound: (channel: string, account: string) => `out-${channel}-${account}`,
  webhooks: (name: string) => `webhook-${name}`,
} as const;

/** KV keys allow [-/_=.a-zA-Z0-9]; arbitrary values (Message-IDs, chat ids) are hashed into that set. */
export function kvSafe(value: string): string {
  return /^[A-Za-z0-9_=-]{1,200}$/.test(value) ? value : hashKey(value);
}

export function hashKey(value: string): string {
  return createHash('sha256').update(value).digest('base64url');
}

/**
 * The key that orders inbound work: a conversation (chat, thread), or for email the sender, since
 * a mail's conversation is known only after threading. Events with the same key are processed one
 * at a time, in stream order, by the one replica that owns the key's partition.
 */
export function orderKey(e: { channel: string; account: string; conversation: { id: string; threadId?: string }; email?: { from: string } }): string {
  if (e.email) return `${e.channel}\u0000${e.account}\u0000${e.email.from.toLowerCase()}`;
  return `${e.channel}\u0000${e.account}\u0000${e.conversation.id}\u0000${e.conversation.threadId ?? ''}`;
}

/**
 * The partition of an order key: FNV-1a (32 bit) of its UTF-8 bytes, modulo the partition count.
 * Stable across versions and processes: it is part of the bus layout (a publisher outside
 * omnigate computes the same).
 */
export function partitionOf(key: string, partitions: number): number {
  let h = 0x811c9dc5;
  for (const byte of Buffer.from(key, 'utf8')) {
    h ^= byte;
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  return h % partitions;
}
