/**
 * The floor under the latency aim (p99 at 2,000 events/s), measured without the router: the
 * bench's inbound events published at a steady rate into a stream of a throwaway nats-server, and
 * one process consuming them that, per message, waits for k sequential JetStream round trips
 * (the router's ticket read-modify-write, its pipelined log and event burst, its marker) before it
 * acks and announces it. Publish → announced p50/p99 for k = 0…3.
 *
 * `tsx bench/latency-floor.ts [rate] [seconds]`
 */
import { connect } from '@nats-io/transport-node';
import { AckPolicy, jetstream, jetstreamManager } from '@nats-io/jetstream';
import { JsPipeline } from '../src/core/js-pipeline.js';
import { startNats } from '../test/helpers/nats-server.js';
import { makeEvents } from './routing.js';
import { percentile } from './types.js';

const rate = Number(process.argv[2] ?? 2_000);
const seconds = Number(process.argv[3] ?? 5);
const server = await startNats();
const nc = await connect({ servers: server.url, noAsyncTraces: true });
const sub = await connect({ servers: server.url, noAsyncTraces: true });
try {
  const jsm = await jetstreamManager(nc);
  await jsm.streams.add({ name: 'FLOOR_IN', subjects: ['floor.in.>'] });
  await jsm.streams.add({ name: 'FLOOR_OUT', subjects: ['floor.out.>'], duplicate_window: 120_000_000_000 });
  const js = jetstream(nc);
  const pipe = new JsPipeline(sub, 30_000);
  // Nothing floats: a publish or a consumer's round trip that fails ends the run with its error
  // (through the clean-up below) instead of crashing past it with the nats-server left running.
  let failed: unknown;
  const fail = (err: unknown) => {
    failed ??= err;
  };
  for (let k = 0; k <= 3; k++) {
    const durable = `floor-${k}`;
    await jsm.consumers.add('FLOOR_IN', { durable_name: durable, ack_policy: AckPolicy.Explicit, max_ack_pending: 10_000, filter_subject: `floor.in.${k}.>` });
    const consumer = await jetstream(sub).consumers.get('FLOOR_IN', durable);
    const done = new Map<string, number>();
    const messages = await consumer.consume({
      max_messages: 512,
      callback: (m) => {
        const id = m.headers?.get('Nats-Msg-Id') ?? String(m.seq);
        (async () => {
          for (let i = 0; i < k; i++) await pipe.publish(`floor.out.${i}`, m.data, { msgID: `${id}:${i}` });
          m.ack();
          done.set(id, performance.now());
        })().catch(fail);
      },
    });
    const events = makeEvents(rate * seconds, rate * seconds / 5, `l${k}`);
    const sent = new Map<string, number>();
    const start = performance.now();
    let i = 0;
    const published: Array<Promise<unknown>> = [];
    while (i < events.length && failed === undefined) {
      const due = Math.min(events.length, Math.floor(((performance.now() - start) / 1000) * rate) + Math.round(rate / 100));
      for (; i < due; i++) {
        const e = events[i]!;
        sent.set(e.id, performance.now());
        published.push(js.publish(`floor.in.${k}.${i % 32}`, e.payload, { msgID: e.id }).catch(fail));
      }
      await new Promise((r) => setTimeout(r, 10));
    }
    await Promise.all(published);
    while (done.size < events.length && failed === undefined) await new Promise((r) => setTimeout(r, 50));
    if (failed !== undefined) throw failed;
    messages.stop();
    const lat = [...sent].map(([id, t]) => done.get(id)! - t).sort((a, b) => a - b);
    process.stdout.write(`k=${k} sequential round trips: p50 ${percentile(lat, 50).toFixed(1)} ms, p99 ${percentile(lat, 99).toFixed(1)} ms, max ${lat[lat.length - 1]!.toFixed(1)} ms\n`);
  }
} finally {
  await sub.close();
  await nc.close();
  await server.stop();
}
