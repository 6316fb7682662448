/**
 * Routing of customer messages (message.inbound): dedup, threading into a ticket (opening one
 * with inbound-ticket.ts), the ticket update, the log entries and the events. Auto-replies,
 * echoes and bounces are told apart here and handed to bounces.ts.
 *
 * Messages of one conversation that queued up behind each other (its lane handed them over
 * together, core/lanes.ts CoalescingLanes) and thread into the same ticket are applied with one
 * compare-and-set: the ticket is read, threaded and written once for all of them, while every
 * message keeps its own log entry, events and processed marker, in order. Anything unusual on
 * the way (the ticket closed or busy meanwhile) falls back to one message at a time.
 *
 * Exactly-once effect: every step is idempotent (index claims are create-if-absent, log appends
 * carry a Nats-Msg-Id derived from the event id, a ticket update skips event ids it already
 * recorded) and a processed marker, written last, short-circuits replays after the duplicate
 * window.
 */
import type { Bus } from '../core/bus.js';
import { CLOSED_STATUSES, type InboundMessage, type LogEntry, type Ticket } from '../core/schema.js';
import { metrics } from '../core/metrics.js';
import { sleep } from '../core/sleep.js';
import { guardLoop, isOurEcho, processBounce } from './bounces.js';
import { NotOwnedError } from './inbound-consumer.js';
import type { Journal } from './journal.js';
import { RECENT_EVENTS, isReactionOnly, ratingIn, recordInbound } from './ticket-changes.js';
import { SENDING_HOLD_MS, TicketBusyError, requestInFlight } from './satisfaction.js';
import { ticketFor } from './inbound-ticket.js';
import type { Resolution, Threader } from './threading.js';
import { IndexKeys } from './thread-keys.js';
import { StaleTicketError, type TicketStore } from './tickets.js';
import { TooLargeError } from './payload-limit.js';

/** Processed markers are read only on rare paths (tickets.ts IndexWrite). */
const NOT_CACHED = { cache: false };

/** How often a message waiting for a satisfaction request in flight looks again. */
const BUSY_POLL_MS = 20;

/** How far a platform's clock may be from ours when we judge an event's age. */
const CLOCK_SKEW_MS = 30_000;

export interface MessageRoutingOptions {
  ticketPrefix: string;
  /** How long after a satisfaction request a bare 1–5 answer counts as the rating. */
  csatWindowMs: number;
  /** Ratings at or below this alert the lead. */
  csatLowRating: number;
}

/** Set by the application after construction (auto-acknowledgement, low-rating alerts). */
export interface RoutingHooks {
  /** Called once for each ticket a customer message opened. */
  onTicketOpened?: (ticket: Ticket, event: InboundMessage) => Promise<void>;
  /** Called when a customer answers a satisfaction request with a low rating. */
  onLowRating?: (ticket: Ticket, rating: number) => Promise<void>;
  /**
   * Called for a message whose routing would write more than a NATS message holds (TooLargeError,
   * measured before anything of it is written): it is parked, and counts as settled. Without it
   * such a message fails its batch, which is retried. A refusal by the client after the ticket
   * update landed is not one: parking then would leave the update without its log entry and
   * events, so it fails its batch (retried, and seen in the log) like any other write.
   */
  onTooLarge?: (q: QueuedMessage, err: unknown) => Promise<void>;
}

/** A message to route, kept across retries of its batch. */
export interface QueuedMessage {
  e: InboundMessage;
  /** Delivered before (to us or to a previous owner, or a retry here): it may have been routed already. */
  suspect: boolean;
  /** Routed, parked or found done: a retry of its batch skips it. */
  settled: boolean;
  /** When the message was published (JetStream timestamp), for the routing-latency metric. */
  publishedNanos: number;
  /** The stream message as it was stored, for a dead letter (onTooLarge); `seq` in OMNI_IN, which keeps it for nats.retention even when its letter had to be cut. */
  raw?: { subject: string; data: Uint8Array; seq: number };
}

/** Told once about each message as it is settled (the caller counts it). */
export type OnSettled = (q: QueuedMessage) => void;

interface Member {
  q: QueuedMessage;
  e: InboundMessage;
  match: Resolution['match'];
  /** The threader's decision: a closed ticket may be reopened by this message. */
  reopen: boolean;
}

/** What one message changed on its ticket (decided inside the compare-and-set). */
interface Change {
  /** The ticket had recorded this event already (a redelivery); reopened and rated are what it recorded then. */
  seen: boolean;
  reopened: boolean;
  rated?: number;
  /** Status before and after this message. */
  from: Ticket['status'];
  to: Ticket['status'];
}

/**
 * Why the message landed in its ticket, as it found the ticket. The messages of a batch were
 * threaded before any of them was applied: one behind the message that reopened the ticket was
 * told "reopened", but it joined an open conversation, as it would have one by one.
 */
function matchAsMet(m: Member, change: Change): Resolution['match'] {
  if (m.match.rule !== 'reopened' || change.reopened || CLOSED_STATUSES.has(change.from)) return m.match;
  return { ...m.match, rule: 'open-conversation' };
}

export class MessageRouter {
  constructor(
    private readonly bus: Bus,
    private readonly store: TicketStore,
    private readonly threader: Threader,
    private readonly journal: Journal,
    private readonly hooks: RoutingHooks,
    private readonly o: MessageRoutingOptions,
  ) {}

  /**
   * Routes messages of one conversation lane, in order, skipping those settled by an earlier
   * attempt. `retry`: an earlier attempt failed, maybe after some were routed: read their
   * processed markers. `ours` is asked before each routing: once the unit is no longer ours
   * nothing more is started (NotOwnedError), and what is left goes to the next owner.
   * `settled` hears of each message as it is settled, also in an attempt that fails further on.
   */
  async route(queued: QueuedMessage[], retry: boolean, ours: () => boolean, settled: OnSettled, leaseHeld: () => boolean = ours): Promise<void> {
    // A retry is a second delivery of the same stream messages, as far as they are concerned.
    if (retry) for (const q of queued) q.suspect = true;
    const settle = (q: QueuedMessage) => {
      q.settled = true;
      settled(q);
    };
    // The processed markers a batch needs, read together (after a rewind a batch is all suspects);
    // a fresh batch usually needs none, and then waits for nothing.
    const suspects = queued.filter((q) => !q.settled && this.mayBeProcessed(q.e, q.suspect));
    const routed = new Set<QueuedMessage>();
    if (suspects.length > 0) {
      const found = await Promise.all(suspects.map((q) => this.store.lookup(IndexKeys.platformMessage(q.e.channel, q.e.account, q.e.platform.messageId))));
      suspects.forEach((q, i) => found[i] && routed.add(q));
    }
    let plain: QueuedMessage[] = [];
    for (const q of queued) {
      if (q.settled) continue;
      const { e } = q;
      if (routed.has(q)) {
        metrics.duplicates.inc({ channel: e.channel });
        settle(q);
        continue;
      }
      if (!e.bounceOf && !e.automated && !(e.email && (await isOurEcho(this.store, e.email.messageId)))) {
        plain.push(q);
        continue;
      }
      await this.routePlain(plain, ours, settle, leaseHeld);
      plain = [];
      if (!ours()) throw new NotOwnedError();
      if (e.bounceOf) await processBounce(this.bus, this.store, this.journal, e);
      else await guardLoop(this.bus, e);
      settle(q);
    }
    await this.routePlain(plain, ours, settle, leaseHeld);
  }

  /** Ordinary messages, in order: those of one ticket that are next to each other share one update. */
  private async routePlain(plain: QueuedMessage[], ours: () => boolean, settle: OnSettled, leaseHeld: () => boolean): Promise<void> {
    for (let i = 0; i < plain.length; ) {
      if (!ours()) throw new NotOwnedError();
      const routed = await this.routeLeading(plain.slice(i), leaseHeld);
      for (const q of plain.slice(i, i + routed)) settle(q);
      i += routed;
    }
  }

  /**
   * Routes the leading messages of `group` that thread into the ticket its first one threads
   * into; returns how many. When a ticket update has to be decided again (the ticket was closed,
   * evicted or is sending a satisfaction request meanwhile) the first message is routed alone,
   * as it would have been without company.
   */
  private async routeLeading(group: QueuedMessage[], leaseHeld: () => boolean): Promise<number> {
    let candidates = group;
    for (let attempt = 0, waited = 0; ; attempt++) {
      try {
        return await this.routeTogether(candidates, attempt > 0, leaseHeld);
      } catch (err) {
        // Never fits, however often it is tried. A coalesced group is tried one by one, so that
        // only the message that makes a write too large is parked; the rest are routed.
        if (err instanceof TooLargeError && this.hooks.onTooLarge) {
          if (candidates.length > 1) {
            candidates = group.slice(0, 1);
            continue;
          }
          await this.hooks.onTooLarge(group[0]!, err);
          return 1;
        }
        if (!(err instanceof TicketBusyError) && !(err instanceof StaleTicketError)) throw err;
        this.store.invalidate(undefined, err.ticketId);
        candidates = group.slice(0, 1);
        // A satisfaction request is being sent on this closed ticket: judge this message after it.
        if (err instanceof TicketBusyError && waited < SENDING_HOLD_MS) {
          await sleep(BUSY_POLL_MS);
          waited += BUSY_POLL_MS;
          attempt--;
          continue;
        }
        if (!(err instanceof StaleTicketError) || attempt >= 5) throw err;
      }
    }
  }

  /**
   * Threads the first message (opening a ticket if it needs one), takes the following ones that
   * thread into the same ticket, applies them all with one compare-and-set (a redelivered event is
   * recognised in recentEvents), then writes every message's log entry and events in one
   * pipelined burst (the server stores them in publish order, each with a Nats-Msg-Id, so a retry
   * appends nothing twice), and last their processed markers.
   */
  private async routeTogether(group: QueuedMessage[], fresh: boolean, leaseHeld: () => boolean): Promise<number> {
    const first = group[0]!;
    const at = new Date().toISOString();
    // Every write is measured before the first one is made (payload-limit.ts): the ticket record
    // by the store, the largest event here; one over max_payload is refused with nothing written.
    const limit = this.store.writeLimit();
    const inbound = (e: InboundMessage, match: Resolution['match']): Extract<LogEntry, { kind: 'inbound' }> => ({ kind: 'inbound', at, event: e, match });
    const fitsNew = (t: Ticket, m: Resolution['match']) => this.journal.assertEventsFit(t, [{ causeId: first.e.id, entry: inbound(first.e, m) }], limit);
    const { ticket, match, reopen, openedNow } = await ticketFor(this.store, this.threader, first.e, fresh, fitsNew);
    const members: Member[] = [{ q: first, e: first.e, match, reopen }];
    for (const q of group.slice(1)) {
      const { e } = q;
      if (e.email) break; // a mail's thread is decided by its own headers, and its index entry is written after the update
      const next = await this.threader.resolve(e);
      if (next.kind !== 'existing' || next.ticket.id !== ticket.id) break;
      members.push({ q, e, match: next.match, reopen: next.reopen });
    }
    // Built once: measured here and written below (the journal encodes each entry once).
    const entries = members.map((m) => ({ causeId: m.e.id, entry: inbound(m.e, m.match) }));
    const applied = await this.store.apply(
      ticket.id,
      (t) => {
        const changes = members.map((m) => this.applyInbound(t, m, at));
        return { next: changes.some((c) => !c.seen) ? t : null, outcome: changes };
      },
      // Also when nothing changes: a retry sends the events again.
      { beforeWrite: (t, recordBytes) => this.journal.assertEventsFit(t, entries, limit, recordBytes) },
    );
    // Gone between threading and the write (evicted or erased): thread the messages again.
    if (!applied) throw new StaleTicketError(ticket.id);
    const current = applied.ticket;
    // Recorded by an earlier attempt (not the opening message this one just created the ticket
    // with): that attempt may have died with some of its log entries stored longer ago than the
    // duplicate window. Those are read from the log and not appended again. Events are sent
    // again: they are consumed by id, and a write to another stream may not have landed.
    const earlier = members.filter((m, i) => applied.outcome[i]!.seen && !(openedNow && i === 0) && !this.insideWindow(m.q));
    const landed = earlier.length > 0 ? await this.journal.loggedSince(ticket.id, Math.min(...earlier.map((m) => m.q.publishedNanos))) : undefined;
    const opened: InboundMessage[] = [];
    const rated: number[] = [];
    // Every message's writes are issued here in one synchronous pass, in order, so the pipeline
    // sends them in one socket write (core/js-pipeline.ts): a connection that dies delivers a
    // prefix of it, and the server stores one stream's publishes in arrival order, so what lands
    // of a failed burst is a prefix of the batch; its retry appends the rest after it (message ids
    // drop what did land). A publish the client refuses alone (over max_payload) would break
    // that: every event and the record were measured before the update (payload-limit.ts).
    // Awaiting message by message instead cost 6–15 % router CPU per event.
    // Asked again right before the writes, by the clock: a replica frozen while its update was on
    // the way (SIGSTOP, a VM pause) gets the answer first when it wakes, before its lease timer
    // runs. By then the next owner may have logged these messages, longer ago than the duplicate
    // window: writing now logged them twice, behind newer ones. Left to that owner instead. (By
    // the lease alone: on a stop or a hand-back what was started finishes, the lease still held.)
    if (!leaseHeld()) throw new NotOwnedError();
    const append = (entry: LogEntry, msgID: string) => this.journal.appendUnlessLogged(ticket.id, entry, msgID, landed);
    const writes: Array<Promise<unknown>> = [];
    for (const [i, m] of members.entries()) {
      const change = applied.outcome[i]!;
      // The ticket as this message left it, for its events (a later one may have reopened it).
      const after = change.to === current.status ? current : { ...current, status: change.to };
      const asMet = matchAsMet(m, change);
      const entry = asMet === m.match ? entries[i]!.entry : { ...entries[i]!.entry, match: asMet };
      writes.push(append(entry, m.e.id));
      // This event opened the ticket (also true when a crash interrupted opening it): announced
      // with the first message, so a receiver can open its own ticket without calling back.
      if (current.messageCount <= RECENT_EVENTS && current.recentEvents[0] === m.e.id) {
        writes.push(this.journal.emit('ticket.created', after, ticket.id, entry));
        opened.push(m.e);
      }
      if (change.reopened) {
        const statusEntry: LogEntry = { kind: 'status', at, from: change.from, to: 'open', author: { id: 'router' }, reason: `customer wrote (${entry.match.rule})` };
        writes.push(append(statusEntry, `reopen:${m.e.id}`), this.journal.emit('ticket.status', after, `reopen:${m.e.id}`, statusEntry));
      }
      writes.push(this.journal.emit('ticket.message', after, m.e.id, entry));
      if (change.rated !== undefined) {
        const ratingEntry: LogEntry = { kind: 'rating', at, rating: change.rated, low: change.rated <= this.o.csatLowRating, eventId: m.e.id };
        writes.push(append(ratingEntry, `rating:${m.e.id}`), this.journal.emit('ticket.rating', after, `rating:${m.e.id}`, ratingEntry));
        rated.push(change.rated);
      }
      // A Message-ID of ours is ours to index when we send it (deliveries.ts), never a stranger's (threading.ts hasOurShape).
      if (m.e.email && !this.threader.claimsOurs(m.e.email.messageId)) writes.push(this.store.index(IndexKeys.emailMessageId(m.e.email.messageId), ticket.id));
    }
    await Promise.all(writes);
    // Before the markers: a hook that fails (or a crash before it ran) is retried with its message.
    for (const rating of rated) if (rating <= this.o.csatLowRating && this.hooks.onLowRating) await this.hooks.onLowRating(current, rating);
    for (const e of opened) if (this.hooks.onTicketOpened) await this.hooks.onTicketOpened(current, e);
    // The platform-message index entry is written last, so it doubles as the processed marker.
    await Promise.all(members.map((m) => this.store.index(IndexKeys.platformMessage(m.e.channel, m.e.account, m.e.platform.messageId), ticket.id, NOT_CACHED)));
    if (members.length > 1) metrics.coalesced.inc(members.length - 1);
    return members.length;
  }

  /**
   * Whether every earlier attempt at this message wrote inside the duplicate window, so JetStream
   * drops what they stored: the same stream message delivered again (a redelivery, a rewound
   * partition, a retry in place), published less than the window ago, since an attempt at it
   * came after its publication. A copy published again is another stream message: an attempt at
   * an earlier copy may be any age.
   */
  private insideWindow(q: QueuedMessage): boolean {
    return q.suspect && !this.journal.dedupMayHaveLapsed(q.publishedNanos);
  }

  /** What one message changes on its ticket; runs inside the compare-and-set (so maybe more than once). */
  private applyInbound(t: Ticket, { e, reopen }: Member, at: string): Change {
    const from = t.status;
    if (t.recentEvents.includes(e.id)) {
      const recorded = t.recentOutcomes?.[e.id];
      return { seen: true, reopened: !!recorded?.reopenedFrom, rated: recorded?.rated, from: recorded?.reopenedFrom ?? from, to: from };
    }
    const now = Date.now();
    if (requestInFlight(t, now)) throw new TicketBusyError(t.id);
    // The answer to a satisfaction request is a rating, not a reason to reopen.
    const rated = CLOSED_STATUSES.has(t.status) ? ratingIn(t, e.text, now, this.o.csatWindowMs) : undefined;
    const reaction = isReactionOnly(e);
    // Our decision assumed an open ticket; it was closed meanwhile (another process): decide again.
    if (CLOSED_STATUSES.has(t.status) && !reopen && rated === undefined && !reaction) throw new StaleTicketError(t.id);
    recordInbound(t, e, at);
    if (rated !== undefined) {
      t.csat = { ...t.csat, rating: rated, ratedAt: at };
      recordOutcome(t, e.id, { rated });
      return { seen: false, reopened: false, rated, from, to: t.status };
    }
    if (reaction) return { seen: false, reopened: false, from, to: t.status }; // logged on the ticket; no reopen, no pending → open
    const reopened = CLOSED_STATUSES.has(t.status);
    if (reopened) {
      t.status = 'open';
      t.closedAt = undefined;
      t.statusOp = undefined; // a later change: an earlier one's retry must not log it now
      recordOutcome(t, e.id, { reopenedFrom: from });
    } else if (t.status === 'pending') {
      t.status = 'open';
      t.statusOp = undefined;
    }
    return { seen: false, reopened, from, to: t.status };
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
}

/** What an outcome recorded for `eventId` says, kept only while the ticket remembers the event. */
function recordOutcome(t: Ticket, eventId: string, outcome: NonNullable<Ticket['recentOutcomes']>[string]): void {
  const kept: NonNullable<Ticket['recentOutcomes']> = {};
  for (const [id, o] of Object.entries(t.recentOutcomes ?? {})) if (t.recentEvents.includes(id)) kept[id] = o;
  kept[eventId] = outcome;
  t.recentOutcomes = kept;
}
