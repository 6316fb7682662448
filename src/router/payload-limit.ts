/**
 * What the router may write in one message. NATS refuses a publish over the server's max_payload
 * (1 MB by default) for good: a ticket record or an event that grew past it was retried in place
 * for ever, and every later message of its conversation waited behind it (outside fuzz trial).
 * Such a write is measured before anything is written and refused with TooLargeError, which the
 * routing turns into a dead letter (`too_large`) for the one message that caused it.
 */
import type { Bus } from '../core/bus.js';

/**
 * Room left under max_payload for what travels beside the payload: headers (Nats-Msg-Id, a KV
 * write's expected revision) and the protocol line, a few hundred bytes at most.
 */
const WRITE_HEADROOM_BYTES = 4 * 1024;

/** Display names kept on a ticket, at most (characters): one rides in every event of the ticket. */
export const MAX_DISPLAY_NAME = 256;

/** A conversation title kept on a ticket, at most (characters): it rides in every event too. */
export const MAX_TITLE = 1000;

/** `s` cut to `max` UTF-16 units, never half a surrogate pair, or as it is. */
export function clampText(s: string | undefined, max: number): string | undefined {
  if (s === undefined || s.length <= max) return s;
  const cut = s.slice(0, max);
  return /[\uD800-\uDBFF]$/.test(cut) ? cut.slice(0, -1) : cut;
}

/** The largest payload the router writes: the server's max_payload less the headroom. */
export function writeLimit(bus: Bus): number {
  return (bus.nc.info?.max_payload ?? 1_048_576) - WRITE_HEADROOM_BYTES;
}

/** A write that can never fit in a NATS message: a permanent refusal, not a failure to retry. */
export class TooLargeError extends Error {
  constructor(
    readonly ticketId: string,
    /** Which write: `ticket record`, `ticket event`. */
    readonly write: string,
    readonly bytes: number,
    readonly limit: number,
  ) {
    super(`the ${write} of ${ticketId} would be ${bytes} bytes, over the ${limit} the server takes (max_payload less headroom)`);
  }
}

/** Throws TooLargeError when `bytes` is over `limit`. */
export function checkFits(ticketId: string, write: string, bytes: number, limit: number): void {
  if (bytes > limit) throw new TooLargeError(ticketId, write, bytes, limit);
}
