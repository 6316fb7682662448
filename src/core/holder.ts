/**
 * Who holds a lease. Every lease a gateway takes names its holder `<instance>-<role>`, where the
 * instance id is new for each start of a gateway (pid, host, random). A successor that can prove
 * its predecessor dead (the embedded data directory's lock, data-dir-lock.ts) frees every lease
 * of that instance at once instead of waiting out their TTL (lease.ts: releaseLeasesOf).
 */
import { hostname } from 'node:os';
import { randomBytes } from 'node:crypto';

/**
 * A fresh instance id, `<pid>-<host>-<random>`: the pid first, so an operator (or a test) reading
 * a lease's holder sees at once which process it is. Safe as a KV key token (it names the
 * router's member lease).
 */
export function newInstanceId(): string {
  // Sanitised, not hashed (kvSafe would hash a host name with dots): the pid stays readable.
  const host = hostname().replace(/[^A-Za-z0-9_-]/g, '_').slice(0, 40);
  return `${process.pid}-${host}-${randomBytes(3).toString('hex')}`;
}

/** True for what newInstanceId() makes (a file edited by hand or cut short must not name a live holder). */
export function isInstanceId(s: string): boolean {
  return /^\d+-[A-Za-z0-9_-]*-[0-9a-f]{6}$/.test(s);
}

/** The lease-taking parts of a gateway, each named in the holder ids of its leases. */
export const HOLDER_ROLES = ['router', 'lifecycle', 'webhooks', 'connectors', 'helpdesks', 'retention', 'eviction'] as const;
export type HolderRole = (typeof HOLDER_ROLES)[number];

/** The holder id of one role of an instance. */
export function holderOf(instance: string, role: HolderRole): string {
  return `${instance}-${role}`;
}

/** True when `holder` is exactly one of the instance's holder ids (no prefix match: another instance may start alike). */
export function heldByInstance(holder: string, instance: string): boolean {
  return holder === instance || HOLDER_ROLES.some((role) => holder === holderOf(instance, role));
}
