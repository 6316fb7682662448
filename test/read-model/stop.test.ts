/**
 * A projection stopped while it takes the applier lock (a PostgreSQL connection takes a moment;
 * a stop right after a start lands there): the abort had fired before the term listened for it,
 * so the term applied on until NATS closed under it, and the stop (an afterAll, a gateway's
 * shutdown) waited for that: 180 s in a test that stopped a projection and started another.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Bus } from '../../src/core/bus.js';
import { createLogger } from '../../src/core/logger.js';
import { Streams } from '../../src/core/subjects.js';
import type { ApplierLock, Database } from '../../src/read-model/database.js';
import { migrate } from '../../src/read-model/migrations.js';
import { Projection } from '../../src/read-model/projection.js';
import { startNats, type TestNats } from '../helpers/nats-server.js';
import { openTestDatabase, wrapDatabase } from '../helpers/sql.js';

let nats: TestNats;

beforeAll(async () => {
  nats = await startNats();
}, 60_000);
afterAll(async () => {
  await nats?.stop();
});

describe.each(['pglite', 'postgres'] as const)('a projection stopped while it takes the applier lock, on %s', (engine) => {
  let db: Database;
  let cleanup: () => Promise<void>;
  let bus: Bus;
  let projection: Projection | undefined;
  const log = createLogger({ level: (process.env.STOP_LOG ?? 'silent') as 'info' });

  beforeAll(async () => {
    bus = await Bus.connect({ url: nats.url, replicas: 1, duplicateWindowMs: 120_000, retentionMs: 86_400_000, dedupTtlMs: 86_400_000, leaseTtlMs: 5_000 }, log);
    await bus.provision();
    await bus.jsm.streams.purge(Streams.log);
    ({ db, cleanup } = await openTestDatabase(engine));
    await migrate(db);
  }, 120_000);
  afterAll(async () => {
    // NATS first: a projection that missed its stop ends when its fetch fails, so a failure here is the test's, not a hook timeout.
    await bus?.close();
    await projection?.stop();
    await db?.close();
    await cleanup?.();
  });

  it('stops at once, gives the lock back, and a projection started next applies', async () => {
    let taken!: () => void;
    const taking = new Promise<void>((r) => (taken = r));
    let letGo!: () => void;
    const held = new Promise<void>((r) => (letGo = r));
    let released = false;
    const slowLock = wrapDatabase(db, {
      async tryApplierLock(key): Promise<ApplierLock | null> {
        taken();
        await held; // the stop comes while the lock is being taken
        const lock = await db.tryApplierLock(key);
        return lock && { lost: lock.lost, release: async () => void (released = true, await lock.release()) };
      },
    });
    projection = new Projection(bus, async () => slowLock, log);
    projection.start();
    await taking;
    const stopping = projection.stop();
    letGo();
    const stopped = await Promise.race([stopping.then(() => true), new Promise<false>((r) => setTimeout(() => r(false), 5_000))]);
    expect(stopped).toBe(true);
    expect(released).toBe(true);
    expect(projection.status().applying).toBe(false);

    projection = new Projection(bus, async () => db, log);
    projection.start();
    await expect.poll(() => projection!.status().applying, { timeout: 10_000 }).toBe(true);
  });
});
