/**
 * Two replicas on one PostgreSQL read model: one applies the log, the other stands by for the
 * applier lock without its loop counting restarts (it ended its run every 2 s: ~1,500 warnings an
 * hour per standby replica, and the documented restart alert firing on all of them).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startGateway, type TestGateway } from '../helpers/gateway.js';
import { startNats, type TestNats } from '../helpers/nats-server.js';
import { postgresDatabase, type TestPostgres } from '../helpers/sql.js';

let nats: TestNats;
let pg: TestPostgres;
const gateways: TestGateway[] = [];

beforeAll(async () => {
  nats = await startNats();
  pg = await postgresDatabase();
  for (let i = 0; i < 2; i++) gateways.push(await startGateway({ database: { url: pg.url, user: pg.user } }, { nats }));
}, 120_000);
afterAll(async () => {
  await Promise.all(gateways.map((g) => g.stop()));
  await pg?.drop();
  await nats?.stop();
});

describe('read model on several replicas', () => {
  it('the standby replica waits for the applier lock without restarting its loop', async () => {
    await new Promise((r) => setTimeout(r, 6_000)); // three standby retries (every 2 s)
    const loops = gateways.map((g) => g.gateway.loops.statuses().find((l) => l.name === 'read-model.projection')!);
    for (const l of loops) expect(l, JSON.stringify(l)).toMatchObject({ state: 'running', restarts: 0 });
  }, 60_000);
});
