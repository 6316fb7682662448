/**
 * Whether a loop that has work waiting has stopped moving: the case where every dependency looks
 * up (NATS connected, JetStream listing its streams, the loop `running`) and one asset the loop
 * writes to cannot make progress. An outside trial's KV bucket had no quorum for minutes after a
 * node's disk filled: routing retried in place, replies answered 503, and every replica's /readyz
 * stayed 200 (probes.ts).
 *
 * Work waiting is of two kinds, both told by the loop:
 * - held: taken and not yet settled (an inbound message in a lane, a command being answered);
 * - failing: an attempt failed since the last progress (a command answered `internal`). Those
 *   leave nothing held, and a client retries them; they count only while failures keep coming
 *   (the last less than `afterMs` ago), so a replica with no traffic is never called stalled.
 *
 * Stalled: work has waited `afterMs` with no progress since it began waiting or since the last
 * progress, whichever is later. No work waiting, never stalled, however long since the last progress.
 */
export class StallClock {
  private held = 0;
  private heldSince?: number;
  private failingSince?: number;
  private lastFailureAt = -Infinity;
  private lastProgressAt = -Infinity;

  constructor(
    readonly afterMs: number,
    /** Monotonic by default: a wall clock stepped forward (NTP) made work held for milliseconds look stalled. */
    private readonly now: () => number = () => performance.now(),
  ) {}

  /** Work taken (`delta` > 0) or settled (< 0), whatever the outcome. */
  hold(delta: number): void {
    this.held = Math.max(0, this.held + delta);
    if (this.held === 0) this.heldSince = undefined;
    else this.heldSince ??= this.now();
  }

  /** Useful work done: whatever waited has moved. */
  progress(): void {
    this.lastProgressAt = this.now();
    this.failingSince = undefined;
  }

  /** An attempt at the loop's work failed (a command answered with an internal error). */
  failed(): void {
    const now = this.now();
    this.failingSince ??= now;
    this.lastFailureAt = now;
  }

  /** A new run of the loop: what the last run held is gone with it. */
  restart(): void {
    this.held = 0;
    this.heldSince = undefined;
  }

  /** While stalled: the time from which nothing moved although work waited; undefined otherwise. */
  stalledSince(): number | undefined {
    const now = this.now();
    const failing = this.failingSince !== undefined && now - this.lastFailureAt < this.afterMs ? this.failingSince : undefined;
    const waiting = Math.min(this.heldSince ?? Infinity, failing ?? Infinity);
    if (waiting === Infinity) return undefined;
    const from = Math.max(waiting, this.lastProgressAt);
    return now - from >= this.afterMs ? from : undefined;
  }
}
