/**
 * The events a webhook's dispatcher has finished with (the receiver took them, or they were
 * parked) beyond the consumer's ack floor: what a successor must not post again when it rewinds.
 *
 * Why a set and not the server's state: a handover that relied on the server (naks queued for
 * redelivery ahead of newer events) broke order whenever the server lost that queue (nats-server
 * 2.9 clears it when the consumer's leader moves) or an event was lost in flight at the last pull
 * (it came back only after ack_wait, behind newer events of its ticket). With this set the
 * successor always restarts the durable from the ack floor, in stream order, and skips only what
 * is listed here: order does not depend on anything the server keeps in memory.
 *
 * Stored in the hand-back record as ranges of stream sequences. The set only grows beyond the
 * ack floor while some older event is still undelivered (a receiver failing one ticket for long):
 * past MAX_RANGES the record is not written and the successor repeats instead (see docs). The
 * dispatcher prunes it to the floor every PRUNE_EVERY deliveries: pruned only at the hand-back, a
 * term kept one entry per event it ever delivered, and past MAX_SEQS (200,000 events, 22 minutes
 * of the 30-minute soak) it could never hand over again.
 */

/** Ranges in one hand-back record, at most (about 16 bytes each in the KV value). */
export const MAX_RANGES = 20_000;

/** Sequences one term keeps, at most: beyond that it stops recording and its successor repeats. */
export const MAX_SEQS = 200_000;

/** Deliveries between two prunes to the ack floor during a term (one consumer-info request each). */
export const PRUNE_EVERY = 10_000;

export type Ranges = Array<[number, number]>;

export class DoneSet {
  private readonly seqs = new Set<number>();
  /**
   * The highest sequence done but not listed (the set was full), 0 when none: the set is
   * incomplete and must not be handed over until the ack floor has passed it.
   */
  private unlistedUpTo = 0;
  private addsSincePrune = 0;

  constructor(ranges: Ranges = []) {
    for (const [a, b] of ranges) for (let s = a; s <= b; s++) this.seqs.add(s);
  }

  add(seq: number): void {
    this.addsSincePrune++;
    if (this.seqs.size >= MAX_SEQS) this.unlistedUpTo = Math.max(this.unlistedUpTo, seq);
    else this.seqs.add(seq);
  }

  /** True once every PRUNE_EVERY additions: time to ask for the ack floor (a failed ask waits for the next round). */
  takePruneTurn(): boolean {
    if (this.addsSincePrune < PRUNE_EVERY) return false;
    this.addsSincePrune = 0;
    return true;
  }

  has(seq: number): boolean {
    return this.seqs.has(seq);
  }

  get size(): number {
    return this.seqs.size;
  }

  /** Forgets what lies at or below the ack floor: the server will not deliver it again. */
  prune(floor: number): void {
    for (const s of this.seqs) if (s <= floor) this.seqs.delete(s);
    if (this.unlistedUpTo <= floor) this.unlistedUpTo = 0;
  }

  /** Sorted, merged ranges; null when there are more than MAX_RANGES (too big to hand over). */
  toRanges(): Ranges | null {
    if (this.unlistedUpTo > 0) return null;
    const sorted = [...this.seqs].sort((a, b) => a - b);
    const out: Ranges = [];
    for (const s of sorted) {
      const last = out.at(-1);
      if (last && last[1] === s - 1) last[1] = s;
      else out.push([s, s]);
      if (out.length > MAX_RANGES) return null;
    }
    return out;
  }
}
