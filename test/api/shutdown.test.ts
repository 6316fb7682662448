/**
 * Bounded shutdown: on stop /readyz answers 503 at once while the listener stays open for the
 * drain period, intake answers 503, and keep-alive clients — one idle, one stuck in the middle of
 * sending a body — cannot hold the stop past its budget (it used to wait out the 72 s keep-alive
 * timeout).
 */
import { connect as netConnect, type Socket } from 'node:net';
import { afterAll, describe, expect, it } from 'vitest';
import { startGateway, type TestGateway } from '../helpers/gateway.js';
import { jetstream } from '@nats-io/jetstream';
import { Kvm } from '@nats-io/kv';

const secret = 'shutdown-test-secret-0123456789';
const running: TestGateway[] = [];
afterAll(async () => {
  await Promise.all(running.map((g) => g.stop().catch(() => {})));
});

async function keepAliveSocket(port: number): Promise<{ socket: Socket; closed: Promise<number>; received: () => string }> {
  const socket = netConnect(port, '127.0.0.1');
  let data = '';
  socket.on('data', (d) => (data += d.toString()));
  socket.on('error', () => {});
  const closed = new Promise<number>((r) => socket.once('close', () => r(Date.now())));
  await new Promise((r) => socket.once('connect', r));
  return { socket, closed, received: () => data };
}

async function until(pred: () => boolean, timeoutMs: number, what: string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!pred()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

describe('bounded shutdown', () => {
  it('readiness 503 while the listener drains, intake refused, keep-alive sockets closed, stop within shutdownTimeout', async () => {
    const gw = await startGateway(
      { shutdownTimeout: '10s', shutdownDrain: '1500ms', connectors: [{ type: 'webhook', account: 'form', secret: '${FORM_SECRET}' }] },
      { env: { FORM_SECRET: secret } },
    );
    running.push(gw);
    const port = gw.gateway.http.port;
    const base = `http://127.0.0.1:${port}`;
    expect((await fetch(`${base}/readyz`)).status).toBe(200);

    // An idle keep-alive connection that has served one request.
    const idle = await keepAliveSocket(port);
    idle.socket.write('GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: keep-alive\r\n\r\n');
    await until(() => idle.received().includes('{"status":"ok","reasons":[]}'), 10_000, 'the first response');
    // A client stuck halfway through a body: its request never completes on its own.
    const stuck = await keepAliveSocket(port);
    stuck.socket.write(`POST /connectors/webhook/form/messages HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${secret}\r\nContent-Type: application/json\r\nContent-Length: 500\r\n\r\n{"messageId":`);
    // Let the server take the request in (past its hooks, waiting for the rest of the body).
    await new Promise((r) => setTimeout(r, 500));

    const t0 = Date.now();
    let stoppedAt = 0;
    const stopping = gw.gateway.stop().then(() => (stoppedAt = Date.now()));

    // During the drain the listener is open: a new connection gets 503 from /readyz, not a refusal.
    const ready = await fetch(`${base}/readyz`);
    expect(ready.status).toBe(503);
    expect(await ready.json()).toEqual({ status: 'not ready', reasons: ['shutting down'] });
    expect(ready.headers.get('connection')).toBe('close');
    const intake = await fetch(`${base}/connectors/webhook/form/messages`, {
      method: 'POST',
      headers: { authorization: `Bearer ${secret}` },
      body: JSON.stringify({ messageId: 'late-1', sender: { id: 'c-1' }, text: 'Поздно' }),
    });
    expect(intake.status).toBe(503);
    // In the channel's own flat shape, as its other refusals (README).
    expect((await intake.json()) as unknown).toMatchObject({ error: 'unavailable', message: expect.stringMatching(/shutting down/) });
    expect(Date.now() - t0).toBeLessThan(1500 + 5000); // answered inside the drain (generous for a loaded machine)

    await stopping;
    const [idleClosed, stuckClosed] = await Promise.all([idle.closed, stuck.closed]);
    const took = stoppedAt - t0;
    // Budget: 10 s. The stuck client is cut at the grace, about (10 s - 1.5 s drain) / 2 after the drain.
    // What is tested is that the stop is bounded by its budget; a timer of a loaded machine fires
    // late (10,041 ms seen in CI at load average 12), so the bound allows for that, not for minutes.
    expect(took).toBeLessThan(10_000 + 2_000);
    expect(idleClosed).toBeLessThanOrEqual(stoppedAt);
    expect(stuckClosed).toBeLessThanOrEqual(stoppedAt);
    // Normally cut at the grace; on a machine too loaded to take the request in before the stop,
    // it is refused with 503 instead. Either way the socket is closed before the stop ends.
    const cut = gw.logs.join('').includes('closing HTTP connections still open after the shutdown grace');
    expect(cut || stuck.received().includes('503 Service Unavailable')).toBe(true);
    expect(gw.logs.join('')).toMatch(/"graceful":true[^\n]*shutdown complete/);
    console.log(`stop with a stuck client took ${took} ms (${cut ? 'cut at the grace' : 'refused'})`);
  }, 60_000);

  it('a request that completes after the listener closed is refused in the route\'s own shape, not the framework\'s', async () => {
    const gw = await startGateway(
      { shutdownTimeout: '10s', shutdownDrain: '0s', connectors: [{ type: 'webhook', account: 'form', secret: '${FORM_SECRET}' }] },
      { env: { FORM_SECRET: secret } },
    );
    running.push(gw);
    const late = await keepAliveSocket(gw.gateway.http.port);
    // Half its headers before the stop: the server holds the connection, not yet a request.
    late.socket.write('POST /connectors/webhook/form/messages HTTP/1.1\r\nHost: x\r\n');
    await new Promise((r) => setTimeout(r, 300));
    const stopping = gw.gateway.stop();
    await new Promise((r) => setTimeout(r, 300));
    const body = JSON.stringify({ messageId: 'late-2', sender: { id: 'c-2' }, text: 'Совсем поздно' });
    late.socket.write(`Authorization: Bearer ${secret}\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`);
    await Promise.race([late.closed, until(() => late.received().includes('\r\n\r\n{'), 10_000, 'the answer')]);
    await stopping;
    const answer = late.received();
    // Answered with our refusal (or, on a machine too slow to take it in, the socket closed unanswered).
    if (answer) {
      expect(answer).toMatch(/^HTTP\/1\.1 503/);
      expect(JSON.parse(answer.slice(answer.indexOf('\r\n\r\n') + 4))).toEqual({ error: 'unavailable', message: 'shutting down; retry on another replica' });
    }
    console.log(`request completed after close: ${answer ? 'refused in our shape' : 'socket closed unanswered'}`);
  }, 60_000);

  it('a keep-alive client alone does not delay the stop', async () => {
    const gw = await startGateway({ shutdownTimeout: '10s' });
    running.push(gw);
    const port = gw.gateway.http.port;
    const ka = await keepAliveSocket(port);
    ka.socket.write('GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: keep-alive\r\n\r\n');
    await until(() => ka.received().includes('{"status":"ok","reasons":[]}'), 10_000, 'the response');
    const t0 = Date.now();
    // The client keeps using its socket while we stop: each answer now closes the connection.
    const poke = setInterval(() => ka.socket.writable && ka.socket.write('GET /readyz HTTP/1.1\r\nHost: x\r\n\r\n'), 50);
    try {
      expect(await gw.gateway.stop()).toBe(true);
    } finally {
      clearInterval(poke);
    }
    const took = Date.now() - t0;
    await ka.closed;
    expect(took).toBeLessThan(5000); // seconds below the budget, though typically ~100 ms
    console.log(`stop with a keep-alive client took ${took} ms`);
  }, 60_000);

  it('a component that never finishes stopping is abandoned at the deadline, by name', async () => {
    const gw = await startGateway({ shutdownTimeout: '3s' });
    running.push(gw);
    // Stands in for a connector stuck on a platform call that ignores its abort signal.
    gw.gateway.connectors.stop = () => new Promise<void>(() => {});
    const t0 = Date.now();
    // False: the CLI exits 1 on it, so a supervisor records the stop as not clean.
    expect(await gw.gateway.stop()).toBe(false);
    const took = Date.now() - t0;
    const logs = gw.logs.join('');
    expect(logs).toMatch(/"pending":\["connectors"\][^\n]*shutdownTimeout reached: abandoning components still stopping/);
    expect(logs).toMatch(/"graceful":false[^\n]*shutdown complete/);
    expect(gw.gateway.bus.nc.isClosed()).toBe(true);
    // Intake is abandoned a quarter of the budget early (routing then hands back and the rest stops).
    expect(took).toBeGreaterThanOrEqual(2150);
    expect(took).toBeLessThan(3000 + 5000); // the deadline, plus slack for a loaded machine
    console.log(`stop with a stuck component took ${took} ms of a 3000 ms budget`);
  }, 60_000);

  it('a connector stuck past the budget does not keep routing from giving its partitions back', async () => {
    // t13: SIGTERM to one of three replicas during a burst, with a reply callback that answered
    // slower than its 10 s timeout: the connectors' stop ate the whole 10 s shutdownTimeout, so the
    // router's stop was never called and its 12 partitions waited out the 15 s lease TTL (routing
    // of their conversations stalled ~20 s). The intake stage now ends early enough for routing
    // to hand back.
    const gw = await startGateway({ shutdownTimeout: '3s' });
    running.push(gw);
    const kv = await new Kvm(jetstream(gw.nc)).open('omni_leases');
    const partitionLeases = async () => {
      const keys: string[] = [];
      for await (const k of await kv.keys('router.partition.>')) keys.push(k);
      return keys;
    };
    const deadline = Date.now() + 30_000;
    while ((await partitionLeases()).length === 0) {
      if (Date.now() > deadline) throw new Error('the router took no partition');
      await new Promise((r) => setTimeout(r, 100));
    }
    gw.gateway.connectors.stop = () => new Promise<void>(() => {});
    expect(await gw.gateway.stop()).toBe(false); // still not clean: a component was abandoned
    const logs = gw.logs.join('');
    expect(logs).toMatch(/"pending":\["connectors"\][^\n]*shutdownTimeout reached/);
    expect(await partitionLeases()).toEqual([]);
  }, 60_000);

  it('routing stops claiming partitions when the stop begins, before intake drains', async () => {
    // A replica went on claiming units (freed by a peer stopping with it) 10–670 ms into its own
    // stop, while its intake drained, and gave them back when its router stopped. What the
    // ownership does once told is in test/router/partition-handover.test.ts; this is the telling.
    const gw = await startGateway({ shutdownTimeout: '5s' });
    running.push(gw);
    const order: string[] = [];
    const router = gw.gateway.router! as unknown as { beginShutdown?: () => void };
    const begin = router.beginShutdown?.bind(router);
    router.beginShutdown = () => {
      order.push('router claims no more');
      begin?.();
    };
    const stopConnectors = gw.gateway.connectors.stop.bind(gw.gateway.connectors);
    gw.gateway.connectors.stop = async () => {
      order.push('connectors stop');
      await stopConnectors();
    };
    expect(await gw.gateway.stop()).toBe(true);
    expect(order).toEqual(['router claims no more', 'connectors stop']);
  }, 60_000);
});
