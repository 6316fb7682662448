/**
 * Router processes as real child processes on one stream: two at once never open two tickets for
 * one conversation nor share a ticket number; kill -9 with thousands of events in flight, then a
 * restart (also one later than the duplicate window), leaves every event in exactly one ticket
 * log once.
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { jetstream, jetstreamManager } from '@nats-io/jetstream';
import { startNats, type TestNats, PATIENT } from '../helpers/nats-server.js';
import { spawnGateway, writeConfig, type GatewayProcess } from '../helpers/process.js';
import { chatMessage, readInboundLog, type InboundLogEntry } from '../helpers/events.js';

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

function routerProcess(natsOptions: Record<string, unknown> = {}): GatewayProcess {
  const file = writeConfig({
    nats: { url: nats.url, ...natsOptions },
    http: { host: '127.0.0.1', port: 0 },
    log: { level: 'info' },
    router: { ackWait: '2s', concurrency: 128 },
  });
  const p = spawnGateway(file);
  running.push(p);
  return p;
}

async function publishAll(channel: string, conversations: number, perConversation: number): Promise<string[]> {
  const js = jetstream(nc, PATIENT);
  const ids: string[] = [];
  const acks: Promise<unknown>[] = [];
  for (let i = 0; i < perConversation; i++) {
    for (let c = 0; c < conversations; c++) {
      const e = chatMessage({ channel, account: 'load', chat: `conv-${c}` });
      ids.push(e.id);
      acks.push(js.publish(`omni.in.${channel}.load`, JSON.stringify(e), { msgID: e.id }));
      if (acks.length >= 500) await Promise.all(acks.splice(0));
    }
  }
  await Promise.all(acks);
  return ids;
}

/** Every inbound log entry of the channel, with its ticket. */
async function inboundOf(channel: string): Promise<InboundLogEntry[]> {
  return (await readInboundLog(nc)).filter((e) => e.channel === channel);
}

async function waitUntilRouted(expected: number, channel: string, timeoutMs: number): Promise<void> {
  const jsm = await jetstreamManager(nc, PATIENT);
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    const info = await jsm.consumers.info('OMNI_IN', 'router').catch(() => null);
    if (info && info.num_pending === 0 && info.num_ack_pending === 0 && info.delivered.stream_seq > 0) {
      const entries = await inboundOf(channel);
      if (entries.length >= expected) return;
    }
    await new Promise((r) => setTimeout(r, 500));
  }
  throw new Error(`not all ${expected} events routed within ${timeoutMs} ms`);
}

function assertExactlyOnce(entries: Array<{ ticketId: string; eventId: string; conversation: string }>, ids: string[], conversations: number) {
  const byEvent = new Map<string, number>();
  for (const e of entries) byEvent.set(e.eventId, (byEvent.get(e.eventId) ?? 0) + 1);
  const missing = ids.filter((id) => !byEvent.has(id));
  const twice = [...byEvent].filter(([, n]) => n > 1);
  expect(missing).toEqual([]);
  expect(twice).toEqual([]);
  const ticketsPerConversation = new Map<string, Set<string>>();
  for (const e of entries) {
    const set = ticketsPerConversation.get(e.conversation) ?? new Set();
    set.add(e.ticketId);
    ticketsPerConversation.set(e.conversation, set);
  }
  expect(ticketsPerConversation.size).toBe(conversations);
  expect([...ticketsPerConversation.values()].filter((s) => s.size !== 1)).toEqual([]);
  const allTickets = new Set(entries.map((e) => e.ticketId));
  expect(allTickets.size).toBe(conversations); // distinct conversations never share a number
}

describe('router processes', () => {
  it('two routers on one stream open one ticket per conversation and never reuse a number', async () => {
    const a = routerProcess();
    const b = routerProcess();
    await Promise.all([a.started, b.started]);
    const ids = await publishAll('pair', 150, 6);
    await waitUntilRouted(ids.length, 'pair', 60_000);
    assertExactlyOnce(await inboundOf('pair'), ids, 150);
    // Both processes did work: the split is by JetStream, not by us.
    expect(a.output()).not.toMatch(/"level":"(error|fatal)"/);
    expect(b.output()).not.toMatch(/"level":"(error|fatal)"/);
  }, 120_000);

  async function killRestart(channel: string, opts: { natsOptions?: Record<string, unknown>; downMs?: number }): Promise<void> {
    const first = routerProcess(opts.natsOptions);
    await first.started;
    const jsm = await jetstreamManager(nc, PATIENT);
    const baseline = (await jsm.streams.info('OMNI_IN')).state.last_seq;
    const publishing = publishAll(channel, 250, 20);
    // Let it get going, then pull the plug mid-stream.
    for (;;) {
      const info = await jsm.consumers.info('OMNI_IN', 'router').catch(() => null);
      if (info && info.delivered.stream_seq > baseline + 1500) break;
      await new Promise((r) => setTimeout(r, 20));
    }
    await first.kill('SIGKILL');
    const ids = await publishing;
    const routedBeforeRestart = (await inboundOf(channel)).length;
    expect(routedBeforeRestart).toBeGreaterThan(0);
    expect(routedBeforeRestart).toBeLessThan(ids.length);
    if (opts.downMs) await new Promise((r) => setTimeout(r, opts.downMs));
    const second = routerProcess(opts.natsOptions);
    await second.started;
    await waitUntilRouted(ids.length, channel, 120_000);
    assertExactlyOnce(await inboundOf(channel), ids, 250);
  }

  it('kill -9 with 5,000 events in flight, then restart: each event in exactly one ticket log, once', async () => {
    await killRestart('crash', {});
  }, 240_000);

  // Last in this file: it shortens the streams' duplicate window. Before the router read the
  // ticket's log for what a dead attempt had written, 16 events were logged twice here.
  it('kill -9 with 5,000 events in flight, then a restart later than the duplicate window: each event once', async () => {
    await killRestart('late', { natsOptions: { duplicateWindow: '2s' }, downMs: 4000 });
  }, 240_000);
});
