/**
 * The lane consumer against a real nats-server whose delivery count goes back, as it does after a
 * nats-server kill -9 (consumer state is flushed at most ten times a second, so the restarted
 * server may remember less than it sent) or a new consumer leader that is behind.
 *
 * Staged without a kill, so it happens every time: while the consumer has no pull open (held off
 * through its `stale` option), the durable is recreated behind its back and another client takes
 * one message from it and never answers. That message is what a
 * restarted server still counts as pending after the copy it sent was lost in flight; it comes
 * back only after ack_wait. The owner must be told at the first delivery that shows the count went
 * back (it rewinds to the ack floor), and the message behind the lost one must not be handled.
 * Before, that message was handled and the lost one came back after it: the inversion of the fault
 * run (test/core/fault-run.test.ts) on a loaded CI machine.
 */
import { AckPolicy, DeliverPolicy } from '@nats-io/jetstream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Bus } from '../../src/core/bus.js';
import { LaneConsumer } from '../../src/core/lane-consumer.js';
import { createLogger } from '../../src/core/logger.js';
import { startNats, type TestNats } from '../helpers/nats-server.js';

const STREAM = 'LANE_REGRESSION';
const DURABLE = 'lanes';
let nats: TestNats;
let bus: Bus;

beforeAll(async () => {
  nats = await startNats();
  bus = await Bus.connect({ url: nats.url, replicas: 1, duplicateWindowMs: 120_000, retentionMs: 86_400_000, dedupTtlMs: 86_400_000, leaseTtlMs: 5_000 }, createLogger({ level: 'silent' }));
  await bus.jsm.streams.add({ name: STREAM, subjects: ['lr.>'] });
});
afterAll(async () => {
  await bus?.close();
  await nats?.stop();
});

async function until(pred: () => boolean, what: string, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!pred()) {
    if (Date.now() > deadline) throw new Error(`not in time: ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

describe('lane consumer: a delivery count that goes back', () => {
  it('is reported as a possible loss before anything behind it is handled', async () => {
    const handled: string[] = [];
    let releaseB!: () => void;
    const gateB = new Promise<void>((r) => (releaseB = r));
    let cut = '';
    let pause = false;
    const config = { durable_name: DURABLE, ack_policy: AckPolicy.Explicit, ack_wait: 60_000_000_000, max_ack_pending: 100 };
    const consumer = new LaneConsumer<{ key: string; body: string }>(bus, {
      stream: STREAM,
      config,
      concurrency: 4,
      decode: (m) => ({ key: m.subject.split('.')[1]!, body: m.string() }),
      laneOf: (w) => w.key,
      handle: async (m, w) => {
        if (w.key === 'b') await gateB; // ticket b's receiver is slow: its events stay held
        handled.push(w.body);
        m.ack();
      },
      onError: (m) => m.nak(),
      onPullCutOff: (why) => (cut = why),
      stale: () => pause,
    });
    await consumer.start();
    try {
      await bus.js.publish('lr.a', 'a1');
      await bus.js.publish('lr.b', 'b1');
      await bus.js.publish('lr.b', 'b2');
      await until(() => handled.includes('a1') && consumer.holding === 2, 'a1 handled, b1 and b2 held');

      // No pull open (the one in flight ends within its 1 s expiry); then the server forgets: the
      // durable starts again, and a2's copy goes astray (pending on the server, never answered).
      pause = true;
      await new Promise((r) => setTimeout(r, 1_500));
      await bus.jsm.consumers.delete(STREAM, DURABLE);
      const a2 = await bus.js.publish('lr.a', 'a2');
      await bus.js.publish('lr.a', 'a3');
      await bus.jsm.consumers.add(STREAM, { ...config, deliver_policy: DeliverPolicy.StartSequence, opt_start_seq: a2.seq });
      const astray = await (await bus.js.consumers.get(STREAM, DURABLE)).next({ expires: 5_000 });
      expect(astray?.string()).toBe('a2');
      pause = false;

      await until(() => cut !== '', 'the owner told of a possible loss');
      expect(cut).toMatch(/delivery count went back/);
      expect(handled).not.toContain('a3'); // what showed it is left for the rewind, not handled
    } finally {
      pause = false;
      releaseB();
      await consumer.stop();
    }
  });

  it('is not set off by redeliveries: a nak and a message past ack_wait come back under new, higher numbers', async () => {
    await bus.jsm.streams.purge(STREAM);
    const handled: string[] = [];
    const attempts = new Map<string, number>();
    let cut = '';
    const config = { durable_name: 'redeliveries', ack_policy: AckPolicy.Explicit, ack_wait: 1_000_000_000, max_ack_pending: 100 };
    const consumer = new LaneConsumer<{ body: string }>(bus, {
      stream: STREAM,
      config,
      concurrency: 4,
      decode: (m) => ({ body: m.string() }),
      laneOf: (w) => w.body,
      handle: async (m, w) => {
        const n = (attempts.get(w.body) ?? 0) + 1;
        attempts.set(w.body, n);
        if (w.body === 'nak' && n === 1) throw new Error('fails once: nak'); // onError naks it
        if (w.body === 'late' && n === 1) return; // left unsettled: redelivered after ack_wait
        handled.push(w.body);
        m.ack();
      },
      onError: (m) => m.nak(),
      onPullCutOff: (why) => (cut = why),
    });
    await consumer.start();
    try {
      await bus.js.publish('lr.x', 'nak');
      await bus.js.publish('lr.y', 'late');
      await until(() => handled.includes('nak') && handled.includes('late'), 'both handled on their second delivery');
      expect(cut).toBe('');
    } finally {
      await consumer.stop();
    }
  });
});
