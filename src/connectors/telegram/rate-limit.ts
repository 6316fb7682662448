/**
 * The connector's `rate_limited` state, damped: entered on the first 429, left only after
 * `quietMs` without another one. Reporting every 429 and every success in between made the state
 * (and the alerts on it) flap between `rate_limited` and `connected` during a long rate limit.
 */
import type { HealthTracker } from '../contract.js';

export class RateLimitState {
  private lastHit = 0;
  private timer?: NodeJS.Timeout;

  constructor(
    private readonly health: HealthTracker,
    private readonly quietMs: number,
  ) {}

  /** A 429 was answered: enter `rate_limited` once; the detail stays fixed while limited. */
  hit(waitMs: number): void {
    this.lastHit = Date.now();
    if (this.health.get().state !== 'rate_limited') this.health.set('rate_limited', `Telegram asked to wait ${Math.ceil(waitMs / 1000)}s (429); sends wait it out`);
    this.schedule(waitMs + this.quietMs);
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
    const quietFor = Date.now() - this.lastHit;
    if (quietFor >= this.quietMs) this.health.set('connected');
    else this.schedule(this.quietMs - quietFor);
  }
}
