/**
 * Customer-side messages that open no ticket: auto-replies and echoes of our own mail, parked by
 * the loop guard (answering them would start a mail loop), and bounces, turned into a failed
 * delivery of the reply they bounced; unless only copies of it bounced (its To and the customer
 * got it): then the ticket log says which copy bounced and why, and later replies stop copying it.
 */
import type { Bus } from '../core/bus.js';
import { addressKey } from '../core/mail-address.js';
import { DeliveryStatus, type InboundMessage, type LogEntry, type Ticket } from '../core/schema.js';
import { metrics } from '../core/metrics.js';
import { Subjects, hashKey } from '../core/subjects.js';
import type { Journal } from './journal.js';
import { withBouncedCopies } from './mail-recipients.js';
import { normalizeMessageId } from '../core/message-id.js';
import { IndexKeys } from './thread-keys.js';
import type { TicketStore } from './tickets.js';

type Bounce = NonNullable<InboundMessage['bounceOf']>;
type FailedRecipient = NonNullable<Bounce['recipients']>[number];

/** Whether a mail carries the Message-ID of one we sent: our own mail coming back. */
export async function isOurEcho(store: TicketStore, messageId: string): Promise<boolean> {
  const hit = await store.lookup(IndexKeys.ownMessageId(messageId));
  return !!hit;
}

/** An auto-reply or our own mail coming back: parked, never a ticket. */
export async function guardLoop(bus: Bus, e: InboundMessage): Promise<void> {
  metrics.ignored.inc({ channel: e.channel });
  await bus.deadLetters.park({
    source: 'loop-guard', subject: Subjects.inbound(e.channel, e.account), code: e.automated ?? 'echo',
    reason: `loop guard: ${e.automated ?? 'echo'} message opens no ticket`, payload: JSON.stringify(e),
  });
}

export async function processBounce(bus: Bus, store: TicketStore, journal: Journal, e: InboundMessage): Promise<void> {
  const bounce = e.bounceOf!;
  // Our own sent mail first (threading.ts says why); `mid.` for mail sent before `out.` existed.
  const hit = (await store.lookup(IndexKeys.ownMessageId(bounce.platformMessageId))) ??
    (await store.lookup(IndexKeys.emailMessageId(bounce.platformMessageId))) ??
    (await store.lookup(IndexKeys.platformMessage(e.channel, e.account, bounce.platformMessageId)));
  const ticket = hit ? await store.get(hit.value) : null;
  if (!ticket) {
    await bus.deadLetters.park({
      source: 'loop-guard', subject: Subjects.inbound(e.channel, e.account), code: 'unknown_bounce', reason: 'bounce for a message we do not know', payload: JSON.stringify(e),
    });
    return;
  }
  // The reply it bounced, when that is the ticket's newest answer (also once undone by this very
  // bounce, processed again): its outcome, under its own id.
  const answer = ticket.value.lastAnswer;
  const ofAnswer = answer?.platformMessageId !== undefined && normalizeMessageId(answer.platformMessageId) === normalizeMessageId(bounce.platformMessageId);
  const copies = copiesOnly(ticket.value, bounce, ofAnswer ? answer.outboundId : undefined);
  if (copies) return recordBouncedCopies(store, journal, ticket.value, e, copies);
  await publishFailed(bus, {
    outboundId: ofAnswer ? answer.outboundId : `bounce:${bounce.platformMessageId}`, ticketId: ticket.value.id,
    channel: e.channel, account: e.account, platformMessageId: bounce.platformMessageId,
    reason: `bounced: ${bounce.reason}`, at: e.receivedAt,
  });
}

type FailedReply = Pick<DeliveryStatus, 'outboundId' | 'ticketId' | 'channel' | 'account' | 'platformMessageId' | 'at' | 'purpose' | 'round'> & { reason: string };

/**
 * A reply failed by what came back after it was sent (a bounce, a refused customer). Through the
 * status stream like every other outcome, so the delivery recorder treats it as any failed reply
 * (log, lastDelivery, the ticket back to open, ticket.delivery_failed); deduplicated per reply
 * and replay round.
 */
async function publishFailed(bus: Bus, f: FailedReply): Promise<void> {
  const status = DeliveryStatus.parse({
    v: 1, type: 'delivery.status', outboundId: f.outboundId, ticketId: f.ticketId, channel: f.channel, account: f.account, status: 'failed',
    platformMessageId: f.platformMessageId, reason: f.reason, at: f.at, purpose: f.purpose, round: f.round,
  });
  await bus.publishJson(Subjects.status(f.channel, f.account), status, `status:${f.outboundId}:failed${f.round ? `:r${f.round}` : ''}`);
}

/**
 * The reply's failed recipients when they were all copies: its recorded To and the ticket's
 * customer are not among them. Undefined when the reply itself failed, and when that cannot be
 * told (the report names nobody, or the reply's To was not recorded: sent before it was).
 */
function copiesOnly(t: Ticket, bounce: Bounce, answerId: string | undefined): { outboundId: string; failed: FailedRecipient[] } | undefined {
  const failed = bounce.recipients ?? [];
  if (failed.length === 0) return undefined;
  const bounced = normalizeMessageId(bounce.platformMessageId);
  const reply = t.emailParties?.replies?.find((r) => (r.messageId !== undefined && normalizeMessageId(r.messageId) === bounced) || r.outboundId === answerId);
  if (!reply) return undefined;
  const contact = [t.contact.id, t.contact.handles.email, t.contact.handles.replyTo].filter((a): a is string => !!a).map(addressKey);
  const reached = new Set([...reply.to.map(addressKey), ...contact]);
  if (failed.some((f) => reached.has(addressKey(f.address)))) return undefined;
  // Only an address the reply was copied to is a copy: a report naming another (the To forwarded
  // or expanded elsewhere: `Final-Recipient: new@host` and no Original-Recipient) is the reply's own.
  const copied = new Set((reply.cc ?? []).map(addressKey));
  return failed.every((f) => copied.has(addressKey(f.address))) ? { outboundId: reply.outboundId, failed } : undefined;
}

/**
 * Only copies bounced: the reply stays delivered (no reopen, no failed reply). A note in the log
 * (and to helpdesks) says which and why; the ticket stops copying them. Idempotent: the note by
 * the bounce's id, the list by address.
 */
function recordBouncedCopies(store: TicketStore, journal: Journal, ticket: Ticket, e: InboundMessage, copies: { outboundId: string; failed: FailedRecipient[] }): Promise<void> {
  const which = copies.failed.map((f) => (f.reason ? `${f.address} (${f.reason})` : f.address)).join('; ');
  return noteCopies(store, journal, ticket, {
    id: `bounce-copy:${hashKey(e.id).slice(0, 32)}`,
    at: e.receivedAt,
    text: `A copy of reply ${copies.outboundId} bounced: ${which}. The reply reached its To; later replies of this ticket no longer copy ${copies.failed.length === 1 ? 'this address' : 'these addresses'}.`,
    stopCopying: copies.failed.map((f) => f.address),
  });
}

/**
 * Copies the mail server refused while it took a reply for its To (a `sent` naming refused
 * copies, connectors/email/sender.ts): noted as a bounced copy is, and the permanently refused
 * ones are no longer copied. A refused copy that is the ticket's customer (an agent who chose
 * another To and copied the customer) fails the reply, as the customer's bounce would.
 */
export async function recordRefusedCopies(bus: Bus, store: TicketStore, journal: Journal, ticket: Ticket, s: DeliveryStatus): Promise<void> {
  const refused = s.refusedCopies ?? [];
  const contact = new Set([ticket.contact.id, ticket.contact.handles.email, ticket.contact.handles.replyTo].filter((a): a is string => !!a).map(addressKey));
  const customer = refused.find((r) => !r.temporary && contact.has(addressKey(r.address)));
  if (customer) {
    await publishFailed(bus, {
      outboundId: s.outboundId, ticketId: ticket.id, channel: s.channel, account: s.account, platformMessageId: s.platformMessageId,
      reason: `recipient_rejected: the customer's address was refused: ${customer.address}: ${customer.reason}`, at: s.at, purpose: s.purpose, round: s.round,
    });
    return;
  }
  const lasting = refused.filter((r) => !r.temporary);
  const which = refused.map((r) => `${r.address} (${r.temporary ? 'for now: ' : ''}${r.reason})`).join('; ');
  const after = lasting.length === 0 ? 'later replies still copy them' : `later replies of this ticket no longer copy ${lasting.length === 1 ? lasting[0]!.address : lasting.map((r) => r.address).join(', ')}`;
  await noteCopies(store, journal, ticket, {
    id: `refused-copy:${hashKey(`${s.outboundId}${s.round ? `:r${s.round}` : ''}`).slice(0, 32)}`,
    at: s.at,
    text: `The mail server refused ${refused.length === 1 ? 'a copy' : 'copies'} of reply ${s.outboundId}: ${which}. The reply reached its To; ${after}.`,
    stopCopying: lasting.map((r) => r.address),
  });
}

/** A note on the ticket about copies of a reply that did not arrive; `stopCopying` leaves later replies. Idempotent: the note by its id, the list by address. */
async function noteCopies(store: TicketStore, journal: Journal, ticket: Ticket, n: { id: string; at: string; text: string; stopCopying: string[] }): Promise<void> {
  const entry: LogEntry = { kind: 'note', at: n.at, id: n.id, author: { id: 'router' }, text: n.text };
  await journal.append(ticket.id, entry, n.id);
  const addresses = n.stopCopying;
  const updated = addresses.length === 0 ? null : await store.mutate(ticket.id, (t) => {
    const known = new Set(t.emailParties?.bouncedCopies ?? []);
    if (addresses.every((a) => known.has(addressKey(a)))) return null;
    t.emailParties = withBouncedCopies(t.emailParties ?? { authors: [], own: [] }, addresses);
    return t;
  });
  await journal.emit('ticket.note', updated ?? ticket, n.id, entry);
}
