/**
 * Delivery outcomes (omni.status.*, reported by connectors) into the ticket: a log entry, the
 * platform ids that let replies and bounces find the ticket, reaction times, the ticket's
 * lastDelivery, and the ticket.delivery announcement. An agent's reply that failed for good
 * puts the ticket back to `open` (announced as ticket.status and ticket.delivery_failed): left
 * `pending` it would read "answered, waiting for the customer" in every queue and SLA view,
 * while the customer never got the answer. Once the last of its failed replies was sent after all
 * (a replay) and the customer wrote nothing since, it goes back to the status the failure
 * replaced (announced as ticket.status): left `open` it asked for an answer the customer has.
 * Idempotent: the log append carries a Nats-Msg-Id
 * per outcome, and the ticket keeps short hashes of the outcomes it applied (recentDeliveries;
 * the highest log sequence applied covers those older than the list); past the duplicate window
 * the log itself recognises an outcome delivered again.
 */
import type { JsMsg } from '@nats-io/jetstream';
import type { Bus } from '../core/bus.js';
import type { Logger } from '../core/logger.js';
import { errorMessage } from '../core/errors.js';
import { metrics } from '../core/metrics.js';
import { CLOSED_STATUSES, DeliveryStatus, describeZodError, type LogEntry, type Ticket, type TicketStatus } from '../core/schema.js';
import { Subjects, hashKey } from '../core/subjects.js';
import { escalationOutcome, recordEscalationOutcome } from './escalation.js';
import { logMsgId, type Journal } from './journal.js';
import { withReplyMessageId } from './mail-recipients.js';
import { recordRefusedCopies } from './bounces.js';
import type { RouterMetrics } from './metrics.js';
import { park, type RouterDeadLetterCode } from './park.js';
import { mergeReferences, purposeOf } from './ticket-changes.js';
import { IndexKeys } from './thread-keys.js';
import type { TicketStore } from './tickets.js';

export class DeliveryRecorder {
  constructor(
    private readonly bus: Bus,
    private readonly store: TicketStore,
    private readonly journal: Journal,
    private readonly metrics: RouterMetrics,
    private readonly log: Logger,
  ) {}

  async handle(m: JsMsg): Promise<void> {
    let status: DeliveryStatus;
    try {
      const parsed = DeliveryStatus.safeParse(m.json());
      if (!parsed.success) return park(this.bus, this.log, m, 'invalid_status', `invalid delivery status: ${describeZodError(parsed.error)}`);
      status = parsed.data;
    } catch {
      return park(this.bus, this.log, m, 'invalid_json', 'delivery status is not valid JSON');
    }
    try {
      const again = m.redelivered && this.journal.dedupMayHaveLapsed(m.info.timestampNanos);
      await this.recordDelivery(status, again ? m.info.timestampNanos : undefined);
      m.ack();
    } catch (err) {
      this.log.warn({ err: errorMessage(err), outboundId: status.outboundId }, 'recording delivery failed; will retry');
      m.nak(1000);
    }
  }

  /** `earlierSince`: set when an earlier attempt may have written its log entry longer ago than the duplicate window (the status's JetStream time). */
  private async recordDelivery(s: DeliveryStatus, earlierSince?: number): Promise<void> {
    const ticket = await this.store.get(s.ticketId);
    if (!ticket) {
      await this.bus.deadLetters.park({
        source: 'router', subject: Subjects.status(s.channel, s.account), code: 'unknown_ticket' satisfies RouterDeadLetterCode, reason: `delivery status for unknown ticket ${s.ticketId}`, payload: JSON.stringify(s),
      });
      return;
    }
    const entry: LogEntry = { kind: 'delivery', at: new Date().toISOString(), status: s };
    // A replay's outcome (round) is another outcome of the same message, not a repeat of the first.
    const round = s.round ? `:r${s.round}` : '';
    const cause = `dlv:${s.outboundId}:${s.status}${round}`;
    const mark = deliveryMark(cause);
    // Past the duplicate window a repeated append would be stored again, under a new sequence the
    // ticket has not applied. An outcome the ticket recorded was logged before it was applied; a
    // redelivery of one whose attempt died after its append finds the entry in the log.
    // One the ticket recorded and reported again as a new message (a platform's receipt sent
    // again) is looked up from its own time, when that is older than the window.
    const recorded = ticket.value.recentDeliveries?.includes(mark) ?? false;
    const outcomeAt = Date.parse(s.at) * 1e6;
    const lookupSince = earlierSince ?? (recorded && this.journal.dedupMayHaveLapsed(outcomeAt) ? outcomeAt : undefined);
    const logged = lookupSince === undefined ? undefined : await this.journal.loggedSince(s.ticketId, lookupSince);
    const loggedSeq = logged?.get(logMsgId(cause));
    const appended = recorded || loggedSeq !== undefined ? undefined : await this.journal.append(s.ticketId, entry, cause);
    const ack = recorded ? undefined : loggedSeq !== undefined ? { seq: loggedSeq } : appended;
    // Logged by this attempt for the first time: never applied, since an update follows its append.
    // Statuses are handled concurrently, so another outcome's later entry may be applied already:
    // judging a first-time entry by the highest sequence applied dropped it (firstResponseAt,
    // lastOutboundAt, a failed reply's back-to-open lost).
    const firstTime = appended !== undefined && !appended.duplicate;
    if (s.platformMessageId) {
      // Read only to find the ticket of a bounce of this message (tickets.ts IndexWrite).
      await this.store.index(IndexKeys.platformMessage(s.channel, s.account, s.platformMessageId), s.ticketId, { cache: false });
      // Not on a failure: a bounce reports one (bounces.ts) under the Message-ID its sender wrote
      // in it, which then stood in the `out.` index for ours (threading trusts it first). A mail
      // we did send was indexed by its `sent` outcome. Nor an SLA alert about the ticket sent to a
      // lead's chat: its platform id is no Message-ID of ours.
      if (ticket.value.conversation.kind === 'email' && s.channel === ticket.value.channel && s.status !== 'failed') {
        // Our own Message-ID: replies to it thread here, and the mail echoed back is recognised.
        await this.store.index(IndexKeys.emailMessageId(s.platformMessageId), s.ticketId);
        await this.store.index(IndexKeys.ownMessageId(s.platformMessageId), s.ticketId, { cache: false });
      }
    }
    const purpose = purposeOf(s);
    // An agent's answer, not an SLA alert to the lead or an automatic acknowledgement.
    const agentOutbound = purpose === 'agent_reply';
    const reopenId = `${REOPEN_PREFIX}${s.outboundId}${round}`;
    const restoreId = `dlv-restore:${s.outboundId}${round}`;
    const applied = await this.store.apply(s.ticketId, (t) => {
      // replayedAt: the back-to-open was made by an earlier attempt, at this time.
      // restoredTo: back from open once its failed replies were all sent (restoredAt: by an earlier attempt).
      const reaction: { first?: number; wait?: number; reopenedFrom?: TicketStatus; replayedAt?: string; restoredTo?: TicketStatus; restoredAt?: string } = {};
      if (!ack || t.recentDeliveries?.includes(mark) || (!firstTime && appliedBefore(t, ack.seq))) {
        // Applied before: if that attempt put the ticket back to open, its status entry may not
        // have been written (a crash, a failed append); it is written again, once by its id.
        // Not once the ticket moved on (answered, closed): the entry would then read out of order.
        if (t.statusOp?.id === reopenId && t.status === 'open') {
          reaction.reopenedFrom = t.statusOp.from;
          reaction.replayedAt = t.statusOp.at;
        }
        if (t.statusOp?.id === restoreId && t.status !== 'open') {
          reaction.restoredTo = t.status;
          reaction.restoredAt = t.statusOp.at ?? entry.at;
        }
        return { next: null, outcome: reaction };
      }
      // The list names every outcome applied to this ticket while nothing has dropped out of it
      // (started with the ticket's first outcome); tickets from before it, or whose list dropped
      // a mark, are judged by the highest sequence (appliedBefore).
      if (t.recentDeliveries === undefined && t.appliedSeq === 0) t.recentDeliveriesAll = true;
      t.appliedSeq = Math.max(t.appliedSeq, ack.seq);
      const marks = [...(t.recentDeliveries ?? []), mark];
      if (marks.length > RECENT_DELIVERIES) {
        marks.splice(0, marks.length - RECENT_DELIVERIES);
        t.recentDeliveriesAll = undefined;
      }
      t.recentDeliveries = marks;
      // A failure older than the outcome the ticket shows for that reply (a replay's `sent` applied
      // first): it stays off the list, which nothing later would clear.
      const superseded = s.status === 'failed' && t.lastDelivery?.outboundId === s.outboundId && t.lastDelivery.status !== 'failed' && t.lastDelivery.at > s.at;
      if (agentOutbound) noteDelivery(t, s);
      const wasFailed = t.failedReplies?.some((f) => f.outboundId === s.outboundId) ?? false;
      if (agentOutbound && !superseded) noteFailedReply(t, s);
      const back = agentOutbound && s.status !== 'failed' && wasFailed && !t.failedReplies ? statusBeforeFailure(t) : undefined;
      if (back) {
        reaction.restoredTo = back;
        t.status = back;
        if (CLOSED_STATUSES.has(back)) t.closedAt ??= entry.at;
        t.statusOp = { id: restoreId, from: 'open', at: entry.at };
      }
      // Failed after it was sent (a bounce, a platform's late `failed`): the customer has no answer.
      if (agentOutbound && s.status === 'failed') undoAnswer(t, s.outboundId);
      if (agentOutbound && s.status === 'failed' && t.status !== 'closed' && t.status !== 'open') {
        // Back in the queue; lastOutboundAt is untouched, so the SLA timers see no answer either.
        reaction.reopenedFrom = t.status;
        t.status = 'open';
        t.statusOp = { id: reopenId, from: reaction.reopenedFrom, at: entry.at };
      }
      if (s.status === 'sent' && agentOutbound) {
        if (!t.firstResponseAt) reaction.first = (Date.parse(s.at) - Date.parse(t.createdAt)) / 1000;
        if (t.lastInboundAt && (!t.lastOutboundAt || t.lastOutboundAt < t.lastInboundAt)) reaction.wait = (Date.parse(s.at) - Date.parse(t.lastInboundAt)) / 1000;
        // Outcomes of one ticket may be applied out of their order (handled concurrently, one retried).
        if (!t.lastOutboundAt || t.lastOutboundAt < s.at) {
          t.lastAnswer = { outboundId: s.outboundId, at: s.at, platformMessageId: s.platformMessageId, lastOutboundBefore: t.lastOutboundAt, firstResponseBefore: t.firstResponseAt };
          t.lastOutboundAt = s.at;
        } else if (t.lastAnswer && !t.lastAnswer.undone) {
          // An earlier answer applied after a later one: it is what remains should the later one fail.
          const a = t.lastAnswer;
          if (!a.lastOutboundBefore || a.lastOutboundBefore < s.at) a.lastOutboundBefore = s.at;
          if (!a.firstResponseBefore || s.at < a.firstResponseBefore) a.firstResponseBefore = s.at;
        }
        if (!t.firstResponseAt || s.at < t.firstResponseAt) t.firstResponseAt = s.at;
      }
      // Our mail joins the thread's References whoever wrote it, so the customer's answer threads
      // back here. In-Reply-To (lastEmailMessageId) stays on the customer's latest mail: the next
      // reply answers them, not our auto-acknowledgement. Their mail stays last in References, as
      // RFC 5322 puts the parent there.
      if (s.status === 'sent' && s.platformMessageId && agentOutbound) t.emailParties = withReplyMessageId(t.emailParties, s.outboundId, s.platformMessageId);
      if (s.status === 'sent' && s.platformMessageId && t.conversation.kind === 'email' && purpose !== 'sla_alert') {
        const parent = t.lastEmailMessageId;
        const chain = parent ? t.emailReferences.filter((id) => id !== parent) : t.emailReferences;
        if (parent) t.emailReferences = mergeReferences(chain, [s.platformMessageId], parent);
        else {
          // No mail from the customer yet (a ticket we wrote first): ours is the one to answer.
          t.lastEmailMessageId = s.platformMessageId;
          t.emailReferences = mergeReferences(chain, [], s.platformMessageId);
        }
      }
      t.updatedAt = entry.at;
      return { next: t, outcome: reaction };
    });
    const reaction = applied?.outcome ?? {};
    const updated = applied?.ticket ?? null;
    this.metrics.observeDelivery(s.channel, s.account, s.status, s.reason);
    if (reaction.first !== undefined) metrics.firstResponse.observe({ channel: s.channel }, reaction.first);
    if (reaction.wait !== undefined) metrics.replyWait.observe({ channel: s.channel }, reaction.wait);
    const current = updated ?? ticket.value;
    // A replayed back-to-open may be older than the duplicate window: look for its entry.
    const madeAt = reaction.replayedAt ?? reaction.restoredAt;
    const since = madeAt ? Date.parse(madeAt) * 1e6 : undefined;
    const statusLogged = since !== undefined ? await this.journal.loggedIfDedupLapsed(s.ticketId, since) : logged;
    const writes: Array<Promise<unknown>> = [this.journal.emit('ticket.delivery', current, cause, entry)];
    if (reaction.reopenedFrom) {
      const statusEntry: LogEntry = {
        kind: 'status', at: reaction.replayedAt ?? entry.at, from: reaction.reopenedFrom, to: 'open', author: { id: 'router' },
        reason: `reply ${s.outboundId} failed: ${s.reason ?? 'no reason given'}`,
      };
      writes.push(this.journal.appendUnlessLogged(s.ticketId, statusEntry, reopenId, statusLogged), this.journal.emit('ticket.status', current, reopenId, statusEntry));
    }
    if (reaction.restoredTo) {
      const statusEntry: LogEntry = {
        kind: 'status', at: reaction.restoredAt ?? entry.at, from: 'open', to: reaction.restoredTo, author: { id: 'router' },
        reason: `reply ${s.outboundId} was ${s.status} after all${s.round ? ` (replay ${s.round})` : ''}: no failed reply left and no customer message since the failure reopened the ticket`,
      };
      writes.push(this.journal.appendUnlessLogged(s.ticketId, statusEntry, restoreId, statusLogged), this.journal.emit('ticket.status', current, restoreId, statusEntry));
    }
    // Announced for every terminal failure of an agent's reply, also on a redelivery of the
    // status (the event id dedupes it), so a crash after the ticket update still announces it.
    if (agentOutbound && s.status === 'failed') writes.push(this.journal.emit('ticket.delivery_failed', current, `dlv:${s.outboundId}${round}`, entry));
    await Promise.all(writes);
    if (s.status === 'sent' && s.refusedCopies?.length) await recordRefusedCopies(this.bus, this.store, this.journal, current, s);
    const escalation = escalationOutcome(s);
    if (escalation) {
      await recordEscalationOutcome(this.store, this.journal, this.log, { id: s.outboundId, ticketId: s.ticketId, outcome: escalation, detail: s.reason, target: `${s.channel}/${s.account}` });
    }
  }
}

/** statusOp ids of a failed reply putting the ticket back to open. */
const REOPEN_PREFIX = 'dlv-reopen:';

/**
 * The status a ticket put back to open by failed replies returns to once none is left failed: the
 * one the failure replaced. None when anything changed the status since (an agent, a reply, a
 * command: statusOp is theirs then) or the customer wrote after the failure (their message waits
 * for an answer).
 */
function statusBeforeFailure(t: Ticket): TicketStatus | undefined {
  const op = t.statusOp;
  if (t.status !== 'open' || !op?.id.startsWith(REOPEN_PREFIX) || op.from === 'open' || !op.at) return undefined;
  if (t.lastInboundAt && t.lastInboundAt > op.at) return undefined;
  return op.from;
}

/** Delivery outcomes a ticket remembers (sent, delivered and read of the last few replies). */
const RECENT_DELIVERIES = 16;

/**
 * Whether an outcome logged before at `seq` (a redelivery, a repeat) whose mark the ticket does
 * not list was applied. While the list holds every outcome ever applied to the ticket
 * (recentDeliveriesAll), an absent mark was not applied (its earlier attempt failed between the
 * append and the update, and a later outcome may have been applied meanwhile). Once a mark dropped
 * out, or for a ticket from before the list, the highest sequence applied decides.
 */
function appliedBefore(t: Ticket, seq: number): boolean {
  if (t.recentDeliveriesAll) return false;
  return t.appliedSeq >= seq;
}

/**
 * A reply that failed after its `sent` was applied no longer answers the ticket: lastOutboundAt
 * (and firstResponseAt, if this reply was the first response) go back to what they were before
 * it. Only the newest answer is undone: once a later reply was sent, the customer has that one.
 */
function undoAnswer(t: Ticket, outboundId: string): void {
  const a = t.lastAnswer;
  if (a?.outboundId !== outboundId || a.undone) return;
  if (t.lastOutboundAt === a.at) t.lastOutboundAt = a.lastOutboundBefore;
  if (t.firstResponseAt === a.at) t.firstResponseAt = a.firstResponseBefore;
  // Kept, marked: a bounce of it processed again still names this reply (inbound-messages.ts).
  a.undone = true;
}

/** A short hash of an outcome's cause: 72 bits, for a list of sixteen on one ticket. */
function deliveryMark(cause: string): string {
  return hashKey(cause).slice(0, 12);
}

/**
 * The ticket's lastDelivery: the newest outcome of an agent's reply. delivered/read only move
 * the reply it already names forward; an outcome older than the one recorded changes nothing.
 */
function noteDelivery(t: Ticket, s: DeliveryStatus): void {
  const last = t.lastDelivery;
  if (s.status === 'delivered' || s.status === 'read') {
    if (last?.outboundId === s.outboundId && last.status !== 'failed') t.lastDelivery = { ...last, status: s.status, at: s.at };
    return;
  }
  if (last && last.outboundId !== s.outboundId && last.at > s.at) return;
  t.lastDelivery = { status: s.status, outboundId: s.outboundId, at: s.at, ...(s.status === 'failed' ? { reason: s.reason ?? 'unknown' } : {}) };
}

/** Failed replies a ticket lists (Ticket.failedReplies). */
const FAILED_REPLIES_KEPT = 10;

/**
 * Keeps Ticket.failedReplies: a reply that failed for good is listed (again, with its newest
 * reason, when a replay of it failed too); one that went out after all (a replay that was sent,
 * delivered or read) is taken off. The oldest drop out past ten.
 */
function noteFailedReply(t: Ticket, s: DeliveryStatus): void {
  if (s.status !== 'failed') {
    // Only an outcome after the failure: WhatsApp's `failed` after `sent` may be applied before it.
    const still = (t.failedReplies ?? []).filter((f) => f.outboundId !== s.outboundId || f.at > s.at);
    if (still.length !== (t.failedReplies?.length ?? 0)) t.failedReplies = still.length > 0 ? still : undefined;
    return;
  }
  const others = (t.failedReplies ?? []).filter((f) => f.outboundId !== s.outboundId);
  const listed = [...others, { outboundId: s.outboundId, at: s.at, reason: s.reason ?? 'unknown' }];
  t.failedReplies = listed.slice(-FAILED_REPLIES_KEPT);
}
