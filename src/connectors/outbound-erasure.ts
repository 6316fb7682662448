/**
 * Whether an outbound message was erased while it waited to be sent: a personal-data erasure
 * deletes a ticket's outbound messages from OMNI_OUT, but one a runner had already taken (queued
 * in its lane, or in a backoff) was sent after the erasure had answered. One stream read per attempt.
 */
import type { JsMsg } from '@nats-io/jetstream';
import type { Bus } from '../core/bus.js';
import { storedOutbound } from '../core/reply-order.js';

/** The failure reported for a reply to a ticket that lives on, erased with a person it named before it was sent. */
export const ERASED_REASON = 'erased: a personal-data erasure removed this reply before it was sent (it named the erased person); write it again without their data';

/**
 * `kept`: still in the stream, to be sent. `ticket-lives`: erased, but its ticket remains (the
 * reply named the erased person: a group chat, an address in its text), so its agent must learn it
 * was not sent. `ticket-gone`: erased with its ticket; nothing to report to.
 */
export async function erasureOf(bus: Bus, m: JsMsg, ticketId: string): Promise<'kept' | 'ticket-lives' | 'ticket-gone'> {
  if (await storedOutbound(bus.jsm, m.seq)) return 'kept';
  const entry = await bus.kv.tickets.get(ticketId);
  return entry !== null && entry.operation === 'PUT' ? 'ticket-lives' : 'ticket-gone';
}
