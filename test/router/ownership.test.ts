/**
 * Ownership of conversations (src/router/partitions.ts), with router processes as real child
 * processes on one stream: 200 conversations × 50 messages published back to back on their
 * partitions; every conversation's log must be in publish order, every message in it once, and
 * every ticket's counter must equal its log (a message applied twice would count twice).
 * Scenarios: two replicas and a third joining under load; three replicas and kill -9 of one; an
 * upgrade in place from the unfiltered shared consumer.
 */
import { writeFileSync } from 'node:fs';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { AckPolicy, DeliverPolicy, jetstream, jetstreamManager } from '@nats-io/jetstream';
import { Kvm } from '@nats-io/kv';
import { startNats, type TestNats, PATIENT } from '../helpers/nats-server.js';
import { spawnGateway, writeConfig, type GatewayProcess } from '../helpers/process.js';
import { chatMessage, readInboundLog } from '../helpers/events.js';
import type { Ticket } from '../../src/core/schema.js';
import { Buckets, Subjects, orderKey, partitionOf } from '../../src/core/subjects.js';

const CONVERSATIONS = 200;
const PER_CONVERSATION = 50;
const TOTAL = CONVERSATIONS * PER_CONVERSATION;
const PARTITIONS = 32;

let nats: TestNats;
let nc: NatsConnection;
const running: GatewayProcess[] = [];

beforeAll(async () => {
  nats = await startNats();
  nc = await connect({ servers: nats.url });
});
afterEach(async () => {
  if (process.env.OWNERSHIP_DUMP) running.forEach((p, i) => writeFileSync(`${process.env.OWNERSHIP_DUMP}-${i}.log`, p.output()));
  await Promise.all(running.splice(0).map((p) => p.kill('SIGKILL')));
  // Each scenario on fresh streams and buckets.
  await nats.stop();
  await nc.close();
  nats = await startNats();
  nc = await connect({ servers: nats.url });
});
afterAll(async () => {
  await nc?.close();
  await nats?.stop();
});

function routerProcess(): GatewayProcess {
  const file = writeConfig({
    nats: { url: nats.url, leaseTtl: '10s' },
    http: { host: '127.0.0.1', port: 0 },
    log: { level: 'info' },
    router: { ackWait: '5s', concurrency: 128, partitions: PARTITIONS },
  });
  const p = spawnGateway(file);
  running.push(p);
  return p;
}

/** Publishes every conversation's messages in order (round by round, back to back); returns each conversation's ids in publish order. */
async function publishAll(channel: string, rounds: [number, number] = [0, PER_CONVERSATION], order = new Map<string, string[]>()): Promise<Map<string, string[]>> {
  const js = jetstream(nc, PATIENT);
  const acks: Promise<unknown>[] = [];
  for (let i = rounds[0]; i < rounds[1]; i++) {
    for (let c = 0; c < CONVERSATIONS; c++) {
      const e = chatMessage({ channel, account: 'load', chat: `conv-${c}`, id: `c${c}-m${i}` });
      const ids = order.get(e.conversation.id) ?? [];
      ids.push(e.id);
      order.set(e.conversation.id, ids);
      const subject = Subjects.inboundPartition(channel, 'load', partitionOf(orderKey(e), PARTITIONS));
      acks.push(js.publish(subject, JSON.stringify(e), { msgID: e.id }));
      if (acks.length >= 500) await Promise.all(acks.splice(0));
    }
  }
  await Promise.all(acks);
  return order;
}

async function until(cond: () => boolean, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`condition not met within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

async function logCount(): Promise<number> {
  const jsm = await jetstreamManager(nc, PATIENT);
  return (await jsm.streams.info('OMNI_LOG')).state.messages;
}

async function waitForLog(count: number, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while ((await logCount()) < count) {
    if (Date.now() > deadline) throw new Error(`only ${await logCount()}/${count} log entries within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 250));
  }
}

/** Every inbound log entry in stream order (a ticket's entries are in its log's order). */
async function assertInOrderOnce(order: Map<string, string[]>): Promise<void> {
  await waitForLog(TOTAL, 240_000);
  const entries = await readInboundLog(nc);
  const logged = new Map<string, string[]>();
  const tickets = new Map<string, Set<string>>();
  for (const e of entries) {
    logged.set(e.conversation, [...(logged.get(e.conversation) ?? []), e.eventId]);
    tickets.set(e.conversation, (tickets.get(e.conversation) ?? new Set()).add(e.ticketId));
  }
  const outOfOrder = [...order].filter(([conv, ids]) => JSON.stringify(logged.get(conv)) !== JSON.stringify(ids)).map(([conv]) => conv);
  expect(outOfOrder).toEqual([]);
  expect([...tickets.values()].filter((s) => s.size !== 1)).toEqual([]);
  // A message applied twice would count twice: every ticket's counter equals its log.
  const kv = await new Kvm(nc).open(Buckets.tickets);
  const counts: number[] = [];
  for (const set of tickets.values()) {
    const t = (await kv.get([...set][0]!))!.json<Ticket>();
    counts.push(t.messageCount);
  }
  expect(counts.filter((n) => n !== PER_CONVERSATION)).toEqual([]);
}

describe('ownership of conversations', () => {
  it('two replicas, then a third joining under load: every conversation in publish order, each message once', async () => {
    const a = routerProcess();
    const b = routerProcess();
    await Promise.all([a.started, b.started]);
    const half = PER_CONVERSATION / 2;
    const order = await publishAll('own', [0, half]);
    await waitForLog(TOTAL / 5, 240_000);
    const c = routerProcess();
    await c.started;
    // The rest goes out once the joiner owns partitions, while the first half is still routed.
    await until(() => /"msg":"owning partition"/.test(c.output()), 60_000);
    await publishAll('own', [half, PER_CONVERSATION], order);
    await assertInOrderOnce(order);
    // The joiner took its share: partitions moved to it while messages were flowing.
    expect(c.output()).toMatch(/"msg":"owning partition"/);
    expect(a.output() + b.output()).toMatch(/giving partitions back/);
    for (const p of [a, b, c]) expect(p.output().split('\n').filter((l) => /"level":"(error|fatal)"/.test(l))).toEqual([]);
  }, 400_000);

  it('three replicas, kill -9 of one mid-run: its partitions move, order holds, nothing lost or doubled', async () => {
    const procs = [routerProcess(), routerProcess(), routerProcess()];
    await Promise.all(procs.map((p) => p.started));
    const published = publishAll('kill');
    // Awaited below; marked handled now so a failure while the log is awaited is the test's failure, not an unhandled rejection.
    published.catch(() => undefined);
    await waitForLog(TOTAL / 4, 240_000);
    const victim = procs[1]!;
    const killedAt = new Date().toISOString();
    await victim.kill('SIGKILL');
    const order = await published;
    await assertInOrderOnce(order);
    // Its units (a third of them) were taken over by the survivors once its leases ran out.
    const takenOver = (procs[0]!.output() + procs[2]!.output())
      .split('\n')
      .filter((l) => l.includes('"msg":"owning') && (JSON.parse(l) as { time: string }).time > killedAt);
    expect(takenOver.length).toBeGreaterThanOrEqual(Math.floor((PARTITIONS + 1) / 3));
  }, 400_000);

  it('upgrade in place: the old unfiltered router consumer routes unpartitioned subjects and leaves partitioned ones to their partition', async () => {
    const first = routerProcess();
    await first.started;
    await first.kill('SIGTERM');
    // What a deployment from before partitioning has: one consumer on every inbound subject.
    const jsm = await jetstreamManager(nc, PATIENT);
    // Under load the first process may be stopped before its ownership loop created it.
    await jsm.consumers.delete('OMNI_IN', 'router').catch((err: unknown) => {
      if (!/consumer not found/i.test(String(err))) throw err;
    });
    await jsm.consumers.add('OMNI_IN', { durable_name: 'router', ack_policy: AckPolicy.Explicit, deliver_policy: DeliverPolicy.All, max_deliver: -1 });
    const js = jetstream(nc, PATIENT);
    const ids: string[] = [];
    for (let i = 0; i < 20; i++) {
      const old = chatMessage({ channel: 'upg', account: 'load', chat: 'legacy', id: `legacy-${i}` });
      const fresh = chatMessage({ channel: 'upg', account: 'load', chat: 'partitioned', id: `part-${i}` });
      ids.push(old.id, fresh.id);
      await js.publish('omni.in.upg.load', JSON.stringify(old), { msgID: old.id });
      await js.publish(Subjects.inboundPartition('upg', 'load', partitionOf(orderKey(fresh), PARTITIONS)), JSON.stringify(fresh), { msgID: fresh.id });
    }
    const second = routerProcess();
    await second.started;
    await waitForLog(40, 120_000);
    const entries = await readInboundLog(nc);
    expect(entries.filter((e) => e.conversation === 'legacy').map((e) => e.eventId)).toEqual(ids.filter((id) => id.includes('legacy')));
    expect(entries.filter((e) => e.conversation === 'partitioned').map((e) => e.eventId)).toEqual(ids.filter((id) => id.includes('part-')));
    const kv = await new Kvm(nc).open(Buckets.tickets);
    for (const conv of ['legacy', 'partitioned']) {
      const ticketId = entries.find((e) => e.conversation === conv)!.ticketId;
      expect((await kv.get(ticketId))!.json<Ticket>().messageCount).toBe(20);
    }
  }, 300_000);
});
