/**
 * Webhooks out: every ticket event (stream OMNI_EVENTS) POSTed to each configured URL, signed
 * (src/core/signature.ts), in order per ticket, retried with capped exponential backoff for as long
 * as `retryFor` allows, then parked on omni.dlq.webhook.<name> with the reason. Each webhook has
 * its own durable consumer, so a receiver that is down for an hour gets everything when it is
 * back, and one slow receiver never holds up another. One gateway replica at a time dispatches a
 * webhook (lease `webhook.<name>`): two would deliver one ticket's events concurrently, out of
 * order; the others stand by and take over when the holder stops or dies.
 */
import { setMaxListeners } from 'node:events';
import type { JsMsg } from '@nats-io/jetstream';
import type { Bus } from '../core/bus.js';
import { errorMessage } from '../core/errors.js';
import { LaneConsumer, ackSubject } from '../core/lane-consumer.js';
import { acquireLease, type Lease } from '../core/lease.js';
import { closeTerm, openTerm, rewindOrphans, type Term } from './webhook-takeover.js';
import type { Logger } from '../core/logger.js';
import { metrics } from '../core/metrics.js';
import { serveReplay, type ReplayOutcome } from '../core/replay.js';
import { SIGNATURE_HEADER, sign } from '../core/signature.js';
import { sleep, backoffMs } from '../core/sleep.js';
import { Consumers, Streams, kvSafe } from '../core/subjects.js';
import { Supervisor, type LoopRun, type SupervisedLoop } from '../core/supervisor.js';

/** How long a POST in flight at shutdown may still take before it is cut off (and nak'ed). */
const POST_GRACE_MS = 2_000;
/** A confirmed ack (see ackConfirmed): how long one try waits, and how many tries before a plain ack. */
const ACK_CONFIRM_TIMEOUT_MS = 2_000;
const ACK_CONFIRM_TRIES = 10;
/** Stream sequences this process saw a receiver take, remembered so a redelivery is not posted again. */
const POSTED_MEMORY = 20_000;

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
   * the receiver took it: aborting it would not unsend it, only make it come again.
   */
  private term = new AbortController();
  private loop?: SupervisedLoop;
  private active = false;
  /** The lease this term runs under: checked before every POST, its token sent with it. */
  private held?: Lease;
  /**
   * Events this process already POSTed with success. A redelivery (an ack lost while a NATS node
   * died, a rewind from the ack floor after a cut pull) of one of them is acked without a second
   * POST: posted twice under one lease token was what receivers saw on a cluster. Skipping a
   * POST the receiver already took loses nothing. Bounded (oldest forgotten first); across
   * processes, receivers still deduplicate by x-omnigate-delivery.
   */
  private readonly posted = new Set<number>();

  constructor(
    private readonly bus: Bus,
    private readonly target: WebhookTarget,
    private readonly log: Logger,
    private readonly lease: DispatchLease,
    private readonly supervisor = new Supervisor(log),
  ) {
    // One listener per POST in flight (up to the lane concurrency) is expected, not a leak.
    setMaxListeners(0, this.cutOff.signal);
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
      // One listener per delivery in flight (up to the lane concurrency) is expected, not a leak.
      setMaxListeners(0, this.term.signal);
      // Replays (omnigate dlq --replay) are POSTed by the holder too, while it holds the lease.
      const replays = serveReplay(this.bus, `webhook.${this.target.name}`, (payload, meta) => this.replay(payload, meta), this.log);
      let consumer: LaneConsumer<WebhookEvent> | undefined;
      let term: Term | undefined;
      // True once nothing a predecessor took is left unaccounted for (it handed back, or we rewound).
      let settled = false;
      try {
        term = await openTerm(this.bus.kv.state, this.target.name, lease.token, this.lease.holder);
        // After a clean hand-back the events still "ack pending" are naks on their way back in
        // order; rewinding would only send again what was acked beyond the floor.
        if (term.predecessor !== 'handed-back') {
          const rewound = await rewindOrphans(this.bus.jsm, Streams.events, Consumers.webhooks(this.target.name));
          if (rewound) this.log.warn({ webhook: this.target.name, fromSeq: rewound, predecessor: term.predecessor }, 'took over from a holder that left events unacknowledged: delivering again from the ack floor, in order (receivers deduplicate by x-omnigate-delivery)');
        }
        settled = true;
        let cut = latch();
        consumer = this.consumer(cut.fire);
        await consumer.start();
        this.active = true;
        progress();
        this.log.info({ webhook: this.target.name }, 'delivering this webhook from this process');
        // A NATS drop that lost events in flight restarts delivery from the ack floor, in place.
        while ((await Promise.race([lease.lost.then(() => 'end'), ended.then(() => 'end'), cut.fired])) === 'cut' && lease.valid()) {
          cut = latch();
          consumer = await this.rewindInPlace(consumer, cut.fire);
          progress();
        }
      } catch (err) {
        this.log.warn({ webhook: this.target.name, err: errorMessage(err) }, 'webhook dispatcher failed; retrying');
        await sleep(1000, signal); // holding the lease meanwhile: no replica spins on it
      } finally {
        this.active = false;
        // Pulling ends first (a nak sent while a pull request is open could be redelivered into
        // it, out of place); then waits end, and what is held goes back in order.
        await consumer?.stopPulling();
        this.term.abort();
        const [confirmed] = await Promise.all([consumer?.stop() ?? true, replays.stop()]);
        if (consumer?.handedBack) this.log.info({ webhook: this.target.name, events: consumer.handedBack }, 'events handed back for the next dispatcher');
        // Only now, with everything given back and the server's word on it, may the successor
        // skip the rewind. Otherwise the record stays "delivering": it rewinds (repeats, never
        // inversions).
        if (lease.expired()) this.log.warn({ webhook: this.target.name, fence: lease.token }, 'lease ran out (paused, or NATS unreachable): nothing acked or handed back any more, the next holder rewinds to the ack floor (repeats, no inversions)');
        else if (!confirmed) this.log.warn({ webhook: this.target.name }, 'NATS did not confirm the hand-back: the next holder rewinds to the ack floor (repeats, no inversions)');
        else if (term && settled) await this.recordHandBack(term, lease.token);
        await lease.release();
      }
    }
  }

  /**
   * Events the server sent into a pull that a NATS drop cut off never arrived: they would wait
   * out redeliverAfter and then come behind newer events of their ticket. So, still holding the
   * lease: stop pulling, hand back what we hold (in order, confirmed), and recreate the durable
   * from its ack floor, as a successor does after a crash. Repeats (same x-omnigate-delivery),
   * never inversions.
   */
  private async rewindInPlace(consumer: LaneConsumer<WebhookEvent>, onCut: () => void): Promise<LaneConsumer<WebhookEvent>> {
    await consumer.stopPulling();
    this.term.abort();
    await consumer.stop();
    this.term = new AbortController();
    setMaxListeners(0, this.term.signal);
    const from = await rewindOrphans(this.bus.jsm, Streams.events, Consumers.webhooks(this.target.name));
    this.log.warn({ webhook: this.target.name, fromSeq: from, handedBack: consumer.handedBack }, 'NATS dropped a pull with events in flight: delivering again from the ack floor, in order (receivers deduplicate by x-omnigate-delivery)');
    const next = this.consumer(onCut);
    await next.start();
    return next;
  }

  private async recordHandBack(term: Term, token: number): Promise<void> {
    try {
      const recorded = await closeTerm(this.bus.kv.state, this.target.name, term, token, this.lease.holder);
      if (!recorded) this.log.warn({ webhook: this.target.name, fence: token }, 'replaced before the hand-back was recorded: the new holder rewinds to the ack floor (repeats, no inversions)');
    } catch (err) {
      this.log.warn({ webhook: this.target.name, err: errorMessage(err) }, 'hand-back not recorded: the next holder rewinds to the ack floor (repeats, no inversions)');
    }
  }

  /** This term's consumer of the webhook's durable (not started); `onCut`: it lost events in a NATS drop. */
  private consumer(onCut: () => void): LaneConsumer<WebhookEvent> {
    return new LaneConsumer<WebhookEvent>(this.bus, {
      stream: Streams.events,
      config: {
        durable_name: Consumers.webhooks(this.target.name),
        filter_subject: 'omni.events.ticket.>',
        ack_wait: this.target.redeliverAfter * 1_000_000,
        max_ack_pending: 1000,
        max_deliver: -1,
      },
      concurrency: 128,
      // Fencing: a frozen holder's pull request expires before its lease can be taken over.
      pullExpiresMs: Math.max(1000, Math.floor(this.lease.ttlMs / 3)),
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
        return { type: event.type ?? 'unknown', ticketId: event.ticketId ?? '' };
      },
      laneOf: (e) => e.ticketId,
      handle: (m, e) => this.deliver(m, e.type),
      onError: (m, _e, err) => {
        this.log.warn({ webhook: this.target.name, err: errorMessage(err) }, 'webhook delivery interrupted; will be redelivered');
        this.settle(m, 'nak', 1000);
      },
      stale: () => this.held?.expired() ?? false,
      onPullCutOff: onCut,
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

  /** Events of this webhook not yet taken by the receiver (pending + in flight). */
  async lag(): Promise<number> {
    const info = await this.bus.jsm.consumers.info(Streams.events, Consumers.webhooks(this.target.name));
    return info.num_pending + info.num_ack_pending;
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
      const seq = m.info.streamSequence;
      if (this.posted.has(seq)) return this.ackConfirmed(m);
      const outcome = await this.post(m.data, type, seq);
      if (outcome.ok) {
        this.remember(seq);
        return this.ackConfirmed(m);
      }
      if (this.term.signal.aborted) return this.settle(m, 'nak');
      if (Date.now() - firstSeen > this.target.retryFor) {
        metrics.webhookParked.inc({ webhook: this.target.name });
        this.log.error({ webhook: this.target.name, problem: outcome.problem }, 'webhook delivery parked after the retry budget');
        await this.bus.deadLetters.park({
          source: 'webhook', scope: this.target.name, subject: m.subject, code: 'retries_exhausted',
          reason: `retry budget exhausted after ${attempt} attempts: ${outcome.problem}`, payload: m.data,
          meta: { type, sequence: String(m.info.streamSequence) },
        });
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

  private remember(seq: number): void {
    this.posted.add(seq);
    if (this.posted.size > POSTED_MEMORY) this.posted.delete(this.posted.values().next().value!);
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

  /** One POST: ok when the receiver answered 2xx, else what went wrong. */
  private async post(body: Uint8Array, type: string, seq: number): Promise<{ ok: true } | { ok: false; problem: string; retryAfterMs?: number }> {
    const raw = Buffer.from(body);
    // A per-request controller rather than AbortSignal.any([timeout, cutOff]): the dependant signal
    // `any` creates stays registered on the long-lived cutOff signal for the dispatcher's life
    // (~80 B per delivery, 1.3 GB/day at 200 events/s). This listener is removed when the POST
    // ends. Only the shutdown cut-off aborts a POST: a lost lease lets it finish (see `term`).
    const request = new AbortController();
    const term = this.cutOff.signal;
    const onTerm = () => request.abort(term.reason);
    if (term.aborted) onTerm();
    else term.addEventListener('abort', onTerm, { once: true });
    const timer = setTimeout(() => request.abort(new DOMException(`no answer within ${this.target.timeout} ms`, 'TimeoutError')), this.target.timeout);
    try {
      const res = await fetch(this.target.url, {
        method: 'POST',
        headers: {
          'content-type': 'application/json',
          [SIGNATURE_HEADER]: sign(this.target.secret, raw),
          'x-omnigate-event': type,
          'x-omnigate-delivery': `${this.target.name}-${seq}`,
          // Increases with event order: lets a receiver spot a late redelivery after a gateway crash.
          'x-omnigate-sequence': String(seq),
          // The dispatcher's lease token: a later dispatcher's is higher (core/lease.ts).
          'x-omnigate-lease-token': String(this.held?.token ?? 0),
          'user-agent': 'omnigate-webhooks/1',
        },
        body: raw,
        signal: request.signal,
      });
      await res.arrayBuffer().catch(() => undefined);
      if (res.ok) return { ok: true };
      return { ok: false, problem: `receiver answered ${res.status}`, retryAfterMs: retryAfter(res.headers.get('retry-after')) };
    } catch (err) {
      return { ok: false, problem: `receiver unreachable: ${errorMessage(err)}` };
    } finally {
      clearTimeout(timer);
      term.removeEventListener('abort', onTerm);
    }
  }
}

/** Retry-After as seconds or an HTTP date, in ms; undefined when absent or unreadable. */
function retryAfter(value: string | null): number | undefined {
  if (!value) return undefined;
  const seconds = Number(value);
  if (Number.isFinite(seconds)) return Math.max(0, seconds * 1000);
  const at = Date.parse(value);
  return Number.isNaN(at) ? undefined : Math.max(0, at - Date.now());
}
