/**
 * A read-only view of `source` at `target` (a bind mount remounted read-only), unmounted after the
 * file's tests: how the data-directory tests meet a read-only volume. False where this process may
 * not mount (no root or CAP_SYS_ADMIN): those cases are skipped, said once.
 */
import { execFileSync } from 'node:child_process';
import { mkdirSync } from 'node:fs';
import { afterAll } from 'vitest';

export function readOnlyBindMount(source: string, target: string): boolean {
  mkdirSync(target, { recursive: true });
  try {
    execFileSync('mount', ['--bind', source, target], { stdio: 'ignore' });
    execFileSync('mount', ['-o', 'remount,bind,ro', target], { stdio: 'ignore' });
  } catch {
    console.log('read-only cases skipped: cannot bind-mount here (needs root or CAP_SYS_ADMIN)');
    return false;
  }
  afterAll(() => {
    execFileSync('umount', ['-l', target], { stdio: 'ignore' });
  });
  return true;
}
