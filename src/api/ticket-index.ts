/**
 * An in-memory view of every ticket, fed by a watch on the ticket KV bucket: the list endpoint
 * filters and pages it without reading the bucket key by key, and the omnigate_tickets{status}
 * gauge is maintained from the same changes (exact at every scrape, no periodic scan).
 *
 * Read-your-writes: before answering, `caughtUp()` asks the bucket for its last revision and
 * waits until the watch has applied it, so a ticket changed by the previous request is listed
 * with its new status.
 */
import type { KV, KvWatchEntry } from '@nats-io/kv';
import type { Logger } from '../core/logger.js';
import { errorMessage } from '../core/errors.js';
import { metrics } from '../core/metrics.js';
import { Supervisor, type LoopRun, type SupervisedLoop } from '../core/supervisor.js';
import { TicketStatus, type Ticket } from '../core/schema.js';

export class TicketIndex {
  private readonly byId = new Map<string, Ticket>();
  private readonly counts = new Map<string, number>(TicketStatus.options.map((s) => [s, 0]));
  private applied = 0;
  private waiters: Array<{ revision: number; resolve: () => void }> = [];
  private loop?: SupervisedLoop;

  constructor(
    private readonly bucket: KV,
    private readonly log: Logger,
    private readonly supervisor = new Supervisor(log),
  ) {}

  async start(): Promise<void> {
    for (const [status, n] of this.counts) metrics.ticketsOpen.set({ status }, n);
    this.loop = this.supervisor.run('tickets.watch', (r) => this.follow(r), { essential: true });
  }

  async stop(): Promise<void> {
    await this.loop?.stop();
    for (const w of this.waiters.splice(0)) w.resolve();
  }

  /**
   * One watch of the bucket. A restarted watch starts again with every key's current value, which
   * apply() takes as an update; a ticket deleted while no watch ran stays listed until restart
   * (tickets are never deleted by omnigate itself).
   */
  private async follow({ signal, progress }: LoopRun): Promise<void> {
    const watch = await this.bucket.watch();
    const onAbort = () => watch.stop();
    signal.addEventListener('abort', onAbort, { once: true });
    try {
      for await (const entry of watch) {
        this.apply(entry);
        progress();
      }
    } finally {
      signal.removeEventListener('abort', onAbort);
    }
  }

  /** Every ticket (the caller filters); call caughtUp() first for read-your-writes. */
  all(): IterableIterator<Ticket> {
    return this.byId.values();
  }

  /** Resolves once every change the bucket held when called has been applied (or after `timeoutMs`). */
  async caughtUp(timeoutMs = 2000): Promise<void> {
    const status = await this.bucket.status();
    const revision = status.streamInfo.state.last_seq;
    if (this.applied >= revision) return;
    await new Promise<void>((resolve) => {
      const waiter = { revision, resolve };
      this.waiters.push(waiter);
      setTimeout(() => {
        this.waiters = this.waiters.filter((w) => w !== waiter);
        resolve();
      }, timeoutMs).unref();
    });
  }

  private apply(entry: KvWatchEntry): void {
    const before = this.byId.get(entry.key);
    let after: Ticket | undefined;
    if (entry.operation === 'PUT') {
      try {
        after = entry.json<Ticket>();
      } catch {
        this.log.warn({ key: entry.key }, 'ticket record is not JSON; left out of the index');
      }
    }
    if (after) this.byId.set(entry.key, after);
    else this.byId.delete(entry.key);
    if (before?.status !== after?.status) {
      if (before) this.count(before.status, -1);
      if (after) this.count(after.status, +1);
    }
    this.applied = Math.max(this.applied, entry.revision);
    if (this.waiters.length) {
      const ready = this.waiters.filter((w) => w.revision <= this.applied);
      if (ready.length) {
        this.waiters = this.waiters.filter((w) => w.revision > this.applied);
        for (const w of ready) w.resolve();
      }
    }
  }

  private count(status: string, delta: number): void {
    const n = (this.counts.get(status) ?? 0) + delta;
    this.counts.set(status, n);
    metrics.ticketsOpen.set({ status }, n);
  }
}
