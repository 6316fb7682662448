/**
 * Consumes one owned inbound unit (partitions.ts) into the router's keyed lanes. A lane hands
 * what queued up in it to one routing (CoalescingLanes): a conversation's messages that arrived
 * while it was busy are routed, acked or retried together, in order.
 *
 * Every message taken from the server is held — queued in its lane or being routed — until it is
 * settled, and the server is told we are working on all of them (one timer, every third of
 * ack_wait). Without that, messages waiting behind their conversation, or for a routing slot,
 * passed their ack deadline under load and came back as copies; a copy of an event whose routing
 * had failed once could then be routed again after more than RECENT_EVENTS newer ones and count
 * twice (issue 16). So:
 *
 * - every message is taken as the client reads it (a callback consumer; the routing slot is taken
 *   inside the lane), so no message waits where the keep-alive cannot reach it;
 * - a copy of a message we still hold (a keep-alive that came too late) is dropped: the original
 *   settles it;
 * - a failed routing is retried in place, in its lane, so nothing newer of its conversation is
 *   routed before it;
 * - once the unit is stopped (given back, lease lost) nothing not yet started is started: it is
 *   left unacked, in order, and the next owner rewinds to the ack floor and reads the processed
 *   marker for it (partitions.ts, prepare). What is being routed finishes and is acked.
 * - a gap in the delivery (consumer) sequence ends the run the same way: every delivery of the
 *   unit's durable is ours, so a skipped number is a message lost in flight (a consumer leader
 *   killed before its route forwarded it). It would come back after ack_wait, behind newer ones
 *   of its conversation; the restarted run rewinds to the ack floor instead (prepare). A number
 *   at or below the last one (a nats-server restarted from consumer state up to ~100 ms old after
 *   kill -9, a new leader behind us) ends it too: such a server may still count as pending a
 *   message whose copy was lost in flight.
 */
import type { JsMsg } from '@nats-io/jetstream';
import type { Bus } from '../core/bus.js';
import type { BatchSink, CoalescingLanes, Semaphore } from '../core/lanes.js';
import type { Logger } from '../core/logger.js';
import { deliveryLoss } from '../core/lane-consumer.js';
import type { LoopRun } from '../core/supervisor.js';
import { errorMessage } from '../core/errors.js';
import { metrics } from '../core/metrics.js';
import { backoffMs, sleep } from '../core/sleep.js';
import { Streams } from '../core/subjects.js';

/** A message to route: its lane (conversation) and what the router needs to route it. */
export interface InboundWork {
  key: string;
  /** For the log when routing fails. */
  eventId: string;
}

/** Thrown by a routing that finds its unit no longer ours before starting the next message: nothing more is started or acked. */
export class NotOwnedError extends Error {
  constructor() {
    super('the partition is no longer ours: what is left goes to the next owner');
  }
}

/** A message taken from the server and not yet settled. */
export interface Held<W extends InboundWork> {
  m: JsMsg;
  work: W;
}

export interface InboundConsumerOptions<W extends InboundWork> {
  durable: string;
  /** Messages the client buffers per pull. */
  batch: number;
  ackWaitMs: number;
  /** Routing slots, shared by every unit this replica owns. */
  slots: Semaphore;
  /** Shared by every unit this replica owns: what queued up in a lane is routed together. */
  lanes: CoalescingLanes<Held<W>>;
  /** False once this replica may no longer own the unit (its lease ran out by the clock). */
  owned: () => boolean;
  /**
   * The work for a message, or null when it was settled already (acked); a promise when it is
   * being parked (refused), settled once that resolves. Synchronous otherwise: the intake runs
   * once per inbound message, and a promise per message was a good part of its cost.
   */
  decode: (m: JsMsg) => W | null | Promise<void>;
  /**
   * Routes messages of one lane, in order (one or several that queued up together). `retry`: an
   * earlier attempt failed, maybe after some were routed: read the processed markers. `ours`
   * is asked before each message is started (NotOwnedError once it is false).
   */
  route: (works: W[], retry: boolean, ours: () => boolean, leaseHeld: () => boolean) => Promise<void>;
}

/** When the server last heard that we hold a message (taken, or marked in progress). */
interface Holding {
  m: JsMsg;
  since: number;
}

/**
 * Runs until the signal aborts (or a gap in the delivery ends the run) and every message taken was
 * settled. The client hands each message to `take` as it is read from the socket (a callback
 * consumer, no iterator): decoded, queued in its lane, and settled by the lane's batch.
 */
export async function consumeInbound<W extends InboundWork>(bus: Bus, log: Logger, { signal, progress, hold }: LoopRun, o: InboundConsumerOptions<W>): Promise<void> {
  const consumer = await bus.js.consumers.get(Streams.inbound, o.durable);
  let delivered = (await consumer.info(true)).delivered.consumer_seq;
  let lost = '';
  /** Stream sequence → the message we hold for it (queued, being routed, or being parked). */
  const held = new Map<number, Holding>();
  let drained: (() => void) | undefined;
  // What is held is work waiting: held, and nothing settling, for router.stallAfter is a stall
  // (a bucket without quorum: every routing retried in place; supervisor.ts, probes.ts).
  const release = (seq: number) => {
    if (held.delete(seq)) hold(-1);
    if (held.size === 0) drained?.();
  };
  // Once not ours, for good in this run: a lease that ran out by the clock can look valid again
  // when a slow renewal lands, and routing on after leaving a message unstarted would pass it.
  // A run that ends so is restarted, and its unit rewound to the ack floor (partitions.ts).
  let gone = false;
  let stopPulling = () => {};
  const ours = () => {
    if (!gone && (signal.aborted || !o.owned())) {
      gone = true;
      stopPulling();
    }
    return !gone;
  };
  const sink: BatchSink<Held<W>> = {
    run: (batch) => routeInPlace(log, batch, o, ours, signal),
    settled: (batch, failure) => {
      try {
        if (failure) log.error({ err: errorMessage(failure.err), seq: batch[0]!.m.seq, batch: batch.length }, 'inbound message handling failed; it comes back after ack_wait');
        else progress();
      } finally {
        for (const h of batch) release(h.m.seq);
      }
    },
  };
  const take = (m: JsMsg) => {
    const d = m.info.deliverySequence;
    const loss = lost ? undefined : deliveryLoss(delivered, d);
    if (loss) {
      lost = `${loss}: restarting from the ack floor`;
      gone = true; // nothing more is started: left unacked, in order, for the rewind
      stopPulling();
    }
    delivered = d;
    if (lost) return;
    const seq = m.seq;
    if (held.has(seq)) return; // a copy: the original is still ours and will be settled
    if (!ours()) return; // left unacked for the next owner, which rewinds to the ack floor
    const holding = { m, since: performance.now() };
    let work: W | null | Promise<void>;
    try {
      work = o.decode(m);
    } catch (err) {
      // A defect, not the message's fault: it comes back after ack_wait.
      log.error({ err: errorMessage(err), seq }, 'inbound message could not be decoded; it comes back after ack_wait');
      return;
    }
    if (work === null) return;
    held.set(seq, holding);
    hold(1);
    if (work instanceof Promise) {
      work.then(
        () => release(seq),
        (err: unknown) => {
          // Parking it failed (NATS busy): it comes back after ack_wait and is judged again.
          log.error({ err: errorMessage(err), seq }, 'inbound message could not be parked; it comes back after ack_wait');
          release(seq);
        },
      );
      return;
    }
    o.lanes.enqueue(work.key, { m, work }, sink);
  };
  const messages = await consumer.consume({ max_messages: o.batch, callback: take });
  let pulling = true;
  // Not from inside the client's delivery callback (take, or a routing it started at once): the
  // client goes on with that delivery after our callback returns, and may send a pull request then.
  stopPulling = () => {
    if (!pulling) return;
    pulling = false;
    queueMicrotask(() => messages.stop());
  };
  signal.addEventListener('abort', stopPulling, { once: true });
  // Stopped while the consumer was being set up (a partition given back at once), or a gap or
  // lost ownership seen in the first deliveries: stop now that there is something to stop.
  if (signal.aborted || gone) stopPulling();
  const every = Math.max(100, Math.floor(o.ackWaitMs / 3));
  // After a lease ran out another replica may have recreated the durable: progress marks would reach it by name.
  // Only what was held a tick already: most messages are routed sooner, and a mark costs a publish.
  const keepAlive = setInterval(() => {
    if (!o.owned()) return;
    const now = performance.now();
    for (const h of held.values()) {
      if (now - h.since < every * 0.9) continue; // 0.9: a timer firing a little early still marks
      h.m.working();
      h.since = now;
    }
  }, every);
  let ended: unknown;
  try {
    // Resolves (never rejects) once the consumer stopped: by us, or with the error that stopped it.
    ended = await messages.closed();
  } finally {
    signal.removeEventListener('abort', stopPulling);
    // A partition is handed to another replica only once what it started here was settled.
    if (held.size > 0) await new Promise<void>((resolve) => (drained = resolve));
    clearInterval(keepAlive);
  }
  if (lost) throw new Error(lost); // the supervisor restarts the run; prepare() rewinds
  if (ended instanceof Error) throw ended;
}

/**
 * Routes what its lane handed over (one message, or several of one conversation that queued up)
 * and acks it, retrying in place until it is routed or the unit is no longer ours: a nak would
 * let newer messages of the conversation pass it.
 */
async function routeInPlace<W extends InboundWork>(log: Logger, batch: Array<Held<W>>, o: InboundConsumerOptions<W>, ours: () => boolean, signal: AbortSignal): Promise<void> {
  const works = batch.map((h) => h.work);
  for (let attempt = 0; ; attempt++) {
    if (!ours()) return; // not started: left unacked, in order, for the next owner
    if (!o.slots.tryAcquire()) await o.slots.acquire();
    try {
      if (!ours()) return;
      // `ours` also turns false on a stop or a hand-back, where what was started finishes;
      // `leaseHeld` only when the lease ran out by the clock (checked again before writes).
      await o.route(works, attempt > 0, ours, o.owned);
      // A lease that ran out meanwhile: the successor may have recreated the durable, and an ack
      // reaches it by name. It reads the processed marker for these messages instead.
      if (o.owned()) for (const h of batch) h.m.ack();
      return;
    } catch (err) {
      if (!ours()) return; // left unacked, in order, for the next owner (NotOwnedError, or a failure after the lease ran out)
      metrics.routingErrors.inc();
      log.warn({ err: errorMessage(err), eventId: works[0]!.eventId, batch: works.length, attempt }, 'routing failed; will retry');
    } finally {
      o.slots.release();
    }
    await sleep(backoffMs(attempt, 500, 10_000), signal);
  }
}
