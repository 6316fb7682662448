/**
 * The router: a durable consumer on omni.in.> that threads every inbound event into a ticket,
 * appends it to the ticket log and announces it on omni.events.ticket.*; and a second durable
 * consumer on omni.status.> whose delivery outcomes go into the log (deliveries.ts).
 *
 * Exactly-once effect: every step is idempotent (index claims are create-if-absent, log appends
 * carry a Nats-Msg-Id derived from the event id, ticket updates skip log sequences already
 * applied) and a processed-marker short-circuits replays after the duplicate window.
 */
import type { ConsumerMessages, JsMsg } from '@nats-io/jetstream';
import type { Bus } from '../core/bus.js';
import { KeyedLanes, Semaphore } from '../core/lanes.js';
import type { Logger } from '../core/logger.js';
import { deadLetter } from '../core/dead-letter.js';
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
import { isReactionOnly, ratingIn, recordInbound } from './ticket-changes.js';
import { Threader, type Resolution } from './threading.js';
import { IndexKeys, StaleTicketError, TicketStore } from './tickets.js';

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
  private readonly consumers: ConsumerMessages[] = [];
  private readonly loops: Promise<void>[] = [];
  /** Called once for each ticket a customer message opened (auto-acknowledgement). */
  onTicketOpened?: (ticket: Ticket, event: InboundMessage) => Promise<void>;
  /** Called when a customer answers a satisfaction request with a low rating. */
  onLowRating?: (ticket: Ticket, rating: number) => Promise<void>;

  constructor(
    private readonly bus: Bus,
    private readonly log: Logger,
    private readonly o: RouterOptions,
  ) {
    this.store = new TicketStore(bus, o.ticketPrefix, o.firstTicketNumber);
    this.journal = new Journal(bus);
    this.threader = new Threader(this.store, { reopenWindowMs: o.reopenWindowMs, now: Date.now });
    this.deliveries = new DeliveryRecorder(bus, this.store, this.journal, this.metrics, log);
  }

  async start(): Promise<void> {
    const ackWait = this.o.ackWaitMs * 1_000_000;
    await this.bus.ensureConsumer(Streams.inbound, {
      durable_name: Consumers.router,
      ack_wait: ackWait,
      max_ack_pending: this.o.concurrency * 4,
      max_deliver: -1,
    });
    await this.bus.ensureConsumer(Streams.status, {
      durable_name: Consumers.routerStatus,
      ack_wait: ackWait,
      max_ack_pending: 1024,
      max_deliver: -1,
    });
    this.loops.push(this.run(Streams.inbound, Consumers.router, this.o.concurrency, (m) => this.onInbound(m)));
    this.loops.push(this.run(Streams.status, Consumers.routerStatus, 64, (m) => this.deliveries.handle(m)));
  }

  /** Stop pulling, finish what is in flight (acked), leave the rest for redelivery. */
  async stop(): Promise<void> {
    for (const c of this.consumers) c.stop();
    await Promise.allSettled(this.loops);
    await this.lanes.idle();
  }

  /** Pending messages in the inbound consumer: the router's lag. */
  async lag(): Promise<number> {
    const info = await this.bus.jsm.consumers.info(Streams.inbound, Consumers.router);
    return info.num_pending + info.num_ack_pending;
  }

  private async run(stream: string, durable: string, concurrency: number, handle: (m: JsMsg) => Promise<void>): Promise<void> {
    const consumer = await this.bus.js.consumers.get(stream, durable);
    const messages = await consumer.consume({ max_messages: Math.min(concurrency * 2, 1000) });
    this.consumers.push(messages);
    const sem = new Semaphore(concurrency);
    for await (const m of messages) {
      await sem.acquire();
      handle(m).catch((err: unknown) => this.log.warn({ err: errorMessage(err), subject: m.subject }, 'message not handled; redelivered after the ack wait')).finally(() => sem.release());
    }
  }

  // ---- inbound ----

  private async onInbound(m: JsMsg): Promise<void> {
    let event: InboundEvent;
    try {
      const parsed = InboundEvent.safeParse(m.json());
      if (!parsed.success) {
        const v = (m.json() as { v?: unknown })?.v;
        const reason = v !== SCHEMA_VERSION ? `unsupported schema version ${JSON.stringify(v)} (expected ${SCHEMA_VERSION})` : `invalid event: ${describeZodError(parsed.error)}`;
        return park(this.bus, this.log, m, reason);
      }
      event = parsed.data;
    } catch {
      return park(this.bus, this.log, m, 'payload is not valid JSON');
    }
    await this.lanes
      .run(this.threader.laneKey(event), () => this.process(event, m.info.timestampNanos, m.redelivered))
      .then(
        () => m.ack(),
        (err) => {
          metrics.routingErrors.inc();
          this.log.warn({ err: errorMessage(err), eventId: event.id }, 'routing failed; will retry');
          m.nak(1000);
        },
      );
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
      metrics.duplicates.inc();
      return;
    }
    if (e.bounceOf) return this.processBounce(e);
    if (e.automated || (e.email && (await this.isOurEcho(e.email.messageId)))) {
      metrics.ignored.inc();
      await deadLetter(this.bus, 'router.ignored', Subjects.inbound(e.channel, e.account), `loop guard: ${e.automated ?? 'echo'} message opens no ticket`, JSON.stringify(e));
      return;
    }
    let ticketId: string;
    for (let attempt = 0; ; attempt++) {
      try {
        ticketId = await this.routeMessage(e, attempt > 0);
        break;
      } catch (err) {
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
    let reopened = false;
    let rated: number | undefined;
    const reaction = isReactionOnly(e);
    const updated = await this.store.mutate(ticket.id, (t) => {
      if (t.recentEvents.includes(e.id)) return null;
      // The answer to a satisfaction request is a rating, not a reason to reopen.
      rated = CLOSED_STATUSES.has(t.status) ? ratingIn(t, e.text, Date.now(), this.o.csatWindowMs) : undefined;
      // Our decision assumed an open ticket; it was closed meanwhile (another process): decide again.
      if (CLOSED_STATUSES.has(t.status) && !reopen && rated === undefined && !reaction) throw new StaleTicketError(t.id);
      recordInbound(t, e, at);
      if (rated !== undefined) t.csat = { ...t.csat, rating: rated, ratedAt: at };
      else if (reaction) return t; // logged on the ticket; no reopen, no pending → open
      else if (CLOSED_STATUSES.has(t.status)) {
        reopened = true;
        t.status = 'open';
        t.closedAt = undefined;
      } else if (t.status === 'pending') t.status = 'open';
      return t;
    });
    const current = updated ?? ticket;
    // This event opened the ticket (also true when a crash interrupted opening it).
    const created = current.messageCount === 1 && current.recentEvents[0] === e.id;
    const entry: LogEntry = { kind: 'inbound', at, event: e, match };
    const writes: Array<Promise<unknown>> = [this.journal.append(ticket.id, entry, e.id)];
    if (created) writes.push(this.journal.emit('ticket.created', current, ticket.id));
    if (reopened) {
      const statusEntry: LogEntry = { kind: 'status', at, from: ticket.status, to: 'open', author: { id: 'router' }, reason: `customer wrote (${match.rule})` };
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
        const claim = await this.store.claim(res.conversationKey, candidate, res.replaceRevision);
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
      await deadLetter(this.bus, 'router.ignored', Subjects.inbound(e.channel, e.account), 'bounce for a message we do not know', JSON.stringify(e));
      return;
    }
    const status = DeliveryStatus.parse({
      v: 1, type: 'delivery.status', outboundId: `bounce:${bounce.platformMessageId}`, ticketId: ticket.value.id,
      channel: e.channel, account: e.account, status: 'failed', platformMessageId: bounce.platformMessageId,
      reason: `bounced: ${bounce.reason}`, at: e.receivedAt,
    });
    const entry: LogEntry = { kind: 'delivery', at: new Date().toISOString(), status };
    await this.journal.append(ticket.value.id, entry, `bounce:${e.id}`);
    await this.journal.emit('ticket.delivery', ticket.value, `bounce:${e.id}`, entry);
  }

  private async processChange(e: MessageEdited | MessageDeleted): Promise<void> {
    const doneKey = `ev.${hashKey(e.id)}`;
    if (await this.store.lookup(doneKey)) {
      metrics.duplicates.inc();
      return;
    }
    let hit = await this.store.lookup(IndexKeys.platformMessage(e.channel, e.account, e.targetPlatformMessageId));
    let match = { rule: 'edit-target' as const, value: e.targetPlatformMessageId };
    if (!hit) hit = await this.store.lookup(IndexKeys.conversation(e.channel, e.account, e.conversation.id, e.conversation.threadId));
    const ticket = hit ? await this.store.get(hit.value) : null;
    if (!ticket) {
      await deadLetter(this.bus, 'router', Subjects.inbound(e.channel, e.account), `${e.type} for unknown message ${e.targetPlatformMessageId}`, JSON.stringify(e));
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
