/**
 * Truthful probes against real gateways and a real nats-server: a connector that is down is
 * reported but does not make the replica unready unless config says `required`; intake that
 * cannot publish shows `stalled` in /readyz and the metrics (and recovers); a replica waiting for
 * a crashed replica's lease says `standby` and until when, then takes over; a supervised loop that
 * keeps failing turns /healthz 503.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { jetstreamManager } from '@nats-io/jetstream';
import { Kvm } from '@nats-io/kv';
import { startGateway, type TestGateway } from '../helpers/gateway.js';
import { startNats, type TestNats } from '../helpers/nats-server.js';
import { FakeBotApi } from '../connectors/telegram/bot-api.js';
import { Streams } from '../../src/core/subjects.js';
import { until } from './support.js';

const TOKEN = '123456:PROBE-token-abcdefghijklmnop';
const SECRET = 'probe-secret-0123456789';
/** The probes' details (connector states, loops) need an API token (http.probeDetails). */
const MONITOR = 'monitor-token-0123456789abcdef';
let nats: TestNats;
let api: FakeBotApi;
let base: TestGateway;
const others: TestGateway[] = [];

const telegram = (account: string, extra: Record<string, unknown> = {}) =>
  ({ type: 'telegram', account, token: '${TG_TOKEN}', apiRoot: api.apiRoot, pollTimeoutS: 1, ...extra });
async function gateway(connectors: Array<Record<string, unknown>>, token = TOKEN): Promise<TestGateway> {
  // A 6 s lease TTL: long enough that a loaded machine starts the gateway before a stale lease runs out.
  const gw = await startGateway({ nats: { leaseTtl: '6s' }, api: { tokens: [{ name: 'monitor', token: MONITOR, readOnly: true }] }, connectors }, { nats, env: { TG_TOKEN: token } });
  others.push(gw);
  return gw;
}
async function probe(gw: TestGateway, path: '/readyz' | '/healthz') {
  const res = await fetch(`${gw.httpUrl}${path}`, { headers: { authorization: `Bearer ${MONITOR}` } });
  return { status: res.status, body: (await res.json()) as any };
}
async function metric(gw: TestGateway, line: RegExp): Promise<boolean> {
  return line.test(await (await fetch(`${gw.httpUrl}/metrics`)).text());
}
const connectorOf = (body: any, account: string) => body.connectors.find((c: any) => c.account === account);

beforeAll(async () => {
  nats = await startNats();
  api = new FakeBotApi(TOKEN);
  await api.start();
  base = await gateway([{ type: 'webhook', account: 'site', secret: SECRET }]);
});
afterAll(async () => {
  for (const g of others.splice(0).reverse()) await g.stop().catch(() => {});
  await api?.stop();
  await nats?.stop();
});

describe('readiness and connectors', () => {
  it('a connector that is down is reported, and makes the replica unready only when required', async () => {
    const relaxed = await gateway([{ type: 'webhook', account: 'site', secret: SECRET }, telegram('badbot')], '123456:WRONG-token-abcdefghijk');
    await until(async () => connectorOf((await probe(relaxed, '/readyz')).body, 'badbot')?.state === 'auth_failed', 'auth_failed on /readyz', 20_000);
    const ready = await probe(relaxed, '/readyz');
    expect(ready.status).toBe(200);
    expect(ready.body.status).toBe('ready');
    expect(connectorOf(ready.body, 'badbot')).toMatchObject({ channel: 'telegram', state: 'auth_failed', required: false, detail: expect.stringMatching(/getMe 401/) });
    expect(ready.body.loops).toEqual(expect.arrayContaining([expect.objectContaining({ name: 'router.partitions', state: 'running', essential: true })]));
    expect(await metric(relaxed, /omnigate_connector_up\{channel="telegram",account="badbot"\} 0/)).toBe(true);
    expect(await metric(relaxed, /omnigate_connector_state\{channel="telegram",account="badbot",state="auth_failed"\} 1/)).toBe(true);
    await relaxed.stop();
    others.splice(others.indexOf(relaxed), 1);

    const strict = await gateway([telegram('badbot2', { required: true })], '123456:WRONG-token-abcdefghijk');
    await until(async () => connectorOf((await probe(strict, '/readyz')).body, 'badbot2')?.state === 'auth_failed', 'auth_failed on /readyz', 20_000);
    const unready = await probe(strict, '/readyz');
    expect(unready.status).toBe(503);
    expect(unready.body.reasons).toEqual(['required connector telegram/badbot2 auth_failed']);
    expect(await metric(strict, /omnigate_connector_required\{channel="telegram",account="badbot2"\} 1/)).toBe(true);
    expect((await probe(strict, '/healthz')).status).toBe(200); // alive: a restart would not fix a token
  });

  it('intake that cannot publish shows stalled in /readyz and the metrics, and recovers', async () => {
    const gw = await gateway([{ type: 'webhook', account: 'stall', secret: SECRET }]);
    const jsm = await jetstreamManager(gw.nc);
    await jsm.streams.delete(Streams.inbound); // JetStream refuses every inbound publish now
    const posting = fetch(`${gw.httpUrl}/connectors/webhook/stall/messages`, {
      method: 'POST',
      headers: { authorization: `Bearer ${SECRET}` },
      body: JSON.stringify({ messageId: 'while-stalled', sender: { id: 'c-1' }, text: 'Алло?' }),
    });
    await until(async () => connectorOf((await probe(gw, '/readyz')).body, 'stall')?.state === 'stalled', 'stalled on /readyz', 20_000);
    const r = await probe(gw, '/readyz');
    expect(connectorOf(r.body, 'stall').detail).toMatch(/cannot publish to JetStream/);
    expect(r.status).toBe(503); // because the stream is missing, not because of the connector
    expect(r.body.reasons).toEqual([`streams missing: ${Streams.inbound}`]);
    expect(await metric(gw, /omnigate_connector_state\{channel="webhook",account="stall",state="stalled"\} 1/)).toBe(true);
    expect(await metric(gw, /omnigate_connector_up\{channel="webhook",account="stall"\} 0/)).toBe(true);

    await gw.gateway.bus.provision();
    expect((await posting).status).toBe(202);
    await until(async () => connectorOf((await probe(gw, '/readyz')).body, 'stall')?.state === 'connected', 'connected again', 20_000);
    expect(await metric(gw, /omnigate_connector_up\{channel="webhook",account="stall"\} 1/)).toBe(true);
  });

  it('a replica waiting for a crashed replica\'s lease says standby until when, and takes over when it runs out', async () => {
    const kv = await new Kvm(base.nc).open('omni_leases');
    await kv.put('telegram.shared.polling', 'crashed-replica-1234'); // what a kill -9 leaves behind
    const putAt = Date.now();
    const gw = await gateway([telegram('shared')]);
    await until(async () => connectorOf((await probe(gw, '/readyz')).body, 'shared')?.state === 'standby', 'standby', 20_000);
    const r = await probe(gw, '/readyz');
    expect(r.status).toBe(200); // standing by does not make the replica unready
    const c = connectorOf(r.body, 'shared');
    expect(c.detail).toMatch(/held by crashed-replica-1234 until/);
    const until_ = Date.parse(c.standbyUntil);
    expect(until_).toBeGreaterThan(putAt + 6000 - 2000);
    expect(until_).toBeLessThan(putAt + 6000 + 2000);
    expect(await metric(gw, /omnigate_connector_standby_until_timestamp_seconds\{channel="telegram",account="shared"\} 1\d{9}/)).toBe(true);
    expect(await metric(gw, /omnigate_connector_state\{channel="telegram",account="shared",state="standby"\} 1/)).toBe(true);

    await until(async () => connectorOf((await probe(gw, '/readyz')).body, 'shared')?.state === 'connected', 'took over after the stale lease ran out', 30_000);
    expect(Date.now()).toBeGreaterThan(putAt + 5000);
    expect(connectorOf((await probe(gw, '/readyz')).body, 'shared').standbyUntil).toBeUndefined();
    expect(await metric(gw, /omnigate_connector_standby_until_timestamp_seconds\{channel="telegram",account="shared"\} 0/)).toBe(true);
  }, 60_000);
});

describe('liveness and supervised loops', () => {
  it('/healthz turns 503 while a loop keeps failing with NATS up; an essential loop restarting makes /readyz 503', async () => {
    expect((await probe(base, '/healthz')).body).toEqual({ status: 'ok' });
    const broken = base.gateway.loops.run('test.broken', async () => {
      throw new Error('cannot work');
    }, { baseMs: 20, maxMs: 50, failAfter: 2, essential: true });
    await until(async () => (await probe(base, '/healthz')).status === 503, 'healthz 503');
    const h = await probe(base, '/healthz');
    expect(h.body).toMatchObject({ status: 'failing', failedLoops: [expect.objectContaining({ name: 'test.broken', lastError: 'cannot work' })] });
    const r = await probe(base, '/readyz');
    expect(r.status).toBe(503);
    expect(r.body.reasons).toEqual(['loop test.broken failed']);
    expect(await metric(base, /omnigate_loop_state\{loop="test.broken",state="failed"\} 1/)).toBe(true);
    await broken.stop();
    expect((await probe(base, '/healthz')).status).toBe(200);
    expect((await probe(base, '/readyz')).status).toBe(200);
  });
  it('one quick restart of an essential loop (a pull that missed heartbeats) keeps /readyz 200; a second failure in a row makes it 503', async () => {
    // Runs, handles work, then fails once as a consumer's pull does after missed heartbeats, and
    // runs again. The backoff is stretched so the probe surely lands while it is restarting.
    let runs = 0;
    const once = base.gateway.loops.run('test.hiccup', async ({ signal, progress }) => {
      progress();
      if (runs++ === 0) throw new Error('heartbeats missed');
      await new Promise((r) => signal.addEventListener('abort', r, { once: true }));
    }, { baseMs: 1_500, maxMs: 1_500, essential: true });
    await until(() => base.gateway.loops.statuses().some((l) => l.name === 'test.hiccup' && l.state === 'restarting'), 'the loop restarting');
    const during = await probe(base, '/readyz');
    expect(during.body.loops.find((l: any) => l.name === 'test.hiccup')).toMatchObject({ state: 'restarting', failuresInARow: 1 });
    expect(during.body.reasons).toBeUndefined();
    expect(during.status).toBe(200);
    await until(() => runs === 2, 'the loop running again');
    await once.stop();

    let tries = 0;
    const flapping = base.gateway.loops.run('test.flapping', async () => {
      tries++;
      throw new Error('JetStream system temporarily unavailable');
    }, { baseMs: 1_500, maxMs: 1_500, essential: true });
    await until(() => tries >= 2 && base.gateway.loops.statuses().some((l) => l.name === 'test.flapping' && l.state === 'restarting'), 'the second failure in a row');
    const r = await probe(base, '/readyz');
    expect(r.status).toBe(503);
    expect(r.body.reasons).toEqual(['loop test.flapping restarting']);
    await flapping.stop();
    expect((await probe(base, '/readyz')).status).toBe(200);
  });
});
