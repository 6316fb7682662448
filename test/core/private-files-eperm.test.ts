/**
 * A volume whose file modes are the mount's (CIFS, Azure Files under Kubernetes): chmod answers
 * EPERM even on a file the process just made. The gateway's own files are still written (a review
 * found the start refused there); the start's tightening reports what it could not change.
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it, vi } from 'vitest';

vi.mock('node:fs/promises', async (original) => {
  const real = await original<typeof import('node:fs/promises')>();
  const refused = (code: string) => Object.assign(new Error(`${code}: operation not permitted, chmod`), { code });
  return { ...real, chmod: vi.fn(async (path: string) => Promise.reject(refused(String(path).includes('other-error') ? 'EIO' : 'EPERM'))) };
});

const { writePrivateFile } = await import('../../src/core/private-files.js');
const dir = mkdtempSync(join(tmpdir(), 'omnigate-eperm-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('writePrivateFile on a volume that refuses chmod', () => {
  it('writes the file anyway when chmod answers EPERM, and still fails on another error', async () => {
    await writePrivateFile(join(dir, 'nats.url'), 'nats://omnigate:pw@127.0.0.1:4222\n');
    expect(readFileSync(join(dir, 'nats.url'), 'utf8')).toBe('nats://omnigate:pw@127.0.0.1:4222\n');
    await expect(writePrivateFile(join(dir, 'other-error'), 'x')).rejects.toThrow(/EIO/);
  });
});
