/**
 * A data directory that cannot be used says why and names its setting: Node's recursive mkdir
 * answered ENOENT on a read-only volume, which sent an ops engineer looking for a missing path.
 */
import { existsSync, mkdirSync, readdirSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ensureDataDir } from '../../src/core/data-dir.js';
import { readOnlyBindMount } from '../helpers/read-only-mount.js';
import { testTempDir } from '../helpers/temp-dirs.js';

const root = testTempDir('omnigate-datadir-');
const readOnly = join(root, 'ro');
mkdirSync(join(root, 'ro-source', 'existing'), { recursive: true });
const mounted = readOnlyBindMount(join(root, 'ro-source'), readOnly);

describe('ensureDataDir', () => {
  it('makes a missing directory, and takes an existing writable one', async () => {
    await ensureDataDir(join(root, 'a', 'b', 'c'), 'database.dataDir');
    await ensureDataDir(join(root, 'a', 'b', 'c'), 'database.dataDir');
  });

  it('names a file in the way', async () => {
    writeFileSync(join(root, 'plain-file'), 'x');
    await expect(ensureDataDir(join(root, 'plain-file', 'nats'), 'nats.embedded.dataDir')).rejects.toThrow(/^nats\.embedded\.dataDir: .*plain-file\/nats cannot be created: .*plain-file is a file, not a directory$/);
    await expect(ensureDataDir(join(root, 'plain-file', 'a', 'b'), 'nats.embedded.dataDir')).rejects.toThrow(/cannot be created: .*plain-file is a file, not a directory$/);
  });

  it('creates nothing while finding out why a directory cannot be made', async () => {
    // Too long a path for the kernel (ENAMETOOLONG before anything is made): the old diagnosis
    // made the first missing directory itself to see what mkdir said, and it worked.
    const fresh = join(root, 'fresh');
    const tooLong = join(fresh, ...Array.from({ length: 24 }, () => 'y'.repeat(200)));
    await expect(ensureDataDir(tooLong, 'database.dataDir')).rejects.toThrow(/^database\.dataDir: .* cannot be created: .*ENAMETOOLONG/);
    expect(existsSync(fresh)).toBe(false);
  });

  // Kernel pseudo file systems exist and look writable to root, store nothing, and made the start
  // hang: refused, by the path as written, through a symlink, and by the file system's type.
  it('refuses a directory on /proc, /sys or /dev, naming the field', { timeout: 10_000 }, async () => {
    for (const dir of ['/proc/self/cwd/..', '/proc/self/fd/omnigate', '/sys/fs/omnigate', '/dev/shm/omnigate-data']) {
      await expect(ensureDataDir(dir, 'nats.embedded.dataDir')).rejects.toThrow(/^nats\.embedded\.dataDir: \S+ is on \/(proc|sys|dev), a kernel pseudo file system/);
    }
    expect(existsSync('/dev/shm/omnigate-data')).toBe(false);
    const linked = join(root, 'linked');
    mkdirSync(linked);
    symlinkSync('/proc/self', join(linked, 'proc'));
    await expect(ensureDataDir(join(linked, 'proc', 'data'), 'database.dataDir')).rejects.toThrow(/^database\.dataDir: .*linked\/proc\/data is on \/proc/);
    expect(readdirSync(linked)).toEqual(['proc']);
  });

  it.skipIf(!mounted)('says read-only, not "no such file", for a directory to make and for one that exists', async () => {
    await expect(ensureDataDir(join(readOnly, 'nats', 'deeper'), 'nats.embedded.dataDir')).rejects.toThrow('nats.embedded.dataDir: ' + join(readOnly, 'nats', 'deeper') + ' cannot be created: the file system is read-only (EROFS)');
    await expect(ensureDataDir(join(readOnly, 'existing'), 'database.dataDir')).rejects.toThrow('database.dataDir: ' + join(readOnly, 'existing') + ' is not writable: the file system is read-only (EROFS)');
    expect(readdirSync(readOnly)).toEqual(['existing']);
  });
});
