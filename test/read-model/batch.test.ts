/**
 * A batch applied at once (src/read-model/batch-memory.ts: prefetched tickets and senders,
 * inbound messages written per ticket at the end) leaves every table exactly as applying the same
 * entries one per transaction does. The log is generated (seeded): eight tickets interleaved,
 * senders on several channels, a contact card that merges two contacts mid-batch, republished
 * events, reactions, attachments, replies, deliveries, status changes, ratings, SLA breaches,
 * notes, edits and deletions. Both engines.
 */
import { afterAll, describe, expect, it } from 'vitest';
import type { InboundMessage, LogEntry, OutboundMessage } from '../../src/core/schema.js';
import { applyEntries, applyEntry, type SequencedEntry } from '../../src/read-model/apply.js';
import type { Database } from '../../src/read-model/database.js';
import { migrate } from '../../src/read-model/migrations.js';
import { openTestDatabase } from '../helpers/sql.js';

const T0 = Date.parse('2026-11-02T09:00:00.000Z');
const at = (n: number) => new Date(T0 + n * 1000).toISOString();

/** Deterministic pseudo-random numbers (mulberry32), so a failure can be replayed. */
function random(seed: number): () => number {
  return () => {
    seed = (seed + 0x6d2b79f5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const SENDERS: Array<{ channel: string; sender: InboundMessage['sender'] }> = [
  { channel: 'whatsapp', sender: { id: '79161234567@s.whatsapp.net', displayName: 'Ольга', handles: { phone: '+79161234567' } } },
  { channel: 'telegram', sender: { id: '5551', handles: {} } },
  { channel: 'telegram', sender: { id: '5552', displayName: 'Пётр', handles: {} } },
  { channel: 'email', sender: { id: 'ivan@example.ru', displayName: 'Иван', handles: { email: 'Ivan@Example.ru' } } },
  { channel: 'slack', sender: { id: 'U042', displayName: 'Мария', handles: { email: 'maria@example.ru' } } },
];

type InboundEntry = Extract<LogEntry, { kind: 'inbound' }>;

function inboundEntry(n: number, ticketId: string, who: (typeof SENDERS)[number], rnd: () => number, halfway: boolean): InboundEntry {
  const reaction = rnd() < 0.1;
  // Past halfway, the Telegram user without a name shares their own card: Telegram vouches for the phone, two contacts become one.
  const card = who.sender.id === '5551' && halfway && rnd() < 0.5;
  const texts = ['Здравствуйте, не проходит оплата', 'Где мой заказ №48213?', 'спасибо', 'Hello, the invoice is wrong'];
  const event: InboundMessage = {
    v: 1, type: 'message.inbound', id: `${who.channel}:${n}`, channel: who.channel, account: 'main', conversation: { id: `chat-${ticketId}`, kind: 'private' },
    receivedAt: at(n), sender: who.sender, text: reaction || card ? '' : texts[Math.floor(rnd() * texts.length)]!, format: 'plain',
    parts: reaction ? [{ type: 'reaction', emoji: '👍', targetPlatformMessageId: 'x' }] : card ? [{ type: 'contact', name: 'Оля', phone: '+7 916 123-45-67', userId: '5551' }] : [],
    attachments: rnd() < 0.15 ? [{ name: 'чек.pdf', mimeType: 'application/pdf', size: 1234, sha256: 'ab', objectKey: 'sha256/ab', kind: 'document', status: 'stored' }] : [],
    platform: { messageId: `pm-${n}` },
    // WhatsApp Cloud's window, 24 hours on: the ticket row keeps the latest, batched or not.
    ...(who.channel === 'whatsapp' ? { replyWindowEndsAt: at(n + 86_400) } : {}),
  };
  return { kind: 'inbound', at: at(n), event, match: { rule: 'open-conversation', value: event.conversation.id } };
}

function generateLog(seed: number, length: number): SequencedEntry[] {
  const rnd = random(seed);
  const pick = <T,>(xs: readonly T[]): T => xs[Math.floor(rnd() * xs.length)]!;
  const log: SequencedEntry[] = [];
  const add = (ticketId: string, entry: LogEntry) => log.push({ seq: log.length + 1, ticketId, entry });
  const inbound: Array<{ ticketId: string; entry: InboundEntry }> = [];
  const outbound: Array<{ ticketId: string; message: OutboundMessage }> = [];
  const statuses = ['new', 'open', 'pending', 'resolved', 'closed'] as const;
  for (let n = 0; log.length < length; n++) {
    const ticketId = `T-${1 + Math.floor(rnd() * 8)}`;
    const who = SENDERS[Number(ticketId.slice(2)) % SENDERS.length]!;
    const r = rnd();
    if (r < 0.45 || inbound.length === 0) {
      const entry = inboundEntry(n, ticketId, who, rnd, log.length > length / 2);
      inbound.push({ ticketId, entry });
      add(ticketId, entry);
    } else if (r < 0.5) {
      // A republished event logged twice: the second entry must change nothing.
      const again = pick(inbound);
      add(again.ticketId, again.entry);
    } else if (r < 0.62) {
      const automated = rnd() < 0.3;
      const message: OutboundMessage = {
        v: 1, type: 'message.outbound', id: `out-${n}`, ticketId, channel: who.channel, account: 'main', conversation: { id: `chat-${ticketId}`, kind: 'private' },
        text: 'Проверим и вернёмся', attachments: [], author: { id: automated ? 'omnigate' : 'agent-1', name: 'Анна' }, createdAt: at(n), automated,
        purpose: automated ? pick(['acknowledgement', 'satisfaction_request'] as const) : 'agent_reply',
      };
      outbound.push({ ticketId, message });
      add(ticketId, { kind: 'outbound', at: at(n), message });
    } else if (r < 0.74 && outbound.length) {
      const o = pick(outbound);
      const status = pick(['sent', 'delivered', 'read', 'failed'] as const);
      add(o.ticketId, { kind: 'delivery', at: at(n), status: { v: 1, type: 'delivery.status', outboundId: o.message.id, ticketId: o.ticketId, channel: o.message.channel, account: 'main', status, attempts: 1, at: at(n), ...(status === 'failed' ? { reason: 'blocked' } : {}) } });
    } else if (r < 0.82) {
      add(ticketId, { kind: 'status', at: at(n), from: pick(statuses), to: pick(statuses), author: { id: 'agent-1' }, reason: 'test' });
    } else if (r < 0.86) {
      add(ticketId, { kind: 'rating', at: at(n), rating: 1 + Math.floor(rnd() * 5), low: rnd() < 0.3, eventId: `rate-${n}` });
    } else if (r < 0.9) {
      add(ticketId, { kind: 'sla', at: at(n), breach: pick(['first_response', 'no_answer'] as const), since: at(n - 60), limitMs: 900_000 });
    } else if (r < 0.94) {
      add(ticketId, { kind: 'note', at: at(n), id: `note-${n}`, text: 'клиент VIP', author: { id: 'agent-1' } });
    } else {
      const target = pick(inbound);
      const e = target.entry.event;
      const common = { v: 1 as const, id: `ed-${n}`, channel: e.channel, account: 'main', conversation: e.conversation, receivedAt: at(n), targetPlatformMessageId: e.platform.messageId, platform: { messageId: `pm-ed-${n}` } };
      add(target.ticketId, rnd() < 0.5
        ? { kind: 'edited', at: at(n), match: target.entry.match, event: { ...common, type: 'message.edited', sender: e.sender, text: 'исправлено' } }
        : { kind: 'deleted', at: at(n), match: target.entry.match, event: { ...common, type: 'message.deleted' } });
    }
  }
  return log;
}

const TABLES: Array<[string, string]> = [
  ['contacts', 'id'], ['contact_identities', 'kind, scope, value'], ['tickets', 'id'], ['messages', 'seq'], ['attachments', 'message_seq, position'],
  ['deliveries', 'outbound_id'], ['status_changes', 'seq'], ['ratings', 'seq'], ['sla_breaches', 'seq'],
];

async function dump(db: Database): Promise<Record<string, unknown[]>> {
  const out: Record<string, unknown[]> = {};
  for (const [table, order] of TABLES) out[table] = JSON.parse(JSON.stringify(await db.query(`SELECT * FROM ${table} ORDER BY ${order}`))) as unknown[];
  return out;
}

describe.each(['pglite', 'postgres'] as const)('a batch applied at once, on %s', (engine) => {
  const opened: Array<{ db: Database; cleanup: () => Promise<void> }> = [];
  const open = async () => {
    const o = await openTestDatabase(engine);
    opened.push(o);
    await migrate(o.db);
    return o.db;
  };
  afterAll(async () => {
    for (const o of opened) {
      await o.db.close();
      await o.cleanup();
    }
  });

  it('leaves every table as applying its entries one by one does', async () => {
    const log = generateLog(20261204, 400);
    expect(new Set(log.map((e) => e.entry.kind)).size).toBe(9); // every kind but escalation occurs
    const oneByOne = await open();
    for (const e of log) await oneByOne.transaction((tx) => applyEntry(tx, e.seq, e.ticketId, e.entry));
    const expected = await dump(oneByOne);
    expect((expected.messages as Array<{ direction: string }>).filter((m) => m.direction === 'inbound').length).toBeGreaterThan(100);
    expect((expected.contacts as Array<{ merged_into: string | null }>).some((c) => c.merged_into !== null)).toBe(true);
    const tickets = expected.tickets as Array<{ failed_replies: unknown[] | null; reply_window_ends_at: string | null }>;
    expect(tickets.some((t) => t.failed_replies !== null) && tickets.some((t) => t.reply_window_ends_at !== null)).toBe(true);

    // All at once, then in uneven batches: the same tables, the same outcome counts.
    const atOnce = await open();
    const outcomes = await atOnce.transaction((tx) => applyEntries(tx, log));
    expect(await dump(atOnce)).toEqual(expected);
    const inBatches = await open();
    const counted = new Map<string, number>();
    for (let i = 0, size = 1; i < log.length; i += size, size = (size * 7) % 61 || 1) {
      for (const [k, n] of await inBatches.transaction((tx) => applyEntries(tx, log.slice(i, i + size)))) counted.set(k, (counted.get(k) ?? 0) + n);
    }
    expect(await dump(inBatches)).toEqual(expected);
    expect(Object.fromEntries(counted)).toEqual(Object.fromEntries(outcomes));
    expect(outcomes.get('duplicate')).toBeGreaterThan(0);
  }, 180_000);

  // The projection's answer to rows lost behind it (projection.ts, consistent): the log applied
  // again from its start over what is left, deleting nothing. Whatever was lost, the tables end
  // as they were: no counter counted twice (message_count, reopened_count), no status or last_seq
  // taken back to an older entry's, and a ticket row made anew under messages that stayed whole.
  it('a replay of the log over the rows still there restores what was lost and changes nothing else', async () => {
    const log = generateLog(20261206, 400);
    const db = await open();
    await db.transaction((tx) => applyEntries(tx, log));
    // A row written again takes its sender's contact as it is now: the root a later merge made
    // (the log merges two contacts halfway), where the first apply had recorded the contact
    // merged since. Every reader goes through contacts.merged_into, so rows are compared by root.
    const byRoot = async () => {
      const tables = await dump(db);
      const root = new Map((tables.contacts as Array<{ id: string; merged_into: string | null }>).map((c) => [c.id, c.merged_into ?? c.id]));
      for (const table of ['tickets', 'messages', 'ratings']) {
        for (const row of tables[table] as Array<{ contact_id: string | null }>) if (row.contact_id) row.contact_id = root.get(row.contact_id) ?? row.contact_id;
      }
      return tables;
    };
    const expected = await byRoot();
    const replay = async () => {
      for (let i = 0; i < log.length; i += 50) await db.transaction((tx) => applyEntries(tx, log.slice(i, i + 50)));
    };
    const losses: Array<[string, string[]]> = [
      ['nothing', []],
      ['every ticket (TRUNCATE tickets CASCADE)', ['TRUNCATE tickets CASCADE']],
      ['every third message (attachments with them)', ['DELETE FROM messages WHERE seq % 3 = 0']],
      ['one ticket with everything of it', [`DELETE FROM tickets WHERE id = 'T-3'`]],
      ['status changes, ratings, breaches and deliveries alone', ['DELETE FROM status_changes WHERE seq % 2 = 0', 'DELETE FROM ratings', 'DELETE FROM sla_breaches', 'DELETE FROM deliveries WHERE last_seq % 2 = 1']],
    ];
    for (const [what, sql] of losses) {
      for (const q of sql) await db.query(q);
      await replay();
      expect({ what, tables: await byRoot() }).toEqual({ what, tables: expected });
    }
    // Ticket rows deleted alone, their messages and the rest left (foreign keys off): made anew from the log.
    await db.transaction(async (tx) => {
      await tx.query('SET LOCAL session_replication_role = replica');
      await tx.query(`DELETE FROM tickets WHERE id IN ('T-1', 'T-5')`);
    });
    await replay();
    expect(await byRoot()).toEqual(expected);
  }, 180_000);
});
