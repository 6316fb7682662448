/**
 * Reading a stream through a short-lived ordered consumer, and telling a message deleted by
 * someone else first: shared by erasure, retention, eviction and the stray sweep.
 */
import { DeliverPolicy, JetStreamApiError, type JsMsg } from '@nats-io/jetstream';
import { isNotFound, type Bus } from './bus.js';

/** The message was already gone (10037: no message found), or its stream. */
export function isGone(err: unknown): boolean {
  return (err instanceof JetStreamApiError && err.code === 10037) || isNotFound(err) || /no message found/i.test(String(err));
}

/**
 * Visits every message of a stream (or the newest per subject) with an ephemeral ordered
 * consumer, until the consumer reports nothing pending. Messages arriving meanwhile may be seen
 * or not; callers that must not miss new ones run again.
 */
export async function scanStream(
  bus: Bus,
  stream: string,
  opts: { filter?: string; lastPerSubject?: boolean; /** Asked before each message: true ends the scan there. */ until?: () => boolean },
  visit: (m: JsMsg) => void | Promise<void>,
): Promise<void> {
  const consumer = await bus.js.consumers.get(stream, {
    ...(opts.filter ? { filter_subjects: opts.filter } : {}),
    ...(opts.lastPerSubject ? { deliver_policy: DeliverPolicy.LastPerSubject } : {}),
  });
  try {
    for (;;) {
      const batch = await consumer.fetch({ max_messages: 500, expires: 2000 });
      let got = 0;
      let pending = 1;
      let ended = false;
      for await (const m of batch) {
        if (opts.until?.()) {
          ended = true;
          batch.stop();
          break;
        }
        got++;
        await visit(m);
        pending = m.info.pending;
        // The last one there was: the batch would otherwise wait out its expiry (2 s per scan).
        if (pending === 0) {
          batch.stop();
          break;
        }
      }
      if (ended || got === 0 || pending === 0) break;
    }
  } finally {
    await consumer.delete().catch(() => {});
  }
}
