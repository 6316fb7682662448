/**
 * What the history phase reads from outside the gateway: its RSS (/proc), HTTP latencies through
 * the public API, the projection's lag in time, and a way to hold the projection off (PostgreSQL:
 * the applier's advisory lock, taken by the bench, is what a standby replica waits for).
 */
import { readFileSync } from 'node:fs';
import pg from 'pg';
import { APPLIER_LOCK_KEY } from '../../src/read-model/migrations.js';
import { percentile } from '../types.js';

export function rssMb(pid: number | undefined): number {
  if (!pid) return NaN;
  try {
    const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) / 1024 : NaN;
  } catch {
    return NaN;
  }
}

/** RSS every 250 ms over a gateway's life: the peak and the latest. */
export function rssSampler(pid: number | undefined) {
  let max = 0;
  let last = 0;
  const t = setInterval(() => {
    last = rssMb(pid);
    if (last > max) max = last;
  }, 250);
  t.unref();
  return { max: () => max, now: () => rssMb(pid), stop: () => clearInterval(t), last: () => last };
}

export interface Api {
  base: string;
  token: string;
}

export async function get(api: Api, path: string): Promise<{ status: number; body: Record<string, unknown> }> {
  const res = await fetch(`${api.base}${path}`, { headers: { authorization: `Bearer ${api.token}` } });
  return { status: res.status, body: (await res.json()) as Record<string, unknown> };
}

export interface Timed {
  name: string;
  n: number;
  p50: number;
  p99: number;
  max: number;
  /** Rows or hits in the last answer (shows that the query found something). */
  found: number;
}

/**
 * `rounds` sequential requests, cycling through `paths` (a few warm-up requests first, not
 * counted). Fails on anything but 200: a latency of an error page means nothing.
 */
export async function timeRequests(api: Api, name: string, paths: string[], rounds: number): Promise<Timed> {
  for (const p of paths.slice(0, 3)) await get(api, p);
  const ms: number[] = [];
  let found = 0;
  for (let i = 0; i < rounds; i++) {
    const path = paths[i % paths.length]!;
    const t0 = performance.now();
    const r = await get(api, path);
    ms.push(performance.now() - t0);
    if (r.status !== 200) throw new Error(`${name}: GET ${path} answered ${r.status}: ${JSON.stringify(r.body).slice(0, 300)}`);
    const list = (r.body.tickets ?? r.body.results ?? r.body.contacts) as unknown[] | undefined;
    found = list?.length ?? 0;
  }
  ms.sort((a, b) => a - b);
  return { name, n: ms.length, p50: percentile(ms, 50), p99: percentile(ms, 99), max: ms[ms.length - 1]!, found };
}

/** Pages through GET /v1/tickets by nextCursor: each page timed. */
export async function timePaging(api: Api, name: string, first: string, pages: number, rounds: number): Promise<Timed> {
  const ms: number[] = [];
  let found = 0;
  for (let r = 0; r < rounds; r++) {
    let path: string | null = first;
    for (let p = 0; p < pages && path; p++) {
      const t0 = performance.now();
      const res = await get(api, path);
      ms.push(performance.now() - t0);
      if (res.status !== 200) throw new Error(`${name}: GET ${path} answered ${res.status}`);
      found += (res.body.tickets as unknown[]).length;
      const cursor = res.body.nextCursor as string | null;
      path = cursor ? `${first}&cursor=${encodeURIComponent(cursor)}` : null;
    }
  }
  ms.sort((a, b) => a - b);
  return { name, n: ms.length, p50: percentile(ms, 50), p99: percentile(ms, 99), max: ms[ms.length - 1]!, found };
}

/**
 * Projection lag in time: every `everyMs` the log's last sequence L and the checkpoint C are
 * read; the lag of a sample taken at t is how long after t the checkpoint first reached L(t).
 */
export function lagSampler(read: () => Promise<{ logLastSeq: number; checkpoint: number }>, everyMs: number) {
  const samples: Array<{ t: number; log: number; cp: number }> = [];
  let stopped = false;
  let failed: unknown;
  const loop = (async () => {
    while (!stopped) {
      const t = performance.now();
      try {
        const s = await read();
        samples.push({ t, log: s.logLastSeq, cp: s.checkpoint });
      } catch (err) {
        failed ??= err; // reported by stop(); a sample lost to a busy moment is not the phase's failure
      }
      await new Promise((r) => setTimeout(r, everyMs));
    }
  })();
  return {
    async stop(): Promise<{ lagMs: number[]; maxEntries: number; failed?: unknown }> {
      stopped = true;
      await loop;
      const lagMs: number[] = [];
      let maxEntries = 0;
      for (let i = 0; i < samples.length; i++) {
        const s = samples[i]!;
        maxEntries = Math.max(maxEntries, s.log - s.cp);
        const reached = samples.slice(i).find((x) => x.cp >= s.log);
        if (reached) lagMs.push(reached.t - s.t);
      }
      return { lagMs: lagMs.sort((a, b) => a - b), maxEntries, failed };
    },
  };
}

/**
 * Holds the projection off on PostgreSQL: ends the applier's session (the gateway's projection
 * sees its lock lost and goes to take it again) and takes the lock first, so the gateway waits as
 * a standby replica does. release() lets it apply again.
 */
export async function holdProjection(pgUrl: string, user: string): Promise<{ release(): Promise<void> }> {
  // pg lets the URL's (absent) user override a separate `user`: it goes into the URL.
  const url = new URL(pgUrl);
  url.username = user;
  const client = new pg.Client({ connectionString: url.toString() });
  await client.connect();
  for (let i = 0; ; i++) {
    await client.query(
      `SELECT pg_terminate_backend(pid) FROM pg_locks WHERE locktype = 'advisory' AND objid = $1 AND pid <> pg_backend_pid() AND granted`,
      [APPLIER_LOCK_KEY],
    );
    const [row] = (await client.query<{ ok: boolean }>('SELECT pg_try_advisory_lock($1) AS ok', [APPLIER_LOCK_KEY])).rows;
    if (row?.ok) break;
    if (i > 200) throw new Error('could not take the applier lock from the gateway');
    await new Promise((r) => setTimeout(r, 10));
  }
  return {
    async release() {
      await client.query('SELECT pg_advisory_unlock($1)', [APPLIER_LOCK_KEY]);
      await client.end();
    },
  };
}
