/**
 * tsx bench/identity-ab.ts OLD_DIST_CLI — ticket identity schemes A/B in one run, one server.
 *
 * A = the build given (e.g. the commit before issue 20: ticket numbers from a batched
 * compare-and-set counter, conversation binding re-pointed by compare-and-set); B = this build
 * (numbers from the OMNI_TICKET_NO stream sequence, bindings create-only per epoch). Each round
 * starts a fresh nats-server and one router process, publishes BENCH_EVENTS events over
 * BENCH_CONVERSATIONS conversations (default: half the events open a ticket, so allocation
 * weighs as much as it can), and measures routed/s = events / (first publish → consumer
 * drained). Rounds alternate A, B, A, B so the machine's drift hits both.
 */
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { connect } from '@nats-io/transport-node';
import { jetstream, jetstreamManager } from '@nats-io/jetstream';
import { startNats } from '../test/helpers/nats-server.js';
import { writeConfig } from '../test/helpers/process.js';
import { removeTestTempDirs } from '../test/helpers/temp-dirs.js';
import { chatMessage } from '../test/helpers/events.js';

const EVENTS = Number(process.env.BENCH_EVENTS ?? 10_000);
const CONVERSATIONS = Number(process.env.BENCH_CONVERSATIONS ?? 5_000);
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 2);
const oldCli = process.argv[2];
if (!oldCli) throw new Error('usage: tsx bench/identity-ab.ts <old dist/cli.js>');
const newCli = join(new URL('..', import.meta.url).pathname, 'dist/cli.js');

async function round(cli: string): Promise<number> {
  const nats = await startNats();
  const config = writeConfig({ nats: { url: nats.url }, http: { host: '127.0.0.1', port: 0 }, log: { level: 'warn' }, router: { concurrency: 256 } });
  const child = spawn(process.execPath, [cli, 'start', '--config', config], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  child.stdout.on('data', (d: Buffer) => (out += d));
  child.stderr.on('data', (d: Buffer) => (out += d));
  const nc = await connect({ servers: nats.url });
  try {
    const jsm = await jetstreamManager(nc);
    const deadline = Date.now() + 60_000;
    while (!(await jsm.consumers.info('OMNI_IN', 'router').then(() => true, () => false))) {
      if (Date.now() > deadline || child.exitCode !== null) throw new Error(`router did not start: ${out.slice(-2000)}`);
      await new Promise((r) => setTimeout(r, 100));
    }
    const js = jetstream(nc);
    const events = Array.from({ length: EVENTS }, (_, i) => chatMessage({ channel: 'bench', account: 'ab', chat: `c${i % CONVERSATIONS}` }));
    const start = performance.now();
    let inflight: Promise<unknown>[] = [];
    for (const e of events) {
      inflight.push(js.publish('omni.in.bench.ab', JSON.stringify(e), { msgID: e.id }));
      if (inflight.length >= 1000) {
        await Promise.all(inflight);
        inflight = [];
      }
    }
    await Promise.all(inflight);
    for (;;) {
      const info = await jsm.consumers.info('OMNI_IN', 'router');
      if (info.num_pending === 0 && info.num_ack_pending === 0) break;
      await new Promise((r) => setTimeout(r, 50));
    }
    return EVENTS / ((performance.now() - start) / 1000);
  } finally {
    child.kill('SIGKILL');
    await nc.close();
    await nats.stop();
  }
}

const results: Record<'A' | 'B', number[]> = { A: [], B: [] };
for (let r = 0; r < ROUNDS; r++) {
  for (const [name, cli] of [['A', oldCli], ['B', newCli]] as const) {
    const rate = await round(cli);
    results[name].push(Math.round(rate));
    process.stdout.write(`round ${r + 1} ${name}: ${Math.round(rate)} events/s\n`);
  }
}
process.stdout.write(`${JSON.stringify({ events: EVENTS, conversations: CONVERSATIONS, A: results.A, B: results.B })}\n`);
removeTestTempDirs();
