/**
 * A dead NATS: readiness says so, intake holds what it was given until NATS is back (the
 * platform side sees a slow answer, not a lost message), and routing resumes by itself.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startGateway, type TestGateway } from '../helpers/gateway.js';
import { startNats, type TestNats } from '../helpers/nats-server.js';

const SECRET = 'outage-secret-0123456789';
const TOKEN = 'outage-api-token-0123456789';
let nats: TestNats;
let gw: TestGateway;

beforeAll(async () => {
  nats = await startNats();
  gw = await startGateway({ api: { tokens: [{ name: 'ops', token: TOKEN }] }, connectors: [{ type: 'webhook', account: 'site', secret: SECRET }] }, { nats });
});
afterAll(async () => {
  await gw?.stop();
  await nats?.stop();
});

/** /readyz polled every 100 ms until it answers `status` (or `withinMs` passed): the last answer. */
async function readinessBecomes(status: number, withinMs: number): Promise<Response> {
  const deadline = Date.now() + withinMs;
  // With a token: the test reads why (nats.connected), which /readyz shows only to one.
  const get = () => fetch(`${gw.httpUrl}/readyz`, { headers: { authorization: `Bearer ${TOKEN}` } });
  let res = await get();
  while (res.status !== status && Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, 100));
    res = await get();
  }
  return res;
}

describe('NATS outage', () => {
  it('reports not ready, holds intake while NATS is down and loses nothing when it returns', { timeout: 120_000 }, async () => {
    await nats.kill('SIGTERM');
    const ready = await readinessBecomes(503, 5_000);
    expect(ready.status).toBe(503);
    expect(((await ready.json()) as { nats: { connected: boolean } }).nats.connected).toBe(false);

    // Posted while NATS is down: the request waits instead of failing or being dropped. It is
    // answered 202 once NATS is back; only if the restarted server took longer than the post's
    // wait (20 s: seen on a loaded CI machine) a 503, whose retry (same messageId) is taken.
    const post = () => fetch(`${gw.httpUrl}/connectors/webhook/site/messages`, {
      method: 'POST',
      headers: { authorization: `Bearer ${SECRET}` },
      body: JSON.stringify({ messageId: 'during-outage', sender: { id: 'c-1' }, text: 'Сервис недоступен?' }),
    });
    const posted = performance.now();
    const posting = post();
    await new Promise((r) => setTimeout(r, 1500));
    await nats.restart();
    let res = await posting;
    if (res.status === 503) {
      expect(performance.now() - posted).toBeGreaterThanOrEqual(19_000); // it held for its whole wait first
      for (let i = 0; i < 60 && res.status !== 202; i++) {
        await new Promise((r) => setTimeout(r, 500));
        res = await post();
      }
    }
    expect(res.status, await res.clone().text()).toBe(202);
    const store = gw.gateway.router!.store;
    await expect.poll(async () => (await store.list()).find((t) => t.recentEvents.includes('webhook:site:during-outage'))?.messageCount, { timeout: 60_000 }).toBe(1);
    // Ready again once its loops run again (a consumer loop cut by the outage restarts with backoff).
    const again = await readinessBecomes(200, 60_000);
    expect(again.status, JSON.stringify(await again.json())).toBe(200);
  });

  it('a longer outage: intake answers 503 within its wait (not after the outage), readiness answers at once, and the retried post lands once', async () => {
    await nats.kill('SIGTERM');
    await readinessBecomes(503, 5_000);
    // The probe answers within Kubernetes' 3 s, with the reason (it took 10 s before).
    const started = performance.now();
    const probe = await fetch(`${gw.httpUrl}/readyz`);
    expect(probe.status).toBe(503);
    expect(performance.now() - started).toBeLessThan(2_900);
    const body = JSON.stringify({ messageId: 'long-outage', sender: { id: 'c-2' }, text: 'Вы работаете?' });
    const post = () => fetch(`${gw.httpUrl}/connectors/webhook/site/messages`, { method: 'POST', headers: { authorization: `Bearer ${SECRET}` }, body });
    // The API meanwhile: what needs NATS answers 503 with a retry hint, not a 500 ("a bug") or a
    // 404 that says a letter or a connector is gone (each waits out its request timeout first).
    const ticketId = (await gw.gateway.router!.store.list().catch(() => []))[0]?.id ?? 'T-1001';
    const api = (path: string, method = 'GET') => fetch(`${gw.httpUrl}${path}`, { method, headers: { authorization: `Bearer ${TOKEN}` } });
    const [refused, ...apiAnswers] = await Promise.all([
      post(), // waits up to 20 s for NATS, then tells the sender to retry
      api('/v1/connectors'),
      api(`/v1/tickets/${ticketId}/log`),
      api('/v1/dead-letters/1/replay', 'POST'),
      api('/v1/connectors/webhook/site/restart', 'POST'),
    ]);
    expect(refused!.status).toBe(503);
    expect(await refused!.json()).toMatchObject({ error: 'unavailable' });
    for (const [i, a] of apiAnswers.entries()) {
      expect(a.status, `${a.url}: ${await a.clone().text()}`).toBe(503);
      // Retry-After where a retry cannot act twice (the reads); a POST without an Idempotency-Key is told to check first.
      expect(a.headers.get('retry-after')).toBe(i < 2 ? '5' : null);
      expect(await a.json()).toMatchObject({ error: { code: 'unavailable' } });
    }
    await nats.restart();
    let res = await post();
    for (let i = 0; i < 20 && res.status !== 202; i++) {
      await new Promise((r) => setTimeout(r, 500));
      res = await post();
    }
    expect(res.status).toBe(202);
    // Routed once (read from the store: this test's event observer does not outlive the restarts).
    const store = gw.gateway.router!.store;
    let routed: { ticketId: string } | undefined;
    for (let i = 0; i < 120 && !routed; i++) {
      const t = (await store.list()).find((x) => x.recentEvents.includes('webhook:site:long-outage'));
      if (t) routed = { ticketId: t.id };
      else await new Promise((r) => setTimeout(r, 500));
    }
    expect(routed).toBeDefined();
    const log = await store.readLog(routed!.ticketId);
    expect(log.filter((l) => l.entry.kind === 'inbound')).toHaveLength(1);
  }, 120_000);
});
