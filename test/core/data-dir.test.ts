/**
 * A data directory that cannot be used says why and names its setting: Node's recursive mkdir
 * answered ENOENT on a read-only volume, which sent an ops engineer looking for a missing path.
 */
import { execFileSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { ensureDataDir } from '../../src/core/data-dir.js';
import { testTempDir } from '../helpers/temp-dirs.js';

const root = testTempDir('omnigate-datadir-');
const readOnly = join(root, 'ro');
mkdirSync(join(root, 'ro-source', 'existing'), { recursive: true });
mkdirSync(readOnly);
const mounted = (() => {
  try {
    execFileSync('mount', ['--bind', join(root, 'ro-source'), readOnly], { stdio: 'ignore' });
    execFileSync('mount', ['-o', 'remount,bind,ro', readOnly], { stdio: 'ignore' });
    return true;
  } catch {
    console.log('read-only cases skipped: cannot bind-mount here (needs root or CAP_SYS_ADMIN)');
    return false;
  }
})();
afterAll(() => {
  if (mounted) execFileSync('umount', ['-l', readOnly], { stdio: 'ignore' });
});

describe('ensureDataDir', () => {
  it('makes a missing directory, and takes an existing writable one', async () => {
    await ensureDataDir(join(root, 'a', 'b', 'c'), 'database.dataDir');
    await ensureDataDir(join(root, 'a', 'b', 'c'), 'database.dataDir');
  });

  it('names a file in the way', async () => {
    writeFileSync(join(root, 'plain-file'), 'x');
    await expect(ensureDataDir(join(root, 'plain-file', 'nats'), 'nats.embedded.dataDir')).rejects.toThrow(/^nats\.embedded\.dataDir: .*plain-file\/nats cannot be created: .*plain-file is a file, not a directory$/);
  });

  it.skipIf(!mounted)('says read-only, not "no such file", for a directory to make and for one that exists', async () => {
    await expect(ensureDataDir(join(readOnly, 'nats', 'deeper'), 'nats.embedded.dataDir')).rejects.toThrow('nats.embedded.dataDir: ' + join(readOnly, 'nats', 'deeper') + ' cannot be created: the file system is read-only (EROFS)');
    await expect(ensureDataDir(join(readOnly, 'existing'), 'database.dataDir')).rejects.toThrow('database.dataDir: ' + join(readOnly, 'existing') + ' is not writable: the file system is read-only (EROFS)');
  });
});
