/**
 * What messages and delivery outcomes change on a ticket: pure functions over the ticket record,
 * applied inside compare-and-set updates (so they may run more than once per event).
 */
import { createHash } from 'node:crypto';
import { parseRating } from './rating.js';
import { withMailParties } from './mail-recipients.js';
import type { DeliveryStatus, InboundMessage, SendPurpose, Ticket } from '../core/schema.js';

/** Event ids a ticket remembers: a redelivered event among them changes nothing. */
export const RECENT_EVENTS = 16;

/**
 * Addresses a ticket counts as participants, at most. Every Cc of every mail became one: three
 * mails Cc'ing 30,000 addresses each (a 300 KB header) made the ticket record larger than a NATS
 * message, and from then on no message of that ticket could be stored, silently (outside trial t11).
 * Past the bound an address is not added: its answer opens a ticket of its own, as a stranger's.
 */
export const MAX_PARTICIPANTS = 200;

/** Adds `who` (already trimmed and lower-cased) unless it is there or the ticket is full. */
function addParticipant(t: Ticket, who: string): void {
  if (who && t.participants.length < MAX_PARTICIPANTS && !t.participants.includes(who)) t.participants.push(who);
}

/** The customer's answer to a satisfaction request, if it is a rating (see rating.ts); anything else is a message. */
export function ratingIn(t: Ticket, text: string, now: number, windowMs: number): number | undefined {
  if (!t.csat?.requestedAt || t.csat.rating !== undefined) return undefined;
  if (now - Date.parse(t.csat.requestedAt) > windowMs) return undefined;
  return parseRating(text);
}

/** What every inbound message changes on its ticket, whatever its status. */
export function recordInbound(t: Ticket, e: InboundMessage, at: string): void {
  t.recentEvents = [...t.recentEvents.slice(-(RECENT_EVENTS - 1)), e.id];
  t.messageCount++;
  // A 👍 to our answer is not the customer waiting for one, nor a message to quote in a reply.
  if (!isReactionOnly(e)) {
    t.lastInboundAt = e.receivedAt;
    t.lastInboundPlatformId = e.platform.messageId;
  }
  // The channel's own rule (WhatsApp's 24 hours); the newest message decides.
  if (e.replyWindowEndsAt && (!t.replyWindowEndsAt || e.replyWindowEndsAt > t.replyWindowEndsAt)) t.replyWindowEndsAt = e.replyWindowEndsAt;
  t.updatedAt = at;
  // Trimmed: " x@romashka.ru" and "x@romashka.ru " were two participants (and neither matched the mail's From).
  const sender = (e.email?.from ?? e.sender.id).trim().toLowerCase();
  addParticipant(t, sender);
  // Cc'd people and the Reply-To address (where our answer goes) may answer into this ticket:
  // Reply-To first, so a long Cc list does not crowd out where the answer goes.
  for (const addr of [...(e.email?.replyTo ? [e.email.replyTo] : []), ...(e.email?.cc ?? [])]) {
    if (t.participants.length >= MAX_PARTICIPANTS) break;
    addParticipant(t, addr.trim().toLowerCase());
  }
  if (e.email) {
    t.lastEmailMessageId = e.email.messageId;
    t.emailReferences = mergeReferences(t.emailReferences, e.email.references, e.email.messageId);
    t.emailParties = withMailParties(t.emailParties, e.email);
  }
}

/** A message that only reacts to another (WhatsApp, Telegram, Slack reactions): logged, but it changes no status. */
export function isReactionOnly(e: InboundMessage): boolean {
  return e.parts.length > 0 && e.parts.every((p) => p.type === 'reaction') && !e.text.trim() && e.attachments.length === 0;
}

/**
 * Why a delivery was sent. Statuses carry the purpose; those from before the field existed are
 * recognised by the fixed idempotency keys of automated sends and the SLA alert's `:sla:` id.
 */
export function purposeOf(s: DeliveryStatus): SendPurpose {
  if (s.purpose) return s.purpose;
  if (s.outboundId.includes(':sla:')) return 'sla_alert';
  if (s.outboundId.endsWith(AUTOMATED_SUFFIXES[0]!)) return 'acknowledgement';
  if (s.outboundId.endsWith(AUTOMATED_SUFFIXES[1]!)) return 'satisfaction_request';
  return 'agent_reply';
}
const AUTOMATED_SUFFIXES = ['auto-acknowledgement', 'satisfaction-request'].map((k) => `:${createHash('sha256').update(k).digest('hex').slice(0, 24)}`);

/** References for the next outbound mail: the chain so far plus the newest id, bounded. */
export function mergeReferences(existing: string[], incoming: string[], newest: string): string[] {
  const out = [...existing];
  // A Set, not out.includes: a mail may carry tens of thousands of References (a 500 KB header
  // holds 60,000), and the quadratic scan held the event loop for 9 s per such mail (outside trial t11).
  const seen = new Set(out);
  for (const id of [...incoming, newest]) {
    if (!id || seen.has(id)) continue;
    seen.add(id);
    out.push(id);
  }
  // Long chains are trimmed from the middle, keeping the root as RFC 5322 suggests.
  return out.length > 20 ? [out[0]!, ...out.slice(-19)] : out;
}
