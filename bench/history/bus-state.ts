/**
 * The JetStream side of a loaded history, as a real one leaves it for the gateway:
 *
 * - a KV record in omni_tickets for every ticket (closed ones stay there: docs/data.md, limits),
 *   built from the SQL rows just loaded so both sides agree;
 * - the ticket-number base in omni_meta, so the router's next ticket is number N + 1 (a real
 *   history leaves N messages in OMNI_TICKET_NO; the base is the same arithmetic);
 * - OMNI_LOG's next sequence after the history's last one (purge up to it: the stream starts
 *   there), so new entries do not collide with the sequences the history's rows carry.
 *
 * Not written: the history's log entries themselves (5 M+ entries, gigabytes of JSON, would take
 * the load from minutes to the better part of an hour here) and the thread index (omni_threads):
 * nothing the gateway does at start or per request reads them for old tickets; a rebuild of the
 * read model from this log would find it empty.
 */
import type { NatsConnection } from '@nats-io/transport-node';
import { jetstream, jetstreamManager } from '@nats-io/jetstream';
import { Buckets, Streams } from '../../src/core/subjects.js';
import type { Queryable } from '../../src/read-model/database.js';

const WINDOW = 2_000;

interface Row {
  id: string;
  number: number;
  status: string;
  channel: string;
  account: string;
  conversation: { id: string; kind: string };
  subject: string | null;
  contact: Record<string, unknown>;
  created_at: string;
  updated_at: string;
  closed_at: string | null;
  first_response_at: string | null;
  last_inbound_at: string | null;
  last_outbound_at: string | null;
  message_count: number;
  last_delivery: Record<string, unknown> | null;
  last_seq: number;
}

export async function seedBusState(nc: NatsConnection, db: Queryable, o: { lastSeq: number; nextNumberBase: number }): Promise<{ records: number; ms: number; kvMb: number }> {
  const t0 = performance.now();
  const jsm = await jetstreamManager(nc);
  const js = jetstream(nc);
  await jsm.streams.purge(Streams.log, { seq: o.lastSeq + 1 });
  await js.publish(`$KV.${Buckets.meta}.ticket-number-base`, String(o.nextNumberBase));
  let records = 0;
  let after = -1;
  let inflight: Promise<unknown>[] = [];
  for (;;) {
    const rows = await db.query<Row>(
      `SELECT id, number, status, channel, account, conversation, subject, contact, created_at, updated_at, closed_at, first_response_at,
              last_inbound_at, last_outbound_at, message_count, last_delivery, last_seq
         FROM tickets WHERE number > $1 ORDER BY number LIMIT 10000`,
      [after],
    );
    if (!rows.length) break;
    for (const r of rows) {
      const record = {
        v: 1, id: r.id, number: r.number, status: r.status, channel: r.channel, account: r.account, conversation: r.conversation,
        threadKey: `${r.channel}:${r.account}:${r.conversation.id}`, ...(r.subject ? { subject: r.subject } : {}), contact: r.contact,
        participants: [], lastInboundPlatformId: `${r.number * 10 + 4}`, emailReferences: [],
        createdAt: r.created_at, updatedAt: r.updated_at, ...(r.closed_at ? { closedAt: r.closed_at } : {}),
        ...(r.first_response_at ? { firstResponseAt: r.first_response_at } : {}), ...(r.last_inbound_at ? { lastInboundAt: r.last_inbound_at } : {}),
        ...(r.last_outbound_at ? { lastOutboundAt: r.last_outbound_at } : {}), messageCount: r.message_count,
        ...(r.last_delivery ? { lastDelivery: r.last_delivery } : {}), appliedSeq: r.last_seq,
        recentEvents: [`e${r.number}-0`, `e${r.number}-2`, `e${r.number}-4`],
      };
      inflight.push(js.publish(`$KV.${Buckets.tickets}.${r.id}`, JSON.stringify(record)));
      if (inflight.length >= WINDOW) {
        await Promise.all(inflight);
        inflight = [];
      }
    }
    records += rows.length;
    after = rows[rows.length - 1]!.number;
  }
  await Promise.all(inflight);
  const kvMb = (await jsm.streams.info(`KV_${Buckets.tickets}`)).state.bytes / 1048576;
  return { records, ms: performance.now() - t0, kvMb };
}
