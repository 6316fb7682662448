/**
 * One SQL dialect, two engines: PGlite (PostgreSQL compiled to WebAssembly, in-process, the
 * embedded default under the data directory) and PostgreSQL over `pg` when `database.url` is set.
 * Everything above this file speaks PostgreSQL SQL with $1-style parameters and never learns which
 * engine answers.
 */
import { existsSync } from 'node:fs';
import { mkdir, readdir, rename, rm, writeFile, access } from 'node:fs/promises';
import { randomBytes } from 'node:crypto';
import { basename, dirname, join } from 'node:path';
import pg from 'pg';
import { acquireDataDirLock, type DataDirLock } from '../core/data-dir-lock.js';
import { ensureDataDir } from '../core/data-dir.js';
import { PRIVATE_DIR, PRIVATE_FILE, tightenTree, type Tightened } from '../core/private-files.js';
import { PgliteWorker, initialisePglite } from './pglite-thread.js';

export interface Queryable {
  query<R = Record<string, unknown>>(sql: string, params?: unknown[]): Promise<R[]>;
}

/** A session that holds the single-applier lock: released by release() or when the session dies. */
export interface ApplierLock {
  /** Resolves when the lock's session was lost (PostgreSQL connection gone). */
  readonly lost: Promise<void>;
  release(): Promise<void>;
}

export interface Database extends Queryable {
  readonly engine: 'pglite' | 'postgres';
  /** Where it lives, without credentials (for logs and /readyz). */
  readonly where: string;
  /** Runs `fn` in one transaction: committed when it resolves, rolled back when it throws. */
  transaction<T>(fn: (tx: Queryable) => Promise<T>): Promise<T>;
  /**
   * Takes the lock that makes one process the projection's applier, or null when another session
   * holds it. PGlite has one process per data directory (the data-dir lock), so it always succeeds.
   */
  tryApplierLock(key: number): Promise<ApplierLock | null>;
  close(): Promise<void>;
  /** PGlite: what making its directory private at open changed or could not change (for the log). */
  readonly tightened?: Tightened;
}

export interface DatabaseOptions {
  /** postgres://host:port/db (no credentials in it: see user/password); empty → PGlite in dataDir. */
  url?: string;
  user?: string;
  password?: string;
  dataDir: string;
  poolSize?: number;
  /** How long a PostgreSQL connect, or a wait for a free pooled connection, may take (default 10 s): pg's own default waits for ever. */
  connectTimeoutMs?: number;
  /** How long the applier's lock session or a transaction may stay silent before the server ends it (default APPLIER_SILENCE_MS; tests shorten it). */
  silenceMs?: number;
}

/** `signal` ends an open still in progress (PGlite's initdb takes seconds). */
export async function openDatabase(o: DatabaseOptions, signal?: AbortSignal): Promise<Database> {
  if (o.url) return PostgresDatabase.open(o);
  return PgliteDatabase.open(o.dataDir, signal);
}

class PgliteDatabase implements Database {
  readonly engine = 'pglite' as const;
  /** PGlite runs one statement at a time; a transaction must not interleave with other queries. */
  private queue: Promise<unknown> = Promise.resolve();

  private constructor(
    private readonly worker: PgliteWorker,
    private readonly lock: DataDirLock,
    readonly where: string,
    readonly tightened: Tightened,
  ) {}

  /**
   * PGlite is one process per directory: a second process opening it (two replicas on one host
   * sharing ./data with an external NATS) aborts the WebAssembly module or corrupts the store, so
   * the directory is locked first and a second opener is refused with the field to change.
   * The database itself runs on a worker thread (pglite-worker.mjs says why).
   * The directory is PGlite's alone: all of it is made private to the service user at open (an
   * older version left its files 0666). PGlite creates new files 0666 and takes no mode: what
   * keeps those private is the process umask `omnigate start` sets (private-files.ts).
   */
  static async open(dataDir: string, signal?: AbortSignal): Promise<PgliteDatabase> {
    await ensureDataDir(dataDir, 'database.dataDir');
    const lock = await acquireDataDirLock(dataDir, 'database.dataDir');
    let worker: PgliteWorker | undefined;
    try {
      const tightened = await tightenTree(dataDir, 'all');
      if (await discardInterruptedInit(dataDir)) {
        // initdb in a process of its own (pglite-worker.mjs says why): the serving thread then
        // starts on the finished directory with a heap of its own size. It writes into a staging
        // directory moved into place when done: an initdb orphaned by a gateway killed mid-way
        // (OOM while the heap grows to ~800 MB) runs on for seconds, synchronously, and must not
        // write into the directory a restarted gateway is initialising again.
        const staging = `${dataDir}${STAGING}${process.pid}-${randomBytes(3).toString('hex')}`;
        await mkdir(staging, { recursive: true, mode: PRIVATE_DIR });
        try {
          await initialisePglite(staging, signal);
          for (const name of await readdir(staging)) await rename(join(staging, name), join(dataDir, name));
        } finally {
          await rm(staging, { recursive: true, force: true });
        }
        await writeFile(join(dataDir, INITIALISED), `${new Date().toISOString()}\n`, { mode: PRIVATE_FILE });
      }
      worker = await PgliteWorker.start(dataDir, signal);
      // PGlite chmods its relation cache files (pg_internal.init, written at start) to 0644 itself,
      // past any umask: once more after its start, without a word unless something cannot be changed.
      const after = await tightenTree(dataDir, 'all');
      return new PgliteDatabase(worker, lock, `pglite:${dataDir}`, { changed: tightened.changed, failed: [...tightened.failed, ...after.failed].slice(0, 5), failures: tightened.failures + after.failures });
    } catch (err) {
      await worker?.terminate();
      await lock.release();
      throw err;
    }
  }

  private serial<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.queue.then(fn, fn);
    this.queue = run.catch(() => undefined);
    return run;
  }

  query<R>(sql: string, params: unknown[] = []): Promise<R[]> {
    return this.serial(async () => normalizeRows(await this.worker.query<R>(sql, params)));
  }

  transaction<T>(fn: (tx: Queryable) => Promise<T>): Promise<T> {
    return this.serial(async () => {
      await this.worker.query('BEGIN');
      try {
        const result = await fn({ query: async <R>(sql: string, params: unknown[] = []) => normalizeRows(await this.worker.query<R>(sql, params)) });
        await this.worker.query('COMMIT');
        return result;
      } catch (err) {
        await this.worker.query('ROLLBACK');
        throw err;
      }
    });
  }

  async tryApplierLock(): Promise<ApplierLock> {
    return { lost: new Promise<void>(() => undefined), release: async () => undefined };
  }

  async close(): Promise<void> {
    try {
      await this.serial(() => this.worker.close());
    } finally {
      await this.lock.release();
    }
  }
}

/** Written once PGlite's initdb finished: a directory without it holds a first start cut short. */
const INITIALISED = '.omnigate-initialised';

/**
 * Whether the embedded database is known to hold nothing yet: PGlite whose directory was never
 * initialised. PostgreSQL may hold anything: false.
 */
export function surelyEmpty(o: DatabaseOptions): boolean {
  return !o.url && !existsSync(join(o.dataDir, INITIALISED));
}
/** Suffix of the directory an initdb writes into before it is moved into place. */
const STAGING = '.initdb-';

/**
 * A process killed during PGlite's first initdb (seconds on a loaded machine) leaves a directory
 * PGlite aborts on at every later open. The read model is a projection of the log, and nothing was
 * ever applied to a directory that never finished initialising, so it is emptied and made again.
 */
async function discardInterruptedInit(dataDir: string): Promise<boolean> {
  // Staging directories of initdbs that never finished (their gateway died). One may still be
  // written by its orphaned initdb: what cannot be removed now is removed at a later start.
  const parent = dirname(dataDir);
  const stale = (await readdir(parent)).filter((name) => name.startsWith(basename(dataDir) + STAGING));
  await Promise.all(stale.map((name) => rm(join(parent, name), { recursive: true, force: true }).catch(() => undefined)));
  if (await access(join(dataDir, INITIALISED)).then(() => true, () => false)) return false;
  const leftovers = (await readdir(dataDir)).filter((name) => name !== '.omnigate.lock');
  await Promise.all(leftovers.map((name) => rm(join(dataDir, name), { recursive: true, force: true })));
  return true;
}

/**
 * How long the applier's lock session, or a transaction of ours, may stay silent before
 * PostgreSQL ends it: a frozen replica's lock then passes to another replica after this.
 */
export const APPLIER_SILENCE_MS = 30_000;

/**
 * Settings of every session of ours, set once connected ($1: the silence limit in ms), each only
 * where the server knows it:
 * - jit off: every query here is short and served by an index, but on tables of millions of rows
 *   the planner's cost passes jit_above_cost, and compiling took 180 ms of a 9 ms search (bench
 *   history phase);
 * - idle_in_transaction_session_timeout: a frozen process (SIGSTOP, a paused VM) in the middle of
 *   a batch held the checkpoint row locked, and its kernel kept the connection alive: the server
 *   ends such a transaction.
 * Once given as startup parameters; PgBouncer refuses those ("unsupported startup parameter").
 */
const SESSION_SETTINGS = `SELECT set_config(s.name, s.setting, false)
  FROM (VALUES ('jit', 'off'), ('idle_in_transaction_session_timeout', $1::text)) AS s(name, setting)
  WHERE s.name IN (SELECT name FROM pg_settings)`;

class PostgresDatabase implements Database {
  readonly engine = 'postgres' as const;

  private constructor(
    private readonly pool: pg.Pool,
    private readonly config: pg.ClientConfig,
    readonly where: string,
    private readonly silenceMs: number,
  ) {}

  static async open(o: DatabaseOptions): Promise<PostgresDatabase> {
    // pg lets the URL's (absent) user override a separate `user` key: credentials go into the URL object here, never into a log.
    const url = new URL(o.url!);
    if (o.user) url.username = encodeURIComponent(o.user);
    if (o.password) url.password = encodeURIComponent(o.password);
    const config: pg.ClientConfig = {
      // Only startup parameters PgBouncer passes on: it refuses a connection that sends any other
      // (`options`, a setting), so the session's settings are set once connected (SESSION_SETTINGS).
      connectionString: url.toString(), application_name: 'omnigate',
      // A server that accepts and never answers (a half-dead host, a proxy with nothing behind it)
      // left the read model "opening" for ever, with no error for /readyz to show.
      connectionTimeoutMillis: o.connectTimeoutMs ?? 10_000,
      types: { getTypeParser: pgTypeParser } as pg.CustomTypesConfig,
    };
    const silenceMs = o.silenceMs ?? APPLIER_SILENCE_MS;
    // Awaited by the pool before it hands a new connection out; a failure fails that checkout.
    const onConnect = async (client: pg.ClientBase) => void (await client.query(SESSION_SETTINGS, [String(silenceMs)]));
    // eslint-disable-next-line @typescript-eslint/no-misused-promises -- pg-pool awaits the promise (a rejection fails the checkout); its types say void
    const pool = new pg.Pool({ ...config, max: o.poolSize ?? 10, onConnect });
    // An idle client's error (server restarted) must not crash the process; the next query reconnects.
    pool.on('error', () => undefined);
    const db = new PostgresDatabase(pool, config, `postgres:${safeUrl(o.url!)}`, silenceMs);
    await db.query('SELECT 1');
    return db;
  }

  async query<R>(sql: string, params: unknown[] = []): Promise<R[]> {
    return normalizeRows((await this.pool.query(sql, params)).rows as R[]);
  }

  async transaction<T>(fn: (tx: Queryable) => Promise<T>): Promise<T> {
    const client = await this.pool.connect();
    let broken: unknown;
    // The pool listens for errors only on idle clients: a connection lost while this one is
    // checked out (PostgreSQL restarted, a proxy cut) was an 'error' event nobody heard, which
    // ends the process. The query in flight fails with it anyway; the client is discarded.
    const lost = (err: Error) => {
      broken = err;
    };
    client.on('error', lost);
    try {
      await client.query('BEGIN');
      const result = await fn({ query: async <R>(sql: string, params: unknown[] = []) => normalizeRows((await client.query(sql, params)).rows as R[]) });
      await client.query('COMMIT');
      return result;
    } catch (err) {
      await client.query('ROLLBACK').catch((rollbackErr: unknown) => {
        broken = rollbackErr;
      });
      throw err;
    } finally {
      client.off('error', lost);
      client.release(broken instanceof Error ? broken : undefined);
    }
  }

  /**
   * A session-level advisory lock on its own connection: the server frees it if we die, and, since
   * a frozen holder's kernel keeps the connection alive (an outside trial stopped the applier
   * with SIGSTOP: lists and search lagged on every replica until it woke), also when the holder
   * falls silent: the session ends after `silenceMs` without a statement (PostgreSQL 14+,
   * idle_session_timeout), and a live holder sends one every third of that.
   */
  async tryApplierLock(key: number): Promise<ApplierLock | null> {
    const client = new pg.Client(this.config);
    let lostResolve!: () => void;
    const lost = new Promise<void>((r) => (lostResolve = r));
    client.on('error', () => lostResolve());
    client.on('end', () => lostResolve());
    await client.connect();
    let row: { ok: boolean } | undefined;
    try {
      await client.query(SESSION_SETTINGS, [String(this.silenceMs)]);
      [row] = (await client.query<{ ok: boolean }>('SELECT pg_try_advisory_lock($1) AS ok', [key])).rows;
    } catch (err) {
      // The connection is ours alone: left open, each retry of the applier loop leaked one.
      await client.end().catch(() => undefined);
      throw err;
    }
    if (!row?.ok) {
      await client.end();
      return null;
    }
    // Older servers do not know the setting: the lock then lasts while the connection does.
    await client.query(`SET idle_session_timeout = ${Math.round(this.silenceMs)}`).catch(() => undefined);
    const heartbeat = setInterval(() => {
      client.query('SELECT 1').catch(() => lostResolve());
    }, this.silenceMs / 3);
    heartbeat.unref();
    lost.then(() => clearInterval(heartbeat), () => undefined);
    return {
      lost,
      release: async () => {
        clearInterval(heartbeat);
        await client.query('SELECT pg_advisory_unlock($1)', [key]).catch(() => undefined);
        await client.end().catch(() => undefined);
      },
    };
  }

  /** Bounded: pg's end() waits for every checked-out client, and a stop must not hang on one. */
  async close(): Promise<void> {
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([this.pool.end(), new Promise<void>((r) => (timer = setTimeout(r, 2000)))]);
    clearTimeout(timer);
  }
}

/** host:port/database of a PostgreSQL URL: never the user or password. */
export function safeUrl(url: string): string {
  try {
    const u = new URL(url);
    return `${u.hostname}${u.port ? `:${u.port}` : ''}${u.pathname}`;
  } catch {
    return '(unparsable url)';
  }
}

/** int8 (counts, sequences) as a JS number, like PGlite after normalizeRows; everything else as pg parses it. */
const INT8_OID = 20;
function pgTypeParser(oid: number, format?: string): (value: string) => unknown {
  if (oid === INT8_OID) return (v: string) => Number(v);
  return pg.types.getTypeParser(oid, (format ?? 'text') as 'text');
}

/**
 * The same row shape from both engines: timestamps as ISO-8601 strings (UTC, milliseconds, as the
 * bus writes them), 64-bit integers as numbers (sequences stay far below 2^53).
 */
function normalizeRows<R>(rows: R[]): R[] {
  for (const row of rows as Array<Record<string, unknown>>) {
    for (const [k, v] of Object.entries(row)) {
      if (v instanceof Date) row[k] = v.toISOString();
      else if (typeof v === 'bigint') row[k] = Number(v);
    }
  }
  return rows;
}
