/**
 * Temporary directories of one test file: made here, removed after the file's own hooks have run
 * (test/setup.ts). Config files, embedded stores and PGlite copies left behind used to fill /tmp
 * by ~1.8 GB per full suite.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const made: string[] = [];

export function testTempDir(prefix: string): string {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  made.push(dir);
  return dir;
}

export function removeTestTempDirs(): void {
  // Best effort: an orphaned PGlite initdb of a killed gateway may still write into one (ENOTEMPTY);
  // a leftover directory must not fail the file whose tests passed.
  for (const dir of made.splice(0)) {
    try {
      rmSync(dir, { recursive: true, force: true, maxRetries: 3, retryDelay: 200 });
    } catch {
      /* left for the OS's tmp cleaning */
    }
  }
}
