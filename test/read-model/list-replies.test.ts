/**
 * The ticket list's reply window and failed replies (an outside trial: a support team's first
 * week with WhatsApp's 24-hour window, whose failed replies looked answered in the list), from
 * log entries applied on both engines: the window the customer's newest message gave, each failed
 * agent reply until a later outcome of it went out, the `failedReplies` filter, search hits, and
 * rows written before migration 7 (listed as they were, failures already in SQL copied in).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { DeliveryStatus, InboundMessage, LogEntry } from '../../src/core/schema.js';
import { applyEntry } from '../../src/read-model/apply.js';
import type { Database } from '../../src/read-model/database.js';
import { migrate } from '../../src/read-model/migrations.js';
import { listTickets, search } from '../../src/read-model/queries.js';
import { openTestDatabase } from '../helpers/sql.js';

const T0 = Date.parse('2026-11-02T09:00:00.000Z');
const at = (min: number) => new Date(T0 + min * 60_000).toISOString();
const DAY = 24 * 60;

/** A customer's message as the WhatsApp Cloud connector publishes it: the window ends 24 hours after it. */
function waInbound(ticketId: string, id: string, min: number, o: { text?: string; window?: string | null } = {}): LogEntry {
  const event: InboundMessage = {
    v: 1, type: 'message.inbound', id, channel: 'whatsapp', account: 'cloud', conversation: { id: `chat-${ticketId}`, kind: 'private' }, receivedAt: at(min),
    sender: { id: `7900${ticketId.replace(/\D/g, '')}`, displayName: 'Ольга', handles: { phone: `+7900${ticketId.replace(/\D/g, '')}` } },
    text: o.text ?? 'Где мой заказ?', format: 'plain', attachments: [], parts: [], platform: { messageId: id },
    ...(o.window === null ? {} : { replyWindowEndsAt: o.window ?? at(min + DAY) }),
  };
  return { kind: 'inbound', at: at(min), event, match: { rule: id.endsWith(':1') ? 'new-ticket' : 'open-conversation', value: event.conversation.id } };
}

function reply(ticketId: string, id: string, min: number, purpose: 'agent_reply' | 'acknowledgement' = 'agent_reply'): LogEntry {
  return {
    kind: 'outbound', at: at(min),
    message: { v: 1, type: 'message.outbound', id, ticketId, channel: 'whatsapp', account: 'cloud', conversation: { id: `chat-${ticketId}`, kind: 'private' }, text: 'Ответ', attachments: [], author: { id: 'anna' }, createdAt: at(min), automated: purpose !== 'agent_reply', purpose },
  };
}

function outcome(ticketId: string, id: string, status: DeliveryStatus['status'], min: number, o: { reason?: string; round?: number; loggedAt?: number } = {}): LogEntry {
  return {
    kind: 'delivery', at: at(o.loggedAt ?? min),
    status: { v: 1, type: 'delivery.status', outboundId: id, ticketId, channel: 'whatsapp', account: 'cloud', status, attempts: 1, at: at(min), ...(o.reason ? { reason: o.reason } : {}), ...(o.round ? { round: o.round } : {}) },
  };
}

describe.each(['pglite', 'postgres'] as const)('reply window and failed replies in the ticket list on %s', (engine) => {
  let db: Database;
  let cleanup: () => Promise<void>;
  let seq = 0;
  const apply = (ticketId: string, e: LogEntry) => db.transaction((tx) => applyEntry(tx, ++seq, ticketId, e));
  const listed = async (id: string, filter: { failedReplies?: boolean } = {}) => (await listTickets(db, { limit: 500, ...filter })).tickets.find((t) => t.id === id);

  beforeAll(async () => {
    ({ db, cleanup } = await openTestDatabase(engine));
    await migrate(db);
  }, 120_000);
  afterAll(async () => {
    await db?.close();
    await cleanup?.();
  });

  it('shows until when a WhatsApp ticket may be answered freely: the latest end any message gave', async () => {
    await apply('T-1', waInbound('T-1', 'wa:1:1', 0));
    expect((await listed('T-1'))!.replyWindowEndsAt).toBe(at(DAY));
    await apply('T-1', waInbound('T-1', 'wa:1:2', 90));
    expect((await listed('T-1'))!.replyWindowEndsAt).toBe(at(90 + DAY));
    // A message logged late (sent earlier) does not shorten it; nor does one without a window.
    await apply('T-1', waInbound('T-1', 'wa:1:3', 30));
    await apply('T-1', waInbound('T-1', 'wa:1:4', 95, { window: null }));
    expect((await listed('T-1'))!.replyWindowEndsAt).toBe(at(90 + DAY));
    // A channel without the rule: no key at all, as with other optional fields.
    await apply('T-2', waInbound('T-2', 'wa:2:1', 1, { window: null }));
    expect(await listed('T-2')).not.toHaveProperty('replyWindowEndsAt');
    expect(await listed('T-2')).not.toHaveProperty('failedReplies');
  });

  it('lists a failed reply until a later outcome of it went out, whatever was sent in between; the filter finds it', async () => {
    await apply('T-3', waInbound('T-3', 'wa:3:1', 0));
    await apply('T-3', reply('T-3', 'T-3:r-1', 5));
    await apply('T-3', outcome('T-3', 'T-3:r-1', 'failed', 6, { reason: 'outside_24h_window: re-engagement message' }));
    expect((await listed('T-3'))!.failedReplies).toEqual([{ outboundId: 'T-3:r-1', at: at(6), reason: 'outside_24h_window: re-engagement message' }]);
    expect(await listed('T-3', { failedReplies: true })).toBeDefined();
    expect(await listed('T-3', { failedReplies: false })).toBeUndefined();
    expect(await listed('T-1', { failedReplies: true })).toBeUndefined();
    expect(await listed('T-1', { failedReplies: false })).toBeDefined();

    // A later reply goes out: lastDelivery says sent, and the first one still never reached the customer.
    await apply('T-3', reply('T-3', 'T-3:r-2', 10));
    await apply('T-3', outcome('T-3', 'T-3:r-2', 'sent', 11));
    await apply('T-3', outcome('T-3', 'T-3:r-2', 'delivered', 12));
    expect(await listed('T-3')).toMatchObject({ lastDelivery: { status: 'delivered', outboundId: 'T-3:r-2' }, failedReplies: [{ outboundId: 'T-3:r-1' }] });
    // Search hits carry it too.
    await apply('T-3', waInbound('T-3', 'wa:3:2', 13, { text: 'Почему молчите про квитанцию?' }));
    expect((await search(db, 'квитанция', { limit: 5 }))[0]!.ticket).toMatchObject({ id: 'T-3', failedReplies: [{ outboundId: 'T-3:r-1' }], replyWindowEndsAt: at(13 + DAY) });

    // Replayed (omnigate dlq --replay) and failed again: listed once, with the newest failure.
    await apply('T-3', outcome('T-3', 'T-3:r-1', 'failed', 20, { reason: 'blocked_by_user: 131047', round: 1 }));
    expect((await listed('T-3'))!.failedReplies).toEqual([{ outboundId: 'T-3:r-1', at: at(20), reason: 'blocked_by_user: 131047' }]);
    // An outcome older than the failure (WhatsApp's `sent` logged after its `failed`) does not take it off.
    await apply('T-3', outcome('T-3', 'T-3:r-1', 'sent', 19, { round: 1 }));
    expect((await listed('T-3'))!.failedReplies).toHaveLength(1);
    // Replayed and sent: gone, and the filter no longer finds the ticket.
    await apply('T-3', outcome('T-3', 'T-3:r-1', 'sent', 30, { round: 2 }));
    expect(await listed('T-3')).not.toHaveProperty('failedReplies');
    expect(await listed('T-3', { failedReplies: true })).toBeUndefined();
    expect((await db.query(`SELECT failed_replies FROM tickets WHERE id = 'T-3'`))[0]).toEqual({ failed_replies: null });
  });

  it('keeps failures only of agent replies, says `unknown` for one without a reason, drops one older than an outcome of the same reply already applied, and keeps the ten newest', async () => {
    await apply('T-4', waInbound('T-4', 'wa:4:1', 0));
    await apply('T-4', reply('T-4', 'ack-1', 1, 'acknowledgement'));
    await apply('T-4', outcome('T-4', 'ack-1', 'failed', 2, { reason: 'rate_limited: 130429' }));
    expect(await listed('T-4')).not.toHaveProperty('failedReplies');
    await apply('T-4', reply('T-4', 'T-4:r-1', 3));
    await apply('T-4', outcome('T-4', 'T-4:r-1', 'failed', 4));
    expect((await listed('T-4'))!.failedReplies).toEqual([{ outboundId: 'T-4:r-1', at: at(4), reason: 'unknown' }]);
    // A replay's `sent` applied before an older failure of the same reply: that failure is not listed.
    await apply('T-4', reply('T-4', 'T-4:r-2', 5));
    await apply('T-4', outcome('T-4', 'T-4:r-2', 'sent', 8, { round: 1 }));
    await apply('T-4', outcome('T-4', 'T-4:r-2', 'failed', 6, { reason: 'network: ETIMEDOUT' }));
    expect((await listed('T-4'))!.failedReplies!.map((f) => f.outboundId)).toEqual(['T-4:r-1']);
    for (let i = 0; i < 12; i++) {
      await apply('T-4', reply('T-4', `T-4:f-${i}`, 10 + i));
      await apply('T-4', outcome('T-4', `T-4:f-${i}`, 'failed', 10 + i, { reason: `http_500: ${i}` }));
    }
    expect((await listed('T-4'))!.failedReplies!.map((f) => f.outboundId)).toEqual([2, 3, 4, 5, 6, 7, 8, 9, 10, 11].map((i) => `T-4:f-${i}`));
  });

  it('lists rows written before migration 7 as they were, with the failures deliveries already held copied in', async () => {
    // A read model as the version before left it: the columns absent, migration 7 not applied.
    await apply('T-5', waInbound('T-5', 'wa:5:1', 0));
    await apply('T-5', reply('T-5', 'old-1', 1));
    await apply('T-5', outcome('T-5', 'old-1', 'failed', 2, { reason: 'outside_24h_window: 131047' }));
    await apply('T-5', reply('T-5', 'old-2', 3));
    await apply('T-5', outcome('T-5', 'old-2', 'failed', 4));
    await apply('T-5', outcome('T-5', 'old-2', 'sent', 5, { round: 1 }));
    await apply('T-6', waInbound('T-6', 'wa:6:1', 0));
    await db.query('ALTER TABLE tickets DROP COLUMN reply_window_ends_at');
    await db.query('ALTER TABLE tickets DROP COLUMN failed_replies');
    await db.query('DELETE FROM schema_migrations WHERE id = 7');

    expect((await migrate(db)).applied).toEqual([7]);
    // old-2 went out on its replay: only old-1 is copied in, as the ticket record lists it.
    expect(await listed('T-5')).toMatchObject({ failedReplies: [{ outboundId: 'old-1', at: at(2), reason: 'outside_24h_window: 131047' }] });
    expect(await listed('T-5')).not.toHaveProperty('replyWindowEndsAt');
    const t6 = await listed('T-6');
    expect(t6).toMatchObject({ id: 'T-6', status: 'new', messageCount: 1 });
    expect(t6).not.toHaveProperty('replyWindowEndsAt');
    expect(t6).not.toHaveProperty('failedReplies');
    expect((await listTickets(db, { limit: 500, failedReplies: true })).tickets.map((t) => t.id)).toContain('T-5');
    // The customer's next message brings the window.
    await apply('T-6', waInbound('T-6', 'wa:6:2', 60));
    expect((await listed('T-6'))!.replyWindowEndsAt).toBe(at(60 + DAY));
  });
});
