/**
 * Publishing one inbound event for a connector: validated against the schema once, here at the
 * edge, sized against the server's limit, and retried while NATS is away (the connector has not
 * acknowledged the platform yet, so nothing it was handed is lost).
 */
import type { Bus } from '../core/bus.js';
import { isCasConflict } from '../core/bus.js';
import { InboundEvent, describeZodError, type InboundEventInput } from '../core/schema.js';
import { metrics } from '../core/metrics.js';
import { errorMessage, isPermissionRefusal } from '../core/errors.js';
import { backoffMs, sleep } from '../core/sleep.js';
import { InvalidEventError } from './contract.js';

/** One publish attempt within a caller's wait (`giveUpAfterMs`). */
const ATTEMPT_MS = 4_000;

/** Room left in a NATS message for headers (Nats-Msg-Id, tracing) beside the event. */
const EVENT_HEADROOM_BYTES = 16 * 1024;

export interface IntakeHooks {
  /** A publish was stored. */
  published(): void;
  /** Publishing keeps failing (after a few tries): what ops should see. */
  stalled(detail: string): void;
}

export async function publishInbound(
  bus: Bus,
  channel: string,
  account: string,
  input: InboundEventInput,
  signal: AbortSignal,
  hooks: IntakeHooks,
  /** When the caller stops waiting (a sender on an HTTP answer), in ms from now: the last error is thrown then. */
  giveUpAfterMs?: number,
): Promise<{ duplicate: boolean; seq: number }> {
  const parsed = InboundEvent.safeParse({ ...input, v: 1, channel, account, receivedAt: input.receivedAt ?? new Date().toISOString() });
  if (!parsed.success) throw new InvalidEventError(`event does not match schema v1: ${describeZodError(parsed.error)}`, parsed.error.issues[0]?.path.join('.') || undefined);
  const event = parsed.data;
  const payload = JSON.stringify(event);
  // Over the server's max_payload the publish can never succeed: retrying would block this
  // account's intake forever. The connector parks it (the dead letter stores big payloads aside).
  const bytes = Buffer.byteLength(payload);
  const limit = (bus.nc.info?.max_payload ?? 1_048_576) - EVENT_HEADROOM_BYTES;
  if (bytes > limit) {
    const largest = largestField(event);
    throw new InvalidEventError(
      `event is ${bytes} bytes, over the ${limit}-byte limit of a NATS message; its largest field is ${largest.field} (${largest.bytes} bytes): shorten it, or send the content as an attachment`,
      largest.field,
    );
  }
  const deadline = giveUpAfterMs === undefined ? undefined : performance.now() + giveUpAfterMs;
  const left = () => (deadline === undefined ? Infinity : deadline - performance.now());
  for (let attempt = 1; ; attempt++) {
    try {
      // Within the caller's wait: one attempt never outlasts it, and a publish lost while the
      // server came back (no answer ever) is tried again after a few seconds, not at the deadline.
      const timeout = deadline === undefined ? {} : { timeout: Math.round(Math.max(500, Math.min(ATTEMPT_MS, left()))) };
      const ack = await bus.js.publish(bus.inboundSubject(event), payload, { msgID: event.id, ...timeout });
      hooks.published();
      // After an attempt of ours went unanswered, a duplicate is most likely that attempt's own
      // copy, stored without its answer reaching us: "already had it" would tell the sender its
      // first try was a repeat (seen under a frozen replica). Stored once either way.
      const duplicate = ack.duplicate && attempt === 1;
      if (duplicate) metrics.duplicates.inc({ channel });
      return { duplicate, seq: ack.seq };
    } catch (err) {
      if ((signal.aborted && attempt > 1) || left() <= 0) throw err;
      if (isCasConflict(err)) throw err;
      // The client refused the message itself (a header or subject it cannot carry): the
      // same bytes fail the same way every time, so the caller gets a permanent refusal.
      if (isRefusedByClient(err)) throw new InvalidEventError(`NATS client refused the event: ${errorMessage(err)}`);
      // The gateway's NATS user may not publish here: waiting cannot help (a sender waited 20 s
      // for every post); the caller answers at once that it was not stored, and ops see `stalled`.
      if (isPermissionRefusal(err)) {
        hooks.stalled(`NATS refuses this gateway's publish (check the NATS user's permissions): ${errorMessage(err)}`);
        throw err;
      }
      if (attempt >= 3) hooks.stalled(`cannot publish to JetStream: ${errorMessage(err)}`);
      await sleep(Math.min(backoffMs(attempt, 200, 5000), Math.max(0, left())), signal);
      if (left() <= 0) throw err;
    }
  }
}

/** The top-level field of an event taking the most bytes (what to shorten when it is too big). */
function largestField(event: object): { field: string; bytes: number } {
  let largest = { field: '', bytes: 0 };
  for (const [field, value] of Object.entries(event)) {
    const bytes = Buffer.byteLength(typeof value === 'string' ? value : (JSON.stringify(value) ?? ''));
    if (bytes > largest.bytes) largest = { field, bytes };
  }
  return largest;
}

/** Errors nats.js raises before anything is sent: bad header value, subject or payload size. */
export function isRefusedByClient(err: unknown): boolean {
  const name = (err as { name?: string } | null)?.name;
  return name === 'InvalidArgumentError' || name === 'InvalidSubjectError';
}
