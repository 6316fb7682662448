/**
 * npm run bench — routing throughput and latency against the bare JetStream publish rate
 * measured in the same run on the same throwaway nats-server (compare ratios, not absolute
 * numbers: machines here are noisy). The router runs as its own process (`node dist/cli.js
 * start`), as in production; this process publishes and observes.
 *
 * Phases:
 *  1. raw     — async JetStream publish of N inbound-sized payloads with Nats-Msg-Id.
 *  2. routed  — N inbound events across M conversations published as fast as possible;
 *               routed/s = N / (first publish → last ticket.message event).
 *  3. latency — events paced at BENCH_RATE/s (default 2,000) for a few seconds; p50/p99 from
 *               publish to the ticket.message event.
 *  4. channels — each bench/channels/*.ts, when present.
 *  5. history — 1,000,000 tickets and 5,000,000 messages in the read model: RSS, start-up,
 *               list/search latency through the API, projection lag (bench/history/phase.ts).
 * BENCH_PHASES picks phases (throughput,channels,history; default all), e.g. BENCH_PHASES=history.
 * With `--soak <duration>` (e.g. `npm run bench -- --soak 3m`) it runs the memory soak instead
 * (bench/soak.ts): 200 messages/s through the HTTP channel with webhooks on, RSS after GC.
 * The last line is one JSON object for scripts.
 */
import { randomBytes } from 'node:crypto';
import { readdirSync, writeFileSync } from 'node:fs';
import { loadavg } from 'node:os';
import { join } from 'node:path';
import { connect } from '@nats-io/transport-node';
import { startNats, stopTestNatsServers } from '../test/helpers/nats-server.js';
import { killTestGateways, spawnGateway, writeConfig } from '../test/helpers/process.js';
import { removeTestTempDirs } from '../test/helpers/temp-dirs.js';
import { dropTestDatabases, postgresDatabase, type TestPostgres } from '../test/helpers/sql.js';
import { percentile, type ChannelBenchResult } from './types.js';
import { gatewayNode } from './gateway-node.js';
import { BENCH_PARTITIONS, cpuMeter, gatewayMetrics, makeEvents, pacedPhase, rawPublishRate, readModelCaughtUp, routedPhase } from './routing.js';

const EVENTS = Number(process.env.BENCH_EVENTS ?? 20_000);
const CONVERSATIONS = Number(process.env.BENCH_CONVERSATIONS ?? 2_000);
const RATE = Number(process.env.BENCH_RATE ?? 2_000);
const LATENCY_SECONDS = Number(process.env.BENCH_LATENCY_SECONDS ?? 5);
const ROUTERS = Number(process.env.BENCH_ROUTERS ?? 1);
/** The node flags of the image's CMD (Dockerfile): the bench measures what production runs. */
const PRODUCTION_NODE_ARGS = '--max-semi-space-size=32';
/**
 * Where the gateway's SQL read model lives: `pglite` (the default config: the SQL engine runs
 * inside the gateway process, so its CPU counts as the router's) or `postgres` (a throwaway
 * database on the machine's PostgreSQL, test/helpers/sql.ts: the engine's CPU is outside the
 * measured process, the projection's client side stays in it).
 */
/** The gateways' Node binary and version (gateway-node.ts: BENCH_GATEWAY_NODE, or a Node the product supports). */
const GATEWAY = gatewayNode();
const GATEWAY_NODE = GATEWAY.version;
const PROBE_TOKEN = randomBytes(24).toString('hex');
const SQL = process.env.BENCH_SQL === 'postgres' ? 'postgres' : 'pglite';

const say = (s: string) => process.stdout.write(`${s}\n`);

async function channelBenches(): Promise<Record<string, ChannelBenchResult | { error: string }>> {
  const dir = new URL('./channels/', import.meta.url).pathname;
  const out: Record<string, ChannelBenchResult | { error: string }> = {};
  const only = process.env.BENCH_CHANNELS?.split(',');
  for (const f of readdirSync(dir).filter((f) => f.endsWith('.ts')).sort()) {
    const name = f.replace(/\.ts$/, '');
    if (only && !only.includes(name)) continue;
    try {
      const mod = (await import(join(dir, f))) as { run: (o: { scale: number }) => Promise<ChannelBenchResult> };
      const r = await mod.run({ scale: Number(process.env.BENCH_SCALE ?? 1) });
      out[name] = r;
      say(`channel ${name.padEnd(10)} ${r.name}: ${r.per_s.toFixed(0)}/s over ${r.events}, p50 ${r.p50_ms.toFixed(1)} ms, p99 ${r.p99_ms.toFixed(1)} ms${r.note ? ` (${r.note})` : ''}`);
    } catch (err) {
      out[name] = { error: String(err) };
      say(`channel ${name}: failed: ${String(err)}`);
    }
  }
  return out;
}

/** `--soak <duration>`: the memory soak (bench/soak.ts) instead of the throughput phases. */
async function soakMain(duration: string): Promise<void> {
  const { soak, parseDuration } = await import('./soak.js');
  const { samples, refused, failed, offered, sentPerS, gatewayWarnings } = await soak(parseDuration(duration));
  const first = samples[0]!;
  const mid = samples[Math.floor((samples.length - 1) / 2)]!;
  const last = samples[samples.length - 1]!;
  say(`RSS after GC: start ${first.rssMb.toFixed(1)} MB, middle ${mid.rssMb.toFixed(1)} MB, end ${last.rssMb.toFixed(1)} MB; heap ${first.heapUsedMb.toFixed(1)} → ${mid.heapUsedMb.toFixed(1)} → ${last.heapUsedMb.toFixed(1)} MB; refused ${refused}, unanswered ${failed}`);
  say(JSON.stringify({ soak: duration, offered, sent_per_s: Math.round(sentPerS), samples, refused, failed, gateway_warnings: gatewayWarnings }));
}

/** BENCH_PHASES=throughput,channels,history (default: all three, in that order). */
const PHASES = new Set((process.env.BENCH_PHASES ?? 'throughput,channels,history').split(',').map((p) => p.trim()));

async function main(): Promise<void> {
  const soakAt = process.argv.indexOf('--soak');
  if (soakAt >= 0) return soakMain(process.argv[soakAt + 1] ?? '');
  if (process.argv.includes('--cluster')) return (await import('./cluster.js')).clusterMain();
  if (PHASES.has('throughput')) await throughputMain();
  else if (PHASES.has('channels')) say(JSON.stringify({ channels: await channelBenches() }));
  if (PHASES.has('history')) await (await import('./history/phase.js')).historyMain();
}

/** prom-client's event-loop monitor resolution (its default): every sample it reports includes it. */
const LOOP_MONITOR_RESOLUTION_MS = 10;

interface GcTotals {
  seconds: number;
  count: number;
}

/** The gateways' GC pauses so far, from prom-client's nodejs_gc_duration_seconds (every kind). */
async function gcTotals(gateways: Array<{ output(): string }>): Promise<GcTotals> {
  return gcOf(await Promise.all(gateways.map(async (g) => gatewayMetrics(g.output()))));
}

function gcOf(scrapes: Array<(name: string) => number>): GcTotals {
  return {
    seconds: scrapes.reduce((a, m) => a + (m('nodejs_gc_duration_seconds_sum') || 0), 0),
    count: scrapes.reduce((a, m) => a + (m('nodejs_gc_duration_seconds_count') || 0), 0),
  };
}

function gcSince(before: GcTotals, scrapes: Array<(name: string) => number>): GcTotals {
  const now = gcOf(scrapes);
  return { seconds: now.seconds - before.seconds, count: now.count - before.count };
}

async function throughputMain(): Promise<void> {
  const nats = await startNats();
  const nc = await connect({ servers: nats.url });
  const pg: TestPostgres | undefined = SQL === 'postgres' ? await postgresDatabase() : undefined;
  const database = pg ? { database: { url: pg.url, user: pg.user, ...(process.env.BENCH_DB_BATCH ? { batchSize: Number(process.env.BENCH_DB_BATCH) } : {}) } } : {};
  // A read-only token: /readyz shows the read model's lag (readModelCaughtUp) only with one.
  const config = writeConfig({ nats: { url: nats.url }, http: { host: '127.0.0.1', port: 0 }, api: { tokens: [{ name: 'bench', token: PROBE_TOKEN, readOnly: true }] }, log: { level: 'info' }, router: { concurrency: Number(process.env.BENCH_CONCURRENCY ?? 512), partitions: BENCH_PARTITIONS }, ...database });
  // The image's node flags (Dockerfile CMD) unless BENCH_NODE_ARGS says otherwise ('' for none).
  const baseArgs = (process.env.BENCH_NODE_ARGS ?? PRODUCTION_NODE_ARGS).split(' ').filter(Boolean);
  const nodeArgs = process.env.BENCH_PROFILE ? [...baseArgs, '--cpu-prof', `--cpu-prof-dir=${process.env.BENCH_PROFILE}`] : baseArgs;
  // Router replicas share the durable consumer: BENCH_ROUTERS=2 measures scale-out.
  // BENCH_GATEWAY_ROOT=<checkout with a built dist/> runs another build's gateway (A/B in one bench).
  // The gateways run on GATEWAY.binary (BENCH_GATEWAY_NODE, or a Node the product supports) while
  // the publisher, hence the raw rate the ratio divides by, stays on this one.
  const gateways = Array.from({ length: ROUTERS }, () => spawnGateway(config, { entry: 'dist', nodeArgs, root: process.env.BENCH_GATEWAY_ROOT, node: GATEWAY.binary }));
  try {
    await Promise.all(gateways.map((g) => g.started));
    const events = makeEvents(EVENTS, CONVERSATIONS, 'r');
    say(`omnigate bench: ${EVENTS} events across ${CONVERSATIONS} conversations, ${ROUTERS} router process(es), read model on ${SQL}, ${BENCH_PARTITIONS} partitions (nats-server ${nc.info?.version}, node ${GATEWAY_NODE === process.version ? process.version : `${GATEWAY_NODE} for the gateways (${GATEWAY.why}), ${process.version} for the publisher`})`);
    const raw = await rawPublishRate(nc, events.map((e) => e.payload));
    say(`raw JetStream async publish:     ${raw.toFixed(0)} msgs/s`);
    const pids = { routers: gateways.map((g) => g.child.pid), nats: nats.process.pid };
    const gcBefore = await gcTotals(gateways);
    const routedCpu = cpuMeter(pids);
    const routed = await routedPhase(nc, events);
    const cpu = routedCpu(events.length);
    // Read after the routed phase (prom-client's event-loop window restarts at every scrape: the last one before the paced phase starts it).
    const afterRouted = await Promise.all(gateways.map(async (g) => gatewayMetrics(g.output())));
    const coalesced = afterRouted.map((m) => m('omnigate_coalesced_messages_total')).reduce((a, b) => a + b, 0);
    const gcRouted = gcSince(gcBefore, afterRouted);
    say(`routed (publish → ticket event): ${routed.perS.toFixed(0)} events/s  ratio ${(routed.perS / raw).toFixed(2)}  (saturated p50 ${percentile(routed.latencies, 50).toFixed(1)} ms, p99 ${percentile(routed.latencies, 99).toFixed(1)} ms)`);
    say(`CPU per routed event:            router ${cpu.routerUs.toFixed(0)} µs${ROUTERS > 1 ? ` (all ${ROUTERS} replicas)` : ''}, nats-server ${cpu.natsUs.toFixed(0)} µs  (load average ${loadavg()[0]!.toFixed(1)})`);
    say(`router socket calls per event:   ${cpu.routerWrites.toFixed(2)} writes, ${cpu.routerReads.toFixed(2)} reads (${Math.round(cpu.routerWrittenBytes)} bytes sent, ${Math.round(cpu.routerReadBytes)} read)`);
    say(`GC pauses while routing:         ${(gcRouted.seconds * 1e6 / events.length).toFixed(0)} µs per routed event (${gcRouted.count} pauses, ${(gcRouted.seconds * 1000 / Math.max(1, gcRouted.count)).toFixed(1)} ms each on average)`);
    say(`ticket updates shared:           ${Number.isNaN(coalesced) ? 'n/a (this build does not coalesce)' : `${coalesced} of ${events.length} messages joined an earlier one's compare-and-set`}`);
    // The latency aim is about a steady 2,000 events/s: the read model first applies the backlog
    // the saturated phase left (in the same process, it would compete with routing for the core).
    const catchUp = Math.max(...(await Promise.all(gateways.map((g) => readModelCaughtUp(g.output(), PROBE_TOKEN)))));
    say(`read model caught up:            ${Number.isNaN(catchUp) ? 'not reported (or not within 5 min)' : `${catchUp.toFixed(1)} s after the routed phase ended`}`);
    const gcBeforePaced = await gcTotals(gateways);
    const pacedStart = performance.now();
    const paced = await pacedPhase(nc, makeEvents(RATE * LATENCY_SECONDS, Math.min(CONVERSATIONS, RATE * LATENCY_SECONDS), 'p'), RATE);
    const pacedSeconds = (performance.now() - pacedStart) / 1000;
    const p50 = percentile(paced.latencies, 50);
    const p99 = percentile(paced.latencies, 99);
    const gatewayP50 = percentile(paced.gatewayLatencies, 50);
    const gatewayP99 = percentile(paced.gatewayLatencies, 99);
    const loop = await Promise.all(gateways.map(async (g) => gatewayMetrics(g.output())));
    const loopP99 = Math.max(...loop.map((m) => m('nodejs_eventloop_lag_p99_seconds')));
    const loopMax = Math.max(...loop.map((m) => m('nodejs_eventloop_lag_max_seconds')));
    const gcPaced = gcSince(gcBeforePaced, loop);
    // prom-client samples the loop with a 10 ms timer and reports the whole interval: an idle loop
    // reads 10.1 ms. What a message can meet is the part beyond that.
    const stall = (s: number) => Math.max(0, s * 1000 - LOOP_MONITOR_RESOLUTION_MS);
    say(`latency at ${paced.achieved.toFixed(0)} events/s offered: p50 ${p50.toFixed(1)} ms, p99 ${p99.toFixed(1)} ms  (gateway event loop stalled p99 ${stall(loopP99).toFixed(1)} ms, max ${stall(loopMax).toFixed(1)} ms; GC paused it ${gcPaced.count} times, ${((gcPaced.seconds * 1000) / Math.max(1, gcPaced.count)).toFixed(1)} ms on average, ${((100 * gcPaced.seconds) / (pacedSeconds * ROUTERS)).toFixed(1)} % of the time${ROUTERS > 1 ? ' per replica' : ''})`);
    say(`  of which publish → announced:  p50 ${gatewayP50.toFixed(1)} ms, p99 ${gatewayP99.toFixed(1)} ms  (the way in and the gateway's work; the rest is the announcement's way out)`);
    const channels = PHASES.has('channels') ? await channelBenches() : {};
    const result = {
      routed_per_s: Math.round(routed.perS),
      raw_publish_per_s: Math.round(raw),
      ratio: Number((routed.perS / raw).toFixed(3)),
      read_model_catch_up_s: Number.isNaN(catchUp) ? null : Number(catchUp.toFixed(1)),
      p50_ms: Number(p50.toFixed(2)),
      p99_ms: Number(p99.toFixed(2)),
      announced_p50_ms: Number(gatewayP50.toFixed(1)),
      announced_p99_ms: Number(gatewayP99.toFixed(1)),
      latency_rate_per_s: Math.round(paced.achieved),
      event_loop_delay_p99_ms: Number((loopP99 * 1000).toFixed(1)),
      event_loop_delay_max_ms: Number((loopMax * 1000).toFixed(1)),
      event_loop_stall_p99_ms: Number(stall(loopP99).toFixed(1)),
      gc_us_per_routed_event: Math.round((gcRouted.seconds * 1e6) / events.length),
      gc_pauses_paced: gcPaced.count,
      gc_pause_mean_ms_paced: Number(((gcPaced.seconds * 1000) / Math.max(1, gcPaced.count)).toFixed(1)),
      gc_share_paced: Number((gcPaced.seconds / (pacedSeconds * ROUTERS)).toFixed(3)),
      router_cpu_us_per_event: Math.round(cpu.routerUs),
      nats_cpu_us_per_event: Math.round(cpu.natsUs),
      router_writes_per_event: Number(cpu.routerWrites.toFixed(2)),
      router_reads_per_event: Number(cpu.routerReads.toFixed(2)),
      router_bytes_sent_per_event: Math.round(cpu.routerWrittenBytes),
      router_bytes_read_per_event: Math.round(cpu.routerReadBytes),
      coalesced: Number.isNaN(coalesced) ? null : coalesced,
      load_average: Number(loadavg()[0]!.toFixed(2)),
      events: EVENTS,
      conversations: CONVERSATIONS,
      routers: ROUTERS,
      sql: SQL,
      partitions: BENCH_PARTITIONS,
      node: process.version,
      gateway_node: GATEWAY_NODE,
      channels,
    };
    say(JSON.stringify(result));
  } finally {
    await Promise.all(gateways.map((g) => g.kill('SIGTERM')));
    // BENCH_DUMP=<file>: the gateways' output, e.g. with BENCH_NODE_ARGS='--trace-gc' to see GC pauses.
    if (process.env.BENCH_DUMP) writeFileSync(process.env.BENCH_DUMP, gateways.map((g) => g.output()).join('\n'));
    await nc.close();
    await nats.stop();
    await pg?.drop();
  }
}

// Stopped by a signal (a timeout, Ctrl-C), the bench still kills its gateways, drops its
// databases, stops its nats-servers and removes its temporary directories. The gateways are
// killed, not stopped: one that got the signal as well could hang in its exit, writing its last
// log lines into a pipe this process no longer reads (three were found running that way).
// The signal may come twice (`timeout` signals the whole process group, and tsx passes it on
// too): the one clean-up started serves both, and a second signal must not kill it half-way.
let cleaningUp: Promise<never> | undefined;
const cleanUpAndExit = (signal: NodeJS.Signals): Promise<never> => {
  process.stderr.write(`bench stopped by ${signal}: killing its gateways, dropping its databases, stopping its nats-servers, removing its temporary directories\n`);
  killTestGateways();
  return Promise.all([dropTestDatabases(), stopTestNatsServers()])
    .catch((err: unknown) => process.stderr.write(`could not clean up everything: ${String(err)}\n`))
    .then(() => {
      removeTestTempDirs();
      return process.exit(signal === 'SIGINT' ? 130 : 143);
    });
};
for (const signal of ['SIGINT', 'SIGTERM'] as const) process.on(signal, () => void (cleaningUp ??= cleanUpAndExit(signal)));

// The gateways' config directories (writeConfig) go with the run, as a test file's do.
main()
  .finally(removeTestTempDirs)
  .then(
    () => process.exit(0),
    (err) => {
      process.stderr.write(`bench failed: ${err instanceof Error ? err.stack : String(err)}\n`);
      process.exit(1);
    },
  );
