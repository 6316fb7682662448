/**
 * Taking over a webhook from a holder that vanished (killed, or frozen past its lease TTL)
 * without giving back what it had taken. Its events are still "ack pending" on the durable and
 * would come back only when the server's redelivery timer gets to them — measured on 2.9.10:
 * after newer events of the same tickets had already gone out (inversions at the receiver).
 *
 * So the new holder rewinds: the durable is recreated to start right after its ack floor, and
 * everything after the floor is delivered again, in stream order. The price is duplicates, not
 * inversions: events the old holder delivered beyond the floor go out once more, with the same
 * `x-omnigate-delivery` id, which is what receivers deduplicate on. A clean handover (the old
 * holder nak'ed what it held) leaves nothing pending and rewinds nothing.
 */
import { DeliverPolicy, type JetStreamManager } from '@nats-io/jetstream';

/** Returns the stream sequence delivery restarts from, or 0 when nothing was orphaned. */
export async function rewindOrphans(jsm: JetStreamManager, stream: string, durable: string): Promise<number> {
  const info = await jsm.consumers.info(stream, durable).catch(() => null);
  if (!info || info.num_ack_pending === 0) return 0;
  const from = info.ack_floor.stream_seq + 1;
  await jsm.consumers.delete(stream, durable);
  await jsm.consumers.add(stream, { ...info.config, deliver_policy: DeliverPolicy.StartSequence, opt_start_seq: from });
  return from;
}
