/**
 * The ticket log and ticket events. Every write carries a deterministic Nats-Msg-Id derived from
 * what caused it, so a redelivered or replayed step appends nothing new.
 */
import type { PubAck } from '@nats-io/jetstream';
import type { Bus } from '../core/bus.js';
import type { LogEntry, Ticket, TicketEvent } from '../core/schema.js';
import { Subjects } from '../core/subjects.js';

export class Journal {
  constructor(private readonly bus: Bus) {}

  append(ticketId: string, entry: LogEntry, msgID: string): Promise<PubAck> {
    return this.bus.publishJson(Subjects.ticketLog(ticketId), entry, `log:${msgID}`);
  }

  emit(type: TicketEvent['type'], ticket: Ticket, causeId: string, entry?: LogEntry): Promise<PubAck> {
    const event: TicketEvent = {
      v: 1,
      type,
      id: `${type}:${causeId}`,
      ticketId: ticket.id,
      ticketNumber: ticket.number,
      channel: ticket.channel,
      account: ticket.account,
      status: ticket.status,
      at: new Date().toISOString(),
      conversation: ticket.conversation,
      contact: ticket.contact,
      lastDelivery: ticket.lastDelivery,
      entry,
    };
    return this.bus.publishJson(Subjects.ticketEvent(type.slice('ticket.'.length)), event, event.id);
  }
}
