/**
 * Eviction: tickets closed longer than `tickets.evictClosedAfter` leave the live store (the
 * record in omni_tickets and what points at it in omni_threads); their log (OMNI_LOG) and the SQL
 * read model keep them, so lists, search, reports and GET /v1/tickets/{id}/log still find them.
 * Without it KV grows by every ticket ever opened.
 *
 * Per ticket, in an order where every intermediate state routes correctly (a crash, a kill -9 or
 * a failed request between two steps leaves nothing the threader misreads, and the next pass
 * finishes the job, each step being idempotent):
 *   1. a chat ticket at epoch k raises its conversation's floor to k+1 (threading.ts reads a
 *      missing binding or record below the floor as evicted, never as "claimed mid-creation",
 *      and binds the next ticket at the floor: a new number, never the evicted one);
 *   2. the index keys naming the ticket (its conversation binding, platform-message and
 *      Message-ID entries, edit markers, our own Message-IDs) are purged;
 *   3. the record is purged if it is still the revision that was judged (a reopen in between
 *      keeps it).
 * One replica sweeps at a time (lease `eviction`), every `retention.sweepInterval`.
 */
import type { Logger } from 'pino';
import type { Bus } from '../core/bus.js';
import { acquireLease } from '../core/lease.js';
import { scanStream } from '../core/stream-scan.js';
import { errorMessage } from '../core/errors.js';
import { CLOSED_STATUSES, type Ticket } from '../core/schema.js';
import { Buckets } from '../core/subjects.js';
import { sleep } from '../core/sleep.js';
import type { Supervisor } from '../core/supervisor.js';
import { IndexKeys } from './thread-keys.js';
import type { TicketStore } from './tickets.js';

/** Where the read-model pass stopped: tickets are taken in (closed time, id) order. */
export interface EvictionCursor {
  at: string;
  id: string;
}

export interface EvictionCandidate {
  id: string;
  closedAt: string;
}

export type EvictionStep = 'floor' | 'indexes' | 'record';

export interface EvictionOptions {
  evictClosedAfterMs: number;
  sweepIntervalMs: number;
  leaseTtlMs: number;
  holder: string;
  /** Closed before `cutoff`, after `cursor`, oldest first (the SQL read model); default: scan the ticket bucket. */
  candidates?: (cursor: EvictionCursor | null, cutoff: Date, limit: number) => Promise<EvictionCandidate[]>;
  /** Whether the read model holds the whole log (a pass is skipped while it catches up). */
  caughtUp?: () => Promise<boolean>;
  /** Tests: called before each step, may throw to stop the pass there (as a crash would). */
  beforeStep?: (step: EvictionStep, ticketId: string) => void | Promise<void>;
}

export type EvictionOutcome = 'evicted' | 'gone' | 'not-closed' | 'too-young' | 'changed';

export interface EvictionResult {
  evicted: number;
  indexKeys: number;
  skipped: number;
}

const CURSOR_KEY = 'eviction-cursor';
const BATCH = 500;

export class TicketEvictor {
  constructor(
    private readonly bus: Bus,
    private readonly store: TicketStore,
    private readonly o: EvictionOptions,
    private readonly log: Logger,
  ) {}

  start(supervisor: Supervisor): void {
    if (this.o.evictClosedAfterMs <= 0) return;
    supervisor.run('tickets.evictor', async ({ signal, progress }) => {
      const lease = await acquireLease(this.bus.kv.leases, 'eviction', { ttlMs: this.o.leaseTtlMs, holder: this.o.holder, signal, log: this.log });
      try {
        while (!signal.aborted && lease.valid()) {
          await this.sweep(Date.now(), () => signal.aborted || !lease.valid());
          progress();
          await sleep(this.o.sweepIntervalMs, signal);
        }
      } finally {
        await lease.release();
      }
      if (!signal.aborted) throw new Error('lease eviction lost; waiting to take it again');
    });
  }

  /** One pass: every ticket closed before now - evictClosedAfter, in batches, until none is left or `stop`. */
  async sweep(now: number, stop: () => boolean = () => false): Promise<EvictionResult> {
    const result: EvictionResult = { evicted: 0, indexKeys: 0, skipped: 0 };
    if (this.o.caughtUp && !(await this.o.caughtUp())) {
      this.log.info('eviction pass skipped: the read model is catching up with the log');
      return result;
    }
    const cutoff = new Date(now - this.o.evictClosedAfterMs);
    let cursor = await this.readCursor();
    for (;;) {
      const batch = this.o.candidates ? await this.o.candidates(cursor, cutoff, BATCH) : await this.fromBucket(cutoff, BATCH);
      let blocked = false;
      for (const c of batch) {
        if (stop()) break;
        const outcome = await this.evict(c.id, cutoff, result);
        // KV's close time is later than the read model's (a close it has not applied yet): stop
        // here and look again next pass, so the cursor never passes a ticket still due.
        if (outcome === 'too-young') {
          blocked = true;
          break;
        }
        if (outcome === 'evicted') result.evicted++;
        else result.skipped++;
        if (this.o.candidates) cursor = { at: c.closedAt, id: c.id };
      }
      if (this.o.candidates && cursor) await this.bus.kv.meta.put(CURSOR_KEY, JSON.stringify(cursor));
      // Without a read model one batch per pass: the scan cannot resume where it stopped.
      if (blocked || stop() || batch.length < BATCH || !this.o.candidates) break;
    }
    if (result.evicted) this.log.info({ ...result, closedBefore: cutoff.toISOString() }, 'eviction: closed tickets left the live store (their log and SQL rows stay)');
    return result;
  }

  /** Evicts one ticket if it is still closed since before `cutoff`; see the file comment for the order. */
  async evict(id: string, cutoff: Date, result?: EvictionResult): Promise<EvictionOutcome> {
    const found = await this.store.get(id, { fresh: true });
    if (!found) return 'gone';
    const t = found.value;
    if (!CLOSED_STATUSES.has(t.status)) return 'not-closed';
    if (Date.parse(t.closedAt ?? t.updatedAt) >= cutoff.getTime()) return 'too-young';
    const keys = await this.indexKeysOf(t);
    if (t.conversation.kind !== 'email') {
      await this.o.beforeStep?.('floor', id);
      const conversation = IndexKeys.conversation(t.channel, t.account, t.conversation.id, t.conversation.threadId);
      const epoch = await this.epochOf(conversation, id);
      // Not found: a pass before this one raised the floor and removed the binding already.
      if (epoch !== null) {
        await this.store.raiseFloor(conversation, epoch + 1, id);
        keys.add(IndexKeys.conversationEpoch(conversation, epoch));
      }
    }
    await this.o.beforeStep?.('indexes', id);
    let dropped = 0;
    for (const key of keys) if (await this.store.dropIndex(key, id)) dropped++;
    if (result) result.indexKeys += dropped;
    await this.o.beforeStep?.('record', id);
    if (!(await this.store.dropTicket(id, found.revision))) {
      this.log.warn({ ticketId: id }, 'eviction: the ticket changed while it was being evicted; it stays (its old index keys are gone)');
      return 'changed';
    }
    this.log.debug({ ticketId: id, indexKeys: dropped, closedAt: t.closedAt }, 'ticket evicted from the live store');
    return 'evicted';
  }

  /**
   * The epoch whose binding names the ticket: from the floor upwards (evictions go roughly in
   * epoch order), then below it (a ticket closed after a newer one of the same conversation).
   */
  private async epochOf(conversation: string, ticketId: string): Promise<number | null> {
    const floor = (await this.store.floor(conversation))?.epoch ?? 0;
    for (let e = floor; ; e++) {
      const hit = await this.store.lookup(IndexKeys.conversationEpoch(conversation, e), { fresh: true });
      if (!hit) break;
      if (hit.value === ticketId) return e;
    }
    for (let e = 0; e < floor; e++) {
      const hit = await this.store.lookup(IndexKeys.conversationEpoch(conversation, e), { fresh: true });
      if (hit?.value === ticketId) return e;
    }
    return null;
  }

  /** Index keys the ticket's log implies (dropIndex removes only those that still name it). */
  private async indexKeysOf(t: Ticket): Promise<Set<string>> {
    const keys = new Set<string>();
    const email = t.conversation.kind === 'email';
    // readLog asks for exactly what is pending: a generic scan would wait out its fetch expiry per ticket.
    const unreadable = (seq: number, reason: string) => this.log.warn({ ticketId: t.id, seq, reason }, 'ticket-log entry not understood; it implies no index key');
    for (const { entry: e } of await this.store.readLog(t.id, { onUnreadable: unreadable })) {
      if (e.kind === 'inbound') {
        keys.add(IndexKeys.platformMessage(e.event.channel, e.event.account, e.event.platform.messageId));
        if (e.event.email) {
          keys.add(IndexKeys.emailMessageId(e.event.email.messageId));
          keys.add(IndexKeys.emailMessageIdOfSender(e.event.email.messageId, e.event.email.from));
        }
      } else if (e.kind === 'edited' || e.kind === 'deleted') {
        keys.add(IndexKeys.changeEvent(e.event.id));
      } else if (e.kind === 'delivery' && e.status.platformMessageId) {
        const s = e.status;
        keys.add(IndexKeys.platformMessage(s.channel, s.account, s.platformMessageId!));
        if (email) {
          keys.add(IndexKeys.emailMessageId(s.platformMessageId!));
          keys.add(IndexKeys.ownMessageId(s.platformMessageId!));
        }
      }
    }
    return keys;
  }

  private async readCursor(): Promise<EvictionCursor | null> {
    if (!this.o.candidates) return null;
    const e = await this.bus.kv.meta.get(CURSOR_KEY);
    return e && e.operation === 'PUT' ? e.json<EvictionCursor>() : null;
  }

  /** Without a read model: every ticket record is read (what the read model exists to avoid). */
  private async fromBucket(cutoff: Date, limit: number): Promise<EvictionCandidate[]> {
    const out: EvictionCandidate[] = [];
    const prefix = `$KV.${Buckets.tickets}.`;
    await scanStream(this.bus, `KV_${Buckets.tickets}`, { filter: `${prefix}>`, lastPerSubject: true }, (m) => {
      if (m.data.length === 0 || out.length >= limit) return;
      try {
        const t = JSON.parse(m.string()) as Ticket;
        const closedAt = t.closedAt ?? t.updatedAt;
        if (CLOSED_STATUSES.has(t.status) && Date.parse(closedAt) < cutoff.getTime()) out.push({ id: t.id, closedAt });
      } catch (err) {
        this.log.warn({ err: errorMessage(err), subject: m.subject }, 'eviction: unreadable ticket record skipped');
      }
    });
    return out;
  }
}
