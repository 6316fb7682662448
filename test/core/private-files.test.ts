/**
 * Making a data directory private: group and other bits off (setgid kept for Kubernetes' fsGroup),
 * symbolic links neither changed nor followed, only the named entries recursed into, and a path
 * that cannot be changed (a read-only volume) reported, never thrown.
 */
import { chmodSync, mkdirSync, readFileSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { describeTightening, tightenTree, writePrivateFile } from '../../src/core/private-files.js';
import { readOnlyBindMount } from '../helpers/read-only-mount.js';
import { testTempDir } from '../helpers/temp-dirs.js';

const root = testTempDir('omnigate-private-files-');
const mode = (path: string) => statSync(path).mode & 0o7777;

const readOnly = join(root, 'ro');
mkdirSync(join(root, 'ro-source', 'store'), { recursive: true });
writeFileSync(join(root, 'ro-source', 'store', 'blk'), 'x');
chmodSync(join(root, 'ro-source', 'store', 'blk'), 0o644);
const mounted = readOnlyBindMount(join(root, 'ro-source'), readOnly);

describe('tightenTree', () => {
  it('clears group and other bits on the root and under the named entries only, keeps setgid, leaves links alone', async () => {
    const dir = join(root, 'data');
    mkdirSync(join(dir, 'sql', 'pg_wal'), { recursive: true });
    writeFileSync(join(dir, 'sql', 'pg_wal', '000000010000000000000001'), 'wal');
    writeFileSync(join(dir, 'nats.url'), 'nats://127.0.0.1:4222\n');
    writeFileSync(join(dir, 'notes.txt'), 'not ours');
    writeFileSync(join(root, 'outside'), 'elsewhere');
    symlinkSync(join(root, 'outside'), join(dir, 'sql', 'link'));
    chmodSync(dir, 0o2775); // as kubelet leaves a volume with fsGroup
    chmodSync(join(dir, 'sql'), 0o755);
    chmodSync(join(dir, 'sql', 'pg_wal'), 0o755);
    chmodSync(join(dir, 'sql', 'pg_wal', '000000010000000000000001'), 0o666);
    chmodSync(join(dir, 'nats.url'), 0o644);
    chmodSync(join(dir, 'notes.txt'), 0o644);
    chmodSync(join(root, 'outside'), 0o644);

    const t = await tightenTree(dir, ['sql', 'nats.url', 'missing']);
    expect(t).toEqual({ changed: 5, failed: [], failures: 0 });
    expect(mode(dir)).toBe(0o2700);
    expect(mode(join(dir, 'sql'))).toBe(0o700);
    expect(mode(join(dir, 'sql', 'pg_wal'))).toBe(0o700);
    expect(mode(join(dir, 'sql', 'pg_wal', '000000010000000000000001'))).toBe(0o600);
    expect(mode(join(dir, 'nats.url'))).toBe(0o600);
    expect(mode(join(dir, 'notes.txt'))).toBe(0o644);
    expect(mode(join(root, 'outside'))).toBe(0o644);
    expect(describeTightening(dir, t)).toMatchObject({ level: 'info', fields: { dir, tightened: 5 } });
    // Already private: nothing to say at the next start.
    expect(describeTightening(dir, await tightenTree(dir, ['sql', 'nats.url']))).toBeUndefined();
  });

  it.skipIf(!mounted)('reports what a read-only volume does not let it change, and does not throw', async () => {
    const t = await tightenTree(readOnly, 'all');
    expect(t.changed).toBe(0);
    expect(t.failures).toBeGreaterThanOrEqual(2);
    expect(t.failed.map((f) => f.reason)).toContain('EROFS');
    expect(describeTightening(readOnly, t)).toMatchObject({ level: 'warn' });
  });
});

describe('writePrivateFile', () => {
  it('replaces a looser file by one of mode 0600, whatever the umask', async () => {
    const file = join(root, 'nats.url');
    writeFileSync(file, 'old');
    chmodSync(file, 0o666);
    const before = process.umask(0);
    try {
      await writePrivateFile(file, 'new\n');
    } finally {
      process.umask(before);
    }
    expect(readFileSync(file, 'utf8')).toBe('new\n');
    expect(mode(file)).toBe(0o600);
  });
});
