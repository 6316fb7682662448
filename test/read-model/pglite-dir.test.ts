/**
 * The embedded PGlite directory: one process at a time (a second opener is refused with the field
 * to change, instead of aborting the WebAssembly module), and a first start cut short during
 * initdb does not leave a directory every later start aborts on.
 */
import { afterAll, describe, expect, it } from 'vitest';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { openDatabase } from '../../src/read-model/database.js';
import { DataDirLockedError } from '../../src/core/data-dir-lock.js';

const dirs: string[] = [];
function freshDir(): string {
  const d = mkdtempSync(join(tmpdir(), 'omnigate-pglite-dir-'));
  dirs.push(d);
  return d;
}
afterAll(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

describe('the PGlite directory', () => {
  it('refuses a second opener, naming database.dataDir and the holder, and opens once the first closed', async () => {
    const dataDir = join(freshDir(), 'sql');
    const first = await openDatabase({ dataDir });
    const refused = await openDatabase({ dataDir }).catch((e: unknown) => e);
    expect(refused).toBeInstanceOf(DataDirLockedError);
    expect((refused as Error).message).toContain('database.dataDir');
    expect((refused as Error).message).toContain(`pid ${process.pid}`);
    await first.close();

    const again = await openDatabase({ dataDir });
    expect(await again.query<{ one: number }>('SELECT 1 AS one')).toEqual([{ one: 1 }]);
    await again.close();
  }, 120_000);

  it('keeps the event loop free while PGlite initialises (initdb in a process of its own, then a thread)', async () => {
    const dataDir = join(freshDir(), 'sql');
    // The largest gap between timer ticks during the open, against the open's own length: on the
    // main thread, initdb held the loop for (nearly) all of it.
    let last = performance.now();
    let longestGap = 0;
    const ticker = setInterval(() => {
      const now = performance.now();
      longestGap = Math.max(longestGap, now - last);
      last = now;
    }, 10);
    const started = performance.now();
    const db = await openDatabase({ dataDir });
    const took = performance.now() - started;
    clearInterval(ticker);
    await db.close();
    expect(longestGap).toBeLessThan(took / 2);
  }, 120_000);

  it('initialises again a directory whose first initdb was cut short', async () => {
    const dataDir = join(freshDir(), 'sql');
    // What a kill -9 during the first start's initdb leaves: some of the files, no marker.
    mkdirSync(join(dataDir, 'base', '1'), { recursive: true });
    writeFileSync(join(dataDir, 'PG_VERSION'), '17\n');
    writeFileSync(join(dataDir, 'base', '1', '1259'), Buffer.alloc(100, 0xff));
    const db = await openDatabase({ dataDir });
    expect(await db.query<{ one: number }>('SELECT 1 AS one')).toEqual([{ one: 1 }]);
    await db.close();
    expect(existsSync(join(dataDir, '.omnigate-initialised'))).toBe(true);
  }, 120_000);

  it('initialises in a staging directory moved into place, and removes stagings of initdbs whose gateway died', async () => {
    const parent = freshDir();
    const dataDir = join(parent, 'sql');
    // What a gateway killed during initdb leaves beside its directory (its orphaned initdb may
    // still be writing there; the directory itself is never written by an unfinished initdb).
    const stale = join(parent, 'sql.initdb-4242-abcdef');
    mkdirSync(join(stale, 'base', '1'), { recursive: true });
    writeFileSync(join(stale, 'PG_VERSION'), '17\n');
    const db = await openDatabase({ dataDir });
    expect(await db.query<{ one: number }>('SELECT 1 AS one')).toEqual([{ one: 1 }]);
    await db.close();
    expect(readdirSync(parent).sort()).toEqual(['sql']);
    expect(existsSync(join(dataDir, 'PG_VERSION'))).toBe(true);
    expect(existsSync(join(dataDir, '.omnigate-initialised'))).toBe(true);
  }, 120_000);
});
