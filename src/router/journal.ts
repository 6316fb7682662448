/**
 * The ticket log and ticket events. Every write carries a deterministic Nats-Msg-Id derived from
 * what caused it, so a redelivered or replayed step appends nothing new.
 */
import type { PubAck } from '@nats-io/jetstream';
import type { Bus } from '../core/bus.js';
import type { LogEntry, Ticket, TicketEvent } from '../core/schema.js';
import { Subjects } from '../core/subjects.js';

export class Journal {
  /**
   * The UTF-8 JSON of entries just appended: the event announcing an entry carries it whole, and
   * the routed message's entry (the inbound event itself, often non-ASCII text) is the largest
   * thing the router encodes, so it is stringified and encoded once for both writes. Weak: an
   * entry is forgotten with its object.
   */
  private readonly encoded = new WeakMap<LogEntry, Uint8Array>();

  constructor(private readonly bus: Bus) {}

  append(ticketId: string, entry: LogEntry, msgID: string): Promise<PubAck> {
    return this.bus.pipe.publish(Subjects.ticketLog(ticketId), this.encode(entry), { msgID: `log:${msgID}` });
  }

  emit(type: TicketEvent['type'], ticket: Ticket, causeId: string, entry?: LogEntry): Promise<PubAck> {
    const id = `${type}:${causeId}`;
    const head: Omit<TicketEvent, 'entry'> = {
      v: 1,
      type,
      id,
      ticketId: ticket.id,
      ticketNumber: ticket.number,
      channel: ticket.channel,
      account: ticket.account,
      status: ticket.status,
      at: new Date().toISOString(),
      conversation: ticket.conversation,
      contact: ticket.contact,
      lastDelivery: ticket.lastDelivery,
    };
    const json = JSON.stringify(head);
    let payload: string | Uint8Array = json;
    if (entry !== undefined) {
      // Byte for byte the UTF-8 of JSON.stringify({ ...head, entry }): `entry` is the last key.
      const start = utf8.encode(`${json.slice(0, -1)},"entry":`);
      const body = this.encode(entry);
      payload = new Uint8Array(start.length + body.length + 1);
      payload.set(start);
      payload.set(body, start.length);
      payload[payload.length - 1] = CLOSE_BRACE;
    }
    return this.bus.pipe.publish(Subjects.ticketEvent(type.slice('ticket.'.length)), payload, { msgID: id });
  }

  private encode(entry: LogEntry): Uint8Array {
    let bytes = this.encoded.get(entry);
    if (bytes === undefined) {
      bytes = utf8.encode(JSON.stringify(entry));
      this.encoded.set(entry, bytes);
    }
    return bytes;
  }
}

const utf8 = new TextEncoder();
const CLOSE_BRACE = 0x7d;
