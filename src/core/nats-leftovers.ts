/**
 * Finds and stops nats-servers that serve a given store directory but belong to no living
 * gateway: left by a gateway (or its watchdog) killed with SIGKILL, or by an older version
 * without the watchdog. Called while holding the data-directory lock, so anything found is a
 * leftover, never a sibling's server.
 *
 * Candidates come from the pid file nats-server writes (-P) and, on Linux, from a scan of /proc
 * (a server that crashed before writing its pid file, or an older version's). A pid counts only
 * if its command line is a nats-server with exactly this store directory: a recycled pid is
 * never signalled.
 */
import { execFileSync } from 'node:child_process';
import { readFileSync, readdirSync } from 'node:fs';
import { sleep } from './sleep.js';

export interface Leftover {
  pid: number;
  argv: string[];
}

export function processArgv(pid: number): string[] | null {
  if (process.platform === 'linux') {
    try {
      const parts = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0');
      if (parts.at(-1) === '') parts.pop();
      return parts.length ? parts : null; // a zombie has an empty command line
    } catch {
      return null;
    }
  }
  // No /proc: ask ps. Splitting on spaces is good enough to compare our own generated arguments.
  try {
    const out = execFileSync('ps', ['-o', 'command=', '-p', String(pid)], { encoding: 'utf8' }).trim();
    return out ? out.split(/\s+/) : null;
  } catch {
    return null;
  }
}

export function isNatsServerFor(argv: string[] | null, storeDir: string): boolean {
  if (!argv || !argv[0] || !/nats-server$/.test(argv[0].split('/').pop() ?? '')) return false;
  const i = argv.indexOf('-sd');
  return i >= 0 && argv[i + 1] === storeDir;
}

export function findLeftovers(storeDir: string, pidFile: string): Leftover[] {
  const pids = new Set<number>();
  try {
    const pid = Number(readFileSync(pidFile, 'utf8').trim());
    if (Number.isInteger(pid) && pid > 0) pids.add(pid);
  } catch {
    /* no pid file: first start, or the server never got that far */
  }
  if (process.platform === 'linux') {
    for (const name of readdirSync('/proc')) if (/^\d+$/.test(name)) pids.add(Number(name));
  }
  pids.delete(process.pid);
  const found: Leftover[] = [];
  for (const pid of pids) {
    const argv = processArgv(pid);
    if (isNatsServerFor(argv, storeDir)) found.push({ pid, argv: argv! });
  }
  return found;
}

/** Whether process `pid` of this machine is alive (signal 0 tests without sending; EPERM: alive, not ours). */
export function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** SIGTERM (nats-server flushes its store), SIGKILL after `graceMs`; resolves once it is gone. */
export async function stopLeftover(l: Leftover, storeDir: string, graceMs: number): Promise<'terminated' | 'killed'> {
  const stillOurs = () => processAlive(l.pid) && isNatsServerFor(processArgv(l.pid), storeDir);
  try {
    process.kill(l.pid, 'SIGTERM');
  } catch {
    return 'terminated';
  }
  const deadline = Date.now() + graceMs;
  while (Date.now() < deadline) {
    if (!stillOurs()) return 'terminated';
    await sleep(50);
  }
  if (stillOurs()) process.kill(l.pid, 'SIGKILL');
  while (stillOurs()) await sleep(50);
  return 'killed';
}
