/**
 * Who holds a lease. Every lease a gateway takes names its holder `<instance>-<role>`, where the
 * instance id is new for each start of a gateway (pid, host, random). A successor that can prove
 * its predecessor dead (the embedded data directory's lock, data-dir-lock.ts) frees every lease
 * of that instance at once instead of waiting out their TTL (lease.ts: releaseLeasesOf).
 */
import { hostname } from 'node:os';
import { randomBytes } from 'node:crypto';
import { kvSafe } from './subjects.js';

/**
 * A fresh instance id, `<pid>-<host>-<random>`: the pid first, so an operator (or a test) reading
 * a lease's holder sees at once which process it is. Safe as a KV key token (it names the
 * router's member lease).
 */
export function newInstanceId(): string {
  return kvSafe(`${process.pid}-${hostname()}-${randomBytes(3).toString('hex')}`);
}

/** The holder id of one role (one lease-taking component) of an instance. */
export function holderOf(instance: string, role: string): string {
  return `${instance}-${role}`;
}

/** True when `holder` is the instance itself or one of its roles. */
export function heldByInstance(holder: string, instance: string): boolean {
  return holder === instance || holder.startsWith(`${instance}-`);
}
