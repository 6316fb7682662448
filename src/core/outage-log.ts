/**
 * One error line when an outage of NATS or JetStream begins to fail some work, then a count at
 * warn level once a `everyMs` while it lasts, and a line when the work succeeds again. Without
 * it, an outside trial logged 94 `command failed` lines at error level in a few seconds while a
 * stream leader was down (`jetstream is not enabled`: nats.js's words for nobody answering a
 * JetStream publish), and a defect logged in the same minute would have drowned in them.
 * Failures of another kind (a defect) are not this class's: the caller logs each at error.
 */
import type { Logger } from './logger.js';

export class OutageLog {
  private since?: number;
  /** Failures since the outage began, and how many of them a line has reported. */
  private failures = 0;
  private reported = 0;
  private lastLineAt = 0;

  constructor(
    private readonly log: Logger,
    /** What fails, for the lines: "command". */
    private readonly what: string,
    private readonly everyMs = 60_000,
    private readonly now: () => number = Date.now,
  ) {}

  /** A failure put down to NATS or JetStream being unavailable; `fields` go on the first line only (the error, the subject). */
  failed(fields: Record<string, unknown>): void {
    const now = this.now();
    this.failures++;
    if (this.since === undefined) {
      this.since = now;
      this.lastLineAt = now;
      this.reported = 1;
      // The usual message, so what searches for it still finds the outage's start.
      this.log.error({ ...fields, outage: 'NATS or JetStream unavailable: further such failures are counted, at warn level once a minute, until one succeeds' }, `${this.what} failed`);
      return;
    }
    if (now - this.lastLineAt < this.everyMs) return;
    this.log.warn({ failures: this.failures - this.reported, seconds: Math.round((now - this.lastLineAt) / 1000), sinceSeconds: Math.round((now - this.since) / 1000) }, `${this.what}s still failing: NATS or JetStream unavailable`);
    this.lastLineAt = now;
    this.reported = this.failures;
  }

  /** The work succeeded: an outage that was being counted is over. */
  succeeded(): void {
    if (this.since === undefined) return;
    const now = this.now();
    this.log.warn({ failures: this.failures, unreported: this.failures - this.reported, seconds: Math.round((now - this.since) / 1000) }, `${this.what}s succeed again after NATS or JetStream was unavailable`);
    this.since = undefined;
    this.failures = 0;
    this.reported = 0;
  }
}
