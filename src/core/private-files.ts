/**
 * What the gateway keeps in its data directories (the JetStream store, PGlite's tables and WAL,
 * the embedded server's credential) is for the service user alone: directories 0700, files 0600.
 *
 * Two halves, because neither covers it all:
 * - the process umask (restrictUmask, set by `omnigate start`): PGlite (Emscripten's file system)
 *   creates its files 0666 and nats-server its store 0750/0640, neither with a mode we can pass,
 *   and both go on creating files (WAL segments, message blocks) for the life of the process;
 * - explicit modes on what we write ourselves (writePrivateFile, mkdir with PRIVATE_DIR), and
 *   tightenTree for what an older version, another umask or a volume's owner left looser.
 *
 * A volume the process may not chmod (EPERM: not the owner; EROFS) is reported, never fatal:
 * the caller warns and the gateway runs with the modes it found.
 */
import { chmod, lstat, readdir, rename, rm, writeFile } from 'node:fs/promises';
import { isMainThread } from 'node:worker_threads';
import { join } from 'node:path';

export const PRIVATE_DIR = 0o700;
export const PRIVATE_FILE = 0o600;
/** chmod refusals of a volume whose modes are not ours to set. */
const UNCHANGEABLE = new Set(['EPERM', 'ENOTSUP', 'EOPNOTSUPP']);
/** Group and other bits: what tightening takes away (setgid stays: Kubernetes' fsGroup sets it). */
const SHARED_BITS = 0o077;

/**
 * Clears group and other bits from the process umask (the owner's stay as they were). Returns
 * the umask before, or undefined where it cannot be set (a worker thread).
 */
export function restrictUmask(): number | undefined {
  if (!isMainThread) return undefined;
  const before = process.umask(SHARED_BITS);
  process.umask(before | SHARED_BITS);
  return before;
}

/**
 * Writes `text` to a new file of mode 0600 and renames it over `path`: an existing file's looser
 * mode is not kept (writeFile's mode applies only to a file it creates), and a reader never sees
 * it half-written. For one writer at a time (the data directory's lock holder).
 */
export async function writePrivateFile(path: string, text: string): Promise<void> {
  // Callers hold the directory's lock: one writer, so a fixed name; one a crash left is replaced.
  const tmp = `${path}.tmp`;
  await rm(tmp, { force: true });
  try {
    await writeFile(tmp, text, { mode: PRIVATE_FILE, flag: 'wx' });
    // A umask can only take bits away; this says it for certain. A volume whose modes are the
    // mount's (CIFS, Azure Files: EPERM even on a file just made) keeps them: reported by the
    // start's tightening (describeTightening), not a reason to refuse to start.
    await chmod(tmp, PRIVATE_FILE).catch((err: NodeJS.ErrnoException) => {
      if (!UNCHANGEABLE.has(err.code ?? '')) throw err;
    });
    await rename(tmp, path);
  } catch (err) {
    await rm(tmp, { force: true });
    throw err;
  }
}

export interface Tightened {
  /** Paths whose group or other bits were cleared. */
  changed: number;
  /** Paths that could not be changed, with the reason (first few only). */
  failed: Array<{ path: string; reason: string }>;
  /** How many could not be changed in all. */
  failures: number;
}

/**
 * Clears group and other bits on `root` and, for each of `entries` (names in `root`, or 'all'),
 * on it and everything under it. Symbolic links are neither changed nor followed. Never throws
 * for a path it may not change: it is counted in `failed`.
 */
export async function tightenTree(root: string, entries: readonly string[] | 'all'): Promise<Tightened> {
  const result: Tightened = { changed: 0, failed: [], failures: 0 };
  await tightenOne(root, result);
  const names = entries === 'all' ? await readdir(root).catch(() => [] as string[]) : entries;
  for (const name of names) await tightenBelow(join(root, name), result);
  return result;
}

async function tightenBelow(path: string, result: Tightened): Promise<void> {
  const dir = await tightenOne(path, result);
  if (!dir) return;
  let names: string[];
  try {
    names = await readdir(path);
  } catch (err) {
    note(result, path, err);
    return;
  }
  for (const name of names) await tightenBelow(join(path, name), result);
}

/** Tightens one path; true when it is a directory to go into. */
async function tightenOne(path: string, result: Tightened): Promise<boolean> {
  let mode: number;
  let dir: boolean;
  try {
    const s = await lstat(path);
    if (s.isSymbolicLink()) return false;
    mode = s.mode & 0o7777;
    dir = s.isDirectory();
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') note(result, path, err);
    return false;
  }
  if (mode & SHARED_BITS) {
    try {
      await chmod(path, mode & ~SHARED_BITS);
      result.changed++;
    } catch (err) {
      note(result, path, err);
    }
  }
  return dir;
}

function note(result: Tightened, path: string, err: unknown): void {
  result.failures++;
  const e = err as NodeJS.ErrnoException;
  if (result.failed.length < 5) result.failed.push({ path, reason: e.code ?? e.message });
}

/** The log line's fields and text for a tightening, or undefined when there was nothing to say. */
export function describeTightening(dir: string, t: Tightened): { level: 'info' | 'warn'; fields: Record<string, unknown>; message: string } | undefined {
  if (t.failures) {
    return {
      level: 'warn',
      fields: { dir, tightened: t.changed, notChanged: t.failures, examples: t.failed },
      message: 'could not make everything in the data directory private to the service user (EPERM: owned by another user; EROFS: read-only volume): other local users may read what is there; fix the owner or mode of those paths (docs/operating.md#file-permissions)',
    };
  }
  if (t.changed) {
    return {
      level: 'info',
      fields: { dir, tightened: t.changed },
      message: 'removed group and other access in the data directory (left by an older version, another umask or the volume): it is private to the service user now',
    };
  }
  return undefined;
}
