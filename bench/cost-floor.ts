/**
 * The floor under router CPU per event, measured without the router: a durable pull consumer
 * that takes each of the bench's inbound events, parses it, makes k pipelined JetStream
 * publishes for it (JsPipeline, as the router's writes are) and acks it. Client CPU per message
 * for k = 0…4 gives the cost model the router sits on: what consuming and acking alone cost in
 * nats.js, and what each write adds (BENCHMARKS.md, "What one write costs").
 *
 * `tsx bench/cost-floor.ts [messages]` — a throwaway nats-server of its own; prints µs per message.
 */
import { connect } from '@nats-io/transport-node';
import { AckPolicy, jetstream, jetstreamManager } from '@nats-io/jetstream';
import { JsPipeline } from '../src/core/js-pipeline.js';
import { startNats } from '../test/helpers/nats-server.js';
import { makeEvents } from './routing.js';

const messages = Number(process.argv[2] ?? 20_000);
const IN_FLIGHT = 512;
const server = await startNats();
const nc = await connect({ servers: server.url, noAsyncTraces: true });
try {
  const jsm = await jetstreamManager(nc);
  await jsm.streams.add({ name: 'FLOOR_IN', subjects: ['floor.in.>'] });
  await jsm.streams.add({ name: 'FLOOR_OUT', subjects: ['floor.out.>'], duplicate_window: 120_000_000_000 });
  const js = jetstream(nc);
  const events = makeEvents(messages, messages / 5, 'f');
  const pending: Array<Promise<unknown>> = [];
  for (const e of events) {
    pending.push(js.publish(e.subject.replace(/^omni\.in\./, 'floor.in.'), e.payload));
    if (pending.length >= 1024) await Promise.all(pending.splice(0));
  }
  await Promise.all(pending);
  const pipe = new JsPipeline(nc, 30_000);
  process.stdout.write(`client CPU per consumed message (${messages} messages, ${IN_FLIGHT} in flight; nats-server in its own process):\n`);
  for (let k = 0; k <= 4; k++) {
    const durable = `floor-${k}`;
    await jsm.consumers.add('FLOOR_IN', { durable_name: durable, ack_policy: AckPolicy.Explicit, max_ack_pending: 10_000 });
    const consumer = await js.consumers.get('FLOOR_IN', durable);
    const iter = await consumer.consume({ max_messages: IN_FLIGHT });
    const before = process.cpuUsage();
    const started = performance.now();
    let done = 0;
    let inFlight = 0;
    let wake: (() => void) | undefined;
    const finished = new Promise<void>((resolve) => {
      wake = resolve;
    });
    for await (const m of iter) {
      const e = JSON.parse(m.string()) as { id: string };
      inFlight++;
      const writes: Array<Promise<unknown>> = [];
      for (let w = 0; w < k; w++) writes.push(pipe.publish(`floor.out.${w}`, m.data, { msgID: `${e.id}:${w}` }));
      Promise.all(writes).then(
        () => {
          m.ack();
          inFlight--;
          if (++done === messages) wake!();
        },
        (err: unknown) => {
          process.stderr.write(`write failed: ${String(err)}\n`);
          process.exit(1);
        },
      );
      if (done + inFlight >= messages) break;
    }
    await finished;
    const cpu = process.cpuUsage(before);
    const seconds = (performance.now() - started) / 1000;
    await iter.close();
    process.stdout.write(`  ${k} writes: ${((cpu.user + cpu.system) / messages).toFixed(1).padStart(6)} µs  (${Math.round(messages / seconds)} msgs/s)\n`);
  }
  pipe.close();
} finally {
  await nc.close();
  await server.stop();
}
