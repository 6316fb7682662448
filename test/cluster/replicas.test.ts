/**
 * `nats.replicas: 3` reaches every stream, KV bucket and the object store, also for a deployment
 * that ran R1 before: provisioning scales the existing streams up in place (the data stays), and
 * where the server cannot (a single nats-server), the start stops naming the stream and the fix.
 * The harness itself is exercised too: the leader of a stream is found, killed with SIGKILL, and
 * the node restarted on its ports and store directory catches up.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { pino } from 'pino';
import { Bus } from '../../src/core/bus.js';
import { startCluster, whileElecting, type TestCluster } from '../helpers/nats-cluster.js';
import { startNats, type TestNats } from '../helpers/nats-server.js';

let cluster: TestCluster;
let single: TestNats | undefined;
const buses: Bus[] = [];
const quiet = pino({ level: 'silent' });
const options = (url: string, replicas: number) => ({
  url, replicas, duplicateWindowMs: 120_000, retentionMs: 86_400_000, dedupTtlMs: 86_400_000, leaseTtlMs: 3000, unsafeCas: 'guard' as const,
});

async function bus(url: string, replicas: number): Promise<Bus> {
  const b = await Bus.connect(options(url, replicas), quiet);
  buses.push(b);
  return b;
}

beforeAll(async () => {
  cluster = await startCluster(3);
}, 90_000);

afterAll(async () => {
  await Promise.all(buses.map((b) => b.close()));
  await cluster?.stop();
  await single?.stop();
});

async function replicaCounts(b: Bus): Promise<Record<string, number>> {
  const counts: Record<string, number> = {};
  // names + info, not list: a cluster's list answer may leave out streams whose leader is busy.
  for await (const name of b.jsm.streams.names()) {
    if (!name.includes('omni_probe')) counts[name] = (await b.jsm.streams.info(name)).config.num_replicas;
  }
  return counts;
}

describe('replicas on a three-node cluster', () => {
  it('an R1 deployment provisioned again with replicas 3: every stream, bucket and the object store become R3, data kept', async () => {
    const r1 = await bus(cluster.urls, 1);
    await r1.provision();
    await r1.kv.tickets.put('T-keep', '{"kept":true}');
    await r1.publishJson('omni.in.webhook.keep', { hello: 'world' }, 'keep-1');
    expect(Object.values(await replicaCounts(r1)).every((n) => n === 1)).toBe(true);

    const r3 = await bus(cluster.urls, 3);
    await r3.provision();
    const counts = await replicaCounts(r3);
    expect(Object.keys(counts).length).toBeGreaterThanOrEqual(14);
    expect(Object.entries(counts).filter(([, n]) => n !== 3)).toEqual([]);
    expect(Object.keys(counts)).toEqual(expect.arrayContaining(['OMNI_IN', 'OMNI_LOG', 'KV_omni_tickets', 'KV_omni_leases', 'OBJ_omni_media']));
    expect((await r3.kv.tickets.get('T-keep'))?.string()).toBe('{"kept":true}');
    expect((await r3.jsm.streams.info('OMNI_IN')).state.messages).toBe(1);
    await cluster.waitHealthy(['OMNI_IN', 'KV_omni_tickets']);
  }, 120_000);

  // Its own cluster, provisioned R3 from the start: on nats-server 2.11.10 a node killed with
  // SIGKILL after streams were moved from R1 to R3 (the test above) came back without contact to
  // the meta leader for 30 s, then deleted its copies as orphaned (docs/operating.md).
  it('harness: the leader of OMNI_IN killed with SIGKILL, another node leads, the old one rejoins and catches up', async () => {
    const own = await startCluster(3);
    const mine: Bus[] = [];
    try {
      const r3 = await Bus.connect(options(own.urls, 3), quiet);
      mine.push(r3);
      await r3.provision();
      await r3.publishJson('omni.in.webhook.keep', { hello: 'world' }, 'keep-1');
      await own.waitHealthy(['OMNI_IN']);
      const before = await own.streamLeader('OMNI_IN');
      await own.kill(before, 'SIGKILL');
      const after = await own.streamLeader('OMNI_IN', 60_000);
      expect(after).not.toBe(before);
      // A stream leader may be elected before the meta leader (the killed node may have been
      // both): requests time out meanwhile, so each idempotent step retries (CI saw one time out).
      const b = await whileElecting(() => Bus.connect(options(own.nodes[after]!.url, 3), quiet));
      mine.push(b);
      await whileElecting(() => b.publishJson('omni.in.webhook.keep', { while: 'down' }, 'keep-2'));
      await own.restart(before);
      await own.waitHealthy(['OMNI_IN'], 90_000);
      expect((await whileElecting(() => b.jsm.streams.info('OMNI_IN'))).state.messages).toBe(2);
    } finally {
      await Promise.all(mine.map((b) => b.close()));
      await own.stop();
    }
  }, 180_000);

  it('a single nats-server cannot hold R3: the start stops naming the server, the count and the way out', async () => {
    single = await startNats();
    await (await bus(single.url, 1)).provision();
    const err = await (await bus(single.url, 3)).provision().then(() => undefined, (e: unknown) => e as Error);
    expect(err?.message).toMatch(/nats\.replicas is 3 but nats-server 2\.\d+\.\d+ \(.*\) is not part of a cluster/);
    expect(err?.message).toMatch(/at least 3 JetStream nodes, or set nats\.replicas: 1/);
    const r1 = await bus(single.url, 1);
    await r1.provision();
    expect((await r1.jsm.streams.info('OMNI_IN')).config.num_replicas).toBe(1);
  }, 60_000);

  it('fewer nodes than replicas: the start stops naming the stream', async () => {
    const r5 = await bus(cluster.urls, 5);
    const err = await r5.provision().then(() => undefined, (e: unknown) => e as Error);
    expect(err?.message).toMatch(/stream OMNI_IN has 3 replica\(s\) but nats\.replicas is 5, and nats-server refused to change it \(.+\)/);
    expect(err?.message).toMatch(/at least 5 JetStream nodes, or set nats\.replicas: 3/);
  }, 60_000);
});
