/**
 * A compare-and-set that holds on servers whose own one does not (nats-server < 2.9.21 with R>1,
 * see cas-probe.ts): before `update(key, value, revision)` the writer creates the create-only
 * guard key `<bucket>.<key>.<revision>` in a guard bucket. Create-only writes have exactly one
 * winner on those servers (measured by the probe, and re-checked at every start), so at most one
 * writer is ever allowed to move a key on from a given revision; the update's own expected
 * revision then rejects writers whose base is older. Losing the guard reads as the ordinary
 * wrong-last-sequence conflict, so callers re-read and retry as they always did.
 *
 * A guard won by this process whose update then failed without an answer (a timeout) stays
 * reusable by this process: the update may be retried from the same revision. A writer that
 * crashes between guard and update blocks other writers of that key until the guard expires
 * (the guard bucket's max_age, 30 s); a guard older than half that age is not used, so a writer
 * paused for longer cannot race the next holder of an expired guard (half the age plus the
 * pipeline's 10 s request timeout still ends before the guard expires).
 */
import { JetStreamApiError } from '@nats-io/jetstream';

export interface CreateOnly {
  create(key: string, value: string): Promise<number>;
}

export class CasGuard {
  /** Guards this process won and may still use: key → when won (monotonic ms) and whether a call is using it. */
  private readonly held = new Map<string, { at: number; busy: boolean }>();

  constructor(
    private readonly guards: CreateOnly,
    private readonly ttlMs: number,
  ) {}

  /**
   * Runs `write` (the update from `revision`) only if this process holds the guard for
   * (bucket, key, revision); otherwise throws the wrong-last-sequence conflict.
   */
  async update<T>(bucket: string, key: string, revision: number, write: () => Promise<T>): Promise<T> {
    const name = `${bucket}.${key}.${revision}`;
    let entry = this.held.get(name);
    if (entry && performance.now() - entry.at >= this.ttlMs / 2) {
      this.held.delete(name); // too old to trust: another writer may get it once it expires
      throw conflict(name);
    }
    if (entry) {
      if (entry.busy) throw conflict(name); // another call of this process is using it
      entry.busy = true;
    } else {
      // Timed from before the create: the server stamped the guard after that, never before.
      const sentAt = performance.now();
      await this.guards.create(name, ''); // throws the conflict when another writer holds it
      this.forgetOld();
      entry = { at: sentAt, busy: true };
      this.held.set(name, entry);
    }
    try {
      const result = await write();
      this.held.delete(name); // the key moved on: this revision is history
      return result;
    } catch (err) {
      if (isConflict(err)) this.held.delete(name);
      else entry.busy = false; // no answer: the write may be retried from the same revision
      throw err;
    }
  }

  /** Guards whose write landed although its answer was lost are never used again: drop them. */
  private forgetOld(): void {
    if (this.held.size < 64) return;
    const now = performance.now();
    for (const [name, e] of this.held) if (!e.busy && now - e.at >= this.ttlMs / 2) this.held.delete(name);
  }
}

function isConflict(err: unknown): boolean {
  return err instanceof JetStreamApiError && (err.code === 10071 || err.code === 10164);
}

function conflict(name: string): JetStreamApiError {
  return new JetStreamApiError({ code: 400, err_code: 10071, description: `wrong last sequence: guard ${name} is held` });
}
