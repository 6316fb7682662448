/**
 * The history phase of `npm run bench` (BENCH_PHASES=history runs it alone): does the gateway
 * stay small and fast when the read model holds years of tickets?
 *
 * Per engine (PostgreSQL on the machine's server, then PGlite — the embedded default — at a
 * smaller size), on its own throwaway nats-server and database:
 *  1. start-up on an empty database: spawn → "omnigate started", → read model open; RSS;
 *  2. bulk history (load.ts: SQL as the projection writes it; bus-state.ts: KV records,
 *     ticket-number base, log sequence);
 *  3. start-up on the history, the same two times; RSS;
 *  4. list, search and contact lookups through the HTTP API, p50/p99 (queries.ts);
 *  5. projection lag in time while events are routed at BENCH_RATE/s (2,000);
 *  6. (PostgreSQL) routed events/s with the projection applying vs held off (the bench holds
 *     the applier lock as a standby replica would), alternated twice;
 *  7. RSS of the gateway at the end and its peak over the whole run.
 *
 * Knobs: BENCH_HISTORY_TICKETS (1,000,000), BENCH_HISTORY_PGLITE_TICKETS (100,000; 0 skips),
 * BENCH_HISTORY_PG_DB (reuse a database already loaded with this loader and keep it),
 * BENCH_HISTORY_BURST (events per routed burst, 10,000), BENCH_HISTORY_LAG_SECONDS (10).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { createServer } from 'node:net';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { jetstreamManager } from '@nats-io/jetstream';
import { startNats } from '../../test/helpers/nats-server.js';
import { spawnGateway, writeConfig, type GatewayProcess } from '../../test/helpers/process.js';
import { gatewayNode } from '../gateway-node.js';
import { postgresDatabase } from '../../test/helpers/sql.js';
import { openDatabase, type Database } from '../../src/read-model/database.js';
import { migrate } from '../../src/read-model/migrations.js';
import { Streams } from '../../src/core/subjects.js';
import { makeEvents, pacedPhase, routedPhase } from '../routing.js';
import { percentile } from '../types.js';
import { loadHistory, MESSAGES_PER_TICKET } from './load.js';
import { seedBusState } from './bus-state.js';
import { get, holdProjection, lagSampler, rssSampler, type Api } from './measure.js';
import { runQueries } from './queries.js';

const TOKEN = 'bench-history-token-0123456789';
const PREFIX = 'T-';
const FIRST_NUMBER = 1001;
const BURST = Number(process.env.BENCH_HISTORY_BURST ?? 10_000);
const RATE = Number(process.env.BENCH_RATE ?? 2_000);
const LAG_SECONDS = Number(process.env.BENCH_HISTORY_LAG_SECONDS ?? 10);

const say = (s: string) => process.stdout.write(`${s}\n`);

async function freePort(): Promise<number> {
  const srv = createServer();
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  const port = (srv.address() as { port: number }).port;
  await new Promise((r) => srv.close(r));
  return port;
}

interface Started {
  gw: GatewayProcess;
  api: Api;
  rss: ReturnType<typeof rssSampler>;
  startedMs: number;
  readModelMs: number;
}

/** Spawns a gateway; times "omnigate started" and the read model's database being open (a list answering 200). */
async function startGateway(natsUrl: string, database: Record<string, unknown>): Promise<Started> {
  const port = await freePort();
  const config = writeConfig({
    nats: { url: natsUrl }, http: { host: '127.0.0.1', port }, log: { level: 'info' }, router: { concurrency: 512 },
    api: { tokens: [{ name: 'bench', token: TOKEN }] }, database,
  });
  const t0 = performance.now();
  const gw = spawnGateway(config, { entry: 'dist', node: gatewayNode().binary });
  const rss = rssSampler(gw.child.pid);
  await gw.started;
  const startedMs = performance.now() - t0;
  const api = { base: `http://127.0.0.1:${port}`, token: TOKEN };
  for (;;) {
    const r = await get(api, '/v1/tickets?limit=1').catch(() => ({ status: 0 }));
    if (r.status === 200) break;
    if (performance.now() - t0 > 600_000) throw new Error('read model not open after 10 minutes');
    await new Promise((res) => setTimeout(res, 50));
  }
  return { gw, api, rss, startedMs, readModelMs: performance.now() - t0 };
}

async function stopGateway(s: Started): Promise<void> {
  s.rss.stop();
  await s.gw.kill('SIGTERM');
}

async function waitCaughtUp(api: Api, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const r = await get(api, '/readyz');
    const rm = r.body.readModel as { checkpoint?: number; logLastSeq?: number } | undefined;
    if (rm && rm.checkpoint !== undefined && rm.checkpoint >= (rm.logLastSeq ?? Infinity)) return;
    if (Date.now() > deadline) throw new Error(`projection not caught up: ${JSON.stringify(rm)}`);
    await new Promise((res) => setTimeout(res, 200));
  }
}

/** Projection lag in time while events are routed at RATE/s for LAG_SECONDS. */
async function measureLag(nc: NatsConnection, api: Api, engine: 'postgres' | 'pglite', pgUrl: string | undefined) {
  const jsm = await jetstreamManager(nc);
  // PostgreSQL: the checkpoint row itself; PGlite (one process per directory): the gateway's /readyz.
  const checkpointDb = engine === 'postgres' ? await openDatabase({ url: pgUrl!, user: 'postgres', dataDir: '', poolSize: 1 }) : undefined;
  const checkpoint = async () => checkpointDb
    ? (await checkpointDb.query<{ seq: number }>(`SELECT seq FROM projection_checkpoint WHERE name = 'ticket-log'`))[0]!.seq
    : ((await get(api, '/readyz')).body.readModel as { checkpoint: number }).checkpoint;
  const sampler = lagSampler(async () => {
    const logLastSeq = (await jsm.streams.info(Streams.log)).state.last_seq;
    return { logLastSeq, checkpoint: await checkpoint() };
  }, engine === 'postgres' ? 50 : 250);
  let paced: Awaited<ReturnType<typeof pacedPhase>>;
  let caughtUpMs: number;
  let lagged: Awaited<ReturnType<typeof sampler.stop>> | undefined;
  try {
    paced = await pacedPhase(nc, makeEvents(RATE * LAG_SECONDS, Math.min(2_000, RATE * LAG_SECONDS), `lag-${engine}`), RATE);
    const t = performance.now();
    await waitCaughtUp(api, 900_000);
    caughtUpMs = performance.now() - t;
  } finally {
    lagged = await sampler.stop();
    await checkpointDb?.close();
  }
  if (lagged.failed) say(`  (some lag samples failed: ${String(lagged.failed)})`);
  const lag = { caught_up_s: Number((caughtUpMs / 1000).toFixed(1)), rate_per_s: Math.round(paced.achieved), p50_ms: Math.round(percentile(lagged.lagMs, 50)), p99_ms: Math.round(percentile(lagged.lagMs, 99)), max_entries: lagged.maxEntries };
  say(`  projection lag at ${lag.rate_per_s} events/s: p50 ${lag.p50_ms} ms, p99 ${lag.p99_ms} ms (at most ${lag.max_entries} entries behind; caught up ${(caughtUpMs / 1000).toFixed(1)} s after the last event was routed); routing p99 ${percentile(paced.latencies, 99).toFixed(0)} ms`);
  return lag;
}

export interface EngineResult {
  engine: 'postgres' | 'pglite';
  tickets: number;
  messages: number;
  load_s: number;
  bus_seed_s: number;
  kv_tickets_mb: number;
  database_mb: number | null;
  start_empty: { started_ms: number; read_model_ms: number; rss_mb: number };
  start_history: { started_ms: number; read_model_ms: number; rss_mb: number };
  queries: Record<string, { p50_ms: number; p99_ms: number; n: number; found: number }>;
  lag?: Awaited<ReturnType<typeof measureLag>>;
  routed_with_per_s?: number[];
  routed_without_per_s?: number[];
  ratio?: number;
  rss_end_mb: number;
  rss_peak_mb: number;
  load_average: number;
}

export async function historyEngine(engine: 'postgres' | 'pglite', tickets: number): Promise<EngineResult> {
  const nats = await startNats();
  const nc = await connect({ servers: nats.url });
  const reuse = engine === 'postgres' ? process.env.BENCH_HISTORY_PG_DB : undefined;
  const pgEmpty = engine === 'postgres' ? await postgresDatabase() : undefined;
  const pgHistory = engine === 'postgres' && !reuse ? await postgresDatabase() : undefined;
  const pgUrl = reuse ? `postgres://127.0.0.1:5432/${reuse}` : pgHistory?.url;
  const pgliteRoot = engine === 'pglite' ? mkdtempSync(join(tmpdir(), 'omnigate-history-pglite-')) : '';
  const dbConfig = (which: 'empty' | 'history') =>
    engine === 'postgres' ? { url: which === 'empty' ? pgEmpty!.url : pgUrl!, user: 'postgres' } : { dataDir: join(pgliteRoot, which) };
  let gw: Started | undefined;
  try {
    say(`history (${engine}): ${tickets.toLocaleString('en')} tickets, ${(tickets * MESSAGES_PER_TICKET).toLocaleString('en')} messages`);
    // 1. Empty database (this also provisions the streams and buckets the bus state goes into).
    gw = await startGateway(nats.url, dbConfig('empty'));
    await new Promise((r) => setTimeout(r, 3000));
    const startEmpty = { started_ms: Math.round(gw.startedMs), read_model_ms: Math.round(gw.readModelMs), rss_mb: Math.round(gw.rss.now()) };
    say(`  start, empty database:   started ${startEmpty.started_ms} ms, read model open ${startEmpty.read_model_ms} ms, RSS ${startEmpty.rss_mb} MB`);
    await stopGateway(gw);
    gw = undefined;
    await pgEmpty?.drop();

    // 2. The history.
    const t0 = performance.now();
    const db: Database = await openDatabase(engine === 'postgres' ? { url: pgUrl!, user: 'postgres', dataDir: '' } : { dataDir: join(pgliteRoot, 'history') });
    let lastSeq: number;
    let loadS = 0;
    let bus = { records: 0, ms: 0, kvMb: 0 };
    let dbMb: number | null = null;
    try {
      await migrate(db);
      if (reuse) {
        lastSeq = (await db.query<{ seq: number }>(`SELECT seq FROM projection_checkpoint WHERE name = 'ticket-log'`))[0]!.seq;
        tickets = (await db.query<{ n: number }>('SELECT count(*)::int AS n FROM tickets'))[0]!.n;
        say(`  reusing ${reuse}: ${tickets} tickets, checkpoint ${lastSeq}`);
      } else {
        const loaded = await loadHistory(db, {
          tickets, prefix: PREFIX, firstNumber: FIRST_NUMBER, ticketsPerContact: 2, openTickets: Math.ceil(tickets / 1000),
          maintenanceWorkMem: engine === 'pglite' ? '128MB' : '512MB',
        }, say);
        lastSeq = loaded.lastSeq;
      }
      loadS = (performance.now() - t0) / 1000;
      say(`  history loaded into SQL in ${loadS.toFixed(0)} s`);
      bus = await seedBusState(nc, db, { lastSeq, nextNumberBase: FIRST_NUMBER - 1 + tickets });
      say(`  bus state (${bus.records} KV ticket records, ${bus.kvMb.toFixed(0)} MB in omni_tickets; number base, log sequence) in ${(bus.ms / 1000).toFixed(0)} s`);
      dbMb = engine === 'postgres' ? (await db.query<{ mb: number }>('SELECT (pg_database_size(current_database()) / 1048576)::int AS mb'))[0]!.mb : null;
    } finally {
      await db.close();
    }

    // 3. Start on the history.
    gw = await startGateway(nats.url, dbConfig('history'));
    await new Promise((r) => setTimeout(r, 3000));
    const startHistory = { started_ms: Math.round(gw.startedMs), read_model_ms: Math.round(gw.readModelMs), rss_mb: Math.round(gw.rss.now()) };
    say(`  start, history database: started ${startHistory.started_ms} ms, read model open ${startHistory.read_model_ms} ms, RSS ${startHistory.rss_mb} MB`);

    // 4. Queries.
    const queries = await runQueries(gw.api, { tickets, firstNumber: FIRST_NUMBER }, say);

    // 5. Lag while routing at RATE/s (BENCH_HISTORY_LAG_SECONDS=0 skips it).
    const lag = LAG_SECONDS > 0 ? await measureLag(nc, gw.api, engine, pgUrl) : undefined;

    // 6. Routed throughput with and without the projection (PostgreSQL: the lock can be held from outside).
    const ratio: Partial<EngineResult> = {};
    if (engine === 'postgres' && BURST > 0) {
      const withP: number[] = [];
      const withoutP: number[] = [];
      for (let round = 0; round < 2; round++) {
        await waitCaughtUp(gw.api, 300_000);
        withP.push((await routedPhase(nc, makeEvents(BURST, 2_000, `with-${round}`))).perS);
        const hold = await holdProjection(pgUrl!, 'postgres');
        try {
          withoutP.push((await routedPhase(nc, makeEvents(BURST, 2_000, `without-${round}`))).perS);
        } finally {
          await hold.release();
        }
      }
      const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
      ratio.routed_with_per_s = withP.map(Math.round);
      ratio.routed_without_per_s = withoutP.map(Math.round);
      ratio.ratio = Number((mean(withP) / mean(withoutP)).toFixed(3));
      say(`  routed with projection ${ratio.routed_with_per_s.join(', ')} events/s, without ${ratio.routed_without_per_s.join(', ')}: ratio ${ratio.ratio}`);
      await waitCaughtUp(gw.api, 300_000);
    }
    const rssEnd = Math.round(gw.rss.now());
    const rssPeak = Math.round(gw.rss.max());
    say(`  gateway RSS at the end ${rssEnd} MB, peak ${rssPeak} MB (load average ${loadavg()[0]!.toFixed(1)})`);
    return {
      engine, tickets, messages: tickets * MESSAGES_PER_TICKET, load_s: Math.round(loadS), bus_seed_s: Math.round(bus.ms / 1000), kv_tickets_mb: Math.round(bus.kvMb), database_mb: dbMb,
      start_empty: startEmpty, start_history: startHistory, queries, lag, ...ratio, rss_end_mb: rssEnd, rss_peak_mb: rssPeak,
      load_average: Number(loadavg()[0]!.toFixed(2)),
    };
  } finally {
    if (gw) await stopGateway(gw);
    await nc.close();
    await nats.stop();
    if (!reuse) await pgHistory?.drop();
    if (pgliteRoot) rmSync(pgliteRoot, { recursive: true, force: true });
  }
}

export async function historyMain(): Promise<void> {
  const results: EngineResult[] = [];
  const pgTickets = Number(process.env.BENCH_HISTORY_TICKETS ?? 1_000_000);
  const pgliteTickets = Number(process.env.BENCH_HISTORY_PGLITE_TICKETS ?? 100_000);
  if (pgTickets > 0) results.push(await historyEngine('postgres', pgTickets));
  if (pgliteTickets > 0) results.push(await historyEngine('pglite', pgliteTickets));
  say(JSON.stringify({ history: results }));
}

