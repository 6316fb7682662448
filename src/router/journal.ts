/**
 * The ticket log and ticket events. Every write carries a deterministic Nats-Msg-Id derived from
 * what caused it, so a redelivered or replayed step appends nothing new inside the streams'
 * duplicate window; past it, a step that may have run before asks `loggedSince` what landed.
 */
import { DeliverPolicy, type PubAck } from '@nats-io/jetstream';
import type { Bus } from '../core/bus.js';
import type { LogEntry, Ticket, TicketEvent } from '../core/schema.js';
import { Streams, Subjects } from '../core/subjects.js';
import { checkFits } from './payload-limit.js';

/**
 * How far before a cause's arrival a log entry it wrote is looked for: its entries were written
 * after it was stored, but the log's and the cause's streams may have leaders on different nodes
 * whose clocks differ.
 */
const CLOCK_MARGIN_MS = 5 * 60_000;

/** How far apart the gateway's and the servers' clocks may be when a write's age is judged. */
const CLOCK_SKEW_MS = 30_000;

/** The message ids of the log entries found, with their log sequence. */
export type LoggedIds = Map<string, number>;

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
    return this.bus.pipe.publish(Subjects.ticketLog(ticketId), this.encode(entry), { msgID: logMsgId(msgID) });
  }

  /**
   * Whether what was written since `sinceNanos` (a cause's JetStream time: every attempt at it came
   * later) may be older than the streams' duplicate window now, so a write repeated now would be
   * stored again.
   */
  dedupMayHaveLapsed(sinceNanos: number): boolean {
    return Date.now() - sinceNanos / 1e6 >= this.bus.options.duplicateWindowMs - CLOCK_SKEW_MS;
  }

  /**
   * What the ticket's log holds since `sinceNanos` (an earlier attempt's time), when JetStream may
   * no longer drop a repeat of it (dedupMayHaveLapsed); undefined when it still does, or no time.
   */
  async loggedIfDedupLapsed(ticketId: string, sinceNanos: number | undefined): Promise<LoggedIds | undefined> {
    return sinceNanos !== undefined && this.dedupMayHaveLapsed(sinceNanos) ? this.loggedSince(ticketId, sinceNanos) : undefined;
  }

  /** `append`, unless `logged` (what `loggedSince` found) has the entry already. */
  appendUnlessLogged(ticketId: string, entry: LogEntry, msgID: string, logged: LoggedIds | undefined): Promise<PubAck | undefined> {
    return logged?.has(logMsgId(msgID)) ? Promise.resolve(undefined) : this.append(ticketId, entry, msgID);
  }

  /**
   * The Nats-Msg-Ids of a ticket's log entries stored since `sinceNanos` (a cause's JetStream
   * timestamp, less a clock margin). For a step that may have run before (a redelivery after a
   * crash), where the stream's duplicate window may have passed since: a restart later than
   * `nats.duplicateWindow` would otherwise append what the crashed attempt had already written.
   * Rare paths only: it reads the ticket's recent log with a short-lived consumer.
   */
  async loggedSince(ticketId: string, sinceNanos: number): Promise<LoggedIds> {
    const since = new Date(Math.max(0, sinceNanos / 1e6 - CLOCK_MARGIN_MS)).toISOString();
    const consumer = await this.bus.js.consumers.get(Streams.log, {
      filter_subjects: Subjects.ticketLog(ticketId),
      deliver_policy: DeliverPolicy.StartTime,
      opt_start_time: since,
    });
    const found: LoggedIds = new Map();
    try {
      let pending = (await consumer.info(true)).num_pending;
      while (pending > 0) {
        const batch = await consumer.fetch({ max_messages: Math.min(pending, 500), expires: 2000 });
        let got = 0;
        for await (const m of batch) {
          got++;
          const id = m.headers?.get('Nats-Msg-Id');
          if (id) found.set(id, m.seq);
        }
        if (got === 0) throw new Error(`reading the log of ${ticketId} since ${since}: ${pending} entries did not arrive`);
        pending -= got;
      }
    } finally {
      await consumer.delete().catch(() => {});
    }
    return found;
  }

  emit(type: TicketEvent['type'], ticket: Ticket, causeId: string, entry?: LogEntry): Promise<PubAck> {
    const id = `${type}:${causeId}`;
    const json = JSON.stringify(eventHead(type, id, ticket));
    return this.bus.pipe.publish(Subjects.ticketEvent(type.slice('ticket.'.length)), entry === undefined ? json : this.withEntry(json, entry), { msgID: id });
  }

  /**
   * Throws TooLargeError (payload-limit.ts) when the largest event announcing one of `entries` on
   * `ticket` (with its Nats-Msg-Id-sized id; ticket.created, .message, .status and .rating share
   * the head) would be over `limit`: measured before the ticket update, so a write that could never
   * be sent is refused before anything is written. Each entry is encoded once, for this and for its
   * writes. The head repeats fields of the ticket record as they are (eventHead), so the record's
   * size, when the caller has it, bounds the head without encoding it; only a ticket near the limit
   * has its head encoded to be measured.
   */
  assertEventsFit(ticket: Ticket, entries: ReadonlyArray<{ causeId: string; entry: LogEntry }>, limit: number, recordBytes?: number): void {
    let largest = 0;
    for (const { causeId, entry } of entries) largest = Math.max(largest, Buffer.byteLength(causeId) + this.encode(entry).length);
    const besideHead = EVENT_ID_SLACK + ENTRY_KEY.length + largest;
    if (recordBytes !== undefined && recordBytes + HEAD_BEYOND_RECORD + besideHead <= limit) return;
    checkFits(ticket.id, 'ticket event', Buffer.byteLength(JSON.stringify(eventHead('ticket.message', '', ticket))) + besideHead, limit);
  }

  /**
   * Byte for byte the UTF-8 of JSON.stringify({ ...head, entry }) (`entry` is the last key), from
   * the head's JSON and the entry's bytes encoded once for the log: one buffer, written in place.
   */
  private withEntry(headJson: string, entry: LogEntry): Uint8Array {
    const body = this.encode(entry);
    const head = Buffer.byteLength(headJson) - 1; // without its closing brace
    const payload = Buffer.allocUnsafe(head + ENTRY_KEY.length + body.length + 1); // every byte is written below
    payload.write(headJson);
    payload.set(ENTRY_KEY, head);
    payload.set(body, head + ENTRY_KEY.length);
    payload[payload.length - 1] = CLOSE_BRACE;
    return payload;
  }

  private encode(entry: LogEntry): Uint8Array {
    let bytes = this.encoded.get(entry);
    if (bytes === undefined) {
      bytes = Buffer.from(JSON.stringify(entry)); // pooled, as in JsPipeline.request
      this.encoded.set(entry, bytes);
    }
    return bytes;
  }
}

/** The Nats-Msg-Id of the log entry `append(…, msgID)` writes. */
export const logMsgId = (msgID: string) => `log:${msgID}`;

/** The longest type and id prefix beside ticket.message's (`ticket.created:`, `ticket.status:reopen:`). */
const EVENT_ID_SLACK = 64;

/**
 * What an event head holds beyond the fields it shares with the ticket record (eventHead): its
 * version, type, its id, the time, and key names longer than the record's. Twice the ~120
 * bytes these take (test/router/journal.test.ts holds it to half).
 */
export const HEAD_BEYOND_RECORD = 256;

/** What every ticket event carries besides its entry: the ticket as the event leaves it. */
function eventHead(type: TicketEvent['type'], id: string, ticket: Ticket): Omit<TicketEvent, 'entry'> {
  return {
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
    failedReplies: ticket.failedReplies,
  };
}

const utf8 = new TextEncoder();
const CLOSE_BRACE = 0x7d;
const ENTRY_KEY = utf8.encode(',"entry":');
