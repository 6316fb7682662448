/**
 * Ticket state in KV (bucket omni_tickets, key = ticket id) with compare-and-set updates, and the
 * thread index (bucket omni_threads) that maps conversations, Message-IDs and platform ids to
 * tickets with create-only writes (its keys: thread-keys.ts). Why: docs/architecture.md, "Why identity does not rest on
 * compare-and-set".
 */
import type { KV } from '@nats-io/kv';
import type { PipelinedKv } from '../core/js-pipeline.js';
import { BoundedCache } from '../core/bounded-cache.js';
import { cloneJson } from '../core/clone-json.js';
import type { Bus } from '../core/bus.js';
import { isCasConflict, isNotFound } from '../core/bus.js';
import { CLOSED_STATUSES, Ticket, type LogEntry, type Ticket as TicketT } from '../core/schema.js';
import { Buckets, Subjects, Streams } from '../core/subjects.js';
import { readTicketLog, type ReadLogOptions } from './ticket-log.js';
import { TicketNumbers } from './ticket-numbers.js';
import { checkFits, writeLimit } from './payload-limit.js';
import { IndexKeys, type Floor } from './thread-keys.js';

/** What a compare-and-set write did: the ticket now, the one it replaced, and the deciding run's outcome. */
export interface Applied<R> {
  ticket: TicketT;
  before: TicketT;
  changed: boolean;
  outcome: R;
}

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

/** `TicketStore.apply`'s options. */
export interface ApplyOptions {
  /** Read the ticket from the server, not the cache. */
  fresh?: boolean;
  /**
   * Called after `decide`, before anything is written: with the ticket to be written and its
   * record's size in bytes, or as it stands (undefined: nothing to write). It may throw to refuse
   * the update (a write that depends on it would not fit: payload-limit.ts).
   */
  beforeWrite?: (t: TicketT, recordBytes: number | undefined) => void;
}

export class TicketStore {
  private readonly ticketCache = new BoundedCache<Versioned<TicketT> & { cachedAt: number }>(50_000);
  private readonly indexCache = new BoundedCache<Versioned<string>>(200_000);
  /** A conversation's newest epoch seen, and the ownership generation that saw it (forgetEpochs). */
  private readonly epochCache = new BoundedCache<{ epoch: number; generation: number }>(200_000);
  private epochGeneration = 0;
  private readonly tickets: PipelinedKv;
  private readonly threads: PipelinedKv;
  private readonly numbers: TicketNumbers;
  private readonly ticketBucket: KV;

  constructor(
    private readonly bus: Bus,
    readonly prefix: string,
    firstNumber: number,
    /**
     * The highest ticket number known outside NATS (the SQL read model), asked only when the base
     * is written: a NATS store that was lost or replaced starts its counter again, and numbering
     * from firstNumber then gave old numbers to new customers (see ticket-numbers.ts numberBase).
     */
    numberFloor?: () => Promise<number>,
    onFloor?: (floor: number, base: number) => void,
  ) {
    this.tickets = bus.hotKv.tickets;
    this.threads = bus.hotKv.threads;
    this.ticketBucket = bus.kv.tickets;
    this.numbers = new TicketNumbers(bus, bus.hotKv.meta, firstNumber, numberFloor, onFloor);
  }

  /**
   * tickets.evictClosedAfter (0: never). A cached ticket that may have been evicted since it was
   * cached is read again: one closed for half that time, or cached that long ago (an entry that
   * still says open was cached before the close, so before any eviction could start its clock).
   */
  evictClosedAfterMs = 0;

  /** The largest record or event the router may write (payload-limit.ts). */
  writeLimit(): number {
    return writeLimit(this.bus);
  }

  idFor(number: number): string {
    return `${this.prefix}${number}`;
  }

  /** Next ticket number (ticket-numbers.ts): unique on every server; gaps are harmless. */
  allocateNumber(): Promise<number> {
    return this.numbers.allocate();
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
      if (cached && !this.mayBeEvicted(cached)) return { value: cached.value, revision: cached.revision };
    }
    const entry = await this.tickets.get(id);
    if (!entry || entry.operation !== 'PUT') {
      this.ticketCache.delete(id);
      return null;
    }
    // Our own writes, validated when made: parsing JSON is enough here.
    const found = { value: entry.json<TicketT>(), revision: entry.revision };
    this.remember(id, found);
    return found;
  }

  private remember(id: string, v: Versioned<TicketT>): void {
    this.ticketCache.set(id, { ...v, cachedAt: Date.now() });
  }

  private mayBeEvicted(c: Versioned<TicketT> & { cachedAt: number }): boolean {
    if (this.evictClosedAfterMs <= 0) return false;
    const half = this.evictClosedAfterMs / 2;
    const now = Date.now();
    if (now - c.cachedAt > half) return true;
    const t = c.value;
    return CLOSED_STATUSES.has(t.status) && now - Date.parse(t.closedAt ?? t.updatedAt) > half;
  }

  /**
   * Whether a ticket with no record once existed: its log is kept when it is evicted (the router
   * writes the record before the first log entry, and erasure removes both).
   */
  async evicted(id: string): Promise<boolean> {
    if (!/^[A-Za-z0-9_-]+$/.test(id)) return false;
    if (await this.get(id, { fresh: true })) return false;
    try {
      return !!(await this.bus.jsm.streams.getMessage(Streams.log, { last_by_subj: Subjects.ticketLog(id) }));
    } catch (err) {
      if (isNotFound(err) || /no message found/i.test(String(err))) return false;
      throw err;
    }
  }

  /**
   * Whether a ticket's record was written once and is gone: erased (its purge marker stays) or
   * evicted (its log stays). A record never written (a crash between claim and create) is
   * neither, and is the claimer's to create; a removed one must never be created again under its
   * number (a helpdesk that still holds it would take another customer's messages into it).
   */
  async removed(id: string): Promise<boolean> {
    if (!/^[A-Za-z0-9_-]+$/.test(id)) return false;
    const entry = await this.tickets.get(id);
    if (entry) return entry.operation !== 'PUT';
    return this.evicted(id);
  }

  /** Creates the record; returns false when it already exists (a redelivery finishing its work). */
  async create(ticket: TicketT): Promise<boolean> {
    const json = JSON.stringify(Ticket.parse(ticket));
    checkFits(ticket.id, 'ticket record', Buffer.byteLength(json), this.writeLimit());
    try {
      const revision = await this.tickets.create(ticket.id, json);
      this.remember(ticket.id, { value: ticket, revision });
      return true;
    } catch (err) {
      if (isCasConflict(err)) return false;
      throw err;
    }
  }

  /**
   * Read-modify-write with compare-and-set, retried on conflict with a fresh read. `decide` is a
   * pure function of the ticket it is given: it returns the new value (or null to leave it) and
   * what it decided, and may run several times; only the run whose write landed counts, and its
   * `outcome` is returned. It may throw StaleTicketError to make the caller decide again on
   * fresh data. Callers act on the returned outcome, never on variables set inside `decide`.
   * `fresh`: decide on the stored record from the start, for a decision to leave the ticket alone
   * that must not rest on this process's cached copy (no write checks it).
   */
  async apply<R>(id: string, decide: (t: TicketT) => { next: TicketT | null; outcome: R }, opts: ApplyOptions = {}): Promise<Applied<R> | null> {
    let fresh = opts.fresh ?? false;
    for (;;) {
      const current = await this.get(id, { fresh });
      if (!current) return null;
      const { next, outcome } = decide(cloneJson(current.value));
      if (!next) {
        opts.beforeWrite?.(current.value, undefined);
        return { ticket: current.value, before: current.value, changed: false, outcome };
      }
      const json = JSON.stringify(next);
      const bytes = Buffer.byteLength(json);
      // Over max_payload the write can never land: refused before anything is written (payload-limit.ts).
      checkFits(id, 'ticket record', bytes, this.writeLimit());
      opts.beforeWrite?.(next, bytes);
      try {
        const revision = await this.tickets.update(id, json, current.revision);
        this.remember(id, { value: next, revision });
        return { ticket: next, before: current.value, changed: true, outcome };
      } catch (err) {
        if (!isCasConflict(err)) throw err;
        this.ticketCache.delete(id);
        fresh = true;
      }
    }
  }

  /** `apply` for changes with nothing to report: returns the ticket as it now is (null: no such ticket). */
  async mutate(id: string, change: (t: TicketT) => TicketT | null): Promise<TicketT | null> {
    const r = await this.apply(id, (t) => ({ next: change(t), outcome: undefined }));
    return r ? r.ticket : null;
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

  /**
   * Claims an index key for a ticket, create-only: the one write that is exclusive on every
   * server (see cas-probe.ts). When someone else claimed it first, returns their ticket id.
   */
  async claim(indexKey: string, ticketId: string, o: IndexWrite = {}): Promise<{ won: boolean; ticketId: string }> {
    try {
      const revision = await this.threads.create(indexKey, ticketId);
      if (o.cache !== false) this.indexCache.set(indexKey, { value: ticketId, revision });
      return { won: true, ticketId };
    } catch (err) {
      if (!isCasConflict(err)) throw err;
      const current = await this.lookup(indexKey, { fresh: true });
      return { won: false, ticketId: current?.value ?? '' };
    }
  }

  /**
   * The newest epoch of a conversation this process has seen (0 when none). Epochs only grow,
   * so a stale value is a lower bound: threading walks forward from it.
   */
  knownEpoch(conversationKey: string): number {
    return this.epochCache.get(conversationKey)?.epoch ?? 0;
  }

  /** The conversation's newest epoch is `epoch` (or a higher one seen), as of now. */
  noteEpoch(conversationKey: string, epoch: number): void {
    const known = this.epochCache.get(conversationKey);
    this.epochCache.set(conversationKey, { epoch: Math.max(epoch, known?.epoch ?? 0), generation: this.epochGeneration });
  }

  /** Whether this process has seen the conversation's newest epoch since it last took a partition over (forgetEpochs). */
  epochKnown(conversationKey: string): boolean {
    return this.epochCache.get(conversationKey)?.generation === this.epochGeneration;
  }

  /**
   * Called when this replica takes a partition over. While another replica owned it, that one may
   * have opened newer tickets for its conversations; a stale epoch sent a message to an older
   * ticket an agent had reopened, beside the newer one. What is known stays a lower bound (epochs
   * only grow), so each conversation looks one epoch ahead of it once, not from the start.
   */
  forgetEpochs(): void {
    this.epochGeneration++;
  }

  /** Records an index entry if absent (Message-IDs, platform ids): first writer wins, later ones are no-ops. */
  async index(indexKey: string, ticketId: string, o: IndexWrite = {}): Promise<void> {
    await this.claim(indexKey, ticketId, o);
  }

  /** The conversation's floor (null: nothing of it was evicted), read fresh: only rare paths ask. */
  async floor(conversationKey: string): Promise<Floor | null> {
    const e = await this.threads.get(IndexKeys.conversationFloor(conversationKey));
    if (!e || e.operation !== 'PUT') return null;
    return e.json<Floor>();
  }

  /**
   * Raises the floor to `epoch` (never lowers it): compare-and-set, so two sweepers racing leave
   * the higher. Returns the floor now in place.
   */
  async raiseFloor(conversationKey: string, epoch: number, ticket: string): Promise<Floor> {
    const key = IndexKeys.conversationFloor(conversationKey);
    const next: Floor = { epoch, ticket, at: new Date().toISOString() };
    for (;;) {
      const e = await this.threads.get(key);
      const current = e && e.operation === 'PUT' ? e.json<Floor>() : null;
      if (current && current.epoch >= epoch) return current;
      try {
        if (e) await this.threads.update(key, JSON.stringify(next), e.revision);
        else await this.threads.create(key, JSON.stringify(next));
        return next;
      } catch (err) {
        if (!isCasConflict(err)) throw err;
      }
    }
  }

  /**
   * Removes an index key that points at `ticketId`, marker and all (a stream purge of its subject,
   * so the bucket does not keep a delete marker per key). Only up to the revision read: a key
   * `rebind` moved on to another ticket meanwhile survives (as in an erasure's purge, erasure.ts).
   * Returns whether it removed the key's value naming the ticket.
   */
  async dropIndex(indexKey: string, ticketId: string): Promise<boolean> {
    const e = await this.threads.get(indexKey);
    this.indexCache.delete(indexKey);
    if (!e || e.operation !== 'PUT' || e.string() !== ticketId) return false;
    await this.bus.jsm.streams.purge(`KV_${Buckets.threads}`, { filter: `$KV.${Buckets.threads}.${indexKey}`, seq: e.revision + 1 });
    return true;
  }

  /**
   * Removes the ticket record if it is still at `revision` (a purge of its subject up to that
   * sequence: a newer write survives it). Returns false when the ticket changed meanwhile.
   */
  async dropTicket(id: string, revision: number): Promise<boolean> {
    await this.bus.jsm.streams.purge(`KV_${Buckets.tickets}`, { filter: `$KV.${Buckets.tickets}.${id}`, seq: revision + 1 });
    this.ticketCache.delete(id);
    const after = await this.tickets.get(id);
    return !after || after.operation !== 'PUT';
  }

  /**
   * Points an index key at another ticket if it still holds `expected` (compare-and-set): a binding
   * left naming a removed ticket (an erasure between purging the record and its bindings, or one
   * that died there). False when the key changed or went meanwhile.
   */
  async rebind(indexKey: string, expected: Versioned<string>, ticketId: string): Promise<boolean> {
    this.indexCache.delete(indexKey);
    try {
      const revision = await this.threads.update(indexKey, ticketId, expected.revision);
      this.indexCache.set(indexKey, { value: ticketId, revision });
      return true;
    } catch (err) {
      if (isCasConflict(err)) return false;
      throw err;
    }
  }

  /** Forget cached state for a conversation and ticket after a lost race. */
  invalidate(indexKey?: string, ticketId?: string): void {
    if (indexKey) this.indexCache.delete(indexKey);
    if (ticketId) this.ticketCache.delete(ticketId);
  }

  /** The ticket's log in order, unreadable entries left out (ticket-log.ts). */
  readLog(ticketId: string, opts: ReadLogOptions = {}): Promise<Array<{ seq: number; entry: LogEntry }>> {
    return readTicketLog(this.bus, ticketId, opts);
  }
}

export interface IndexWrite {
  /**
   * false: do not keep it in this process's index cache. For entries written once per message
   * and read only on rare paths (processed markers: a suspect, an edit, a bounce), which would
   * otherwise fill the cache (~175 B each, 35 MB at its 200,000 entries) and push out the
   * conversation bindings every message reads. A read of one caches it as any lookup does.
   */
  cache?: boolean;
}
