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
import { setMaxListeners } from 'node:events';
import { sleep, untilAborted } from '../core/sleep.js';
import { describeTightening } from '../core/private-files.js';
import { openDatabase, surelyEmpty, type Database, type DatabaseOptions } from './database.js';
import { migrate } from './migrations.js';
import { Projection, type ProjectionOptions, type ProjectionStatus } from './projection.js';
import * as q from './queries.js';
import { personExportPage } from './person-export.js';

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

/** How often omnigate_tickets{status} is recounted at most (sample()). */
const COUNT_EVERY_MS = 15_000;

/** The read model's state while its database is not open yet: no checkpoint read, so no lag to state. */
export interface OpeningStatus {
  applying: false;
  checkpoint: null;
  logLastSeq: null;
  lag: null;
  database: 'opening';
  /** Why the last attempt to open failed (names hosts: for operators, /readyz and the log only). */
  lastError?: string;
}

/** The database is not open (yet): PGlite still initialising, PostgreSQL unreachable. Retry later. */
export class ReadModelUnavailable extends Error {}

export class ReadModel {
  /** The checkpoint at the last count of tickets by status (-1: never counted), and when. */
  private lastCount = -1;
  private lastCountAt = 0;
  private opening?: Promise<Database>;
  private opened?: Database;
  private stopped = false;
  /** Ends an open in progress when the gateway stops. */
  private readonly stopping = new AbortController();
  readonly projection: Projection;
  /** The embedded database had never been initialised when this process started: it holds no history. */
  readonly startedEmpty: boolean;

  /**
   * Returns at once: the database is opened and migrated by the projection's first run (a new
   * PGlite directory takes seconds to initialise), so the gateway's start-up does not wait for it
   * and does not grow with the history; queries before then answer 503.
   */
  constructor(
    bus: Bus,
    private readonly o: ReadModelOptions,
    private readonly log: Logger,
    supervisor: Supervisor,
  ) {
    this.startedEmpty = surelyEmpty(o);
    this.projection = new Projection(bus, () => this.database(), log, o, supervisor);
    // Unknown until the database opens (sample()); a gauge never set is exposed as 0, "caught up".
    metrics.readModelLag.set(Number.NaN);
    // Every caller waiting for the open listens to it (database()); an initdb of seconds under API
    // traffic would pass Node's default of 10 listeners and warn of a leak that is none.
    setMaxListeners(0, this.stopping.signal);
  }

  /** The open, migrated database; one attempt at a time, retried by the next caller after a failure. */
  database(): Promise<Database> {
    if (this.stopped) return Promise.reject(new ReadModelUnavailable('the read model is stopped'));
    if (this.opened) return Promise.resolve(this.opened);
    this.opening ??= (async () => {
      const started = Date.now();
      const db = await openDatabase(this.o, this.stopping.signal);
      const said = db.tightened && describeTightening(this.o.dataDir, db.tightened);
      if (said) this.log[said.level](said.fields, said.message);
      try {
        const { applied, newer } = await migrate(db);
        this.log.info({ database: db.where, migrationsApplied: applied, ms: Date.now() - started }, 'read model database ready');
        if (newer.length) {
          this.log.warn({ database: db.where, newerMigrations: newer }, 'the read model was migrated by a newer omnigate than this one (a downgrade): what those migrations added is not kept up to date by this version; start the newer version again, or rebuild the read model from the log (docs/operating.md, "Upgrades and downgrades")');
        }
      } catch (err) {
        await db.close().catch(() => undefined);
        throw err;
      }
      this.opened = db;
      return db;
    })().catch((err: unknown) => {
      this.opening = undefined;
      this.lastOpenError = errorMessage(err);
      if (this.stopping.signal.aborted) this.log.debug({ err: this.lastOpenError }, 'read model database open ended by the stop');
      else this.log.warn({ err: this.lastOpenError }, 'read model database not opened; retrying');
      throw err;
    });
    // Whoever waits (the projection, the evictor, the SLA scanner) is let go by a stop: a
    // PostgreSQL connect to a host that accepts and never answers cannot be cut short, and held
    // the stop until shutdownTimeout.
    return untilAborted(this.opening, this.stopping.signal);
  }

  /** Why the last attempt to open the database failed (a wrong name or role fails every one). */
  private lastOpenError?: string;

  /** For queries: the database if it is open, else 503 at once (no request waits for initdb). */
  private async ready(): Promise<Database> {
    if (this.opened) return this.opened;
    this.database().catch(() => undefined); // the projection loop reports failures; this only starts the attempt
    // Said when an attempt failed: "still opening" for ever hid `database "x" does not exist`. The
    // cause itself (host, database and role names) is for operators: the log and /readyz.
    throw new ReadModelUnavailable(this.lastOpenError ? 'the read model database could not be opened (the cause is in the gateway log and in /readyz under readModel.lastError)' : 'the read model database is still opening');
  }

  start(): void {
    this.projection.start();
  }

  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    // Still opening: PGlite's initdb runs on its own thread and is ended here at once, before the
    // projection is asked to stop, since its run waits for this open (a stop during a first
    // start's initdb waited for the whole initdb, or for shutdownTimeout). A PostgreSQL connect
    // cannot be cut short; the stop does not wait for it past a moment, and what it opens late is
    // closed when it arrives.
    if (!this.opened) this.stopping.abort(new ReadModelUnavailable('the read model is stopped'));
    await this.projection.stop();
    if (this.opened) return void (await this.opened.close());
    const late = this.opening?.then(
      (db) => db.close().catch((err: unknown) => this.log.warn({ err: errorMessage(err) }, 'closing the read model database after a late open failed')),
      () => undefined,
    );
    const patience = new AbortController();
    await Promise.race([late, sleep(2000, patience.signal)]);
    patience.abort();
  }

  /**
   * For /readyz and the sampler: lag and who applies; refreshes the gauges. The count of tickets
   * by status reads every ticket (a second or so at a million rows), so it is redone only when
   * the projection moved, and at most every COUNT_EVERY_MS unless `force` (sampleNow, tests):
   * /readyz is probed every few seconds and must not cost a scan of the history each time.
   */
  async sample(o: { force?: boolean } = {}): Promise<(ProjectionStatus & { database: string }) | OpeningStatus> {
    if (!this.opened) {
      // The checkpoint is in the database: until it opens, how far behind the log it is cannot be
      // known. A 0 here read as "caught up" during a slow start while lists still answered 503.
      metrics.readModelLag.set(Number.NaN);
      return { applying: false, checkpoint: null, logLastSeq: null, lag: null, database: 'opening', ...(this.lastOpenError ? { lastError: this.lastOpenError } : {}) };
    }
    const s = await this.projection.sample();
    if (this.opened && s.checkpoint !== this.lastCount && (o.force || Date.now() - this.lastCountAt >= COUNT_EVERY_MS)) {
      this.lastCount = s.checkpoint;
      this.lastCountAt = Date.now();
      try {
        const counts = await q.countByStatus(this.opened);
        for (const status of TicketStatus.options) metrics.ticketsOpen.set({ status }, counts[status] ?? 0);
      } catch (err) {
        this.log.debug({ err: errorMessage(err) }, 'ticket counts not sampled');
      }
    }
    return { ...s, database: this.opened?.where ?? 'opening' };
  }

  /**
   * Rows were erased outside the projection (a person's erasure, retention): the tickets gauge is
   * counted again now. It moved only with the projection, so after an erasure it showed the erased
   * tickets until the next message anywhere.
   */
  async rowsErased(): Promise<void> {
    this.lastCount = -1;
    await this.sample({ force: true }).catch((err: unknown) => this.log.debug({ err: errorMessage(err) }, 'ticket counts not sampled after an erasure'));
  }

  async caughtUp(timeoutMs?: number): Promise<boolean> {
    await this.ready();
    return this.projection.caughtUp(timeoutMs);
  }

  /**
   * For background work (SLA scanner, eviction): waits for the database to open (PGlite's initdb
   * takes seconds, tens on a loaded machine) instead of failing at once as a request does.
   */
  async openAndCaughtUp(timeoutMs?: number): Promise<boolean> {
    await this.database();
    return this.projection.caughtUp(timeoutMs);
  }

  async listTickets(f: q.TicketFilter) {
    return q.listTickets(await this.ready(), f);
  }

  async search(text: string, o: { limit: number; status?: string; channel?: string }) {
    return q.search(await this.ready(), text, o);
  }

  async findContacts(by: { phone?: string; email?: string; handle?: string }) {
    return q.findContacts(await this.ready(), by);
  }

  async getContact(id: string) {
    return q.getContact(await this.ready(), id);
  }

  /** One page of a person's export (person-export.ts); null when no such contact. */
  async exportPage(id: string, o: Parameters<typeof personExportPage>[2]) {
    return personExportPage(await this.ready(), id, o);
  }

  async dueTickets(kind: 'sla' | 'csat', o: Parameters<typeof q.dueTickets>[2]) {
    return q.dueTickets(await this.ready(), kind, o);
  }

  /** A person's decision that two contacts are one: `from` joins `into` (recorded, kept across a rebuild). */
  async merge(into: string, from: string, by: string): Promise<q.ContactView> {
    await (await this.ready()).transaction(async (tx) => {
      const rows = await tx.query<{ id: string; root: string }>(
        'SELECT id, coalesce(merged_into, id) AS root FROM contacts WHERE id = ANY($1::text[]) FOR UPDATE',
        [[into, from]],
      );
      const target = rows.find((r) => r.id === into);
      const source = rows.find((r) => r.id === from);
      if (!target) throw new MergeRefusal('id', `no contact with id ${into}`, true);
      if (!source) throw new MergeRefusal('contactId', `no contact with id ${from}`);
      if (source.root === target.root) throw new MergeRefusal('contactId', alreadyOne(into, from, target.root));
      await mergeContacts(tx, source.root, target.root, new Date().toISOString(), by);
    });
    const merged = await this.getContact(into);
    const { requested: _requested, ...view } = merged!;
    this.log.info({ into, from, by }, 'contacts merged through the API');
    return view;
  }
}

/**
 * Why `from` cannot be merged into `into`: they are one contact already. Each is named as what it
 * is: the message said "A1 is already part of A1" when A2, merged into A1, was given A1.
 */
function alreadyOne(into: string, from: string, root: string): string {
  if (into === from) return `${from} cannot be merged into itself`;
  if (root === into) return `${from} is already part of ${into}`;
  if (root === from) return `${into} is already part of ${from}`;
  return `${from} and ${into} are already part of ${root}`;
}
