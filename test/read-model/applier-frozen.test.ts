/**
 * The projection's applier frozen (SIGSTOP, a paused VM) while it holds the applier lock: its
 * kernel keeps the connection alive, so PostgreSQL never saw it go and lists and search lagged on
 * every replica until it woke (an outside cluster trial: 64 s and counting). The lock session now
 * ends once it has been silent for `silenceMs`, and another replica takes the lock.
 */
import { spawn } from 'node:child_process';
import { afterAll, describe, expect, it } from 'vitest';
import { openDatabase } from '../../src/read-model/database.js';
import { postgresDatabase, type TestPostgres } from '../helpers/sql.js';

const root = new URL('../..', import.meta.url).pathname;
const KEY = 4_242_424;
const SILENCE_MS = 2_000;
let pg: TestPostgres | undefined;
const children: Array<ReturnType<typeof spawn>> = [];
afterAll(async () => {
  for (const c of children) {
    c.kill('SIGCONT');
    c.kill('SIGKILL');
  }
  await pg?.drop();
});

/** A process of its own that takes the applier lock and says so, then waits (its heartbeat keeps the session alive). */
function holder(url: string): Promise<ReturnType<typeof spawn>> {
  const script = `
    const { openDatabase } = await import(${JSON.stringify(`${root}dist/read-model/database.js`)});
    const db = await openDatabase({ url: ${JSON.stringify(url)}, user: 'postgres', dataDir: '', silenceMs: ${SILENCE_MS} });
    const lock = await db.tryApplierLock(${KEY});
    console.log(lock ? 'locked' : 'refused');
    setInterval(() => {}, 1000);`;
  const child = spawn(process.execPath, ['--input-type=module', '-e', script], { stdio: ['ignore', 'pipe', 'inherit'] });
  children.push(child);
  return new Promise((resolve, reject) => {
    child.stdout!.on('data', (d: Buffer) => (d.toString().includes('locked') ? resolve(child) : reject(new Error(d.toString()))));
    child.once('exit', (code) => reject(new Error(`holder exited (${code})`)));
  });
}

describe('the applier lock of a frozen replica', () => {
  it('stays with a live holder past the silence limit, and passes to another replica once the holder is frozen', async () => {
    pg = await postgresDatabase();
    const child = await holder(pg.url);
    const db = await openDatabase({ url: pg.url, user: pg.user, dataDir: '', silenceMs: SILENCE_MS });
    try {
      // The holder's heartbeat keeps its session: three silence limits later it still holds the lock.
      await new Promise((r) => setTimeout(r, 3 * SILENCE_MS));
      expect(await db.tryApplierLock(KEY)).toBeNull();
      child.kill('SIGSTOP');
      const frozenAt = Date.now();
      let lock = null;
      while (!lock && Date.now() - frozenAt < 30_000) {
        await new Promise((r) => setTimeout(r, 250));
        lock = await db.tryApplierLock(KEY);
      }
      expect(lock, 'the lock passed to this replica').not.toBeNull();
      console.log(`applier lock taken over ${Date.now() - frozenAt} ms after the holder froze (silence limit ${SILENCE_MS} ms)`);
      await lock!.release();
    } finally {
      await db.close();
    }
  }, 60_000);
});
