/**
 * PGlite's files on a shared host (an outside trial): 968 files of mode 0666 under data/sql,
 * pg_wal with customer names among them. Opening the directory makes it private (and says what it
 * changed); with the umask `omnigate start` sets, the files PGlite makes afterwards are private too
 * (it creates them 0666 and takes no mode).
 */
import { chmodSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { restrictUmask } from '../../src/core/private-files.js';
import { openDatabase } from '../../src/read-model/database.js';
import { pgliteDir } from '../helpers/sql.js';
import { sharedPaths } from '../helpers/file-modes.js';

/** As the trial found it: files 0666, directories 0755. */
function loosen(p: string): void {
  const s = statSync(p);
  chmodSync(p, s.isDirectory() ? 0o755 : 0o666);
  if (s.isDirectory()) for (const name of readdirSync(p)) loosen(join(p, name));
}

describe('PGlite directory', () => {
  it('is made private at open, and what PGlite writes later stays private under the gateway\'s umask', async () => {
    const dir = await pgliteDir();
    loosen(dir);
    expect(sharedPaths(dir).length).toBeGreaterThan(100);
    const before = restrictUmask();
    try {
      const db = await openDatabase({ dataDir: dir });
      try {
        expect(db.tightened?.changed).toBeGreaterThan(100);
        expect(db.tightened?.failures).toBe(0);
        // New relation files, WAL.
        await db.query('CREATE TABLE private_check (id int PRIMARY KEY, name text)');
        await db.query("INSERT INTO private_check SELECT g, 'Ольга ' || g FROM generate_series(1, 2000) g");
        await db.query('CHECKPOINT');
      } finally {
        await db.close();
      }
      expect(sharedPaths(dir)).toEqual([]);
    } finally {
      if (before !== undefined) process.umask(before);
    }
  });
});
