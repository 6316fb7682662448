/**
 * Whether a path lies on a kernel pseudo file system (/proc, /sys, /dev and their kin): such a
 * directory exists and may even take writes, but stores nothing, and a data directory there made
 * the start hang (`dataDir: /proc/self/cwd/..`).
 */
import { realpath, statfs } from 'node:fs/promises';
import { dirname, isAbsolute, relative, resolve } from 'node:path';

/** statfs f_type magic numbers (linux/magic.h) of file systems that hold no data. */
const PSEUDO_MAGIC = new Map<number, string>([
  [0x9fa0, 'proc'],
  [0x62656572, 'sysfs'],
  [0x1cd1, 'devpts'],
  [0x27e0eb, 'cgroup'],
  [0x63677270, 'cgroup2'],
  [0x64626720, 'debugfs'],
  [0x74726163, 'tracefs'],
  [0x73636673, 'securityfs'],
  [0xcafe4a11, 'bpf'],
  [0x6165676c, 'pstore'],
  [0x62656570, 'configfs'],
  [0xde5e81e4, 'efivarfs'],
  [0x19800202, 'mqueue'],
  [0x6e736673, 'nsfs'],
  [0x42494e4d, 'binfmt_misc'],
  [0x65735543, 'fusectl'],
  [0xf97cff8c, 'selinuxfs'],
]);

/** Mount points of pseudo file systems, for where statfs is missing or cannot tell (devtmpfs reports tmpfs's magic). */
const PSEUDO_ROOTS = ['/proc', '/sys', '/dev'];

/** The pseudo mount a path as written lies under (`/proc/self/cwd/..` is /proc/self), without touching the disk. */
export function pseudoRootOf(path: string): string | undefined {
  const absolute = resolve(path);
  return PSEUDO_ROOTS.find((root) => isUnder(absolute, root));
}

/**
 * The pseudo file system `dir` is on, judged by its path as written, by the real path of its
 * deepest existing ancestor (a symlink into /proc) and by that ancestor's file system type.
 * Undefined for a real volume.
 */
export async function pseudoFilesystemOf(dir: string): Promise<string | undefined> {
  const written = pseudoRootOf(dir);
  if (written) return written;
  const ancestor = await deepestExisting(resolve(dir));
  const real = await realpath(ancestor).catch(() => ancestor);
  const underRoot = pseudoRootOf(real);
  if (underRoot) return underRoot;
  const type = await statfs(real).then((s) => Number(s.type), () => undefined);
  return type === undefined ? undefined : PSEUDO_MAGIC.get(type);
}

async function deepestExisting(path: string): Promise<string> {
  for (let at = path; ; at = dirname(at)) {
    if (await realpath(at).then(() => true, () => false)) return at;
    if (dirname(at) === at) return at;
  }
}

function isUnder(path: string, root: string): boolean {
  const rel = relative(root, path);
  return rel === '' || (!rel.startsWith('..') && !isAbsolute(rel));
}
