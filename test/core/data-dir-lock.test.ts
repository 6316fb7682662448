/**
 * One gateway per data directory whatever path names it: a second path to the same directory (a
 * bind mount, a symlink) is refused like the first. Keyed on the real path, a bind mount slipped
 * through: two gateways, each with its own nats-server, ran on one JetStream store, lost what
 * they accepted and left it damaged.
 */
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { DataDirLockedError, acquireDataDirLock, lockAddress } from '../../src/core/data-dir-lock.js';

const root = mkdtempSync(join(tmpdir(), 'omnigate-lock-'));
const dir = join(root, 'data');
const alias = join(root, 'alias');
mkdirSync(dir);
mkdirSync(alias);

/** A bind mount needs root (CAP_SYS_ADMIN): where it cannot be made, that case is skipped and the symlink case still runs. */
function bindMount(): boolean {
  try {
    execFileSync('mount', ['--bind', dir, alias], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}
const mounted = process.platform === 'linux' && bindMount();

afterAll(() => {
  if (mounted) execFileSync('umount', [alias], { stdio: 'ignore' });
  rmSync(root, { recursive: true, force: true });
});

describe('the data-directory lock', () => {
  it.skipIf(!mounted)('refuses the same directory reached through a bind mount', async () => {
    expect(await lockAddress(alias)).toBe(await lockAddress(dir));
    const held = await acquireDataDirLock(dir);
    try {
      await expect(acquireDataDirLock(alias)).rejects.toBeInstanceOf(DataDirLockedError);
    } finally {
      await held.release();
    }
    // Free again once released, through either path.
    await (await acquireDataDirLock(alias)).release();
  });

  it.skipIf(process.platform !== 'linux')('is refused while a version keyed on the real path holds it (an upgrade started beside the old one)', async () => {
    const { createHash } = await import('node:crypto');
    const { createServer } = await import('node:net');
    const { realpathSync } = await import('node:fs');
    const old = createServer((s) => s.end(JSON.stringify({ pid: 4242 })));
    await new Promise<void>((r) => old.listen(`\0omnigate-data:${createHash('sha256').update(realpathSync(dir)).digest('hex').slice(0, 40)}`, r));
    try {
      await expect(acquireDataDirLock(dir)).rejects.toThrow(/\(pid 4242\)/);
    } finally {
      await new Promise((r) => old.close(r));
    }
    // Refused whole: the device-and-inode address was given back, so the next start takes both.
    await (await acquireDataDirLock(dir)).release();
  });

  it('refuses it through a symlink; another directory is another lock', async () => {
    const link = join(root, 'link');
    symlinkSync(dir, link);
    const other = join(root, 'other');
    mkdirSync(other);
    const held = await acquireDataDirLock(link);
    try {
      await expect(acquireDataDirLock(dir)).rejects.toThrow(/is in use by another omnigate process \(pid \d+\)/);
      await (await acquireDataDirLock(other)).release();
    } finally {
      await held.release();
    }
  });
});
