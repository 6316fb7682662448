/**
 * When a KV key another replica holds (a claim, a marker, a slot) is taken for left by a dead
 * holder. Decided by this process's own observation: how long it has seen that revision of the
 * key unchanged, on its monotonic clock. Never by comparing the holder's wall clock (a time it
 * wrote in the value) with ours: a replica whose clock ran 2 minutes behind wrote claims that the
 * others took for stale the moment they were written, and took over (a reply sent twice); one
 * running ahead wrote claims that never went stale.
 *
 * A revision JetStream stored long ago (its own timestamp against our clock) counts as dead at
 * once, so the first reader after a holder died long ago does not wait out the whole stale time
 * from the moment it first looks. A live key is as old as its holder's work on it (seconds), so
 * only a clock off from the server's by about `serverAgeMs` could take one that way: hence
 * SERVER_AGE_MS, far past both.
 */
import { BoundedCache } from './bounded-cache.js';

/** Keys one watch follows at once; a forgotten one is watched again from the start (it waits longer, never less). */
const WATCHED_KEYS = 10_000;

/**
 * Past any holder's work on a key (a command's run, a send and its recording, a reply) and any
 * clock skew between a replica and the NATS server we expect (minutes at worst): a revision
 * JetStream stored this long ago is left by a dead holder whatever the watch saw.
 */
export const SERVER_AGE_MS = 10 * 60_000;

interface Seen {
  revision: number;
  /** performance.now() when this revision was first seen. */
  since: number;
}

export class HolderWatch {
  private readonly seen = new BoundedCache<Seen>(WATCHED_KEYS);

  /**
   * @param staleMs a revision seen unchanged this long is left by a dead holder
   * @param serverAgeMs a revision JetStream stored this long ago is too
   */
  constructor(
    readonly staleMs: number,
    readonly serverAgeMs: number,
  ) {}

  /** How long until the holder of this revision of `key` is taken for dead (0: it is now); the first call for a revision starts its watch. */
  remainingMs(key: string, revision: number, stored: Date): number {
    const now = performance.now();
    const seen = this.seen.get(key);
    let since = now;
    if (seen && seen.revision === revision) since = seen.since;
    else this.seen.set(key, { revision, since });
    const byObservation = this.staleMs - (now - since);
    const byServer = this.serverAgeMs - (Date.now() - stored.getTime());
    return Math.max(0, Math.min(byObservation, byServer));
  }

  /** Whether the holder of this revision of `key` is taken for dead (see remainingMs). */
  stale(key: string, revision: number, stored: Date): boolean {
    return this.remainingMs(key, revision, stored) === 0;
  }

  /** Stops watching `key` (it was taken over or released). */
  forget(key: string): void {
    this.seen.delete(key);
  }
}
