/**
 * A sender's side of the wire marks (contract.ts `marksWire`), one for every channel: the runner
 * counts a reply as possibly delivered only from `calling()`, so a gateway killed while its replies
 * wait in a pacer or out a rate limit has them sent after the restart instead of reported
 * `outcome_unknown`. Each sender keeps what it already delivered of a reply across the runner's
 * attempts; that progress decides the two cases where a mark depends on the past.
 */
import type { SendAttempt } from './contract.js';

export class WireMarks {
  private constructor(
    private readonly attempt: SendAttempt | undefined,
    private readonly delivered: () => boolean,
  ) {}

  /**
   * Opens one attempt. `delivered`: whether any part of this reply reached the platform, in this
   * attempt or an earlier one of this process. When it has, the reply is on the wire from the
   * start: a stop while pacing its next part must not read as "nothing sent", which would send the
   * first parts again.
   */
  static async begin(attempt: SendAttempt | undefined, delivered: () => boolean): Promise<WireMarks> {
    const marks = new WireMarks(attempt, delivered);
    if (delivered()) await attempt?.onWire?.();
    return marks;
  }

  /** Right before a platform call that may deliver, after every pacing and rate-limit wait. */
  async calling(): Promise<void> {
    await this.attempt?.onWire?.();
  }

  /**
   * The platform refused a call and took nothing of it (a 429, an SMTP refusal before the DATA was
   * accepted). Only when nothing of the reply went out before either is it "not sent" again: a
   * partly delivered reply stays possibly delivered. Call it only on a refusal that is certain; a
   * timeout or a broken connection may have delivered.
   */
  async refused(): Promise<void> {
    if (!this.delivered()) await this.attempt?.offWire?.();
  }
}
