/**
 * The router: consumes the inbound partitions this replica owns (partitions.ts: one durable
 * consumer per partition, each partition owned by one replica, so a conversation is routed in
 * publish order), threads every inbound event into a ticket, appends it to the ticket log and
 * announces it on omni.events.ticket.*; and a durable consumer on omni.status.> whose delivery
 * outcomes go into the log (deliveries.ts).
 *
 * Exactly-once effect: every step is idempotent (index claims are create-if-absent, log appends
 * carry a Nats-Msg-Id derived from the event id, ticket updates skip log sequences already
 * applied) and a processed-marker short-circuits replays after the duplicate window.
 */
import type { JsMsg } from '@nats-io/jetstream';
import type { Bus } from '../core/bus.js';
import { KeyedLanes, Semaphore } from '../core/lanes.js';
import type { Logger } from '../core/logger.js';
import { Supervisor, type LoopRun, type SupervisedLoop } from '../core/supervisor.js';
import { errorMessage } from '../core/errors.js';
import {
  CLOSED_STATUSES,
  DeliveryStatus,
  InboundEvent,
  SCHEMA_VERSION,
  describeZodError,
  type InboundMessage,
  type LogEntry,
  type MessageDeleted,
  type MessageEdited,
  type Ticket,
} from '../core/schema.js';
import { metrics } from '../core/metrics.js';
import { Consumers, Streams, Subjects, hashKey } from '../core/subjects.js';
import { DeliveryRecorder } from './deliveries.js';
import { Journal } from './journal.js';
import { RouterMetrics } from './metrics.js';
import { park } from './park.js';
import { consumeInbound, type InboundWork } from './inbound-consumer.js';
import { PartitionOwnership, type UnitConsumer } from './partitions.js';
import { isReactionOnly, ratingIn, recordInbound } from './ticket-changes.js';
import { SENDING_HOLD_MS, TicketBusyError, requestInFlight } from './satisfaction.js';
import { backoffMs, sleep } from '../core/sleep.js';
import { Threader, type Resolution } from './threading.js';
import { IndexKeys, StaleTicketError, TicketStore } from './tickets.js';

/** How often a message waiting for a satisfaction request in flight looks again. */
const BUSY_POLL_MS = 20;

/** How far a platform's clock may be from ours when we judge an event's age. */
const CLOCK_SKEW_MS = 30_000;

export interface RouterOptions {
  ticketPrefix: string;
  firstTicketNumber: number;
  reopenWindowMs: number;
  concurrency: number;
  ackWaitMs: number;
  /** How long after a satisfaction request a bare 1–5 answer counts as the rating. */
  csatWindowMs: number;
  /** Ratings at or below this alert the lead. */
  csatLowRating: number;
}

export class Router {
  readonly store: TicketStore;
  readonly journal: Journal;
  readonly metrics = new RouterMetrics();
  private readonly threader: Threader;
  private readonly deliveries: DeliveryRecorder;
  private readonly lanes = new KeyedLanes();
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
    this.store = new TicketStore(bus, o.ticketPrefix, o.firstTicketNumber);
    this.journal = new Journal(bus);
    this.threader = new Threader(this.store, { reopenWindowMs: o.reopenWindowMs, now: Date.now });
    this.deliveries = new DeliveryRecorder(bus, this.store, this.journal, this.metrics, log);
    this.inboundSlots = new Semaphore(o.concurrency);
  }

  async start(): Promise<void> {
    const ackWait = this.o.ackWaitMs * 1_000_000;
    const status = { durable_name: Consumers.routerStatus, ack_wait: ackWait, max_ack_pending: 1024, max_deliver: -1 };
    await this.bus.ensureConsumer(Streams.status, status);
    const units = this.bus.partitions + 1;
    this.ownership = new PartitionOwnership(this.bus, this.log, this.supervisor, {
      partitions: this.bus.partitions,
      ttlMs: this.bus.options.leaseTtlMs,
      consumer: { ack_wait: ackWait, max_ack_pending: this.o.concurrency * 4, max_deliver: -1 },
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
  private async run({ signal, progress }: LoopRun, stream: string, durable: string, batch: number, sem: Semaphore, handle: (m: JsMsg) => Promise<void>): Promise<void> {
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
        const p: Promise<void> = handle(m)
          .catch((err) => this.log.error({ err: errorMessage(err), stream, seq: m.seq }, 'message handling failed; it comes back after ack_wait'))
          .finally(() => {
            sem.release();
            inFlight.delete(p);
            progress();
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

  /** The routing work for an inbound message (inbound-consumer.ts runs it in its lane), or null once it was settled here. */
  private async decodeInbound(m: JsMsg, c: UnitConsumer): Promise<InboundWork | null> {
    // A consumer from before partitioning sees every inbound subject; partitioned ones are their
    // partition's (its owner routes them, in order), not this consumer's.
    if (c.unfiltered && m.subject.split('.').length > 4) {
      m.ack();
      return null;
    }
    let event: InboundEvent;
    try {
      const parsed = InboundEvent.safeParse(m.json());
      if (!parsed.success) {
        const v = (m.json() as { v?: unknown })?.v;
        const reason = v !== SCHEMA_VERSION ? `unsupported schema version ${JSON.stringify(v)} (expected ${SCHEMA_VERSION})` : `invalid event: ${describeZodError(parsed.error)}`;
        await park(this.bus, this.log, m, v !== SCHEMA_VERSION ? 'unsupported_version' : 'invalid_event', reason);
        return null;
      }
      event = parsed.data;
    } catch {
      await park(this.bus, this.log, m, 'invalid_json', 'payload is not valid JSON');
      return null;
    }
    const suspect = m.redelivered || m.seq <= c.suspectUpTo;
    return { key: this.threader.laneKey(event), eventId: event.id, route: (retry) => this.process(event, m.info.timestampNanos, suspect || retry) };
  }

  private async process(event: InboundEvent, publishedNanos: number, redelivered: boolean): Promise<void> {
    if (event.type === 'message.inbound') await this.processMessage(event, redelivered);
    else await this.processChange(event);
    this.metrics.observeRouted(event.channel, event.account, publishedNanos);
  }

  private async processMessage(e: InboundMessage, redelivered: boolean): Promise<void> {
    // The platform-message index entry is written last, so it doubles as the processed marker.
    const doneKey = IndexKeys.platformMessage(e.channel, e.account, e.platform.messageId);
    if (this.mayBeProcessed(e, redelivered) && (await this.store.lookup(doneKey))) {
      metrics.duplicates.inc({ channel: e.channel });
      return;
    }
    if (e.bounceOf) return this.processBounce(e);
    if (e.automated || (e.email && (await this.isOurEcho(e.email.messageId)))) {
      metrics.ignored.inc({ channel: e.channel });
      await this.bus.deadLetters.park({
        source: 'loop-guard', subject: Subjects.inbound(e.channel, e.account), code: e.automated ?? 'echo',
        reason: `loop guard: ${e.automated ?? 'echo'} message opens no ticket`, payload: JSON.stringify(e),
      });
      return;
    }
    let ticketId: string;
    for (let attempt = 0, waited = 0; ; attempt++) {
      try {
        ticketId = await this.routeMessage(e, attempt > 0);
        break;
      } catch (err) {
        // A satisfaction request is being sent on this closed ticket: judge this message after it.
        if (err instanceof TicketBusyError && waited < SENDING_HOLD_MS) {
          this.store.invalidate(undefined, err.ticketId);
          await sleep(BUSY_POLL_MS);
          waited += BUSY_POLL_MS;
          attempt--;
          continue;
        }
        if (!(err instanceof StaleTicketError) || attempt >= 5) throw err;
        this.store.invalidate(undefined, err.ticketId);
      }
    }
    await this.store.index(doneKey, ticketId);
  }

  /**
   * Whether this event may have been routed before, so the processed marker must be read (one
   * JetStream round trip of the five a message costs). A republish within the inbound stream's
   * duplicate window never reaches us (Nats-Msg-Id = event id), and within that window every
   * routing step is idempotent on its own (ticket CAS skips recent event ids, log and event
   * writes carry Nats-Msg-Ids). So only a JetStream redelivery, or a message old enough that a
   * replay of it could have escaped the window, needs the marker. Only a time the platform's
   * servers stamped is trusted: a mail's Date or a webhook client's sentAt is the sender's word.
   */
  private mayBeProcessed(e: InboundMessage, redelivered: boolean): boolean {
    if (redelivered || e.platform.sentAtBy !== 'platform' || !e.platform.sentAt) return true;
    const age = Date.now() - Date.parse(e.platform.sentAt);
    return !(age > -CLOCK_SKEW_MS && age < this.bus.options.duplicateWindowMs - CLOCK_SKEW_MS);
  }

  /**
   * Threads, updates the ticket (compare-and-set; a redelivered event is recognised in
   * recentEvents), then writes the log entry and events in one pipelined burst: the server stores
   * them in publish order and every one carries a Nats-Msg-Id, so a retry appends nothing twice.
   */
  private async routeMessage(e: InboundMessage, fresh: boolean): Promise<string> {
    const { ticket, match, reopen } = await this.threadInto(e, fresh);
    const at = new Date().toISOString();
    const reaction = isReactionOnly(e);
    const applied = await this.store.apply(ticket.id, (t) => {
      const none = { reopened: false, rated: undefined as number | undefined };
      if (t.recentEvents.includes(e.id)) return { next: null, outcome: none };
      if (requestInFlight(t, Date.now())) throw new TicketBusyError(t.id);
      // The answer to a satisfaction request is a rating, not a reason to reopen.
      const rated = CLOSED_STATUSES.has(t.status) ? ratingIn(t, e.text, Date.now(), this.o.csatWindowMs) : undefined;
      // Our decision assumed an open ticket; it was closed meanwhile (another process): decide again.
      if (CLOSED_STATUSES.has(t.status) && !reopen && rated === undefined && !reaction) throw new StaleTicketError(t.id);
      recordInbound(t, e, at);
      if (rated !== undefined) {
        t.csat = { ...t.csat, rating: rated, ratedAt: at };
        return { next: t, outcome: { ...none, rated } };
      }
      if (reaction) return { next: t, outcome: none }; // logged on the ticket; no reopen, no pending → open
      const reopened = CLOSED_STATUSES.has(t.status);
      if (reopened) {
        t.status = 'open';
        t.closedAt = undefined;
      } else if (t.status === 'pending') t.status = 'open';
      return { next: t, outcome: { ...none, reopened } };
    });
    // Gone between threading and the write (evicted or erased): thread the message again.
    if (!applied) throw new StaleTicketError(ticket.id);
    const { reopened, rated } = applied.outcome;
    const current = applied.ticket;
    // This event opened the ticket (also true when a crash interrupted opening it).
    const created = current.messageCount === 1 && current.recentEvents[0] === e.id;
    const entry: LogEntry = { kind: 'inbound', at, event: e, match };
    const writes: Array<Promise<unknown>> = [this.journal.append(ticket.id, entry, e.id)];
    // With the first message, so a receiver can open its own ticket without calling back.
    if (created) writes.push(this.journal.emit('ticket.created', current, ticket.id, entry));
    if (reopened) {
      const statusEntry: LogEntry = { kind: 'status', at, from: applied!.before.status, to: 'open', author: { id: 'router' }, reason: `customer wrote (${match.rule})` };
      writes.push(this.journal.append(ticket.id, statusEntry, `reopen:${e.id}`), this.journal.emit('ticket.status', current, `reopen:${e.id}`, statusEntry));
    }
    writes.push(this.journal.emit('ticket.message', current, e.id, entry));
    if (rated !== undefined) {
      const ratingEntry: LogEntry = { kind: 'rating', at, rating: rated, low: rated <= this.o.csatLowRating, eventId: e.id };
      writes.push(this.journal.append(ticket.id, ratingEntry, `rating:${e.id}`), this.journal.emit('ticket.rating', current, `rating:${e.id}`, ratingEntry));
    }
    if (e.email) writes.push(this.store.index(IndexKeys.emailMessageId(e.email.messageId), ticket.id));
    await Promise.all(writes);
    if (rated !== undefined && rated <= this.o.csatLowRating && this.onLowRating) await this.onLowRating(current, rated);
    if (created && this.onTicketOpened) await this.onTicketOpened(current, e);
    return ticket.id;
  }

  /** Finds or creates the ticket; safe against concurrent routers and crash-and-redeliver. */
  private async threadInto(e: InboundMessage, fresh: boolean): Promise<{ ticket: Ticket; match: Resolution['match']; reopen: boolean }> {
    for (;;) {
      const res = await this.threader.resolve(e, fresh);
      if (res.kind === 'existing') return { ticket: res.ticket, match: res.match, reopen: res.reopen };
      let ticketId = res.previous;
      if (!ticketId) {
        const candidate = this.store.idFor(await this.store.allocateNumber());
        const claim = await this.store.claim(res.conversationKey, candidate);
        // A number just allocated names no ticket yet: create it with this message recorded.
        if (claim.won) return { ticket: await this.openTicket(e, candidate), match: res.match, reopen: false };
        // An email's key is its own Message-ID: losing the claim means this very mail opened
        // the ticket before (a redelivery). A chat's key is the conversation: someone else
        // opened it concurrently, so resolve again (fresh) and join theirs.
        if (e.email && claim.ticketId) ticketId = claim.ticketId;
        else {
          fresh = true;
          continue;
        }
      }
      // The index names a ticket whose record may be missing (a crash between claim and create).
      const existing = await this.store.get(ticketId, { fresh: true });
      if (existing) return { ticket: existing.value, match: res.match, reopen: false };
      return { ticket: await this.openTicket(e, ticketId), match: res.match, reopen: false };
    }
  }

  /**
   * Creates the ticket record with the opening message already recorded (one write instead of
   * create-then-update); the update step then finds the event in recentEvents and writes nothing.
   */
  private async openTicket(e: InboundMessage, id: string): Promise<Ticket> {
    const ticket = this.newTicket(e, id);
    recordInbound(ticket, e, ticket.createdAt);
    if (await this.store.create(ticket)) metrics.ticketsCreated.inc();
    return (await this.store.get(id))!.value;
  }

  private newTicket(e: InboundMessage, id: string): Ticket {
    const now = new Date().toISOString();
    return {
      v: 1,
      id,
      number: Number(id.slice(this.store.prefix.length)),
      status: 'new',
      channel: e.channel,
      account: e.account,
      conversation: e.conversation,
      threadKey: e.email ? `email:${e.email.messageId}` : `${e.channel}:${e.account}:${e.conversation.id}${e.conversation.threadId ? `:${e.conversation.threadId}` : ''}`,
      subject: e.email?.subject || e.conversation.title,
      contact: { id: e.sender.id, displayName: e.sender.displayName, handles: e.sender.handles },
      participants: [],
      emailReferences: [],
      createdAt: now,
      updatedAt: now,
      messageCount: 0,
      appliedSeq: 0,
      recentEvents: [],
    };
  }

  private async isOurEcho(messageId: string): Promise<boolean> {
    const hit = await this.store.lookup(`out.${hashKey(messageId.trim().replace(/^<|>$/g, '').toLowerCase())}`);
    return !!hit;
  }

  private async processBounce(e: InboundMessage): Promise<void> {
    const bounce = e.bounceOf!;
    const hit = (await this.store.lookup(IndexKeys.emailMessageId(bounce.platformMessageId))) ??
      (await this.store.lookup(IndexKeys.platformMessage(e.channel, e.account, bounce.platformMessageId)));
    const ticket = hit ? await this.store.get(hit.value) : null;
    if (!ticket) {
      await this.bus.deadLetters.park({
        source: 'loop-guard', subject: Subjects.inbound(e.channel, e.account), code: 'unknown_bounce', reason: 'bounce for a message we do not know', payload: JSON.stringify(e),
      });
      return;
    }
    const status = DeliveryStatus.parse({
      v: 1, type: 'delivery.status', outboundId: `bounce:${bounce.platformMessageId}`, ticketId: ticket.value.id,
      channel: e.channel, account: e.account, status: 'failed', platformMessageId: bounce.platformMessageId,
      reason: `bounced: ${bounce.reason}`, at: e.receivedAt,
    });
    // Through the status stream like every other outcome, so the delivery recorder treats a bounce
    // as any failed reply (log, lastDelivery, the ticket back to open, ticket.delivery_failed).
    await this.bus.publishJson(Subjects.status(e.channel, e.account), status, `status:${status.outboundId}:failed`);
  }

  private async processChange(e: MessageEdited | MessageDeleted): Promise<void> {
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
        source: 'router', subject: this.bus.inboundSubject(e), code: 'unknown_target', reason: `${e.type} for unknown message ${e.targetPlatformMessageId}: ${hit ? 'its ticket is gone' : 'the original never reached the router'}`, payload: JSON.stringify(e),
      });
      return;
    }
    const at = new Date().toISOString();
    const entry: LogEntry = e.type === 'message.edited' ? { kind: 'edited', at, event: e, match } : { kind: 'deleted', at, event: e, match };
    await Promise.all([
      this.journal.append(ticket.value.id, entry, e.id),
      this.journal.emit(e.type === 'message.edited' ? 'ticket.edited' : 'ticket.deleted', ticket.value, e.id, entry),
    ]);
    await this.store.index(doneKey, ticket.value.id);
  }
}
