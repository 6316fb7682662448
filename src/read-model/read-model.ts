/**
 * The SQL read model as one unit for the gateway: opens the database (PGlite under the data
 * directory, or PostgreSQL), runs migrations, runs the projection under the supervisor, keeps the
 * tickets gauge, and answers the API's and the timers' queries.
 */
import type { Bus } from '../core/bus.js';
import { errorMessage } from '../core/errors.js';
import type { Logger } from '../core/logger.js';
import { metrics } from '../core/metrics.js';
import { TicketStatus } from '../core/schema.js';
import type { Supervisor } from '../core/supervisor.js';
import { mergeContacts } from './contacts.js';
import { openDatabase, type Database, type DatabaseOptions } from './database.js';
import { migrate } from './migrations.js';
import { Projection, type ProjectionOptions, type ProjectionStatus } from './projection.js';
import * as q from './queries.js';

export type ReadModelOptions = DatabaseOptions & ProjectionOptions;

export class MergeRefusal extends Error {
  constructor(
    readonly field: string,
    message: string,
    readonly notFound = false,
  ) {
    super(message);
  }
}

export class ReadModel {
  private lastCount = 0;

  private constructor(
    readonly db: Database,
    readonly projection: Projection,
    private readonly log: Logger,
  ) {}

  static async open(bus: Bus, o: ReadModelOptions, log: Logger, supervisor: Supervisor): Promise<ReadModel> {
    const started = Date.now();
    const db = await openDatabase(o);
    try {
      const { applied } = await migrate(db);
      log.info({ database: db.where, migrationsApplied: applied, ms: Date.now() - started }, 'read model database ready');
    } catch (err) {
      await db.close().catch(() => undefined);
      throw err;
    }
    return new ReadModel(db, new Projection(bus, db, log, o, supervisor), log);
  }

  start(): void {
    this.projection.start();
  }

  async stop(): Promise<void> {
    await this.projection.stop();
    await this.db.close();
  }

  /** For /readyz and the sampler: lag and who applies; refreshes the gauges (the count at most every 15 s). */
  async sample(): Promise<ProjectionStatus & { database: string }> {
    const s = await this.projection.sample();
    if (Date.now() - this.lastCount > 15_000) {
      this.lastCount = Date.now();
      try {
        const counts = await q.countByStatus(this.db);
        for (const status of TicketStatus.options) metrics.ticketsOpen.set({ status }, counts[status] ?? 0);
      } catch (err) {
        this.log.debug({ err: errorMessage(err) }, 'ticket counts not sampled');
      }
    }
    return { ...s, database: this.db.where };
  }

  caughtUp(timeoutMs?: number): Promise<boolean> {
    return this.projection.caughtUp(timeoutMs);
  }

  listTickets(f: q.TicketFilter) {
    return q.listTickets(this.db, f);
  }

  search(text: string, o: { limit: number; status?: string; channel?: string }) {
    return q.search(this.db, text, o);
  }

  findContacts(by: { phone?: string; email?: string; handle?: string }) {
    return q.findContacts(this.db, by);
  }

  getContact(id: string) {
    return q.getContact(this.db, id);
  }

  dueTickets(kind: 'sla' | 'csat', o: Parameters<typeof q.dueTickets>[2]) {
    return q.dueTickets(this.db, kind, o);
  }

  /** A person's decision that two contacts are one: `from` joins `into` (recorded, kept across a rebuild). */
  async merge(into: string, from: string, by: string): Promise<q.ContactView> {
    await this.db.transaction(async (tx) => {
      const rows = await tx.query<{ id: string; root: string }>(
        'SELECT id, coalesce(merged_into, id) AS root FROM contacts WHERE id = ANY($1::text[]) FOR UPDATE',
        [[into, from]],
      );
      const target = rows.find((r) => r.id === into);
      const source = rows.find((r) => r.id === from);
      if (!target) throw new MergeRefusal('id', `no contact with id ${into}`, true);
      if (!source) throw new MergeRefusal('contactId', `no contact with id ${from}`);
      if (source.root === target.root) throw new MergeRefusal('contactId', `${from} is already part of ${target.root}`);
      await mergeContacts(tx, source.root, target.root, new Date().toISOString(), by);
    });
    const merged = await this.getContact(into);
    const { requested: _requested, ...view } = merged!;
    this.log.info({ into, from, by }, 'contacts merged through the API');
    return view;
  }
}
