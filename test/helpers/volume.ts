/** A small volume of its own for tests that fill a disk (a tmpfs: root or CAP_SYS_ADMIN). */
import { closeSync, openSync, writeSync } from 'node:fs';

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
