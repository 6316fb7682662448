/**
 * A connector's `rate_limited` state, damped: entered on the first rate limit, left (for
 * `connected`) once the platform's wait has passed and `quietMs` more without another one, with
 * or without traffic. Reporting every 429 and every success in between made the state (and the
 * alerts on it) flap between `rate_limited` and `connected` during a long rate limit; left only
 * by a successful send, it stayed `rate_limited` for as long as no reply was sent.
 */
import type { HealthTracker } from './contract.js';

export class RateLimitState {
  private lastHit = 0;
  /** When the longest wait asked for so far ends. */
  private until = 0;
  private timer?: NodeJS.Timeout;

  constructor(
    private readonly health: HealthTracker,
    private readonly quietMs: number,
  ) {}

  /** A rate limit was answered (`detail` says which): enter `rate_limited` once; the detail stays fixed while limited. */
  hit(waitMs: number, detail: string): void {
    this.lastHit = Date.now();
    this.until = Math.max(this.until, this.lastHit + waitMs);
    if (this.health.get().state !== 'rate_limited') this.health.set('rate_limited', detail);
    this.schedule(this.until - this.lastHit + this.quietMs);
  }

  /** Stop: no timer outlives the connector. */
  close(): void {
    clearTimeout(this.timer);
  }

  private schedule(ms: number): void {
    clearTimeout(this.timer);
    this.timer = setTimeout(() => this.settle(), ms);
    this.timer.unref();
  }

  private settle(): void {
    if (this.health.get().state !== 'rate_limited') return;
    const settlesAt = Math.max(this.lastHit, this.until) + this.quietMs;
    const left = settlesAt - Date.now();
    if (left <= 0) this.health.set('connected');
    else this.schedule(left);
  }
}
