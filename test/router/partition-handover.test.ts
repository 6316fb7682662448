/**
 * The ownership coordinator against a real nats-server, without a router: a unit whose consumer
 * is slow to settle on hand-back must not hold up the replica's other claims (issue 17: a
 * survivor that never claimed its share of a dead replica's units), and is not claimed again
 * here before its consumer has stopped.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Bus } from '../../src/core/bus.js';
import { createLogger } from '../../src/core/logger.js';
import { Supervisor, type LoopRun } from '../../src/core/supervisor.js';
import { PartitionOwnership, type UnitConsumer } from '../../src/router/partitions.js';
import { startNats, type TestNats } from '../helpers/nats-server.js';

// Long enough that a loaded machine's event-loop stalls do not cost leases mid-test.
const TTL = 4_000;
const PARTITIONS = 3;
let nats: TestNats;
const log = createLogger({ level: 'silent' });

beforeAll(async () => {
  nats = await startNats();
});
afterAll(async () => nats?.stop());

async function until(pred: () => boolean, what: string, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!pred()) {
    if (Date.now() > deadline) throw new Error(`not in time: ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** One replica's coordinator; each consumer waits for its stop, then for `drained(unit)`. */
async function replica(drained: (unit: number) => Promise<void>) {
  const bus = await Bus.connect({ url: nats.url, replicas: 1, duplicateWindowMs: 120_000, retentionMs: 86_400_000, dedupTtlMs: 86_400_000, leaseTtlMs: TTL, partitions: PARTITIONS }, log);
  await bus.provision();
  const supervisor = new Supervisor(log);
  const ownership = new PartitionOwnership(bus, log, supervisor, {
    partitions: PARTITIONS,
    ttlMs: TTL,
    consumer: { ack_wait: 30_000_000_000, max_ack_pending: 16, max_deliver: -1 },
    async consume(run: LoopRun, c: UnitConsumer) {
      await new Promise<void>((r) => (run.signal.aborted ? r() : run.signal.addEventListener('abort', () => r(), { once: true })));
      await drained(c.unit);
    },
  });
  const coordinator = supervisor.run('router.partitions', (r) => ownership.run(r), { essential: true });
  return {
    ownership,
    async stop() {
      await coordinator.stop();
      await supervisor.stop();
      await bus.close();
    },
  };
}

describe('partition hand-over', () => {
  it('a slow hand-back does not stop the replica from claiming free units, and that unit is not retaken while its consumer settles', async () => {
    // A's first unit to be given back settles only when the gate opens; every other at once.
    let openGate!: () => void;
    const gate = new Promise<void>((r) => (openGate = r));
    let slow: number | undefined;
    const a = await replica((unit) => {
      if (slow !== undefined && slow !== unit) return Promise.resolve();
      slow = unit;
      return gate;
    });
    await until(() => a.ownership.owned().length === PARTITIONS + 1, 'A owns every unit');

    // B joins: A gives two units back; one is released at once and B claims it, the other settles slowly.
    const b = await replica(() => Promise.resolve());
    await until(() => a.ownership.owned().length === 2 && b.ownership.owned().length === 1, 'A gave two units back, B claimed the one released');
    expect(slow).toBeDefined();
    expect(a.ownership.owned()).not.toContain(slow);

    // B leaves and releases its unit. A's share is every unit again: it claims B's unit while its
    // slow hand-back is still settling (the coordinator used to wait for it and claim nothing)...
    const bUnit = b.ownership.owned()[0]!;
    await b.stop();
    await until(() => a.ownership.owned().includes(bUnit), 'A claims the unit B released');
    // ...and does not take back the unit whose consumer has not stopped yet.
    await new Promise((r) => setTimeout(r, TTL * 2));
    expect(a.ownership.owned()).toContain(bUnit);
    expect(a.ownership.owned()).not.toContain(slow);

    openGate();
    await until(() => a.ownership.owned().length === PARTITIONS + 1, 'A takes the settled unit again');
    await a.stop();
  }, 90_000);

  it('claims no unit once the stop has begun, though a peer frees its units meanwhile', async () => {
    const a = await replica(() => Promise.resolve());
    await until(() => a.ownership.owned().length === PARTITIONS + 1, 'A owns every unit');
    const b = await replica(() => Promise.resolve());
    await until(() => a.ownership.owned().length === 2 && b.ownership.owned().length === 2, 'A and B share the units');
    const ours = a.ownership.owned();
    // A's stop begins (the gateway drains its intake before the router stops); B stops at once
    // and releases its units. A's share is every unit again, and it used to claim B's 10–670 ms
    // into its own stop, only to give them back when its router stopped.
    (a.ownership as { stopClaiming?: () => void }).stopClaiming?.();
    await b.stop();
    // A round every TTL / 6: several rounds, each of which would have claimed them.
    await new Promise((r) => setTimeout(r, TTL));
    expect(a.ownership.owned()).toEqual(ours);
    await a.stop();
  }, 90_000);
});
