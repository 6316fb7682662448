/**
 * Ticket state in KV (bucket omni_tickets, key = ticket id) with compare-and-set updates, ticket
 * numbers from a CAS counter (monotonic and unique across router processes), and the thread index
 * (bucket omni_threads) that maps conversations, Message-IDs and platform ids to tickets.
 */
import type { KV } from '@nats-io/kv';
import type { PipelinedKv } from '../core/js-pipeline.js';
import { BoundedCache } from '../core/bounded-cache.js';
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

/** Thrown from a mutate() callback when the decision it was based on came from stale cache. */
export class StaleTicketError extends Error {
  constructor(readonly ticketId: string) {
    super(`ticket ${ticketId} changed since it was read`);
  }
}

export class TicketStore {
  private readonly ticketCache = new BoundedCache<Versioned<TicketT>>(50_000);
  private readonly indexCache = new BoundedCache<Versioned<string>>(200_000);
  private readonly tickets: PipelinedKv;
  private readonly threads: PipelinedKv;
  private readonly meta: PipelinedKv;
  private readonly ticketBucket: KV;

  constructor(
    private readonly bus: Bus,
    readonly prefix: string,
    private readonly firstNumber: number,
  ) {
    this.tickets = bus.hotKv.tickets;
    this.threads = bus.hotKv.threads;
    this.meta = bus.hotKv.meta;
    this.ticketBucket = bus.kv.tickets;
  }

  idFor(number: number): string {
    return `${this.prefix}${number}`;
  }

  private waiting: Array<{ resolve: (n: number) => void; reject: (e: unknown) => void }> = [];
  private reserving = false;

  /**
   * Next ticket number. One CAS counter in KV makes numbers unique and monotonic across router
   * processes; within a process, concurrent requests are batched into one reservation of k
   * numbers (one compare-and-set instead of k contending ones), handed out in request order.
   */
  allocateNumber(): Promise<number> {
    return new Promise((resolve, reject) => {
      this.waiting.push({ resolve, reject });
      if (!this.reserving) void this.reserveForWaiting(); // eslint-disable-line @typescript-eslint/no-floating-promises -- it never rejects: a failed reservation rejects the waiting callers instead
    });
  }

  private async reserveForWaiting(): Promise<void> {
    this.reserving = true;
    while (this.waiting.length > 0) {
      const batch = this.waiting.splice(0);
      try {
        const first = await this.reserve(batch.length);
        batch.forEach((w, i) => w.resolve(first + i));
      } catch (err) {
        batch.forEach((w) => w.reject(err));
      }
    }
    this.reserving = false;
  }

  /** The counter as this process last wrote or read it: the next reservation tries it first. */
  private counter?: { last: number; revision: number };

  /** Reserves `count` consecutive numbers; returns the first. The counter holds the last one used. */
  private async reserve(count: number): Promise<number> {
    for (;;) {
      let known = this.counter;
      this.counter = undefined;
      if (!known) {
        const entry = await this.meta.get(SEQ_KEY);
        if (entry && entry.operation === 'PUT') known = { last: Number(entry.string()), revision: entry.revision };
      }
      try {
        if (!known) {
          const revision = await this.meta.create(SEQ_KEY, String(this.firstNumber + count - 1));
          this.counter = { last: this.firstNumber + count - 1, revision };
          return this.firstNumber;
        }
        // Compare-and-set on the revision we know: another router moving the counter makes it fail.
        const revision = await this.meta.update(SEQ_KEY, String(known.last + count), known.revision);
        this.counter = { last: known.last + count, revision };
        return known.last + 1;
      } catch (err) {
        if (!isCasConflict(err)) throw err;
      }
    }
  }

  /**
   * A ticket, from this process's cache unless `fresh`. The cache is safe across processes because
   * every write is a compare-and-set on the cached revision: a stale entry makes the write fail,
   * and the caller re-reads (see StaleTicketError).
   */
  async get(id: string, opts: { fresh?: boolean } = {}): Promise<Versioned<TicketT> | null> {
    if (!/^[A-Za-z0-9_-]+$/.test(id)) return null;
    if (!opts.fresh) {
      const cached = this.ticketCache.get(id);
      if (cached) return cached;
    }
    const entry = await this.tickets.get(id);
    if (!entry || entry.operation !== 'PUT') {
      this.ticketCache.delete(id);
      return null;
    }
    // Our own writes, validated when made: parsing JSON is enough here.
    const found = { value: entry.json<TicketT>(), revision: entry.revision };
    this.ticketCache.set(id, found);
    return found;
  }

  /** Creates the record; returns false when it already exists (a redelivery finishing its work). */
  async create(ticket: TicketT): Promise<boolean> {
    try {
      const revision = await this.tickets.create(ticket.id, JSON.stringify(Ticket.parse(ticket)));
      this.ticketCache.set(ticket.id, { value: ticket, revision });
      return true;
    } catch (err) {
      if (isCasConflict(err)) return false;
      throw err;
    }
  }

  /**
   * Read-modify-write with compare-and-set, retried on conflict with a fresh read. `change`
   * returns the new value, or null to leave the ticket as it is; it may throw StaleTicketError
   * to make the caller decide again on fresh data.
   */
  async mutate(id: string, change: (t: TicketT) => TicketT | null): Promise<TicketT | null> {
    let fresh = false;
    for (;;) {
      const current = await this.get(id, { fresh });
      if (!current) return null;
      const next = change(structuredClone(current.value));
      if (!next) return current.value;
      try {
        const revision = await this.tickets.update(id, JSON.stringify(next), current.revision);
        this.ticketCache.set(id, { value: next, revision });
        return next;
      } catch (err) {
        if (!isCasConflict(err)) throw err;
        this.ticketCache.delete(id);
        fresh = true;
      }
    }
  }

  async list(): Promise<TicketT[]> {
    const out: TicketT[] = [];
    for await (const key of await this.ticketBucket.keys()) {
      const t = await this.get(key, { fresh: true });
      if (t) out.push(t.value);
    }
    return out;
  }

  // ---- thread index ----

  async lookup(indexKey: string, opts: { fresh?: boolean } = {}): Promise<Versioned<string> | null> {
    if (!opts.fresh) {
      const cached = this.indexCache.get(indexKey);
      if (cached) return cached;
    }
    const e = await this.threads.get(indexKey);
    if (!e || e.operation !== 'PUT') {
      this.indexCache.delete(indexKey);
      return null;
    }
    const found = { value: e.string(), revision: e.revision };
    this.indexCache.set(indexKey, found);
    return found;
  }

  /** Claims an index key for a ticket; when someone else claimed it first, returns their ticket id. */
  async claim(indexKey: string, ticketId: string, replaceRevision?: number): Promise<{ won: boolean; ticketId: string }> {
    try {
      const revision = replaceRevision
        ? await this.threads.update(indexKey, ticketId, replaceRevision)
        : await this.threads.create(indexKey, ticketId);
      this.indexCache.set(indexKey, { value: ticketId, revision });
      return { won: true, ticketId };
    } catch (err) {
      if (!isCasConflict(err)) throw err;
      const current = await this.lookup(indexKey, { fresh: true });
      return { won: false, ticketId: current?.value ?? '' };
    }
  }

  /** Records an index entry if absent (Message-IDs, platform ids): first writer wins, later ones are no-ops. */
  async index(indexKey: string, ticketId: string): Promise<void> {
    await this.claim(indexKey, ticketId);
  }

  /** Forget cached state for a conversation and ticket after a lost race. */
  invalidate(indexKey?: string, ticketId?: string): void {
    if (indexKey) this.indexCache.delete(indexKey);
    if (ticketId) this.ticketCache.delete(ticketId);
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
