/**
 * The ticket a customer message goes to: the one the threader finds, or a new one under a number
 * claimed for its conversation (ticket-opening.ts creates it). Safe against concurrent routers,
 * crash-and-redeliver, mailers that reuse Message-IDs, and bindings left naming a ticket that
 * was erased or evicted meanwhile.
 */
import type { InboundMessage, Ticket } from '../core/schema.js';
import { senderDoubt } from './sender-trust.js';
import { openTicket } from './ticket-opening.js';
import { isParticipant, type Resolution, type Threader } from './threading.js';
import { IndexKeys } from './thread-keys.js';
import type { TicketStore } from './tickets.js';

/** Where a message lands and why. `openedNow`: this call created the ticket (with the message recorded). */
export interface InboundTicket {
  ticket: Ticket;
  match: Resolution['match'];
  /** The threader's decision: a closed ticket may be reopened by this message. */
  reopen: boolean;
  openedNow: boolean;
}

/**
 * Finds or creates the ticket; safe against concurrent routers and crash-and-redeliver. `fits`
 * refuses a ticket to open whose events would be too large (openTicket), with the match it would log.
 */
export async function ticketFor(store: TicketStore, threader: Threader, e: InboundMessage, fresh: boolean, fits?: (t: Ticket, match: Resolution['match']) => void): Promise<InboundTicket> {
  /**
   * Set when another sender's mail holds this mail's Message-ID: keyed by the Message-ID and this
   * sender instead, and when that is lost to a mail this sender cannot be trusted with, by this message.
   */
  let ownKey: string | undefined;
  for (;;) {
    const res = await threader.resolve(e, fresh);
    const fitsNew = fits && ((t: Ticket) => fits(t, res.match));
    if (res.kind === 'existing') return { ticket: res.ticket, match: res.match, reopen: res.reopen, openedNow: false };
    let ticketId = res.previous;
    if (!ticketId) {
      const candidate = store.idFor(await store.allocateNumber());
      const claim = await store.claim(ownKey ?? res.conversationKey, candidate);
      // A number just allocated names no ticket yet: create it with this message recorded.
      if (claim.won) return { ...(await openTicket(store, e, candidate, fitsNew)), match: res.match, reopen: false };
      // An email's key is its own Message-ID: losing the claim means this very mail opened the
      // ticket before (a redelivery), or another mail carries the same Message-ID (a mailer that
      // reuses them). Joined only when it is the sender's own ticket: another sender's mail would
      // otherwise land in a stranger's ticket. A chat's key is the conversation: someone else
      // opened it concurrently, so resolve again (fresh) and join theirs.
      if (e.email && claim.ticketId) {
        if (!(await sendersOwn(store, claim.ticketId, e))) {
          // First another sender's key of this Message-ID: this sender's own. Lost again to a mail
          // this sender's key cannot vouch for (a From found forged, reusing another's id and
          // From): a key of this message alone, which no other mail can hold.
          const next = ownKey === undefined ? IndexKeys.emailMessageIdOfSender(e.email.messageId, e.email.from) : IndexKeys.emailMessageIdOfSender(e.email.messageId, `${e.email.from}\u0000${e.id}`);
          if (next !== ownKey) {
            ownKey = next;
            continue;
          }
        }
        ticketId = claim.ticketId;
      } else {
        fresh = true;
        continue;
      }
    }
    // The index names a ticket whose record may be missing (a crash between claim and create).
    const existing = await store.get(ticketId, { fresh: true });
    if (existing) return { ticket: existing.value, match: res.match, reopen: false, openedNow: false };
    if (await store.removed(ticketId)) {
      const opened = await rebindRemoved(store, ownKey ?? res.conversationKey, ticketId, e, fitsNew);
      if (opened) return { ...opened, match: res.match, reopen: false };
      fresh = true;
      continue;
    }
    return { ...(await openTicket(store, e, ticketId, fitsNew)), match: res.match, reopen: false };
  }
}

/**
 * Whether the sender takes part in the ticket. A record that is missing (a crash between claim
 * and create) is this mail's to create; an evicted ticket is nobody's to reopen under its number
 * (its log stays), so a mail of another sender goes to a key of its own.
 */
async function sendersOwn(store: TicketStore, ticketId: string, e: InboundMessage): Promise<boolean> {
  const email = e.email!;
  const ticket = await store.get(ticketId, { fresh: true });
  if (!ticket) return !(await store.removed(ticketId));
  // This very message opened or joined it (a redelivery after a crash before its marker): its
  // ticket, whoever the sender claims to be; asking again would open a second ticket for it.
  if (ticket.value.recentEvents.includes(e.id)) return true;
  // A sender taken from a fallback header, or a From found forged, is nobody's word (sender-trust.ts).
  if (senderDoubt(email)) return false;
  return isParticipant(ticket.value, email.from.toLowerCase());
}

/**
 * The binding `key` named ticket `removedId`, erased (or evicted) since this replica cached the
 * binding: its number is never given again. The binding as stored decides: gone or moved on,
 * undefined (thread again); still naming the removed ticket (an erasure between the record and
 * its bindings), a new number takes it and the message opens that ticket.
 */
async function rebindRemoved(store: TicketStore, key: string, removedId: string, e: InboundMessage, fits?: (t: Ticket) => void): Promise<{ ticket: Ticket; openedNow: boolean } | undefined> {
  store.invalidate(key, removedId);
  const bound = await store.lookup(key, { fresh: true });
  if (bound?.value !== removedId) return undefined;
  const candidate = store.idFor(await store.allocateNumber());
  if (!(await store.rebind(key, bound, candidate))) return undefined;
  return openTicket(store, e, candidate, fits);
}
