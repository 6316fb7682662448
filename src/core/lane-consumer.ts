/**
 * A durable pull consumer whose messages are handled in keyed lanes: one at a time per key, in
 * stream order, many keys at once, at most `concurrency` handlers running. The outbound runner
 * (key = conversation) and the webhook dispatcher (key = ticket) are both this loop.
 *
 * Every message taken from the consumer is held — queued in its lane or running — until its
 * handler settles it, and the server is told we are working on all of them (one timer, every
 * third of ack_wait). Without that, messages queued behind a slow head (a receiver down for an
 * hour) would pass their ack deadline, come back as copies, and run again after newer ones.
 * A copy of a message we still hold (a keep-alive lost in a network blip) is dropped. The
 * concurrency slot is taken inside the lane, so one stuck key holds one slot, not all of them.
 */
import type { Consumer, ConsumerConfig, JsMsg } from '@nats-io/jetstream';
import type { Bus } from './bus.js';
import { KeyedLanes, Semaphore } from './lanes.js';
import { sleep, whenAborted } from './sleep.js';
import { Supervisor, type LoopRun, type LoopStatus, type SupervisedLoop } from './supervisor.js';

/** How long one pull request waits for messages; also the longest stop() waits for the last one. */
const FETCH_EXPIRES_MS = 1_000;
/** How long stop() waits for the server to confirm it has taken in the naks. */
const CONFIRM_TIMEOUT_MS = 2_000;
/** A progress mark: harmless on a message already settled (or since delivered to someone else). */
const WORKING = '+WPI';

export interface LaneConsumerOptions<T> {
  stream: string;
  config: Partial<ConsumerConfig> & { durable_name: string; ack_wait: number };
  concurrency: number;
  /** The work item, or null when the message was already settled (parked, skipped). */
  decode: (m: JsMsg) => T | null | Promise<T | null>;
  laneOf: (item: T) => string;
  handle: (m: JsMsg, item: T) => Promise<void>;
  /** `handle` threw: the message must come back (nak) after whatever the caller logs. */
  onError: (m: JsMsg, item: T, err: unknown) => void;
  /**
   * How long a pull request stays open on the server. A leased consumer sets it below its lease
   * TTL: a holder frozen mid-pull must stop attracting messages before another replica takes over.
   */
  pullExpiresMs?: number;
  /**
   * True once this process may have been replaced as the consumer's user (a lease it held ran out
   * by the clock, e.g. it was paused; not a loss the server announced, which still hands back).
   * From then on it neither pulls nor acks, naks or marks progress: the successor may have
   * recreated the durable under the same name, and ack subjects reach it by name. A stale nak there can even bring back an event the successor already acked (nats-server
   * 2.9 skips its "still pending?" check when nothing is pending). What it holds is left to the
   * successor, which rewinds to the ack floor.
   */
  stale?: () => boolean;
  /**
   * Messages the server sent us never arrived: a pull request cut off (connection dropped, or
   * given up on by the client) with messages in flight, or a gap in the delivery sequence (every
   * delivery of this durable is ours, numbered one by one: a skipped number is a lost message,
   * e.g. sent by a consumer leader that died before its route forwarded it), or a delivery
   * sequence that went back (a server restarted from older consumer state; see gap()). Those stay
   * "ack pending" on the server until ack_wait and would come back behind newer ones of their key,
   * unless the owner rewinds (see the webhook dispatcher). The message that revealed a gap and
   * everything after it are not handled. Called once; pulling stops until the owner stops this.
   */
  onPullCutOff?: (why: string) => void;
  /**
   * The pull loop reached the supervisor's `failed` state (`failAfter` consecutive failures
   * without a message handled in between, e.g. "JetStream system temporarily unavailable" after
   * a cluster restart left this connection's view of the durable stalled). Called once, with the
   * last error. A leased owner ends its term (the usual hand-back), releases the lease and sits
   * out a while, so another replica delivers: the loop alone would retry for ever.
   */
  onFailing?: (why: string) => void;
  /** Owner of the pull loop; its name there is `loopName`. */
  supervisor?: Supervisor;
  loopName?: string;
}

/**
 * A leased reader of every ticket event (an outgoing webhook, a helpdesk): its durable, given out
 * again `redeliverAfterMs` after a holder died, and a pull that expires well within the lease,
 * so a frozen holder stops attracting events before another replica takes over (fencing).
 */
export function leasedTicketEvents(durable: string, redeliverAfterMs: number, leaseTtlMs: number): Pick<LaneConsumerOptions<unknown>, 'config' | 'pullExpiresMs'> {
  return {
    config: { durable_name: durable, filter_subject: 'omni.events.ticket.>', ack_wait: redeliverAfterMs * 1_000_000, max_ack_pending: 1000, max_deliver: -1 },
    pullExpiresMs: Math.max(1000, Math.floor(leaseTtlMs / 3)),
  };
}

/**
 * How long a leased owner whose consumer loop kept failing (onFailing) waits, after releasing its
 * lease, before it competes for it again: one TTL. A standby looks at a held key at least every
 * TTL/3, so it takes the freed lease well within that, and the failing replica does not take it
 * straight back (with no standby it does, a TTL later, on a fresh consumer).
 */
export function failedHolderPauseMs(leaseTtlMs: number): number {
  return leaseTtlMs;
}

export class LaneConsumer<T> {
  private loop?: SupervisedLoop;
  private keepAlive?: NodeJS.Timeout;
  private readonly lanes = new KeyedLanes();
  /** Stream sequence → the message we hold for it. */
  private readonly held = new Map<number, JsMsg>();
  /** Set once by stop(): nothing not yet started is handled any more, it is handed back. */
  private stopping = false;
  private given = 0;
  private runs = 0;
  /** The message taken last: its ack subject reaches this consumer on the server (see stop). */
  private last?: JsMsg;
  /**
   * The last pull may have lost messages in flight: the connection dropped while it was open, or
   * the client gave up on it (e.g. "heartbeats missed" after an event-loop stall) while the
   * server could still be sending. Kept across restarts of the pull loop.
   */
  private suspect = false;
  /** Delivery (consumer) sequence of the last message the server sent us, as far as we know. */
  private delivered?: number;

  constructor(
    private readonly bus: Bus,
    private readonly o: LaneConsumerOptions<T>,
  ) {}

  private get fenced(): boolean {
    return this.o.stale?.() ?? false;
  }

  /** Messages taken from the server and not yet settled. */
  get holding(): number {
    return this.held.size;
  }

  /**
   * The pull loop is restarting or failed: what this process reads about the durable (its lag)
   * may be a stalled server's view, not the cluster's.
   */
  get failing(): boolean {
    const state = this.loop?.status.state;
    return state !== undefined && state !== 'running';
  }

  /** Messages handed back (nak) untried by stop() so far: queued in a lane or still buffered. */
  get handedBack(): number {
    return this.given;
  }

  async start(): Promise<void> {
    await this.bus.ensureConsumer(this.o.stream, this.o.config);
    const ackWaitMs = this.o.config.ack_wait / 1_000_000;
    this.keepAlive = setInterval(() => {
      if (this.fenced) return;
      for (const m of this.held.values()) m.working();
    }, Math.max(100, ackWaitMs / 3));
    const supervisor = this.o.supervisor ?? new Supervisor();
    let told = false;
    const onState = (st: LoopStatus) => {
      if (st.state !== 'failed' || told || !this.o.onFailing) return;
      told = true;
      this.o.onFailing(st.lastError ?? 'unknown');
    };
    this.loop = supervisor.run(this.o.loopName ?? `consumer.${this.o.config.durable_name}`, (r) => this.pull(r), { essential: true, onState });
  }

  /**
   * Pulls in batches (fetch) until stopped; the supervisor starts it again if it fails. A batch is
   * never cut short: stopping waits for the batch's request to end on the server's word (at most
   * FETCH_EXPIRES_MS), because a subscription closed while the server still sends would drop
   * those messages on the floor, and they would come back only after ack_wait, behind newer ones
   * of their key. What arrives after stop() goes through the lanes and is handed back there, in
   * stream order behind what its key already has queued.
   */
  private async pull({ signal, progress }: LoopRun): Promise<void> {
    // A restart also recreates a consumer deleted by hand (or lost with a server's store).
    if (this.runs++ > 0) await this.bus.ensureConsumer(this.o.stream, this.o.config);
    const consumer = await this.bus.js.consumers.get(this.o.stream, this.o.config.durable_name);
    // Where the durable's delivery numbering stands before our first pull (kept across restarts).
    this.delivered ??= (await consumer.info(true)).delivered.consumer_seq;
    const sem = new Semaphore(this.o.concurrency);
    while (!signal.aborted) {
      // A pull request written while disconnected is flushed at reconnect, after this client has
      // given up on it: the server would deliver into a closed inbox, and those messages would
      // wait out ack_wait. So pull only while connected.
      while (!this.bus.connected && !signal.aborted) await sleep(100, signal);
      if (signal.aborted) break;
      if (this.fenced) {
        await sleep(100, signal); // the owner ends this term within a tick
        continue;
      }
      // Cleared only once the server answered: a check that failed (no consumer leader during an
      // election, exactly when pulls are cut) is made again after the restart, not forgotten.
      if (this.suspect && this.o.onPullCutOff) {
        if (await this.lostInFlight(consumer)) {
          this.o.onPullCutOff('a pull was cut off with messages in flight');
          return whenAborted(signal); // the owner stops this consumer and rewinds
        }
      }
      this.suspect = false;
      const drops = this.bus.disconnects;
      // Until the batch ends on the server's word: a pull the client abandons may lose messages.
      this.suspect = true;
      const batch = await consumer.fetch({ max_messages: this.o.concurrency, expires: Math.min(FETCH_EXPIRES_MS, this.o.pullExpiresMs ?? FETCH_EXPIRES_MS) });
      for await (const m of batch) {
        const gap = this.gap(m);
        if (gap && this.o.onPullCutOff) {
          this.o.onPullCutOff(gap);
          return whenAborted(signal); // leaving the batch ends it; the owner stops this consumer and rewinds
        }
        const seq = m.seq;
        if (this.held.has(seq)) continue; // a copy: the original is still ours and will be settled
        if (this.fenced) continue; // left unsettled for the successor (see `stale`)
        const item = await this.o.decode(m);
        if (item === null) continue;
        this.held.set(seq, m);
        this.last = m;
        void this.lanes
          .run(this.o.laneOf(item), async () => {
            if (this.stopping) return this.handBack(m);
            await sem.acquire();
            try {
              if (this.stopping) return this.handBack(m);
              await this.o.handle(m, item);
            } finally {
              sem.release();
            }
          })
          .then(progress, (err) => this.o.onError(m, item, err))
          .finally(() => this.held.delete(seq));
      }
      this.suspect = this.bus.disconnects !== drops;
    }
  }

  /** See deliveryLoss; `this.delivered` follows the server's numbering either way. */
  private gap(m: JsMsg): string | undefined {
    const d = m.info.deliverySequence;
    const last = this.delivered;
    this.delivered = d;
    return last === undefined ? undefined : deliveryLoss(last, d);
  }

  /**
   * After a pull cut off by a dropped connection, with no pull open: did the server send messages
   * that never arrived? The server counts as "ack pending" only what we hold or it sent us; once
   * it confirmed the acks sent so far, more pending than we held before asking means messages lost
   * in flight. (Acks landing meanwhile only lower the count: a loss may go unseen, never invented.)
   */
  private async lostInFlight(consumer: Consumer): Promise<boolean> {
    const held = this.held.size;
    const reply = this.last ? ackSubject(this.last) : undefined;
    if (reply) await this.bus.nc.request(reply, WORKING, { timeout: CONFIRM_TIMEOUT_MS }).catch(() => undefined);
    const info = await consumer.info(false);
    return info.num_ack_pending > held;
  }

  private handBack(m: JsMsg): void {
    if (this.fenced) return; // see `stale`: the successor rewinds instead
    this.given++;
    m.nak();
  }

  /**
   * Stop pulling: no new pull request; the one in flight ends on the server's word (at most
   * FETCH_EXPIRES_MS). What arrives meanwhile is queued as usual. Until this resolves, a nak
   * could be answered by a redelivery into that request, out of place, so callers end their
   * waits (which nak) only after it.
   */
  async stopPulling(): Promise<void> {
    await this.loop?.stop();
  }

  /**
   * Stop pulling, then give back everything not yet started, at once and in order (nak without
   * delay), so whoever holds the consumer next gets it before anything newer of the same key.
   * Handlers already running finish (they decide whether to nak long waits).
   *
   * Resolves true once the server has taken in every ack and nak sent: a nak is a fire-and-forget
   * publish that the server queues per consumer, so a successor pulling right away (5 ms later when
   * the same process takes the lease again) could be served newer messages of a key before the naks of older ones were processed.
   * The server answers a request on a message's ack subject after processing it, in order, so one
   * answered progress mark means all before it are in. False when that answer did not come (NATS
   * unreachable): the hand-back may still be landing.
   */
  async stop(): Promise<boolean> {
    await this.stopPulling();
    this.stopping = true;
    await this.lanes.idle();
    clearInterval(this.keepAlive);
    if (this.fenced) return false; // nothing was handed back (see `stale`)
    if (!this.last) return true;
    const reply = ackSubject(this.last);
    if (!reply) return false;
    try {
      await this.bus.nc.request(reply, WORKING, { timeout: CONFIRM_TIMEOUT_MS });
      return true;
    } catch {
      return false; // reported by the caller, who knows what an unconfirmed hand-back costs
    }
  }
}

/** The ack subject the server gave a message (the client keeps it; its type does not show it). */
export function ackSubject(m: JsMsg): string | undefined {
  const reply: unknown = 'reply' in m ? m.reply : undefined;
  return typeof reply === 'string' && reply.length > 0 ? reply : undefined;
}

/**
 * Why a delivery numbered `d`, after `last`, says messages the server sent may never have reached
 * us (undefined: nothing says so). Every delivery of a single-holder durable is ours, numbered one
 * by one. A skipped number is a delivery lost in flight. A number at or below the last one means
 * the server's count went back (or, the same number again, did not advance): a nats-server killed with -9 restarts from consumer state up to
 * ~100 ms old (it writes it at most ten times a second), a new consumer leader may be behind, or
 * the durable was recreated. Such a server may still count as pending a message it sent just
 * before and that was lost in flight; it would come back after ack_wait, behind newer ones of its
 * key (an inversion seen in the fault run). Shared by the lane consumer and the router's units.
 */
export function deliveryLoss(last: number, d: number): string | undefined {
  if (d > last + 1) return `${d - last - 1} deliveries never arrived (delivery sequence ${d})`;
  const why = 'restarted from older state, a new consumer leader, or the durable recreated';
  if (d < last) return `the server's delivery count went back from ${last} to ${d} (${why})`;
  // The same number again is a count that did not advance, not one that went back: it was
  // logged as "went back from 1 to 1".
  if (d === last) return `the server's delivery count did not advance: delivery ${d} came twice (${why})`;
  return undefined;
}
