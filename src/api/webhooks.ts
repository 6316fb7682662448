/**
 * Webhooks out: every ticket event (stream OMNI_EVENTS) POSTed to each configured URL, signed
 * (src/core/signature.ts), in order per ticket, retried with capped exponential backoff for as long
 * as `retryFor` allows, then parked on omni.dlq.webhook.<name> with the reason (a redirect at once,
 * since no retry changes it: webhook-park.ts). Each webhook has its own durable consumer, so a
 * receiver that is down for an hour gets everything when it is back, and one slow receiver never
 * holds up another. One gateway replica at a time dispatches a
 * webhook (lease `webhook.<name>`): two would deliver one ticket's events concurrently, out of
 * order; the others stand by and take over when the holder stops or dies.
 */
import { setMaxListeners } from 'node:events';
import type { JsMsg } from '@nats-io/jetstream';
import type { Bus } from '../core/bus.js';
import { errorMessage } from '../core/errors.js';
import { durableLag } from '../core/durable-lag.js';
import { LaneConsumer, ackSubject, failedHolderPauseMs, leasedTicketEvents } from '../core/lane-consumer.js';
import { acquireLease, type Lease } from '../core/lease.js';
import type { Term } from './webhook-takeover.js';
import { rewindOrphans } from '../core/rewind.js';
import { DoneSet } from './webhook-done.js';
import { handBack, postCutOff, pruneToFloor, takeOver, type TermScope } from './webhook-term.js';
import { postEvent, type PostOutcome } from './webhook-post.js';
import { parkEvent, presetWebhookSeries } from './webhook-park.js';
import type { Logger } from '../core/logger.js';
import { metrics } from '../core/metrics.js';
import { serveReplay, type ReplayOutcome } from '../core/replay.js';
import { sleep, backoffMs } from '../core/sleep.js';
import { Consumers, Streams, kvSafe } from '../core/subjects.js';
import { Supervisor, type LoopRun, type SupervisedLoop } from '../core/supervisor.js';

/** How long a POST in flight at shutdown may still take before it is cut off (and nak'ed). */
const POST_GRACE_MS = 2_000;
/** A confirmed ack (see ackConfirmed): how long one try waits, and how many tries before a plain ack. */
const ACK_CONFIRM_TIMEOUT_MS = 2_000;
const ACK_CONFIRM_TRIES = 10;

export interface WebhookTarget {
  name: string;
  url: string;
  secret: string;
  events: string[];
  timeout: number;
  retryFor: number;
  backoffBase: number;
  backoffMax: number;
  /** An event handed to a gateway that died is given to another (or the restarted one) after this. */
  redeliverAfter: number;
}

export interface DispatchLease {
  /** This process's id in the lease bucket. */
  holder: string;
  ttlMs: number;
}

type WebhookEvent = { type: string; ticketId: string };

/** A one-shot signal: `fired` resolves 'cut' once `fire` was called, whenever that was. */
function latch(): { fired: Promise<'cut'>; fire: () => void } {
  let fire!: () => void;
  const fired = new Promise<'cut'>((r) => (fire = () => r('cut')));
  return { fired, fire };
}

export class WebhookDispatcher {
  /** Aborted POST_GRACE_MS after stop: POSTs still in flight end then (shutdown is bounded). */
  private readonly cutOff = new AbortController();
  /**
   * Aborted when this term as dispatcher ends (stop, or the lease lost): retry waits end and
   * events not yet posted are nak'ed. A POST in flight at a lost lease finishes and is acked if
   * the receiver took it: aborting it would not unsend it, only make it come again (unless the
   * lease ran out by the clock: see postCut).
   */
  private term = new AbortController();
  private loop?: SupervisedLoop;
  private active = false;
  /** The lease this term runs under: checked before every POST, its token sent with it. */
  private held?: Lease;
  /** Events beyond the ack floor already delivered (this term's and its predecessor's): never posted again. */
  private done = new DoneSet();
  /** A prune of `done` to the ack floor is under way (see delivered). */
  private pruning = false;
  /**
   * Ends this term's POSTs: at the shutdown cut-off, or once the lease ran out by the clock (a
   * process that woke from a freeze). A POST still waiting for its connection when the holder
   * froze would otherwise leave after the successor re-sent the event, under the older token.
   */
  private postCut = this.cutOff.signal;
  private cutWhy = ''; // why the consumer last asked for a rewind (LaneConsumer's onPullCutOff)
  /** This term's consumer, while this process holds the lease: lag() asks it whether it can know. */
  private current?: LaneConsumer<WebhookEvent>;
  private readonly scope: TermScope;

  constructor(
    private readonly bus: Bus,
    private readonly target: WebhookTarget,
    private readonly log: Logger,
    private readonly lease: DispatchLease,
    private readonly supervisor = new Supervisor(log),
  ) {
    // One listener per POST in flight (up to the lane concurrency) is expected, not a leak.
    setMaxListeners(0, this.cutOff.signal);
    presetWebhookSeries(target.name);
    this.scope = { bus, webhook: target.name, holder: lease.holder, log };
  }

  /** Returns at once; delivery starts when this process holds the webhook's lease. */
  async start(): Promise<void> {
    this.loop = this.supervisor.run(`webhook.${this.target.name}`, (r) => this.serve(r));
  }

  /** True while this process is the one delivering. */
  get dispatching(): boolean {
    return this.active;
  }

  /** Terms as the dispatching replica, one after another, until stopped. */
  private async serve({ signal, progress }: LoopRun): Promise<void> {
    const key = `webhook.${kvSafe(this.target.name)}`;
    const ended = new Promise<void>((r) => signal.addEventListener('abort', () => r(), { once: true }));
    while (!signal.aborted) {
      let lease;
      try {
        lease = await acquireLease(this.bus.kv.leases, key, { ttlMs: this.lease.ttlMs, holder: this.lease.holder, signal, log: this.log });
      } catch (err) {
        if (signal.aborted) return;
        this.log.warn({ webhook: this.target.name, err: errorMessage(err) }, 'webhook lease not taken; retrying');
        await sleep(1000, signal);
        continue;
      }
      this.term = new AbortController();
      this.held = lease;
      const stale = postCutOff(this.scope, this.cutOff.signal, lease);
      this.postCut = stale.signal;
      // One listener per delivery in flight (up to the lane concurrency) is expected, not a leak.
      setMaxListeners(0, this.term.signal);
      // Replays (omnigate dlq --replay) are POSTed by the holder too, while it holds the lease.
      const replays = serveReplay(this.bus, `webhook.${this.target.name}`, (payload, meta) => this.replay(payload, meta), this.log);
      let consumer: LaneConsumer<WebhookEvent> | undefined;
      let term: Term | undefined;
      // The consumer loop kept failing (LaneConsumer's onFailing): end the term, hand back as on a
      // lost lease, release, and sit out a while so another replica delivers.
      const failing = latch();
      let failedWhy = '';
      const onFailing = (why: string) => ((failedWhy = why), failing.fire());
      // True once nothing a predecessor took is left unaccounted for (we restarted from the floor).
      let settled = false;
      try {
        // A take that outlasted the TTL (NATS slow to answer) must not touch the durable.
        if (!lease.valid()) throw new Error('lease ran out while it was being taken');
        ({ term, done: this.done } = await takeOver(this.scope, lease));
        settled = true;
        let cut = latch();
        consumer = this.consumer(cut.fire, onFailing);
        this.current = consumer;
        await consumer.start();
        this.active = true;
        progress();
        this.log.info({ webhook: this.target.name }, 'delivering this webhook from this process');
        // A NATS drop that lost events in flight restarts delivery from the ack floor, in place.
        const over = Promise.race([lease.lost, ended, failing.fired]).then(() => 'end');
        while ((await Promise.race([over, cut.fired])) === 'cut' && lease.valid() && !failedWhy) {
          cut = latch();
          consumer = await this.rewindInPlace(consumer, cut.fire, onFailing);
          this.current = consumer;
          progress();
        }
      } catch (err) {
        this.log.warn({ webhook: this.target.name, err: errorMessage(err) }, 'webhook dispatcher failed; retrying');
        await sleep(1000, signal); // holding the lease meanwhile: no replica spins on it
      } finally {
        this.active = false;
        this.current = undefined;
        // Pulling ends first (a nak sent while a pull request is open could be redelivered into
        // it, out of place); then waits end, and what is held goes back in order.
        await consumer?.stopPulling();
        this.term.abort();
        const [confirmed] = await Promise.all([consumer?.stop() ?? true, replays.stop()]);
        if (consumer?.handedBack) this.log.info({ webhook: this.target.name, events: consumer.handedBack }, 'events handed back for the next dispatcher');
        // Only now, with everything given back and the server's word on it, is what this term
        // delivered listed for the successor to skip. Otherwise the record stays "delivering":
        // the successor sends everything after the ack floor again (repeats, never inversions).
        if (lease.expired()) this.log.warn({ webhook: this.target.name, fence: lease.token, stalledMs: lease.stalledMs() }, 'lease ran out (paused, or NATS unreachable): nothing acked or handed back any more, the next holder rewinds to the ack floor (repeats, no inversions)');
        else if (!confirmed) this.log.warn({ webhook: this.target.name }, 'NATS did not confirm the hand-back: the next holder rewinds to the ack floor (repeats, no inversions)');
        else if (term && settled) await handBack(this.scope, term, lease.token, this.done);
        stale.detach();
        await lease.release();
      }
      if (failedWhy && !signal.aborted) {
        const pauseMs = failedHolderPauseMs(this.lease.ttlMs);
        this.log.error({ webhook: this.target.name, err: failedWhy, pauseMs }, 'webhook consumer kept failing on this replica: lease released for another replica, competing again after the pause');
        await sleep(pauseMs, signal);
      }
    }
  }

  /**
   * Events the server sent never arrived (a pull cut off by a NATS drop, a gap in the delivery
   * sequence after a consumer leader died): they would wait
   * out redeliverAfter and then come behind newer events of their ticket. So, still holding the
   * lease: stop pulling, hand back what we hold (in order, confirmed), and recreate the durable
   * from its ack floor, as a successor does after a crash. Repeats (same x-omnigate-delivery),
   * never inversions.
   */
  private async rewindInPlace(consumer: LaneConsumer<WebhookEvent>, onCut: () => void, onFailing: (why: string) => void): Promise<LaneConsumer<WebhookEvent>> {
    await consumer.stopPulling();
    this.term.abort();
    await consumer.stop();
    this.term = new AbortController();
    setMaxListeners(0, this.term.signal);
    const lease = this.held;
    const from = await rewindOrphans(this.bus.jsm, Streams.events, Consumers.webhooks(this.target.name), () => lease?.valid() ?? false);
    this.log.warn({ webhook: this.target.name, why: this.cutWhy, fromSeq: from, handedBack: consumer.handedBack }, 'events sent to this dispatcher may have been lost in flight (see why): delivering again from the ack floor, in order (receivers deduplicate by x-omnigate-delivery)');
    const next = this.consumer(onCut, onFailing);
    await next.start();
    return next;
  }

  /**
   * This term's consumer of the webhook's durable (not started); `onCut`: it lost events in a NATS
   * drop; `onFailing`: its pull loop kept failing (the supervisor's `failed` state).
   */
  private consumer(onCut: () => void, onFailing: (why: string) => void): LaneConsumer<WebhookEvent> {
    return new LaneConsumer<WebhookEvent>(this.bus, {
      stream: Streams.events,
      ...leasedTicketEvents(Consumers.webhooks(this.target.name), this.target.redeliverAfter, this.lease.ttlMs),
      concurrency: 128,
      supervisor: this.supervisor,
      loopName: `webhook.${this.target.name}.consumer`,
      decode: (m) => {
        let event: { type?: string; ticketId?: string };
        try {
          event = m.json();
        } catch {
          m.term();
          return null;
        }
        if (!this.wanted(event.type)) {
          m.ack();
          return null;
        }
        // Delivered by this term before a rewind, or by the predecessor: acked, not posted again.
        if (this.done.has(m.info.streamSequence)) {
          this.settle(m, 'ack');
          return null;
        }
        return { type: event.type ?? 'unknown', ticketId: event.ticketId ?? '' };
      },
      laneOf: (e) => e.ticketId,
      handle: (m, e) => this.deliver(m, e.type),
      onError: (m, _e, err) => {
        this.log.warn({ webhook: this.target.name, err: errorMessage(err) }, 'webhook delivery interrupted; will be redelivered');
        this.settle(m, 'nak', 1000);
      },
      stale: () => this.held?.expired() ?? false,
      onPullCutOff: (why) => ((this.cutWhy = why), onCut()),
      onFailing,
    });
  }

  get name(): string {
    return this.target.name;
  }

  async stop(): Promise<void> {
    // A POST the receiver already answered, cut off now, would be sent again by the next holder.
    const timer = setTimeout(() => this.cutOff.abort(), POST_GRACE_MS);
    try {
      await this.loop?.stop();
    } finally {
      clearTimeout(timer);
    }
  }

  /**
   * Events of this webhook not yet taken by the receiver (pending + in flight), the same number on
   * the holder and on a standby (see durableLag). NaN when this replica cannot read it, and on the
   * holder while its consumer loop is failing: its connection's answer may come from a stalled
   * server (a trial's holder read 0 with 187–437 pending), and 0 would say all is well.
   */
  async lag(): Promise<number> {
    if (this.current?.failing) return Number.NaN;
    return durableLag(this.bus.jsm, Streams.events, Consumers.webhooks(this.target.name));
  }

  private wanted(type: string | undefined): boolean {
    return this.target.events.includes('*') || (!!type && this.target.events.includes(type));
  }

  /** A parked event POSTed once more, with its original delivery id (receivers dedupe on it). */
  private async replay(payload: Buffer, meta: Record<string, string>): Promise<ReplayOutcome> {
    const outcome = await this.post(payload, meta.type ?? 'unknown', Number(meta.sequence ?? 0));
    return outcome.ok ? { outcome: 'published', duplicate: false } : { outcome: 'invalid', reason: `the receiver did not take it: ${outcome.problem}` };
  }

  /** Holds this ticket's lane until the receiver took the event (or it is parked): order per ticket. */
  private async deliver(m: JsMsg, type: string): Promise<void> {
    // The budget counts from when the event happened, so a gateway restart does not reset it.
    const firstSeen = m.info.timestampNanos / 1_000_000 || Date.now();
    // While we retry, the lane consumer tells the server we are still working on the event.
    for (let attempt = 1; ; attempt++) {
      // Shutting down: queued events go back to the stream untried, in order, for the next run.
      if (this.term.signal.aborted) return this.settle(m, 'nak');
      // Fencing: a process that woke from a pause longer than the lease TTL may have been
      // replaced; it must not post, even before its lease timer noticed. The event waits for the
      // term to end (the lease timer ends it within a tick) and is left unsettled for the
      // successor, which rewinds (see settle); a nak now, with the pull request still open, could
      // come back into it behind newer events of the ticket queued in this lane.
      if (!this.held?.valid()) {
        while (!this.term.signal.aborted) await sleep(1000, this.term.signal);
        return this.settle(m, 'nak');
      }
      const outcome = await this.post(m.data, type, m.info.streamSequence);
      if (outcome.ok) {
        this.delivered(m.info.streamSequence);
        return this.ackConfirmed(m);
      }
      if (this.term.signal.aborted) return this.settle(m, 'nak');
      // A redirect (outcome.permanent) is parked at once: every retry would be answered alike.
      if (outcome.permanent || Date.now() - firstSeen > this.target.retryFor) {
        // Parking failed (NATS busy) is retried here: the lane stays held, so no newer event of
        // the ticket overtakes this one (a throw would nak it with a delay and let them pass).
        const parking = { bus: this.bus, log: this.log, webhook: this.target.name, pauseMs: this.target.backoffMax, signal: this.term.signal };
        if (!(await parkEvent(parking, m, type, attempt, outcome))) continue;
        this.delivered(m.info.streamSequence);
        return this.settle(m, 'ack');
      }
      metrics.webhookRetries.inc({ webhook: this.target.name });
      const backoff = backoffMs(attempt - 1, this.target.backoffBase, this.target.backoffMax);
      // A receiver's Retry-After is honoured, within the same cap as our own backoff.
      const delay = Math.min(this.target.backoffMax, Math.max(backoff, outcome.retryAfterMs ?? 0));
      if (attempt === 1 || attempt % 10 === 0) this.log.warn({ webhook: this.target.name, attempt, problem: outcome.problem }, 'webhook delivery failed; retrying');
      await sleep(delay, this.term.signal);
    }
  }

  /**
   * Lists a delivered (or parked) event in `done`, and every PRUNE_EVERY of them has the set
   * pruned to the ack floor beside the lanes: a failed read only postpones it to the next round.
   */
  private delivered(seq: number): void {
    const done = this.done;
    done.add(seq);
    if (!done.takePruneTurn() || this.pruning) return;
    this.pruning = true;
    void pruneToFloor(this.scope, done)
      .catch((err: unknown) => this.log.warn({ webhook: this.target.name, err: errorMessage(err) }, 'could not read the ack floor to prune the delivered events; trying again later'))
      .finally(() => (this.pruning = false));
  }

  /**
   * The receiver took the event: ack, and hear the server confirm it. An ack lost on the way (on
   * a cluster, those sent while the consumer's leader moves are dropped) brings the event back
   * after redeliverAfter, and this same holder would post it a second time under one lease token.
   * Until the server confirms, the event stays held in its lane: a redelivered copy is dropped,
   * progress marks go on, later events of the ticket wait their turn. Stopping, the lease running
   * out, or ACK_CONFIRM_TRIES unanswered tries end the wait with a plain ack (at least once).
   */
  private async ackConfirmed(m: JsMsg): Promise<void> {
    const subject = ackSubject(m);
    for (let attempt = 0; subject && attempt < ACK_CONFIRM_TRIES && !this.term.signal.aborted; attempt++) {
      if (this.held?.expired()) return; // see settle
      try {
        await this.bus.nc.request(subject, '+ACK', { timeout: ACK_CONFIRM_TIMEOUT_MS });
        return;
      } catch (err) {
        if (attempt === 0) this.log.warn({ webhook: this.target.name, seq: m.info.streamSequence, err: errorMessage(err) }, 'ack of a delivered event not confirmed; holding it and acking again, so it is not posted twice');
      }
      await sleep(backoffMs(attempt, 250, 2000), this.term.signal);
    }
    this.settle(m, 'ack');
  }

  /**
   * Acks or naks only until the lease ran out by the clock. A holder that outlived its TTL
   * (paused) may have been replaced by one that recreated the durable under the same name: its nak would reach that
   * consumer and, with nothing pending there, nats-server 2.9 redelivers the event even though the
   * successor acked it (the same event posted twice under one lease token). Left unsettled, it is
   * the successor's: it rewinds to the ack floor (repeats across holders, never within one).
   */
  private settle(m: JsMsg, how: 'ack' | 'nak', delayMs?: number): void {
    if (this.held?.expired()) return;
    if (how === 'ack') m.ack();
    else m.nak(delayMs);
  }

  /** One POST under this term's lease token (see webhook-post.ts). */
  private post(body: Uint8Array, type: string, seq: number): Promise<PostOutcome> {
    // The lease is checked once more right before the request's bytes are written (webhook-post.ts).
    return postEvent(this.target, body, { type, seq, token: this.held?.token ?? 0 }, this.postCut, () => this.held?.valid() ?? false);
  }
}
