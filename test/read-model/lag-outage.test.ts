/**
 * omnigate_read_model_lag while PostgreSQL refuses us (an outside ops trial set the role NOLOGIN):
 * the log goes on growing, nothing is applied, and the gauge must grow with it. It stayed frozen
 * at its last value for the whole outage, because the sample needs the checkpoint from SQL.
 */
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Bus } from '../../src/core/bus.js';
import { createLogger } from '../../src/core/logger.js';
import { metrics } from '../../src/core/metrics.js';
import { Subjects } from '../../src/core/subjects.js';
import { openDatabase, type Database } from '../../src/read-model/database.js';
import { migrate } from '../../src/read-model/migrations.js';
import { Projection } from '../../src/read-model/projection.js';
import { startNats, type TestNats } from '../helpers/nats-server.js';
import { postgresDatabase, type TestPostgres } from '../helpers/sql.js';

const log = createLogger({ level: 'silent' });
const role = `omnigate_test_role_${randomBytes(4).toString('hex')}`;
let nats: TestNats;
let bus: Bus;
let pg: TestPostgres;
let db: Database;

beforeAll(async () => {
  nats = await startNats();
  bus = await Bus.connect({ url: nats.url, replicas: 1, duplicateWindowMs: 120_000, retentionMs: 86_400_000, dedupTtlMs: 86_400_000, leaseTtlMs: 5_000 }, log);
  await bus.provision();
  pg = await postgresDatabase();
  db = await openDatabase({ url: pg.url, user: pg.user, dataDir: '' });
  await migrate(db);
  await db.query(`CREATE ROLE ${role} NOLOGIN`);
});
afterAll(async () => {
  await db?.close();
  await bus?.close();
  await nats?.stop();
  await pg?.drop();
  const admin = await openDatabase({ url: pg.url.replace(/\/[^/]+$/, '/postgres'), user: pg.user, dataDir: '' });
  await admin.query(`DROP ROLE IF EXISTS ${role}`).finally(() => admin.close());
});

async function gauge(): Promise<number> {
  return (await metrics.readModelLag.get()).values[0]?.value ?? NaN;
}

describe('read-model lag during a database outage', () => {
  it('grows with the log from the last checkpoint seen, and the sample still reports the refusal', async () => {
    let down = false;
    // Once down, every connection is refused by PostgreSQL itself (28000: the role may not log in).
    const projection = new Projection(bus, async () => (down ? openDatabase({ url: pg.url, user: role, dataDir: '' }) : db), log);
    for (let i = 0; i < 3; i++) await bus.js.publish(Subjects.ticketLog('T-1'), `{"n":${i}}`);
    await db.query(`INSERT INTO projection_checkpoint (name, seq) VALUES ('ticket-log', 2)`); // two applied
    expect((await projection.sample()).lag).toBe(1);
    expect(await gauge()).toBe(1);

    down = true;
    for (let i = 3; i < 8; i++) await bus.js.publish(Subjects.ticketLog('T-1'), `{"n":${i}}`);
    const refused = await projection.sample().then(() => undefined, (e: unknown) => e);
    expect((refused as { code?: string }).code).toBe('28000');
    expect(projection.status()).toMatchObject({ checkpoint: 2, logLastSeq: 8, lag: 6 });
    expect(await gauge()).toBe(6);
  });

  it('states no lag when the checkpoint was never read (refused from the start), rather than the whole log', async () => {
    const projection = new Projection(bus, async () => openDatabase({ url: pg.url, user: role, dataDir: '' }), log);
    const before = await gauge();
    const refused = await projection.sample().then(() => undefined, (e: unknown) => e);
    expect((refused as { code?: string }).code).toBe('28000');
    expect(projection.status().lag).toBe(0);
    expect(await gauge()).toBe(before);
  });
});
