/**
 * A data directory made ready for writing, or an error that says why not and names the setting.
 * Node's recursive mkdir answers ENOENT for a directory it cannot make on a read-only file system
 * ("no such file or directory, mkdir '/data/nats'" sent an ops engineer looking for a missing
 * path); an existing directory there passed and failed later, deep in nats-server or PGlite.
 */
import { constants } from 'node:fs';
import { access, mkdir, stat } from 'node:fs/promises';
import { dirname } from 'node:path';

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
  try {
    await mkdir(dir, { recursive: true });
  } catch (err) {
    throw new DataDirError(field, dir, `cannot be created: ${await whyNotCreated(dir, err as NodeJS.ErrnoException)}`);
  }
  try {
    await access(dir, constants.W_OK | constants.X_OK);
  } catch (err) {
    throw new DataDirError(field, dir, `is not writable: ${explain(err as NodeJS.ErrnoException)}`);
  }
}

/** The error of the first directory on the way that could not be made: the deepest existing ancestor's child. */
async function whyNotCreated(dir: string, err: NodeJS.ErrnoException): Promise<string> {
  let missing = dir;
  for (let parent = dirname(missing); parent !== missing; missing = parent, parent = dirname(parent)) {
    const kind = await stat(parent).then((s) => (s.isDirectory() ? 'dir' : 'other'), () => 'none');
    if (kind === 'other') return `${parent} is a file, not a directory`;
    if (kind === 'dir') {
      try {
        await mkdir(missing);
        return explain(err); // made this time: whatever failed before is the answer
      } catch (inner) {
        return explain(inner as NodeJS.ErrnoException);
      }
    }
  }
  return explain(err);
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
