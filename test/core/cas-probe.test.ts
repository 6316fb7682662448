/**
 * The compare-and-set probe against a real three-node cluster (nats-server from
 * OMNIGATE_TEST_NATS_SERVER or PATH; Debian's 2.9.10 here). It records what each primitive does
 * on this binary, and asserts what must hold on every version: create-only keys and stream
 * sequences never hand out a win twice; on a server older than 2.9.21, kv.update does (the bug
 * the start-up self-check refuses).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { jetstream, jetstreamManager } from '@nats-io/jetstream';
import { FIRST_SAFE_SERVER, probeCas, versionAtLeast, type CasPrimitive } from '../../src/core/cas-probe.js';
import { startCluster, type TestCluster } from '../helpers/nats-cluster.js';
import { Bus, isCasConflict } from '../../src/core/bus.js';
import { UnsafeServerError } from '../../src/core/bus-provision.js';
import { pino } from 'pino';

let cluster: TestCluster;
let conns: NatsConnection[];

beforeAll(async () => {
  cluster = await startCluster(3);
  conns = await Promise.all(cluster.nodes.map((n) => connect({ servers: n.url })));
}, 90_000);

afterAll(async () => {
  await Promise.all((conns ?? []).map((c) => c.close()));
  await cluster?.stop();
});

async function run(primitive: CasPrimitive, replicas: number, rounds: number) {
  const r = await probeCas({
    primitive,
    clients: conns.map((c) => jetstream(c, { timeout: 30_000 })),
    jsm: await jetstreamManager(conns[0]!, { timeout: 30_000 }),
    replicas,
    writers: 3,
    rounds,
    scratch: `probe_${primitive.replace(/-/g, '_')}_r${replicas}`,
  });
  console.log(`cas-probe ${conns[0]!.info?.version} R${replicas} ${primitive}: ${r.violations}/${r.rounds} rounds with >1 winner (max ${r.maxWinners}), ${r.noWinner} with none, ${r.unanswered} attempts unanswered, ${r.ms} ms`);
  // A loaded machine may leave some attempts unanswered (not wins); a probe where nothing was
  // decided would prove nothing, so most rounds must have had a winner.
  expect(r.noWinner, 'rounds without a winner').toBeLessThan(rounds / 2);
  return r;
}

describe('compare-and-set on a three-node cluster', () => {
  it('kv.update: more than one winner before 2.9.21, exactly one after', async () => {
    const r = await run('kv-update', 3, 100);
    if (versionAtLeast(conns[0]!.info!.version, FIRST_SAFE_SERVER)) expect(r.violations).toBe(0);
    else expect(r.violations).toBeGreaterThan(0);
  }, 120_000);

  it('kv.create never has two winners', async () => {
    expect((await run('kv-create', 3, 100)).violations).toBe(0);
  }, 120_000);

  it('stream sequences are never handed out twice', async () => {
    expect((await run('stream-seq', 3, 100)).violations).toBe(0);
  }, 120_000);

  it('whole-stream expected-last-sequence: measured', async () => {
    await run('stream-expected-last-seq', 3, 100);
  }, 120_000);

  it('R1: kv.update has one winner', async () => {
    expect((await run('kv-update', 1, 100)).violations).toBe(0);
  }, 120_000);
});

describe('start-up self-check on a three-node cluster', () => {
  const options = (unsafeCas: 'guard' | 'refuse') => ({
    url: cluster.urls, replicas: 3, duplicateWindowMs: 120_000, retentionMs: 86_400_000, dedupTtlMs: 86_400_000, leaseTtlMs: 3000, unsafeCas,
  });
  const quiet = pino({ level: 'silent' });

  it('refuses to start on a server whose compare-and-set lets two writers win, naming the version and the fix', async () => {
    const bus = await Bus.connect(options('refuse'), quiet);
    try {
      if (versionAtLeast(bus.serverVersion, FIRST_SAFE_SERVER)) {
        await bus.provision();
        expect(bus.casCheck?.guarded).toBe(false);
        return;
      }
      const err = await bus.provision().then(() => null, (e: unknown) => e);
      expect(err).toBeInstanceOf(UnsafeServerError);
      expect(String(err)).toContain(`nats-server ${bus.serverVersion}`);
      expect(String(err)).toContain(`Upgrade nats-server to ${FIRST_SAFE_SERVER}`);
    } finally {
      await bus.close();
    }
  }, 120_000);

  it('in guard mode, N writers racing the hot-path update from one revision: exactly one wins every round', async () => {
    const buses = await Promise.all(cluster.nodes.map((n) => Bus.connect({ ...options('guard'), url: n.url }, quiet)));
    try {
      for (const b of buses) await b.provision();
      const unsafe = !versionAtLeast(buses[0]!.serverVersion, FIRST_SAFE_SERVER);
      expect(buses[0]!.casCheck?.guarded).toBe(unsafe);
      let violations = 0;
      for (let r = 0; r < 60; r++) {
        const key = `race-${r}`;
        const rev = await buses[0]!.hotKv.meta.create(key, 'start');
        const settled = await Promise.allSettled(buses.flatMap((b, i) => [0, 1].map((j) => b.hotKv.meta.update(key, `w${i}.${j}`, rev))));
        for (const s of settled) if (s.status === 'rejected' && !isCasConflict(s.reason)) throw s.reason;
        if (settled.filter((s) => s.status === 'fulfilled').length !== 1) violations++;
      }
      console.log(`guarded update on ${buses[0]!.serverVersion} R3: ${violations}/60 rounds without exactly one winner`);
      expect(violations).toBe(0);
      // The same guard outside the hot path: command claims and the auto-acknowledgement window
      // (omni_dedup), connector state (omni_state).
      let coldViolations = 0;
      for (let r = 0; r < 30; r++) {
        const bucket = r % 2 ? ('dedup' as const) : ('state' as const);
        const key = `cold-race-${r}`;
        const rev = await buses[0]!.kv[bucket].create(key, 'start');
        const settled = await Promise.allSettled(buses.flatMap((b, i) => [0, 1].map((j) => b.guardedUpdate(bucket, key, `w${i}.${j}`, rev))));
        for (const s of settled) if (s.status === 'rejected' && !isCasConflict(s.reason)) throw s.reason;
        if (settled.filter((s) => s.status === 'fulfilled').length !== 1) coldViolations++;
      }
      console.log(`guardedUpdate on omni_dedup/omni_state, ${buses[0]!.serverVersion} R3: ${coldViolations}/30 rounds without exactly one winner`);
      expect(coldViolations).toBe(0);
    } finally {
      await Promise.all(buses.map((b) => b.close()));
    }
  }, 180_000);
});
