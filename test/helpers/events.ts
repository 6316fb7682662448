/** Builders for inbound events as a connector would publish them, for tests that bypass connectors. */
import { PATIENT } from './nats-server.js';
import type { NatsConnection } from '@nats-io/transport-node';
import { jetstream, type JetStreamManager } from '@nats-io/jetstream';
import { Subjects, orderKey, partitionOf } from '../../src/core/subjects.js';
import type { InboundMessage, LogEntry } from '../../src/core/schema.js';

let counter = 0;

export function chatMessage(o: { channel?: string; account?: string; chat: string; threadId?: string; text?: string; id?: string; from?: string; kind?: 'private' | 'group' | 'channel'; sentAt?: string; sentAtBy?: 'platform' | 'sender' }): InboundMessage {
  const channel = o.channel ?? 'webhook';
  const account = o.account ?? 'site';
  const pid = o.id ?? `m${++counter}-${Math.random().toString(36).slice(2, 8)}`;
  return {
    v: 1,
    type: 'message.inbound',
    id: `${channel}:${account}:${pid}`,
    channel,
    account,
    conversation: { id: o.chat, threadId: o.threadId, kind: o.kind ?? 'private' },
    sender: { id: o.from ?? `user-${o.chat}`, displayName: 'Покупатель', handles: {} },
    text: o.text ?? 'Здравствуйте, у нас проблема',
    format: 'plain',
    attachments: [],
    parts: [],
    // As chat connectors do: the platform's send time (the router trusts recent ones, see mayBeProcessed).
    platform: { messageId: pid, sentAt: o.sentAt ?? new Date().toISOString(), ...(o.sentAtBy === 'sender' ? {} : { sentAtBy: 'platform' as const }) },
    receivedAt: new Date().toISOString(),
  };
}

export function emailMessage(o: { messageId: string; from: string; subject?: string; inReplyTo?: string; references?: string[]; cc?: string[]; text?: string }): InboundMessage {
  return {
    v: 1,
    type: 'message.inbound',
    id: `email:support:${o.messageId}`,
    channel: 'email',
    account: 'support',
    conversation: { id: 'support@shop.example', kind: 'email' },
    sender: { id: o.from, handles: { email: o.from } },
    text: o.text ?? 'Письмо',
    format: 'plain',
    attachments: [],
    parts: [],
    email: {
      messageId: o.messageId,
      inReplyTo: o.inReplyTo,
      references: o.references ?? [],
      subject: o.subject ?? 'Вопрос по заказу',
      from: o.from,
      to: ['support@shop.example'],
      cc: o.cc ?? [],
    },
    platform: { messageId: o.messageId },
    receivedAt: new Date().toISOString(),
  };
}

export async function publishEvent(nc: NatsConnection, event: { channel: string; account: string; id: string }, opts: { msgID?: string | false } = {}): Promise<void> {
  const js = jetstream(nc, PATIENT);
  const msgID = opts.msgID === false ? undefined : (opts.msgID ?? event.id);
  await js.publish(`omni.in.${event.channel}.${event.account}`, JSON.stringify(event), msgID ? { msgID } : undefined);
}

/**
 * Messages the routers have not finished: pending or unacknowledged on every router consumer of
 * OMNI_IN (one per conversation partition, plus `router` for the pre-partition subjects).
 */
export async function routerBacklog(jsm: JetStreamManager, partitions = 32): Promise<number> {
  let backlog = 0;
  let units = 0;
  for await (const c of jsm.consumers.list('OMNI_IN')) {
    if (c.name !== 'router' && !c.name.startsWith('router-p')) continue;
    units++;
    backlog += c.num_pending + c.num_ack_pending;
  }
  // A unit's consumer is created when a replica first claims it and recreated at its ack floor
  // when another takes it over: one missing now holds an unknown backlog, not none (a full
  // suite's load once ended a wait early with 37 of 1,000 events not yet routed).
  return backlog + Math.max(0, partitions + 1 - units);
}

/** The subject a connector publishes this event on: its conversation's partition (default count 32). */
export function inboundSubjectOf(e: Parameters<typeof orderKey>[0], partitions = 32): string {
  return Subjects.inboundPartition(e.channel, e.account, partitionOf(orderKey(e), partitions));
}


/** One inbound entry of the ticket log: which ticket it landed in, which event, which conversation. */
export interface InboundLogEntry {
  ticketId: string;
  eventId: string;
  conversation: string;
  channel: string;
}

/** Every inbound entry of OMNI_LOG, in log order (an ephemeral consumer over the whole stream). */
export async function readInboundLog(nc: NatsConnection): Promise<InboundLogEntry[]> {
  const c = await jetstream(nc, PATIENT).consumers.get('OMNI_LOG');
  const out: InboundLogEntry[] = [];
  let pending = (await c.info(true)).num_pending;
  while (pending > 0) {
    const batch = await c.fetch({ max_messages: Math.min(pending, 1000), expires: 3000 });
    for await (const m of batch) {
      pending--;
      const entry = m.json<LogEntry>();
      if (entry.kind === 'inbound') out.push({ ticketId: m.subject.split('.')[2]!, eventId: entry.event.id, conversation: entry.event.conversation.id, channel: entry.event.channel });
    }
  }
  return out;
}
