/**
 * A NATS store lost or replaced under a deployment with history (an outside ops trial deleted
 * the JetStream directory of a running one): the ticket counter lives in NATS and started again,
 * so new customers got T-1001, T-1002… while the read model, the console and the helpdesk still
 * named old tickets by those numbers, and a reply to the old T-1001 reached the new one's
 * customer. Numbering now continues above the highest number the read model holds.
 */
import { afterAll, describe, expect, it } from 'vitest';
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { startGateway, type TestGateway } from '../helpers/gateway.js';
import { startNats, type TestNats } from '../helpers/nats-server.js';
import { chatMessage, publishEvent } from '../helpers/events.js';
import { postgresDatabase, type TestPostgres } from '../helpers/sql.js';
import { testTempDir } from '../helpers/temp-dirs.js';

let nats: TestNats;
let pg: TestPostgres;
let fresh: TestNats | undefined;
const gateways: TestGateway[] = [];
afterAll(async () => {
  for (const g of gateways) await g.stop().catch(() => undefined);
  await nats?.stop();
  await fresh?.stop();
  await pg?.drop();
});

describe('ticket numbers after the NATS store was lost', () => {
  it('continue above the highest number the read model holds, and say so', async () => {
    nats = await startNats();
    pg = await postgresDatabase();
    const config = { database: { url: pg.url, user: pg.user } };
    const before = await startGateway(config, { nats });
    gateways.push(before);
    const opened: string[] = [];
    for (const chat of ['old-a', 'old-b', 'old-c']) {
      await publishEvent(before.nc, chatMessage({ chat }));
      opened.push((await before.waitForEvent((e) => e.type === 'ticket.created' && e.conversation?.id === chat)).ticketId);
    }
    expect(opened).toEqual(['T-1001', 'T-1002', 'T-1003']);
    await before.gateway.readModel!.caughtUp(10_000);
    await before.stop();
    gateways.pop();

    await nats.kill();
    await rm(join(nats.dir, 'js'), { recursive: true, force: true });
    await nats.restart();

    const after = await startGateway(config, { nats });
    gateways.push(after);
    await publishEvent(after.nc, chatMessage({ chat: 'new-customer' }));
    const created = await after.waitForEvent((e) => e.type === 'ticket.created' && e.conversation?.id === 'new-customer');
    expect(created.ticketId).toBe('T-1004');
    expect(after.logs.some((l) => l.includes('ticket numbering starts over in NATS') && l.includes('"readModelHighest":1003'))).toBe(true);
  }, 180_000);

  it('on a first start with the embedded database, start as configured at once and raise no alarm (its initdb held nothing to read)', async () => {
    // A NATS store with no numbering yet and a PGlite directory never initialised.
    fresh = await startNats();
    const gw = await startGateway({ database: { dataDir: join(testTempDir('omnigate-first-start-'), 'sql') } }, { nats: fresh });
    gateways.push(gw);
    await publishEvent(gw.nc, chatMessage({ chat: 'first-ever' }));
    const created = await gw.waitForEvent((e) => e.type === 'ticket.created' && e.conversation?.id === 'first-ever');
    expect(created.ticketNumber).toBeGreaterThan(0);
    expect(gw.logs.filter((l) => l.includes('did not say which ticket numbers'))).toEqual([]);
  }, 180_000);
});
