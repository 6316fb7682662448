/**
 * A new ticket's record, created with the customer message that opens it already recorded (one
 * write instead of create-then-update): the update step then finds the event in recentEvents
 * and writes nothing.
 */
import type { InboundMessage, Ticket } from '../core/schema.js';
import { metrics } from '../core/metrics.js';
import { recordInbound } from './ticket-changes.js';
import type { TicketStore } from './tickets.js';

/**
 * Creates ticket `id` opened by `e` and returns it as stored. `openedNow`: this call created it,
 * so no earlier attempt wrote anything for that message.
 */
export async function openTicket(store: TicketStore, e: InboundMessage, id: string): Promise<{ ticket: Ticket; openedNow: boolean }> {
  const ticket = newTicket(e, id, store.prefix);
  recordInbound(ticket, e, ticket.createdAt);
  const openedNow = await store.create(ticket);
  if (openedNow) metrics.ticketsCreated.inc();
  return { ticket: (await store.get(id))!.value, openedNow };
}

function newTicket(e: InboundMessage, id: string, prefix: string): Ticket {
  const now = new Date().toISOString();
  return {
    v: 1,
    id,
    number: Number(id.slice(prefix.length)),
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
