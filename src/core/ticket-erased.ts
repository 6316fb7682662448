/**
 * Announcing erased tickets (`omni.events.ticket.erased`) to whoever keeps a copy outside the
 * gateway: the helpdesk host deletes the helpdesk ticket, webhook receivers delete theirs.
 */
import type { Bus } from './bus.js';
import { TicketErasedEvent } from './schema.js';
import { Subjects } from './subjects.js';

export const TICKET_ERASED_SUBJECT = Subjects.ticketEvent('erased');

/** The event's id and Nats-Msg-Id: one per ticket and erasure, so a repeat of it is stored once. */
export const ticketErasedId = (ticketId: string, erasureId: string) => `ticket.erased:${ticketId}:${erasureId}`;

/**
 * One event per ticket, before anything of the tickets is purged: an erasure cut short (the
 * process killed midway) has announced every ticket it may have touched, and each lands after
 * the ticket's own events. The erasure's scan of OMNI_EVENTS leaves these alone (they name
 * no one but the ticket id).
 */
export async function announceErasedTickets(bus: Bus, ticketIds: Iterable<string>, erasureId: string, reason: TicketErasedEvent['reason']): Promise<number> {
  let n = 0;
  for (const ticketId of ticketIds) {
    const event = TicketErasedEvent.parse({ v: 1, type: 'ticket.erased', id: ticketErasedId(ticketId, erasureId), ticketId, at: new Date().toISOString(), reason, erasureId });
    await bus.publishJson(TICKET_ERASED_SUBJECT, event, event.id);
    n++;
  }
  return n;
}
