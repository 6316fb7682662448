/**
 * SQL for tests: a migrated PGlite data directory copied from a per-machine template (initdb takes
 * seconds on a loaded machine; a copy takes a fraction of one), and throwaway PostgreSQL databases
 * on the machine's server (127.0.0.1:5432, trust auth), created and dropped per test file.
 */
import { cpSync, existsSync, mkdtempSync, renameSync, rmSync } from 'node:fs';
import { createHash, randomBytes } from 'node:crypto';
import { hostname, tmpdir } from 'node:os';
import { join } from 'node:path';
import { openDatabase, type Database } from '../../src/read-model/database.js';
import { processAlive } from '../../src/core/nats-leftovers.js';
import { MIGRATIONS, migrate } from '../../src/read-model/migrations.js';

const PG_ADMIN_URL = process.env.OMNIGATE_TEST_PG_URL ?? 'postgres://127.0.0.1:5432/postgres';
const PG_USER = process.env.OMNIGATE_TEST_PG_USER ?? 'postgres';

/** A fresh, migrated PGlite directory (the caller owns it). */
export async function pgliteDir(): Promise<string> {
  const version = createHash('sha256').update(JSON.stringify(MIGRATIONS)).digest('hex').slice(0, 12);
  const template = join(tmpdir(), `omnigate-pglite-template-${version}`);
  if (!existsSync(join(template, 'PG_VERSION'))) {
    const building = mkdtempSync(join(tmpdir(), 'omnigate-pglite-building-'));
    const db = await openDatabase({ dataDir: building });
    await migrate(db);
    await db.close();
    try {
      renameSync(building, template);
    } catch {
      rmSync(building, { recursive: true, force: true }); // another worker won the race: theirs is as good
    }
  }
  const dir = mkdtempSync(join(tmpdir(), 'omnigate-pglite-'));
  cpSync(template, dir, { recursive: true });
  return dir;
}

export interface TestPostgres {
  url: string;
  user: string;
  name: string;
  drop(): Promise<void>;
}

/** Databases made by postgresDatabase() and not dropped yet. */
const created = new Set<TestPostgres>();

/** Drops every database this process made and has not dropped (a bench stopped by a signal). */
export async function dropTestDatabases(): Promise<void> {
  await Promise.all([...created].map((pg) => pg.drop()));
}

let leftoversDropped: Promise<void> | undefined;

/**
 * Drops the databases of test and bench processes that died without dropping theirs (SIGKILL, a
 * CI timeout): the creator's pid is in the name. Once per process; a reused pid keeps its
 * predecessor's database until that pid dies too.
 */
function dropLeftovers(admin: Database): Promise<void> {
  leftoversDropped ??= (async () => {
    const rows = await admin.query<{ datname: string }>(`SELECT datname FROM pg_database WHERE datname LIKE 'omnigate\\_test\\_${HOST}\\_%'`);
    for (const { datname } of rows) {
      const pid = Number(new RegExp(`^omnigate_test_${HOST}_(\\d+)_[0-9a-f]+$`).exec(datname)?.[1]);
      if (pid && !processAlive(pid)) await admin.query(`DROP DATABASE IF EXISTS ${datname} WITH (FORCE)`).catch(() => {});
    }
  })();
  return leftoversDropped;
}

/**
 * This machine (container, VM) in test database names: pids are only comparable on it, and a run
 * elsewhere that shares the PostgreSQL server keeps its databases.
 */
const HOST = createHash('sha256').update(hostname()).digest('hex').slice(0, 8);

/** CREATE DATABASE omnigate_test_<host>_<pid>_<random>; drop() removes it (and ends its sessions). */
export async function postgresDatabase(): Promise<TestPostgres> {
  const name = `omnigate_test_${HOST}_${process.pid}_${randomBytes(6).toString('hex')}`;
  const admin = await openDatabase({ url: PG_ADMIN_URL, user: PG_USER, dataDir: '' });
  try {
    await dropLeftovers(admin);
    await admin.query(`CREATE DATABASE ${name}`);
  } finally {
    await admin.close();
  }
  const url = new URL(PG_ADMIN_URL);
  url.pathname = `/${name}`;
  const pg: TestPostgres = {
    url: url.toString(),
    user: PG_USER,
    name,
    async drop() {
      const a = await openDatabase({ url: PG_ADMIN_URL, user: PG_USER, dataDir: '' });
      try {
        await a.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
        created.delete(pg);
      } finally {
        await a.close();
      }
    },
  };
  created.add(pg);
  return pg;
}

export async function openTestDatabase(engine: 'pglite' | 'postgres'): Promise<{ db: Database; config: Record<string, unknown>; cleanup(): Promise<void> }> {
  if (engine === 'pglite') {
    const dir = await pgliteDir();
    const db = await openDatabase({ dataDir: dir });
    return { db, config: { dataDir: dir }, cleanup: async () => rmSync(dir, { recursive: true, force: true }) };
  }
  const pg = await postgresDatabase();
  const db = await openDatabase({ url: pg.url, user: pg.user, dataDir: '' });
  return { db, config: { url: pg.url, user: pg.user }, cleanup: () => pg.drop() };
}

/** `db` with some of its calls replaced (a lock that waits, transactions held back): the rest go to `db`. */
export function wrapDatabase(db: Database, replaced: Partial<Pick<Database, 'query' | 'transaction' | 'tryApplierLock' | 'close'>>): Database {
  return {
    engine: db.engine,
    where: db.where,
    query: (sql, params) => db.query(sql, params),
    transaction: (fn) => db.transaction(fn),
    tryApplierLock: (key) => db.tryApplierLock(key),
    close: () => db.close(),
    ...replaced,
  };
}
