/**
 * A data directory made ready for writing, or an error that says why not and names the setting.
 * Node's recursive mkdir answers ENOENT for a directory it cannot make on a read-only file system
 * ("no such file or directory, mkdir '/data/nats'" sent an ops engineer looking for a missing
 * path); an existing directory there passed and failed later, deep in nats-server or PGlite.
 *
 * Everything that can be known before creating anything is checked first, and the diagnosis of a
 * failed mkdir only looks: a refused start leaves no directory behind (the old diagnosis made the
 * first missing directory itself to see what the kernel said, and sometimes succeeded).
 */
import { constants } from 'node:fs';
import { access, mkdir, stat } from 'node:fs/promises';
import { dirname, resolve } from 'node:path';
import { PRIVATE_DIR } from './private-files.js';
import { pseudoFilesystemOf } from './pseudo-fs.js';

export class DataDirError extends Error {
  constructor(
    readonly field: string,
    readonly dir: string,
    readonly reason: string,
  ) {
    super(`${field}: ${dir} ${reason}`);
    this.name = 'DataDirError';
  }
}

export async function ensureDataDir(dir: string, field: string): Promise<void> {
  const pseudo = await pseudoFilesystemOf(dir);
  // /proc, /sys and /dev look like directories and take writes that mean something else: a start
  // with `dataDir: /proc/self/cwd/..` hung instead of failing.
  if (pseudo) throw new DataDirError(field, dir, `is on ${pseudo}, a kernel pseudo file system, not storage: give a directory on a real volume`);
  const blocked = await whyNotCreatable(resolve(dir));
  if (blocked) throw new DataDirError(field, dir, `cannot be created: ${blocked}`);
  try {
    // Private to the service user (private-files.ts), as is every level made here.
    await mkdir(dir, { recursive: true, mode: PRIVATE_DIR });
  } catch (err) {
    throw new DataDirError(field, dir, `cannot be created: ${(await whyNotCreatable(resolve(dir))) ?? explain(err as NodeJS.ErrnoException)}`);
  }
  try {
    await access(dir, constants.W_OK | constants.X_OK);
  } catch (err) {
    throw new DataDirError(field, dir, `is not writable: ${explain(err as NodeJS.ErrnoException)}`);
  }
}

/**
 * Why the missing part of `dir` cannot be made, judged from its deepest existing ancestor without
 * creating anything: a file in the way, or an ancestor the gateway may not write (EACCES, EROFS,
 * as access(2) answers for a read-only mount). Undefined when `dir` exists or nothing is in the way.
 */
async function whyNotCreatable(dir: string): Promise<string | undefined> {
  let missing = dir;
  for (let parent = dirname(missing); ; missing = parent, parent = dirname(parent)) {
    const kind = await kindOf(missing);
    if (kind === 'dir') return missing === dir ? undefined : await notWritable(missing);
    if (kind === 'other') return `${missing} is a file, not a directory`;
    if (parent === missing) return undefined;
  }
}

async function kindOf(path: string): Promise<'dir' | 'other' | 'none'> {
  try {
    return (await stat(path)).isDirectory() ? 'dir' : 'other';
  } catch {
    return 'none'; // ENOENT, or ENOTDIR below a file: its parent is looked at next
  }
}

async function notWritable(ancestor: string): Promise<string | undefined> {
  try {
    await access(ancestor, constants.W_OK | constants.X_OK);
    return undefined;
  } catch (err) {
    return `${explain(err as NodeJS.ErrnoException)} (at ${ancestor})`;
  }
}

function explain(err: NodeJS.ErrnoException): string {
  switch (err.code) {
    case 'EROFS':
      return 'the file system is read-only (EROFS): mount the volume read-write';
    case 'EACCES':
    case 'EPERM':
      return `permission denied (${err.code}) for the user the gateway runs as (uid ${process.getuid?.() ?? '?'}): give it the directory`;
    case 'ENOSPC':
      return 'the disk is full (ENOSPC)';
    case 'ENOTDIR':
      return 'a part of the path is a file, not a directory (ENOTDIR)';
    default:
      return err.message;
  }
}
