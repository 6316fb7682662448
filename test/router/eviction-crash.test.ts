/**
 * kill -9 of a gateway while its sweeper evicts closed tickets (the real CLI, dist/cli.js), then a
 * restart with a message in every conversation at once: each lands in a new ticket with a new
 * number (never an evicted one brought back), the restarted sweeper finishes, no key in KV names
 * an evicted ticket, and the conversations go on in their new tickets.
 */
import { afterAll, afterEach, beforeAll, expect, it } from 'vitest';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { jetstream, jetstreamManager } from '@nats-io/jetstream';
import { Kvm } from '@nats-io/kv';
import { startNats, type TestNats, PATIENT } from '../helpers/nats-server.js';
import { spawnGateway, writeConfig, type GatewayProcess } from '../helpers/process.js';
import { chatMessage, readInboundLog } from '../helpers/events.js';
import { Buckets } from '../../src/core/subjects.js';

let nats: TestNats;
let nc: NatsConnection;
const running: GatewayProcess[] = [];

beforeAll(async () => {
  nats = await startNats();
  nc = await connect({ servers: nats.url });
});
afterEach(async () => {
  await Promise.all(running.splice(0).map((p) => p.kill('SIGKILL')));
});
afterAll(async () => {
  await nc?.close();
  await nats?.stop();
});

const N = 120;

async function publish(round: string): Promise<string[]> {
  const js = jetstream(nc, PATIENT);
  const ids: string[] = [];
  for (let c = 0; c < N; c++) {
    const e = chatMessage({ channel: 'webhook', account: 'evict', chat: `conv-${c}`, text: `${round} ${c}` });
    ids.push(e.id);
    await js.publish('omni.in.webhook.evict', JSON.stringify(e), { msgID: e.id });
  }
  return ids;
}

/** conversation → ticket of each inbound event with these ids, from the log (waits until all are there). */
async function routed(ids: string[], timeoutMs = 120_000): Promise<Map<string, string>> {
  const wanted = new Set(ids);
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const found = new Map<string, string>();
    for (const e of await readInboundLog(nc)) if (wanted.has(e.eventId)) found.set(e.conversation, e.ticketId);
    if (found.size === ids.length) return found;
    if (Date.now() > deadline) throw new Error(`${found.size} of ${ids.length} events routed`);
    await new Promise((r) => setTimeout(r, 500));
  }
}

async function liveTickets(): Promise<number> {
  const jsm = await jetstreamManager(nc, PATIENT);
  return (await jsm.streams.info(`KV_${Buckets.tickets}`)).state.messages;
}

function gateway(file: string): GatewayProcess {
  const p = spawnGateway(file, { entry: 'dist' });
  running.push(p);
  return p;
}

it('kill -9 mid-sweep, restart with a message in every conversation: new tickets, nothing brought back, the sweep finishes', async () => {
  const file = writeConfig({
    nats: { url: nats.url, leaseTtl: '3s' },
    http: { host: '127.0.0.1', port: 0 },
    log: { level: 'info' },
    router: { reopenWindow: '1s' },
    tickets: { evictClosedAfter: '2s' },
    retention: { sweepInterval: '1s' },
  });
  const first = gateway(file);
  await first.started;
  const old = await routed(await publish('first'));
  for (const ticketId of old.values()) {
    const r = (await nc.request('omni.cmd.status', JSON.stringify({ ticketId, status: 'closed' }), { timeout: 10_000 })).json<{ ok: boolean }>();
    expect(r.ok).toBe(true);
  }
  // Kill as soon as the sweeper has begun (the first record gone).
  const deadline = Date.now() + 120_000;
  while ((await liveTickets()) >= N && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
  await first.kill('SIGKILL');
  const leftAtKill = await liveTickets();
  console.log(`killed with ${leftAtKill} of ${N} closed tickets still in KV`);

  const second = gateway(file);
  await second.started;
  // At once, while the restarted sweeper (after the dead holder's lease expires) finishes.
  const fresh = await routed(await publish('second'));
  const oldIds = new Set(old.values());
  for (const [conv, ticketId] of fresh) {
    expect(oldIds.has(ticketId), `${conv} went back to an evicted ticket`).toBe(false);
    expect(Number(ticketId.slice(2))).toBeGreaterThan(Number(old.get(conv)!.slice(2)));
  }
  // The sweep finishes: only the new tickets are left, nothing in the index names an old one.
  const until = Date.now() + 120_000;
  while ((await liveTickets()) > N && Date.now() < until) await new Promise((r) => setTimeout(r, 200));
  expect(await liveTickets()).toBe(N);
  const threads = await new Kvm(nc).open(Buckets.threads);
  for await (const k of await threads.keys()) {
    const e = await threads.get(k);
    if (e && e.operation === 'PUT') expect(oldIds.has(e.string()), `key ${k} still names ${e.string()}`).toBe(false);
  }
  // And the conversations go on in their new tickets.
  const third = await routed(await publish('third'));
  for (const [conv, ticketId] of third) expect(ticketId).toBe(fresh.get(conv));
}, 420_000);
