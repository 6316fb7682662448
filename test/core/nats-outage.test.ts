/**
 * A dead NATS: readiness says so, intake holds what it was given until NATS is back (the
 * platform side sees a slow answer, not a lost message), and routing resumes by itself.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startGateway, type TestGateway } from '../helpers/gateway.js';
import { startNats, type TestNats } from '../helpers/nats-server.js';

const SECRET = 'outage-secret-0123456789';
let nats: TestNats;
let gw: TestGateway;

beforeAll(async () => {
  nats = await startNats();
  gw = await startGateway({ connectors: [{ type: 'webhook', account: 'site', secret: SECRET }] }, { nats });
});
afterAll(async () => {
  await gw?.stop();
  await nats?.stop();
});

describe('NATS outage', () => {
  it('reports not ready, holds intake while NATS is down and loses nothing when it returns', async () => {
    await nats.kill('SIGTERM');
    let ready = await fetch(`${gw.httpUrl}/readyz`);
    for (let i = 0; i < 50 && ready.status === 200; i++) {
      await new Promise((r) => setTimeout(r, 100));
      ready = await fetch(`${gw.httpUrl}/readyz`);
    }
    expect(ready.status).toBe(503);
    expect(((await ready.json()) as { nats: { connected: boolean } }).nats.connected).toBe(false);

    // Posted while NATS is down: the request waits instead of failing or being dropped.
    const posting = fetch(`${gw.httpUrl}/connectors/webhook/site/messages`, {
      method: 'POST',
      headers: { authorization: `Bearer ${SECRET}` },
      body: JSON.stringify({ messageId: 'during-outage', sender: { id: 'c-1' }, text: 'Сервис недоступен?' }),
    });
    await new Promise((r) => setTimeout(r, 1500));
    await nats.restart();
    const res = await posting;
    expect(res.status).toBe(202);
    const routed = await gw.waitForEvent((e) => e.type === 'ticket.message' && (e.entry as any)?.event?.id === 'webhook:site:during-outage', 20_000);
    expect(routed.ticketId).toMatch(/^T-/);
    // Ready again once its loops run again (a consumer loop cut by the outage restarts with backoff).
    let again = await fetch(`${gw.httpUrl}/readyz`);
    for (let i = 0; i < 200 && again.status !== 200; i++) {
      await new Promise((r) => setTimeout(r, 100));
      again = await fetch(`${gw.httpUrl}/readyz`);
    }
    expect(again.status, JSON.stringify(await again.json())).toBe(200);
  });
});
