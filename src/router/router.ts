/**
 * The router: consumes the inbound partitions this replica owns (partitions.ts: one durable
 * consumer per partition, each partition owned by one replica, so a conversation is routed in
 * publish order), threads every inbound event into a ticket, appends it to the ticket log and
 * announces it on omni.events.ticket.*; and a durable consumer on omni.status.> whose delivery
 * outcomes go into the log (deliveries.ts).
 *
 * Customer messages are routed by inbound-messages.ts; edits and deletions here. Exactly-once
 * effect: every step is idempotent and a processed marker short-circuits replays after the
 * duplicate window (inbound-messages.ts).
 */
import type { JsMsg } from '@nats-io/jetstream';
import type { Bus } from '../core/bus.js';
import { CoalescingLanes, Semaphore } from '../core/lanes.js';
import type { Logger } from '../core/logger.js';
import { Supervisor, type LoopRun, type SupervisedLoop } from '../core/supervisor.js';
import { errorMessage } from '../core/errors.js';
import { sleep } from '../core/sleep.js';
import {
  InboundEvent,
  SCHEMA_VERSION,
  describeZodError,
  type InboundMessage,
  type LogEntry,
  type MessageDeleted,
  type MessageEdited,
  type Ticket,
} from '../core/schema.js';
import { presetDeadLetters } from '../core/dead-letter.js';
import { metrics } from '../core/metrics.js';
import { safeParser } from '../core/schema-as-is.js';
import { Consumers, Streams, hashKey } from '../core/subjects.js';
import { DeliveryRecorder } from './deliveries.js';
import { Journal } from './journal.js';
import { RouterMetrics } from './metrics.js';
import { ROUTER_DEAD_LETTER_CODES, park, type RouterDeadLetterCode } from './park.js';
import { NotOwnedError, consumeInbound, type Held, type InboundWork } from './inbound-consumer.js';
import { MessageRouter, type QueuedMessage, type RoutingHooks } from './inbound-messages.js';
import { PartitionOwnership, type UnitConsumer } from './partitions.js';
import { RECENT_EVENTS } from './ticket-changes.js';
import { sweepStrays } from './strays.js';
import { Threader } from './threading.js';
import { IndexKeys } from './thread-keys.js';
import { TicketStore } from './tickets.js';
import { TooLargeError } from './payload-limit.js';

/**
 * Messages of one conversation routed with one ticket update at most. Bounded by the event ids a
 * ticket remembers (ticket-changes.ts RECENT_EVENTS): a redelivered batch is recognised there.
 */
const MAX_COALESCED = RECENT_EVENTS;

const parseInbound = safeParser(InboundEvent);

/** A decoded inbound event, ready to route in its lane; kept across retries of its batch. */
interface RoutedWork extends InboundWork {
  event: InboundEvent;
  publishedNanos: number;
  /** Delivered before (to us or to a previous owner): it may have been routed already. */
  suspect: boolean;
  /** A customer message: routed (and marked settled) by MessageRouter. */
  message?: QueuedMessage;
  /** An edit or a deletion that was routed and counted: a retry of its batch skips it. */
  settled: boolean;
}

export interface RouterOptions {
  ticketPrefix: string;
  firstTicketNumber: number;
  reopenWindowMs: number;
  /** router.colleagueDomains: customer organisations' mail domains whose people join a colleague's ticket by its subject token (threading.ts). */
  colleagueDomains?: readonly string[];
  concurrency: number;
  ackWaitMs: number;
  /** How long after a satisfaction request a bare 1–5 answer counts as the rating. */
  csatWindowMs: number;
  /** Ratings at or below this alert the lead. */
  csatLowRating: number;
  /** Holder id of the partition and member leases (holder.ts); a fresh one when absent. */
  holder?: string;
  /** How often the owner of the unpartitioned unit looks for inbound messages no router reads (strays.ts; config router.straySweep). */
  straySweepMs: number;
  /** The highest ticket number the read model holds (ticket-numbers.ts numberBase): numbering never goes below it. */
  numberFloor?: () => Promise<number>;
}

export class Router implements RoutingHooks {
  readonly store: TicketStore;
  readonly journal: Journal;
  readonly metrics = new RouterMetrics();
  private readonly threader: Threader;
  private readonly deliveries: DeliveryRecorder;
  private readonly lanes = new CoalescingLanes<Held<RoutedWork>>(MAX_COALESCED);
  private readonly messages: MessageRouter;
  private readonly loops: SupervisedLoop[] = [];
  /** Inbound messages handled at once, across every owned partition. */
  private readonly inboundSlots: Semaphore;
  private ownership?: PartitionOwnership;
  /** Called once for each ticket a customer message opened (auto-acknowledgement). */
  onTicketOpened?: (ticket: Ticket, event: InboundMessage) => Promise<void>;
  /** Called when a customer answers a satisfaction request with a low rating. */
  onLowRating?: (ticket: Ticket, rating: number) => Promise<void>;

  constructor(
    private readonly bus: Bus,
    private readonly log: Logger,
    private readonly o: RouterOptions,
    private readonly supervisor = new Supervisor(log),
  ) {
    this.store = new TicketStore(bus, o.ticketPrefix, o.firstTicketNumber, o.numberFloor, (floor, base) =>
      log.warn({ readModelHighest: floor, nextNumber: base + 1 }, 'ticket numbering starts over in NATS (its store is new) while the read model holds tickets up to this number: continuing above it, so no number is given twice'));
    this.journal = new Journal(bus);
    presetDeadLetters('router', ROUTER_DEAD_LETTER_CODES);
    this.threader = new Threader(this.store, { reopenWindowMs: o.reopenWindowMs, now: Date.now, colleagueDomains: o.colleagueDomains, installationId: bus.installationId });
    this.deliveries = new DeliveryRecorder(bus, this.store, this.journal, this.metrics, log);
    this.inboundSlots = new Semaphore(o.concurrency);
    this.messages = new MessageRouter(bus, this.store, this.threader, this.journal, this, o);
  }

  async start(): Promise<void> {
    const ackWait = this.o.ackWaitMs * 1_000_000;
    const status = { durable_name: Consumers.routerStatus, ack_wait: ackWait, max_ack_pending: 1024, max_deliver: -1 };
    await this.bus.ensureConsumer(Streams.status, status);
    this.ownership = new PartitionOwnership(this.bus, this.log, this.supervisor, {
      id: this.o.holder,
      partitions: this.bus.partitions,
      ttlMs: this.bus.options.leaseTtlMs,
      consumer: { ack_wait: ackWait, max_ack_pending: this.o.concurrency * 4, max_deliver: -1 },
      // What this replica knew of conversations' tickets may be stale once another owned them.
      onTake: () => this.store.forgetEpochs(),
      // A partition's buffer is its share of the concurrency; the unpartitioned unit carries
      // everything older publishers send, so it keeps the whole.
      consume: (run, c) =>
        consumeInbound(this.bus, this.log, run, {
          durable: c.durable,
          batch: c.unit === this.bus.partitions ? Math.min(this.o.concurrency * 2, 1000) : Math.min(this.o.concurrency, 1000),
          ackWaitMs: this.o.ackWaitMs,
          slots: this.inboundSlots,
          lanes: this.lanes,
          owned: c.owned,
          decode: (m) => this.decodeInbound(m, c),
          route: (works, retry, ours, leaseHeld) => this.routeBatch(works, retry, ours, leaseHeld),
        }),
    });
    const ownership = this.ownership;
    // A restarted loop recreates its consumer first, in case it was deleted (by hand, or with a store).
    let runs = 0;
    const consumeStatus = async (r: LoopRun) => {
      if (runs++ > 0) await this.bus.ensureConsumer(Streams.status, status);
      await this.run(r, Streams.status, status.durable_name, 64, new Semaphore(64), (m) => this.deliveries.handle(m));
    };
    const essential = { essential: true };
    this.loops.push(this.supervisor.run('router.partitions', (r) => ownership.run(r), essential));
    this.loops.push(this.supervisor.run('router.status', consumeStatus, essential));
    // Not essential, and no cure in a restart: a sweep that keeps failing (a NATS user without
    // stream info, say) is reported as the loop's state, and routing goes on.
    this.loops.push(this.supervisor.run('router.strays', (r) => this.sweepStraysWhileOwner(r), { essential: false, restartCures: false }));
  }

  /** While this replica owns the unpartitioned unit: moves inbound messages stored where no router reads them (strays.ts). */
  private async sweepStraysWhileOwner({ signal, progress }: LoopRun): Promise<void> {
    const owned = () => this.ownership?.owned().includes(this.bus.partitions) ?? false;
    while (!signal.aborted) {
      // Sweep, then wait: a sweep that fails ends a run at once, so failures in a row add up to
      // `failed`. Waiting first made every run last the interval, which the supervisor counts as
      // a healthy run: a sweep failing every minute stayed `restarting` for ever.
      if (owned()) {
        await sweepStrays(this.bus, this.log, { signal, owned });
        progress();
      }
      await sleep(this.o.straySweepMs, signal);
    }
  }

  /** The gateway's stop has begun: owned partitions are still routed until stop(), but no new one is claimed. */
  beginShutdown(): void {
    this.ownership?.stopClaiming();
  }

  /** Stop pulling, finish what is in flight (acked), give back owned partitions, leave the rest for redelivery. */
  async stop(): Promise<void> {
    await Promise.all(this.loops.map((l) => l.stop()));
    await this.lanes.idle();
  }

  /** Pending messages in the inbound consumers this replica owns: its lag. */
  async lag(): Promise<number> {
    let lag = 0;
    for (const unit of this.ownership?.owned() ?? []) {
      const info = await this.bus.jsm.consumers.info(Streams.inbound, this.ownership!.durableOf(unit));
      lag += info.num_pending + info.num_ack_pending;
    }
    return lag;
  }

  /** The inbound units (partitions; the last is the unpartitioned subjects) this replica owns now. */
  ownedPartitions(): number[] {
    return this.ownership?.owned() ?? [];
  }

  /**
   * One run of a consumer loop (the supervisor restarts it if it ends). Messages buffered when it
   * stops are still handled: the router's steps are idempotent and each is acked or nak'ed.
   */
  private async run({ signal, progress, hold, failed }: LoopRun, stream: string, durable: string, batch: number, sem: Semaphore, handle: (m: JsMsg) => Promise<void>): Promise<void> {
    const consumer = await this.bus.js.consumers.get(stream, durable);
    const messages = await consumer.consume({ max_messages: batch });
    const onAbort = () => messages.stop();
    signal.addEventListener('abort', onAbort, { once: true });
    // Stopped while the consumer was being set up (a partition given back at once): an abort
    // that came before the listener would otherwise leave this loop pulling forever.
    if (signal.aborted) onAbort();
    const inFlight = new Set<Promise<void>>();
    try {
      for await (const m of messages) {
        await sem.acquire();
        hold(1);
        // A failure is no progress: outcomes failing for router.stallAfter are a stall (supervisor.ts).
        const p: Promise<void> = handle(m)
          .then(progress, (err: unknown) => {
            failed();
            this.log.error({ err: errorMessage(err), stream, seq: m.seq }, 'message handling failed; it comes back after ack_wait');
          })
          .finally(() => {
            sem.release();
            inFlight.delete(p);
            hold(-1);
          });
        inFlight.add(p);
      }
    } finally {
      signal.removeEventListener('abort', onAbort);
      // A partition is handed to another replica only once all it delivered here was settled.
      await Promise.all(inFlight);
    }
  }

  // ---- inbound ----

  /**
   * The routing work for an inbound message (inbound-consumer.ts runs it in its lane), null once it
   * was settled here, or the parking of a message refused (settled when that resolves).
   */
  private decodeInbound(m: JsMsg, c: UnitConsumer): RoutedWork | null | Promise<void> {
    // A consumer from before partitioning sees every inbound subject; partitioned ones are their
    // partition's (its owner routes them, in order), not this consumer's.
    if (c.unfiltered && m.subject.split('.').length > 4) {
      m.ack();
      return null;
    }
    let json: unknown;
    try {
      json = m.json();
    } catch {
      return park(this.bus, this.log, m, 'invalid_json', 'payload is not valid JSON');
    }
    // What a connector published (zod's output, defaults filled in) is taken as it is; anything
    // else is zod's to judge, refusals and their messages included (core/schema-as-is.ts).
    const parsed = parseInbound(json);
    if (!parsed.success) {
      const v = (json as { v?: unknown } | null)?.v;
      const reason = v !== SCHEMA_VERSION ? `unsupported schema version ${JSON.stringify(v)} (expected ${SCHEMA_VERSION})` : `invalid event: ${describeZodError(parsed.error)}`;
      return park(this.bus, this.log, m, v !== SCHEMA_VERSION ? 'unsupported_version' : 'invalid_event', reason);
    }
    const event = parsed.data;
    const suspect = m.redelivered || m.seq <= c.suspectUpTo;
    const publishedNanos = m.info.timestampNanos;
    const message = event.type === 'message.inbound' ? { e: event, suspect, settled: false, publishedNanos, raw: { subject: m.subject, data: m.data, seq: m.seq } } : undefined;
    return { key: this.threader.laneKey(event), eventId: event.id, event, publishedNanos, suspect, message, settled: false };
  }

  /**
   * Routes what one lane handed over, in order: runs of customer messages together (they may
   * share a ticket update). What an earlier attempt settled is skipped.
   */
  private async routeBatch(works: RoutedWork[], retry: boolean, ours: () => boolean, leaseHeld: () => boolean): Promise<void> {
    for (let i = 0; i < works.length; ) {
      const w = works[i]!;
      if (!w.message) {
        if (!w.settled) {
          if (!ours()) throw new NotOwnedError();
          const again = (w.suspect || retry) && this.journal.dedupMayHaveLapsed(w.publishedNanos);
          await this.processChange(w.event as MessageEdited | MessageDeleted, again ? w.publishedNanos : undefined, leaseHeld);
          w.settled = true;
          this.metrics.observeRouted(w.event.channel, w.event.account, w.publishedNanos);
        }
        i++;
        continue;
      }
      let j = i + 1;
      while (j < works.length && works[j]!.message) j++;
      await this.messages.route(works.slice(i, j).map((r) => r.message!), retry, ours, this.countRouted, leaseHeld);
      i = j;
    }
  }

  /**
   * A message whose routing would write more than a NATS message holds: parked (`too_large`), so
   * the conversation's later messages are routed instead of waiting behind a retry that can never
   * succeed. Acked with its batch.
   */
  readonly onTooLarge = async (q: QueuedMessage, err: unknown): Promise<void> => {
    const size = err instanceof TooLargeError ? { ticketId: err.ticketId, write: err.write, bytes: err.bytes, limit: err.limit } : {};
    this.log.error({ eventId: q.e.id, ...size, err: errorMessage(err) }, 'message parked: routing it would write more than the server\'s max_payload');
    const subject = q.raw?.subject ?? '';
    // The only copy of a customer message: never dropped by the router's letter rate. One letter
    // per message: a redelivery measures another size (the ticket changed), and says the same.
    await this.bus.deadLetters.park({ source: 'router', subject, code: 'too_large', reason: errorMessage(err), sameAs: 'too_large', payload: q.raw?.data ?? JSON.stringify(q.e), onlyCopy: true, ...(q.raw ? { meta: { stream: Streams.inbound, seq: String(q.raw.seq) } } : {}) });
  };

  private readonly countRouted = (q: QueuedMessage): void => this.metrics.observeRouted(q.e.channel, q.e.account, q.publishedNanos);

  /** `earlierSince`: set when an earlier attempt may have written its log entry longer ago than the duplicate window (the event's JetStream time). */
  private async processChange(e: MessageEdited | MessageDeleted, earlierSince: number | undefined, leaseHeld: () => boolean): Promise<void> {
    const doneKey = `ev.${hashKey(e.id)}`;
    if (await this.store.lookup(doneKey)) {
      metrics.duplicates.inc({ channel: e.channel });
      return;
    }
    // Only the original's own ticket: attaching a change of a message we never saw to whatever the
    // conversation has open would show text the customer never sent there. It is parked instead,
    // and a replay after the original arrived attaches it.
    const hit = await this.store.lookup(IndexKeys.platformMessage(e.channel, e.account, e.targetPlatformMessageId));
    const match = { rule: 'edit-target' as const, value: e.targetPlatformMessageId };
    const ticket = hit ? await this.store.get(hit.value) : null;
    if (!ticket) {
      await this.bus.deadLetters.park({
        source: 'router', subject: this.bus.inboundSubject(e), code: 'unknown_target' satisfies RouterDeadLetterCode, reason: `${e.type} for unknown message ${e.targetPlatformMessageId}: ${hit ? 'its ticket is gone' : 'the original never reached the router'}`, payload: JSON.stringify(e),
      });
      return;
    }
    // A change comes from the conversation its message is in: platforms scope message ids per chat,
    // but a webhook client's ids are its account's, and one customer's edit could otherwise
    // rewrite (or a delete hide) another customer's message in another ticket.
    // The id as written counts too: the ticket may have been opened under it before ids were normalised.
    if (ticket.value.conversation.id !== e.conversation.id && ticket.value.conversation.id !== e.conversation.writtenId) {
      await this.bus.deadLetters.park({
        source: 'router', subject: this.bus.inboundSubject(e), code: 'foreign_target' satisfies RouterDeadLetterCode,
        reason: `${e.type} from conversation ${e.conversation.id} for message ${e.targetPlatformMessageId}, which is in conversation ${ticket.value.conversation.id} (${ticket.value.id}): a message is changed only from its own conversation`,
        payload: JSON.stringify(e),
      });
      return;
    }
    const at = new Date().toISOString();
    const entry: LogEntry = e.type === 'message.edited' ? { kind: 'edited', at, event: e, match } : { kind: 'deleted', at, event: e, match };
    // Past the duplicate window an append is not deduplicated: an attempt that died after it
    // (before the marker below) must not log the change twice. Its event is announced again.
    const logged = earlierSince === undefined ? undefined : await this.journal.loggedSince(ticket.value.id, earlierSince);
    // As for messages (inbound-messages.ts): a replica that slept past its lease writes nothing.
    if (!leaseHeld()) throw new NotOwnedError();
    await Promise.all([
      this.journal.appendUnlessLogged(ticket.value.id, entry, e.id, logged),
      this.journal.emit(e.type === 'message.edited' ? 'ticket.edited' : 'ticket.deleted', ticket.value, e.id, entry),
    ]);
    await this.store.index(doneKey, ticket.value.id, { cache: false }); // read only for a replay (tickets.ts IndexWrite)
  }
}
