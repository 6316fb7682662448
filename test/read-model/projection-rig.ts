/**
 * What a projection test stands on: a bus on a throwaway nats-server (the describe's own, or one
 * the file shares between describes) with OMNI_LOG emptied of what an earlier describe wrote, a
 * migrated database of either engine, and a logger whose lines are kept for the test to read.
 * `projectionRig` registers the describe's beforeAll and afterAll; `run` starts a projection on it
 * (stopping the one before), and the last one is stopped at the end.
 */
import { Writable } from 'node:stream';
import { afterAll, beforeAll } from 'vitest';
import { Bus } from '../../src/core/bus.js';
import { createLogger, type Logger } from '../../src/core/logger.js';
import type { LogEntry } from '../../src/core/schema.js';
import { Streams } from '../../src/core/subjects.js';
import type { Database } from '../../src/read-model/database.js';
import { migrate } from '../../src/read-model/migrations.js';
import { Projection, type ProjectionOptions } from '../../src/read-model/projection.js';
import { chatMessage } from '../helpers/events.js';
import { startNats, type TestNats } from '../helpers/nats-server.js';
import { openTestDatabase } from '../helpers/sql.js';

export interface ProjectionRig {
  readonly log: Logger;
  /** Every line logged, one JSON object each. */
  readonly lines: string[];
  bus: Bus;
  db: Database;
  /** The lines logged that hold `text`. */
  said(text: string): string[];
  /** OMNI_LOG's last sequence. */
  logEnd(): Promise<number>;
  /** A projection started on the rig's bus and `database` (the rig's by default), the one before stopped. */
  run(o?: ProjectionOptions, database?: Database): Promise<Projection>;
}

export function projectionRig(o: { engine: 'pglite' | 'postgres'; level?: 'info' | 'silent'; nats?: () => TestNats }): ProjectionRig {
  const lines: string[] = [];
  const destination = new Writable({
    write(chunk: Buffer, _enc, done) {
      lines.push(...chunk.toString().split('\n').filter(Boolean));
      done();
    },
  });
  let own: TestNats | undefined;
  let cleanup: (() => Promise<void>) | undefined;
  let projection: Projection | undefined;
  const rig: ProjectionRig = {
    log: createLogger({ level: o.level ?? 'info', destination }),
    lines,
    bus: undefined as unknown as Bus,
    db: undefined as unknown as Database,
    said: (text) => lines.filter((l) => l.includes(text)),
    logEnd: async () => (await rig.bus.jsm.streams.info(Streams.log)).state.last_seq,
    async run(options = {}, database = rig.db) {
      await projection?.stop();
      projection = new Projection(rig.bus, async () => database, rig.log, options);
      projection.start();
      return projection;
    },
  };
  beforeAll(async () => {
    const nats = o.nats?.() ?? (own = await startNats());
    rig.bus = await Bus.connect({ url: nats.url, replicas: 1, duplicateWindowMs: 120_000, retentionMs: 86_400_000, dedupTtlMs: 86_400_000, leaseTtlMs: 5_000 }, rig.log);
    await rig.bus.provision();
    await rig.bus.jsm.streams.purge(Streams.log); // another describe's entries, on a shared server
    let db: Database;
    ({ db, cleanup } = await openTestDatabase(o.engine));
    rig.db = db;
    await migrate(db);
  }, 120_000);
  afterAll(async () => {
    await projection?.stop();
    await rig.bus?.close();
    await rig.db?.close();
    await cleanup?.();
    await own?.stop();
  });
  return rig;
}

/** A customer's `n`-th message in `ticketId`'s chat, as the router logs it (n = 0 opens the ticket). */
export function inboundEntry(ticketId: string, n: number): LogEntry {
  const event = chatMessage({ chat: `chat-${ticketId}`, id: `${ticketId}-${n}`, text: `Сообщение ${n} по ${ticketId}` });
  return { kind: 'inbound', at: event.receivedAt, event, match: { rule: n === 0 ? 'new-ticket' : 'open-conversation', value: event.conversation.id } };
}
