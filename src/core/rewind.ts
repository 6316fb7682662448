/**
 * Restarting a durable pull consumer right after its ack floor, so that whatever is still "ack
 * pending" (held by a holder that died, handed back, or lost in flight) comes again first, in
 * stream order, instead of after ack_wait behind newer messages of its key. Used by the leased,
 * single-holder consumers that promise order per ticket: the webhook dispatcher
 * (src/api/webhook-takeover.ts) and the helpdesk host (src/helpdesks/host.ts).
 */
import { DeliverPolicy, type ConsumerInfo, type JetStreamManager } from '@nats-io/jetstream';
import { isNotFound } from './bus.js';

/**
 * Restarts the durable right after its ack floor when anything is still "ack pending"; returns
 * the stream sequence delivery restarts from, or 0 when nothing was pending (or no durable yet).
 * An unanswered info request throws: taking it for "nothing pending" left a predecessor's orphans
 * to come back after ack_wait, behind newer events (an inversion seen under overload).
 *
 * `stillHolder` is asked just before the durable is deleted and again before it is recreated:
 * false throws. What it cannot cover is a process frozen while one of those two requests is on
 * its way (a window of one request's flight time, not of the lease TTL).
 */
export async function rewindOrphans(jsm: JetStreamManager, stream: string, durable: string, stillHolder: () => boolean = () => true): Promise<number> {
  const info = await jsm.consumers.info(stream, durable).catch((err: unknown) => {
    if (isNotFound(err)) return null;
    throw err;
  });
  if (!info || info.num_ack_pending === 0) return 0;
  const from = floorOf(info) + 1;
  const fenced = () => new Error('lease no longer valid: not rewinding the durable (the holder that replaced this one does)');
  if (!stillHolder()) throw fenced();
  await jsm.consumers.delete(stream, durable);
  // Left deleted, the valid holder's consumer recreates it (from the stream's start: repeats).
  if (!stillHolder()) throw fenced();
  await jsm.consumers.add(stream, { ...info.config, deliver_policy: DeliverPolicy.StartSequence, opt_start_seq: from });
  return from;
}

/** The durable's ack floor (stream sequence): everything at or below it is acknowledged. */
export async function ackFloor(jsm: JetStreamManager, stream: string, durable: string): Promise<number> {
  return floorOf(await jsm.consumers.info(stream, durable));
}

/**
 * The stream sequence everything at or below which is acknowledged or was never this durable's.
 * A durable (re)created at a start sequence that has acked nothing yet reports an ack floor of 0
 * on nats-server 2.9.10: rewinding to that replayed the whole retained stream (a week of a
 * partition's messages, every one a suspect to look up) after a run that ended before its first
 * ack. Its start position bounds the floor from below.
 */
export function floorOf(info: ConsumerInfo): number {
  const start = info.config.deliver_policy === DeliverPolicy.StartSequence ? (info.config.opt_start_seq ?? 1) - 1 : 0;
  return Math.max(info.ack_floor.stream_seq, start);
}
