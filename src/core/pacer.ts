/**
 * Pacing for platform rate limits: at most one send per `perKeyMs` for each chat and at most
 * `globalPerSecond` overall. Callers await their slot; nothing is dropped. On the monotonic clock:
 * with the wall clock, a step back (NTP, a VM restored, an operator's `date`) put every next slot
 * that far in the future, and every reply stopped for as long as the step, silently.
 */
import { sleep } from './sleep.js';
import { TransientDeliveryError } from './errors.js';

/** The longest a platform's wait holds a chat's sends (Telegram's retry_after is bounded the same: telegram/sender.ts). */
export const MAX_DEFER_MS = 60 * 60_000;

export class Pacer {
  private readonly nextAt = new Map<string, number>();
  /** Keys a platform told us to leave alone (429 retry_after), until when. */
  private readonly heldUntil = new Map<string, number>();
  /** Every key held (a platform limit on the whole account), until when. */
  private allHeldUntil = 0;
  private globalNext = 0;
  private readonly globalGap: number;

  constructor(
    private readonly perKeyMs: number,
    globalPerSecond: number,
  ) {
    this.globalGap = globalPerSecond > 0 ? 1000 / globalPerSecond : 0;
  }

  /**
   * Waits for the key's next slot; `intervalMs` overrides the per-key gap (groups are slower than
   * private chats). `signal` (the connector's stop) ends the wait with a TransientDeliveryError:
   * the send goes back to the queue instead of holding a shutdown for up to MAX_DEFER_MS.
   */
  async wait(key: string, intervalMs = this.perKeyMs, signal?: AbortSignal): Promise<void> {
    // A chat the platform told us to leave alone waits out that hold first, and only then takes
    // its turn: reserved at once, its later slot pushed the overall one out with it, so one chat's
    // flood wait held every other chat's sends as long.
    // Looked at again after each wait: a hold can be set (or lengthened) while we sleep.
    for (let heldFor = this.heldFor(key); heldFor > 0; heldFor = this.heldFor(key)) await this.sleep(heldFor, signal);
    this.heldUntil.delete(key);
    const now = performance.now();
    const keySlot = Math.max(now, this.nextAt.get(key) ?? 0);
    const slot = Math.max(keySlot, this.globalNext);
    this.nextAt.set(key, slot + intervalMs);
    this.globalNext = slot + this.globalGap;
    if (this.nextAt.size > 10_000) this.prune(now);
    const delay = slot - now;
    if (delay > 0) await this.sleep(delay, signal);
  }

  private heldFor(key: string): number {
    return Math.max(this.heldUntil.get(key) ?? 0, this.allHeldUntil) - performance.now();
  }

  private async sleep(ms: number, signal: AbortSignal | undefined): Promise<void> {
    await sleep(ms, signal);
    if (signal?.aborted) throw new TransientDeliveryError('stopping: the send waited for the platform\'s rate limit and goes back to the queue');
  }

  /**
   * Push a key's next slot out (the platform said to wait, e.g. 429 retry_after), by at most
   * MAX_DEFER_MS: every send to that chat waits inside the call, so an absurd wait asked for (a
   * Retry-After of 99999 s) would hold each of them for a day, as `in-flight`.
   */
  defer(key: string, ms: number): void {
    this.heldUntil.set(key, Math.max(this.heldUntil.get(key) ?? 0, performance.now() + Math.min(ms, MAX_DEFER_MS)));
  }

  /** Hold every key (the platform limits the whole account, not one chat), by at most MAX_DEFER_MS, as `defer`. */
  deferAll(ms: number): void {
    this.allHeldUntil = Math.max(this.allHeldUntil, performance.now() + Math.min(ms, MAX_DEFER_MS));
  }

  private prune(now: number): void {
    for (const [k, t] of this.nextAt) if (t < now) this.nextAt.delete(k);
    for (const [k, t] of this.heldUntil) if (t < now) this.heldUntil.delete(k);
  }
}
