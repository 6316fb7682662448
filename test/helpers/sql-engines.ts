/**
 * The two engines the read model runs on, for tests that must hold on both: PGlite in a temp
 * directory, and the machine's PostgreSQL (127.0.0.1:5432, trust auth) in a throwaway database
 * created for the file and dropped after it. OMNIGATE_TEST_PG_URL points elsewhere.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { openDatabase, type Database } from '../../src/read-model/database.js';
import { migrate } from '../../src/read-model/migrations.js';

export const PG_ADMIN_URL = process.env.OMNIGATE_TEST_PG_URL ?? 'postgres://postgres@127.0.0.1:5432/test';

export interface TestDatabase {
  engine: 'pglite' | 'postgres';
  db: Database;
  /** The `database` section of a gateway config for it (postgres only; credentials apart from the URL). */
  config?: { url: string; user?: string };
  drop(): Promise<void>;
}

export async function openPglite(): Promise<TestDatabase> {
  const dir = mkdtempSync(join(tmpdir(), 'omnigate-pglite-'));
  const db = await openDatabase({ dataDir: dir });
  await migrate(db);
  return {
    engine: 'pglite',
    db,
    async drop() {
      await db.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

export async function openPostgres(): Promise<TestDatabase> {
  const name = `omni_test_${process.pid}_${Math.random().toString(36).slice(2, 8)}`;
  const admin = new pg.Client({ connectionString: PG_ADMIN_URL });
  await admin.connect();
  await admin.query(`CREATE DATABASE ${name}`);
  await admin.end();
  const url = new URL(PG_ADMIN_URL);
  url.pathname = `/${name}`;
  const db = await openDatabase({ url: url.toString(), dataDir: '' });
  await migrate(db);
  return {
    engine: 'postgres',
    db,
    config: (() => {
      const bare = new URL(url.toString());
      const user = decodeURIComponent(bare.username) || undefined;
      bare.username = '';
      bare.password = '';
      return { url: bare.toString(), user };
    })(),
    async drop() {
      await db.close();
      const c = new pg.Client({ connectionString: PG_ADMIN_URL });
      await c.connect();
      await c.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
      await c.end();
    },
  };
}

export const ENGINES = [
  ['pglite', openPglite],
  ['postgres', openPostgres],
] as const;
