/**
 * A new ticket's record, created with the customer message that opens it already recorded (one
 * write instead of create-then-update): the update step then finds the event in recentEvents
 * and writes nothing.
 */
import type { InboundMessage, Ticket } from '../core/schema.js';
import { metrics } from '../core/metrics.js';
import { recordInbound } from './ticket-changes.js';
import type { TicketStore } from './tickets.js';
import { MAX_DISPLAY_NAME, MAX_TITLE, clampText } from './payload-limit.js';

/**
 * Creates ticket `id` opened by `e` and returns it as stored. `openedNow`: this call created it,
 * so no earlier attempt wrote anything for that message. `fits` throws (TooLargeError) when the
 * ticket's events would not fit in a NATS message: nothing is created then, and the conversation's
 * next message opens the ticket under the number claimed for it.
 */
export async function openTicket(store: TicketStore, e: InboundMessage, id: string, fits?: (t: Ticket) => void): Promise<{ ticket: Ticket; openedNow: boolean }> {
  const ticket = newTicket(e, id, store.prefix);
  recordInbound(ticket, e, ticket.createdAt);
  fits?.(ticket);
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
    // The title and the contact's name ride in every event of the ticket: one a sender made huge
    // (a 389 KB From display name) made every event larger than a NATS message (payload-limit.ts).
    conversation: e.conversation.title === undefined ? e.conversation : { ...e.conversation, title: clampText(e.conversation.title, MAX_TITLE) },
    threadKey: e.email ? `email:${e.email.messageId}` : `${e.channel}:${e.account}:${e.conversation.id}${e.conversation.threadId ? `:${e.conversation.threadId}` : ''}`,
    subject: clampText(e.email?.subject || e.conversation.title, MAX_TITLE),
    contact: { id: e.sender.id, displayName: clampText(e.sender.displayName, MAX_DISPLAY_NAME), handles: e.sender.handles },
    participants: [],
    emailReferences: [],
    createdAt: now,
    updatedAt: now,
    messageCount: 0,
    appliedSeq: 0,
    recentEvents: [],
  };
}
