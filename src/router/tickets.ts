/**
 * Ticket state in KV (bucket omni_tickets, key = ticket id) with compare-and-set updates, ticket
 * numbers from a CAS counter (monotonic and unique across router processes), and the thread index
 * (bucket omni_threads) that maps conversations, Message-IDs and platform ids to tickets.
 */
import type { KV } from '@nats-io/kv';
import type { Bus } from '../core/bus.js';
import { isCasConflict } from '../core/bus.js';
import { Ticket, type Ticket as TicketT } from '../core/schema.js';
import { Subjects, Streams, hashKey } from '../core/subjects.js';
import { DeliverPolicy } from '@nats-io/jetstream';
import { LogEntry, type LogEntry as LogEntryT } from '../core/schema.js';

const SEQ_KEY = 'ticket-seq';

export interface Versioned<T> {
  value: T;
  revision: number;
}

export class TicketStore {
  private readonly tickets: KV;
  private readonly threads: KV;
  private readonly meta: KV;

  constructor(
    private readonly bus: Bus,
    readonly prefix: string,
    private readonly firstNumber: number,
  ) {
    this.tickets = bus.kv.tickets;
    this.threads = bus.kv.threads;
    this.meta = bus.kv.meta;
  }

  idFor(number: number): string {
    return `${this.prefix}${number}`;
  }

  /** Next ticket number: a CAS loop on one counter key, so concurrent routers never share a number. */
  async allocateNumber(): Promise<number> {
    for (;;) {
      const entry = await this.meta.get(SEQ_KEY);
      try {
        if (!entry || entry.operation !== 'PUT') {
          await this.meta.create(SEQ_KEY, String(this.firstNumber));
          return this.firstNumber;
        }
        const next = Number(entry.string()) + 1;
        await this.meta.update(SEQ_KEY, String(next), entry.revision);
        return next;
      } catch (err) {
        if (!isCasConflict(err)) throw err;
      }
    }
  }

  async get(id: string): Promise<Versioned<TicketT> | null> {
    if (!/^[A-Za-z0-9_-]+$/.test(id)) return null;
    const entry = await this.tickets.get(id);
    if (!entry || entry.operation !== 'PUT') return null;
    return { value: Ticket.parse(entry.json()), revision: entry.revision };
  }

  /** Creates the record; returns false when it already exists (a redelivery finishing its work). */
  async create(ticket: TicketT): Promise<boolean> {
    try {
      await this.tickets.create(ticket.id, JSON.stringify(ticket));
      return true;
    } catch (err) {
      if (isCasConflict(err)) return false;
      throw err;
    }
  }

  /**
   * Read-modify-write with compare-and-set, retried on conflict. `change` returns the new value,
   * or null to leave the ticket as it is.
   */
  async mutate(id: string, change: (t: TicketT) => TicketT | null): Promise<TicketT | null> {
    for (;;) {
      const current = await this.get(id);
      if (!current) return null;
      const next = change(structuredClone(current.value));
      if (!next) return current.value;
      try {
        await this.tickets.update(id, JSON.stringify(next), current.revision);
        return next;
      } catch (err) {
        if (!isCasConflict(err)) throw err;
      }
    }
  }

  async list(): Promise<TicketT[]> {
    const out: TicketT[] = [];
    for await (const key of await this.tickets.keys()) {
      const t = await this.get(key);
      if (t) out.push(t.value);
    }
    return out;
  }

  // ---- thread index ----

  async lookup(indexKey: string): Promise<Versioned<string> | null> {
    const e = await this.threads.get(indexKey);
    return e && e.operation === 'PUT' ? { value: e.string(), revision: e.revision } : null;
  }

  /** Claims an index key for a ticket; when someone else claimed it first, returns their ticket id. */
  async claim(indexKey: string, ticketId: string, replaceRevision?: number): Promise<{ won: boolean; ticketId: string }> {
    try {
      if (replaceRevision) await this.threads.update(indexKey, ticketId, replaceRevision);
      else await this.threads.create(indexKey, ticketId);
      return { won: true, ticketId };
    } catch (err) {
      if (!isCasConflict(err)) throw err;
      const current = await this.lookup(indexKey);
      return { won: false, ticketId: current?.value ?? '' };
    }
  }

  /** Records an index entry if absent (Message-IDs, platform ids): first writer wins, later ones are no-ops. */
  async index(indexKey: string, ticketId: string): Promise<void> {
    await this.claim(indexKey, ticketId);
  }

  /** Reads a ticket's append-only log in order. */
  async readLog(ticketId: string, opts: { fromSeq?: number; limit?: number } = {}): Promise<Array<{ seq: number; entry: LogEntryT }>> {
    const subject = Subjects.ticketLog(ticketId);
    const limit = opts.limit ?? 10_000;
    const consumer = await this.bus.js.consumers.get(Streams.log, {
      filter_subjects: subject, // a string, not an array: 2.9 has no multi-filter consumers
      ...(opts.fromSeq ? { deliver_policy: DeliverPolicy.StartSequence, opt_start_seq: opts.fromSeq } : {}),
    });
    const out: Array<{ seq: number; entry: LogEntryT }> = [];
    try {
      const info = await consumer.info(true);
      let pending = info.num_pending;
      while (pending > 0 && out.length < limit) {
        const batch = await consumer.fetch({ max_messages: Math.min(pending, limit - out.length, 500), expires: 2000 });
        let got = 0;
        for await (const m of batch) {
          got++;
          out.push({ seq: m.seq, entry: LogEntry.parse(m.json()) });
        }
        if (got === 0) break;
        pending -= got;
      }
    } finally {
      await consumer.delete().catch(() => {});
    }
    return out;
  }
}

/** Index keys in omni_threads. Values are hashed: chat ids and Message-IDs contain any characters. */
export const IndexKeys = {
  conversation: (channel: string, account: string, conversationId: string, threadId?: string) =>
    `conv.${hashKey(`${channel}\u0000${account}\u0000${conversationId}\u0000${threadId ?? ''}`)}`,
  emailMessageId: (messageId: string) => `mid.${hashKey(normalizeMessageId(messageId))}`,
  platformMessage: (channel: string, account: string, platformMessageId: string) =>
    `pm.${hashKey(`${channel}\u0000${account}\u0000${platformMessageId}`)}`,
} as const;

export function normalizeMessageId(id: string): string {
  return id.trim().replace(/^<|>$/g, '').toLowerCase();
}
