/**
 * Rows deleted behind a running projection (an outside trial truncated `tickets` alone, leaving
 * the checkpoint): the projection went on from its checkpoint, lists lacked every old ticket and
 * nothing said the read model was wrong. The applier keeps counts of the rows it wrote with its
 * checkpoint and compares them with the tables (at its start, and every `checkEveryMs` when idle):
 * a disagreement is logged, shown in its status (/readyz) and rebuilt from the log. An erasure
 * lowers the counts with the rows and is not taken for a loss, nor are counts an older version
 * left behind. Both engines.
 */
import { Writable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Bus } from '../../src/core/bus.js';
import { createLogger } from '../../src/core/logger.js';
import type { LogEntry } from '../../src/core/schema.js';
import { Streams, Subjects } from '../../src/core/subjects.js';
import type { Database } from '../../src/read-model/database.js';
import { eraseRows } from '../../src/read-model/erasure.js';
import { migrate } from '../../src/read-model/migrations.js';
import { Projection } from '../../src/read-model/projection.js';
import { listTickets } from '../../src/read-model/queries.js';
import { chatMessage } from '../helpers/events.js';
import { startNats, type TestNats } from '../helpers/nats-server.js';
import { openTestDatabase } from '../helpers/sql.js';

let nats: TestNats;

beforeAll(async () => {
  nats = await startNats();
}, 60_000);
afterAll(async () => {
  await nats?.stop();
});

const TICKETS = ['T-1', 'T-2', 'T-3', 'T-4', 'T-5'];

function inbound(ticketId: string, n: number): LogEntry {
  const event = chatMessage({ chat: `chat-${ticketId}`, id: `${ticketId}-${n}`, text: `Сообщение ${n} по ${ticketId}` });
  return { kind: 'inbound', at: event.receivedAt, event, match: { rule: n === 0 ? 'new-ticket' : 'open-conversation', value: event.conversation.id } };
}

describe.each(['pglite', 'postgres'] as const)('read model rows lost behind the projection, on %s', (engine) => {
  let db: Database;
  let cleanup: () => Promise<void>;
  let bus: Bus;
  let projection: Projection;
  const lines: string[] = [];
  const log = createLogger({ level: 'info', destination: new Writable({ write: (chunk, _enc, done) => (lines.push(String(chunk)), done()) }) });
  /** Message entries published so far (each becomes one row of `messages`). */
  let messagesInLog = 0;

  const publish = async (ticketId: string, entry: LogEntry) => {
    await bus.js.publish(Subjects.ticketLog(ticketId), JSON.stringify(entry));
    if (entry.kind === 'inbound' || entry.kind === 'note' || entry.kind === 'outbound') messagesInLog++;
  };
  const logEnd = async () => (await bus.jsm.streams.info(Streams.log)).state.last_seq;
  const listed = async () => (await listTickets(db, { limit: 100 })).tickets.map((t) => t.id).sort();
  const rows = async () => {
    const [r] = await db.query<{ tickets: number; messages: number; status_changes: number }>(
      'SELECT (SELECT count(*) FROM tickets) AS tickets, (SELECT count(*) FROM messages) AS messages, (SELECT count(*) FROM status_changes) AS status_changes',
    );
    return { tickets: Number(r!.tickets), messages: Number(r!.messages), statusChanges: Number(r!.status_changes) };
  };
  const rebuilds = () => lines.filter((l) => l.includes('Rebuilding the read model from the ticket log')).length;
  /** After `n` rebuilds in all, caught up with the log and holding every ticket and message it has (`tickets` of them). */
  const whole = async (tickets: string[], n: number) => {
    const state = async () => ({ rebuilds: rebuilds(), caughtUp: (await projection.checkpoint()) === (await logEnd()), listed: await listed(), rows: await rows() });
    await expect.poll(state, { timeout: 30_000 }).toMatchObject({ rebuilds: n, caughtUp: true, listed: tickets, rows: { tickets: tickets.length, messages: messagesInLog } });
  };

  beforeAll(async () => {
    bus = await Bus.connect({ url: nats.url, replicas: 1, duplicateWindowMs: 120_000, retentionMs: 86_400_000, dedupTtlMs: 86_400_000, leaseTtlMs: 5_000 }, log);
    await bus.provision();
    await bus.jsm.streams.purge(Streams.log); // the other engine's entries
    ({ db, cleanup } = await openTestDatabase(engine));
    await migrate(db);
    projection = new Projection(bus, async () => db, log, { checkEveryMs: 300 });
    for (const id of TICKETS) for (let n = 0; n < 2; n++) await publish(id, inbound(id, n));
    await publish('T-1', { kind: 'status', at: new Date().toISOString(), from: 'new', to: 'resolved', author: { id: 'agent-1' } });
    await publish('T-2', { kind: 'note', at: new Date().toISOString(), id: 'note-1', text: 'Перезвонить', author: { id: 'agent-1' } });
    projection.start();
  }, 120_000);
  afterAll(async () => {
    await projection?.stop();
    await bus?.close();
    await db?.close();
    await cleanup?.();
  });

  it('tickets truncated under a running applier (the trial: TRUNCATE tickets, the checkpoint left): detected, said, rebuilt from the log', async () => {
    await whole(TICKETS, 0);
    const before = await projection.checkpoint();
    await db.query('TRUNCATE tickets CASCADE'); // PostgreSQL will not truncate it alone: messages and the rest go with it
    expect(await listed()).toEqual([]);
    await whole(TICKETS, 1);
    const said = lines.find((l) => l.includes('Rebuilding the read model from the ticket log'))!;
    expect(said).toContain(`the read model holds 0 tickets and 0 messages, but its checkpoint (sequence ${before}) stands for 5 and ${messagesInLog}`);
    await expect.poll(() => lines.some((l) => l.includes('read model rebuilt from the ticket log'))).toBe(true);
    expect(projection.status().rebuilding).toBeUndefined();
    // What the rebuild replayed is whole: the status change and the note too.
    expect((await rows()).statusChanges).toBe(1);
    expect((await listTickets(db, { limit: 10, status: 'resolved' })).tickets.map((t) => t.id)).toEqual(['T-1']);
  });

  it('one ticket row deleted alone (its messages left, foreign keys off), or messages deleted: rebuilt as well', async () => {
    await db.transaction(async (tx) => {
      await tx.query('SET LOCAL session_replication_role = replica'); // no cascade: the messages stay without their ticket
      await tx.query(`DELETE FROM tickets WHERE id = 'T-3'`);
    });
    expect(await rows()).toMatchObject({ tickets: 4, messages: messagesInLog });
    await whole(TICKETS, 2);

    await db.query(`DELETE FROM messages WHERE ticket_id = 'T-4'`);
    await whole(TICKETS, 3);
  });

  it('new entries after a loss land on a rebuilt read model, and an erasure is not taken for a loss', async () => {
    await db.query('TRUNCATE tickets CASCADE');
    await publish('T-6', inbound('T-6', 0));
    await publish('T-2', inbound('T-2', 2));
    await whole([...TICKETS, 'T-6'], 4);

    const erased = await eraseRows(db, { ticketIds: ['T-5'] });
    expect(erased).toMatchObject({ tickets: 1, messages: 2 });
    messagesInLog -= 2;
    await new Promise((r) => setTimeout(r, 1500)); // several checks
    expect(await rows()).toMatchObject({ tickets: 5, messages: messagesInLog });
    expect(rebuilds()).toBe(4);
  });

  it('counts an older version left behind (the checkpoint moved without them) are taken afresh, not taken for a loss', async () => {
    // As migration 5 leaves a read model from before, or a batch applied by an older replica.
    await db.query(`UPDATE projection_checkpoint SET tickets = 0, messages = 0, counted_seq = -1`);
    await expect.poll(() => lines.some((l) => l.includes('read-model row counts taken at the checkpoint')), { timeout: 10_000 }).toBe(true);
    const [c] = await db.query<{ tickets: number; messages: number; seq: number; counted_seq: number }>(`SELECT tickets, messages, seq, counted_seq FROM projection_checkpoint`);
    expect({ tickets: Number(c!.tickets), messages: Number(c!.messages), counted: Number(c!.counted_seq) }).toEqual({ tickets: 5, messages: messagesInLog, counted: Number(c!.seq) });
    expect(rebuilds()).toBe(4);
  });
});
