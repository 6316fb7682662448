/**
 * npm run bench -- --soak <duration> — memory over time. One gateway process (`node dist/cli.js
 * start`, router + webhook channel + one outgoing webhook), fed 200 messages/s (BENCH_SOAK_RATE)
 * through POST /connectors/webhook/<account>/messages across 2,000 conversations, every ticket
 * event POSTed to a local receiver. The gateway runs with --expose-gc and a bench-only preload
 * (bench/gc-probe.cjs) that, on SIGUSR2, collects garbage and prints its memory: RSS and heap are
 * sampled after GC, so what is reported is what is still held, not what is merely uncollected.
 * The read model's PGlite worker thread has a heap of its own, outside `heapUsed`: reported beside
 * it (its committed size, not collected first), where the gateway's Node can tell it (>= 22.16).
 */
import { createServer, type Server } from 'node:http';
import { createServer as createNetServer } from 'node:net';
import { writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startNats } from '../test/helpers/nats-server.js';
import { spawnGateway, writeConfig, type GatewayProcess } from '../test/helpers/process.js';
import { gatewayNode } from './gateway-node.js';

const SECRET = 'soak-site-secret-0123456789';
const HOOK_SECRET = 'soak-hook-secret-0123456789';
const RATE = Number(process.env.BENCH_SOAK_RATE ?? 200);
const CONVERSATIONS = Number(process.env.BENCH_SOAK_CONVERSATIONS ?? 2_000);
const SAMPLES = Number(process.env.BENCH_SOAK_SAMPLES ?? 9);
/**
 * Requests in flight at most: a client that keeps firing at a gateway that cannot keep up measures
 * its own socket pile-up, not the gateway. Behind schedule, messages go out late (reported).
 */
const MAX_INFLIGHT = Number(process.env.BENCH_SOAK_INFLIGHT ?? 64);

export interface MemorySample {
  atS: number;
  accepted: number;
  delivered: number;
  rssMb: number;
  heapUsedMb: number;
  /** The main thread's committed heap; and the worker threads' (the read model's PGlite), when known. */
  heapTotalMb: number;
  workerHeapTotalMb?: number;
  externalMb: number;
}

interface ProbeAnswer {
  rss: number;
  heapUsed: number;
  heapTotal: number;
  external: number;
  workerHeapTotal?: number;
}

const MB = 1048576;

function sampleOf(atS: number, accepted: number, delivered: number, m: ProbeAnswer): MemorySample {
  return {
    atS, accepted, delivered, rssMb: m.rss / MB, heapUsedMb: m.heapUsed / MB, heapTotalMb: m.heapTotal / MB,
    ...(m.workerHeapTotal !== undefined ? { workerHeapTotalMb: m.workerHeapTotal / MB } : {}), externalMb: m.external / MB,
  };
}

const describeMemory = (s: MemorySample) =>
  `RSS ${s.rssMb.toFixed(1)} MB  heap ${s.heapUsedMb.toFixed(1)} MB (of ${s.heapTotalMb.toFixed(1)})  external ${s.externalMb.toFixed(1)} MB (after GC)` +
  (s.workerHeapTotalMb !== undefined ? `  worker heaps ${s.workerHeapTotalMb.toFixed(1)} MB` : '');

const say = (s: string) => process.stdout.write(`${s}\n`);

export function parseDuration(text: string): number {
  const m = /^(\d+(?:\.\d+)?)(ms|s|m|h)$/.exec(text.trim());
  if (!m) throw new Error(`--soak wants a duration such as 90s, 3m or 30m (got "${text}")`);
  return Number(m[1]) * { ms: 1, s: 1000, m: 60_000, h: 3_600_000 }[m[2] as 'ms' | 's' | 'm' | 'h'];
}

async function freePort(): Promise<number> {
  const srv = createNetServer();
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  const port = (srv.address() as { port: number }).port;
  await new Promise<void>((r) => srv.close(() => r()));
  return port;
}

/** Asks the gateway to collect garbage and report; reads the line gc-probe.cjs prints. */
async function probe(gw: GatewayProcess, seq: number): Promise<ProbeAnswer> {
  const tag = `SOAK-MEM ${seq} `;
  gw.child.kill('SIGUSR2');
  const deadline = Date.now() + 30_000;
  for (;;) {
    const out = gw.output();
    const at = out.lastIndexOf(tag);
    if (at >= 0) return JSON.parse(out.slice(at + tag.length, out.indexOf('\n', at)));
    if (Date.now() > deadline) throw new Error('the gateway did not answer the memory probe');
    await new Promise((r) => setTimeout(r, 50));
  }
}

export async function soak(durationMs: number): Promise<{ samples: MemorySample[]; refused: number; failed: number; offered: number; sentPerS: number; gatewayWarnings: number; log: string }> {
  const nats = await startNats();
  let delivered = 0;
  const receiver: Server = createServer((req, res) => {
    req.on('data', () => {});
    req.on('end', () => {
      delivered++;
      res.writeHead(200).end();
    });
  });
  await new Promise<void>((r) => receiver.listen(0, '127.0.0.1', r));
  const hookPort = (receiver.address() as { port: number }).port;
  const httpPort = await freePort();
  const config = writeConfig({
    nats: { url: nats.url },
    http: { host: '127.0.0.1', port: httpPort },
    // info: the harness waits for "omnigate started"; nothing is logged per message at info.
    log: { level: 'info' },
    connectors: [{ type: 'webhook', account: 'soak', secret: SECRET }],
    webhooks: [{ name: 'soak', url: `http://127.0.0.1:${hookPort}/events`, secret: HOOK_SECRET, events: ['*'] }],
  });
  const preload = new URL('./gc-probe.cjs', import.meta.url).pathname;
  const gw = spawnGateway(config, { entry: 'dist', nodeArgs: ['--expose-gc', '--require', preload], node: gatewayNode().binary });
  const url = `http://127.0.0.1:${httpPort}/connectors/webhook/soak/messages`;
  const samples: MemorySample[] = [];
  let accepted = 0;
  let refused = 0;
  let failed = 0;
  let seq = 0;
  try {
    await gw.started;
    say(`soak: ${RATE} messages/s through the webhook channel for ${durationMs / 1000} s, ${CONVERSATIONS} conversations, webhook deliveries on`);
    const start = performance.now();
    const sampleEvery = durationMs / (SAMPLES - 1);
    let nextSample = 0;
    let i = 0;
    const inflight = new Set<Promise<void>>();
    while (performance.now() - start < durationMs) {
      const elapsed = performance.now() - start;
      if (elapsed >= nextSample) {
        const s = sampleOf(Math.round(elapsed / 1000), accepted, delivered, await probe(gw, seq++));
        samples.push(s);
        say(`  t=${String(s.atS).padStart(5)} s  accepted ${String(accepted).padStart(7)}  webhook POSTs ${String(delivered).padStart(7)}  ${describeMemory(s)}`);
        nextSample += sampleEvery;
      }
      const due = Math.floor(((performance.now() - start) / 1000) * RATE);
      for (; i < due && inflight.size < MAX_INFLIGHT; i++) {
        const n = i;
        const body = JSON.stringify({ messageId: `soak-${n}`, sender: { id: `client-${n % CONVERSATIONS}@example.ru`, name: 'Ольга' }, text: `Здравствуйте! Не проходит оплата, заказ №${n}` });
        const p: Promise<void> = fetch(url, { method: 'POST', headers: { authorization: `Bearer ${SECRET}`, 'content-type': 'application/json' }, body })
          .then(async (res) => {
            await res.arrayBuffer();
            if (res.status === 202) accepted++;
            else refused++;
          })
          .catch(() => {
            failed++;
          })
          .finally(() => inflight.delete(p));
        inflight.add(p);
      }
      await new Promise((r) => setTimeout(r, 20));
    }
    const sentPerS = i / ((performance.now() - start) / 1000);
    const offered = Math.floor((durationMs / 1000) * RATE);
    await Promise.all(inflight);
    // The last sample after the load stops and the webhook catches up: what stays held when idle.
    const idleDeadline = Date.now() + 60_000;
    while (Date.now() < idleDeadline) {
      const before = delivered;
      await new Promise((r) => setTimeout(r, 2_000));
      if (delivered === before) break;
    }
    const end = sampleOf(Math.round((performance.now() - start) / 1000), accepted, delivered, await probe(gw, seq++));
    samples.push(end);
    say(`  idle t=${end.atS} s  accepted ${accepted}  webhook POSTs ${delivered}  ${describeMemory(end)}`);
    const log = join(tmpdir(), `omnigate-soak-${process.pid}.log`);
    writeFileSync(log, gw.output());
    const gatewayWarnings = gw.output().split('\n').filter((l) => /"level":"(warn|error|fatal)"/.test(l)).length;
    say(`  sent ${i} of ${offered} offered (${sentPerS.toFixed(0)}/s achieved with at most ${MAX_INFLIGHT} in flight); gateway warnings/errors: ${gatewayWarnings} (log: ${log})`);
    return { samples, refused, failed, offered, sentPerS, gatewayWarnings, log };
  } finally {
    await gw.kill('SIGTERM');
    receiver.close();
    await nats.stop();
  }
}
