/** A small volume of its own for tests that fill a disk (a tmpfs: root or CAP_SYS_ADMIN). */
import { closeSync, mkdtempSync, openSync, rmSync, writeSync } from 'node:fs';
import { execFileSync } from 'node:child_process';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export interface SmallVolume {
  path: string;
  /** False where a tmpfs cannot be mounted: the test skips, and says so. */
  mounted: boolean;
  /** Unmounts (lazily: a process killed a moment ago may still hold a file) and removes the mount point. */
  remove(): void;
}

/** A 96 MB tmpfs at a new temporary directory named `prefix…`. */
export function mountSmallVolume(prefix: string): SmallVolume {
  const path = mkdtempSync(join(tmpdir(), prefix));
  let mounted = false;
  try {
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=96m', 'tmpfs', path], { stdio: 'ignore' });
    mounted = true;
  } catch {
    console.log('skipped: cannot mount a tmpfs here (needs root or CAP_SYS_ADMIN)');
  }
  return {
    path,
    mounted,
    remove() {
      if (mounted) execFileSync('umount', ['-l', path], { stdio: 'ignore' });
      rmSync(path, { recursive: true, force: true });
    },
  };
}

/** Writes zeros into `file` until the volume refuses more. */
export function fillVolume(file: string): void {
  const fd = openSync(file, 'w');
  const chunk = Buffer.alloc(1024 * 1024);
  try {
    for (;;) writeSync(fd, chunk);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOSPC') throw err;
  } finally {
    closeSync(fd);
  }
}
