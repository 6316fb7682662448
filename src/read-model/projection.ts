/**
 * The projection: applies the ticket log (stream OMNI_LOG, omni.ticket.<id>.log) to SQL, in stream
 * order, in batches. Each batch is one transaction that also moves the checkpoint (the highest
 * stream sequence applied), so a crash anywhere leaves SQL exactly at a batch boundary and the
 * next run resumes from the checkpoint: every entry is applied once, whatever was redelivered.
 *
 * Why the checkpoint lives in SQL and the consumer is an ordered (ephemeral) one rather than a
 * JetStream durable: two positions (a durable's ack floor and the SQL checkpoint) could disagree
 * — a restored or rebuilt database, a durable deleted by hand — and SQL is what must be right.
 * The ordered consumer starts at checkpoint + 1 every run and JetStream keeps the order; there is
 * no ack state to leak or to reset on rebuild.
 *
 * The ticket events (OMNI_EVENTS) are not read: each announces a log entry the log already has,
 * and that stream keeps 30 days, the log forever. Everything is rebuilt from the log alone.
 *
 * One applier at a time: on PostgreSQL several replicas share the database and take a session
 * advisory lock (the server frees it when the holder's connection dies); the checkpoint is also
 * compared in every batch (SELECT … FOR UPDATE), so even two appliers could not apply a batch twice.
 *
 * The checkpoint is only true while the rows it stands for are there: the applier compares the
 * rows it counted with the tables and replays the log over them when some were lost (lost-rows.ts).
 */
import { DeliverPolicy, type Consumer, type StreamInfo } from '@nats-io/jetstream';
import type { Bus } from '../core/bus.js';
import { errorMessage } from '../core/errors.js';
import type { Logger } from '../core/logger.js';
import { metrics } from '../core/metrics.js';
import { sleep } from '../core/sleep.js';
import { Streams } from '../core/subjects.js';
import { Supervisor, type LoopRun, type SupervisedLoop } from '../core/supervisor.js';
import { MissingTicketRowError, type SequencedEntry } from './apply.js';
import { StaleCheckpointError, commitBatch, commitOneByOne, type Committed } from './commit.js';
import type { Database } from './database.js';
import { APPLIER_LOCK_KEY, CHECKPOINT_NAME, migrate } from './migrations.js';
import { LostRows } from './lost-rows.js';
import { isDataError, readEntry, type FetchedEntry } from './read-entry.js';

const CHECKPOINT = CHECKPOINT_NAME;
/** SQLSTATE: relation does not exist. */
const UNDEFINED_TABLE = '42P01';

export interface ProjectionOptions {
  /** Entries per transaction at most. */
  batchSize?: number;
  /** How long a fetch waits for new entries before the loop looks again (and samples the lag). */
  idleMs?: number;
  /** How often a replica that does not hold the applier lock tries again. */
  standbyRetryMs?: number;
  /**
   * How often the applier compares the tickets and messages it holds with the counts kept with its
   * checkpoint (two count(*)s, after a batch or when idle; also done at each start). Default 5 minutes.
   */
  checkEveryMs?: number;
  /** A log ending before the checkpoint is read again this often (default 2 s), for this long (30 s), before it is refused (sameLog). */
  shortLogRecheckMs?: number;
  shortLogWaitMs?: number;
}

export interface ProjectionStatus {
  /** This replica applies the log now (false: another replica does, or it has not started). */
  applying: boolean;
  checkpoint: number;
  /** OMNI_LOG's last sequence when last sampled. */
  logLastSeq: number;
  lag: number;
  sampledAt?: string;
  /** Why nothing is applied (the ticket log was replaced: LogReplacedError). */
  error?: string;
  /** Set while the log is replayed to restore rows the tables lost (what was found); lists lack those rows meanwhile. */
  rebuilding?: string;
}

/** The read model counts in a ticket log that is not the one NATS holds now: rebuild it (docs/data.md). */
export class LogReplacedError extends Error {}

export class Projection {
  private loop?: SupervisedLoop;
  private readonly batchSize: number;
  private readonly idleMs: number;
  private readonly standbyRetryMs: number;
  private readonly losses: LostRows;
  private readonly shortLogRecheckMs: number;
  private readonly shortLogWaitMs: number;
  private status_: ProjectionStatus = { applying: false, checkpoint: 0, logLastSeq: 0, lag: 0 };
  /** The checkpoint was read from SQL at least once: status_.checkpoint is a real one. */
  private checkpointSeen = false;

  constructor(
    private readonly bus: Bus,
    /** Opened (and migrated) on first use: the gateway starts without waiting for the database. */
    private readonly database: () => Promise<Database>,
    private readonly log: Logger,
    o: ProjectionOptions = {},
    private readonly supervisor = new Supervisor(log),
  ) {
    this.batchSize = o.batchSize ?? 500;
    this.idleMs = o.idleMs ?? 1000;
    this.standbyRetryMs = o.standbyRetryMs ?? 2000;
    // 2 s: one stream-info request, cheaper than the idle sample made every second. 30 s: a
    // restarted cluster node follows or elects a leader within seconds and catches up thousands
    // of entries in about as many more; nothing is applied while waiting nor after a refusal, so
    // waiting only delays the refusal of a real restore (the supervisor's backoff is 30 s at most).
    this.shortLogRecheckMs = o.shortLogRecheckMs ?? 2_000;
    this.shortLogWaitMs = o.shortLogWaitMs ?? 30_000;
    this.losses = new LostRows(bus, log, o.checkEveryMs ?? 300_000, (logEnd) => {
      this.status_ = { ...this.status_, checkpoint: 0, lag: logEnd, logLastSeq: logEnd };
      metrics.readModelLag.set(logEnd);
    });
  }

  start(): void {
    // Its failures are the database's (unreachable, a wrong name or role): restarting the process
    // cures neither, and a database outage failed /healthz on every replica at once.
    this.loop = this.supervisor.run('read-model.projection', (r) => this.term(r), { essential: false, restartCures: false });
  }

  async stop(): Promise<void> {
    await this.loop?.stop();
  }

  status(): ProjectionStatus {
    const rebuilding = this.losses.rebuilding();
    return { ...this.status_, ...(rebuilding ? { rebuilding } : {}) };
  }

  async checkpoint(): Promise<number> {
    const db = await this.database();
    const [row] = await db.query<{ seq: number }>('SELECT seq FROM projection_checkpoint WHERE name = $1', [CHECKPOINT]);
    return row?.seq ?? 0;
  }

  /** Lag right now, from SQL and the stream (any replica can answer: the checkpoint is shared). */
  async sample(): Promise<ProjectionStatus> {
    await this.sampleLog();
    return this.status();
  }

  /** `sample`, handing back the log's stream info it read (the idle applier checks it too: sameLog). */
  private async sampleLog(): Promise<StreamInfo> {
    const [checkpoint, stream] = await Promise.allSettled([this.checkpoint(), this.bus.jsm.streams.info(Streams.log)]);
    if (stream.status === 'rejected') throw stream.reason;
    const logLastSeq = stream.value.state.last_seq;
    // The database away (a role set NOLOGIN, a revoked grant, a restart): nothing is applied
    // meanwhile, so the lag grows from the last checkpoint seen. Left as it was, the gauge froze
    // at its last value for the whole outage and an alert on it never fired.
    // Never read (refused from the start): no lag to state rather than the whole log as one.
    if (checkpoint.status === 'fulfilled') this.checkpointSeen = true;
    if (!this.checkpointSeen && checkpoint.status === 'rejected') throw checkpoint.reason;
    const applied = checkpoint.status === 'fulfilled' ? checkpoint.value : this.status_.checkpoint;
    this.status_ = { ...this.status_, checkpoint: applied, logLastSeq, lag: Math.max(0, logLastSeq - applied), sampledAt: new Date().toISOString() };
    metrics.readModelLag.set(this.status_.lag);
    if (checkpoint.status === 'rejected') throw checkpoint.reason;
    return stream.value;
  }

  /**
   * Resolves once the read model holds every log entry written before the call (read-your-writes
   * for the API), or after `timeoutMs` — then the answer may miss the newest changes.
   */
  async caughtUp(timeoutMs = 2000): Promise<boolean> {
    // Lists and search answer from SQL as it stands while NATS is away (stale beats a 500 after
    // the request timeout, which is what a NATS outage gave them): the caller cannot wait then.
    if (!this.bus.connected) return false;
    let target: number;
    try {
      target = (await this.bus.jsm.streams.info(Streams.log)).state.last_seq;
    } catch (err) {
      this.log.debug({ err: errorMessage(err) }, 'ticket log position not read; answering from SQL as it stands');
      return false;
    }
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      if ((await this.checkpoint()) >= target) return true;
      if (Date.now() >= deadline) return false;
      await sleep(25);
    }
  }

  /** One term: wait for the applier lock, then apply until stopped or the lock's session is lost. */
  private async term({ signal, progress }: LoopRun): Promise<void> {
    const db = await this.database();
    // Another replica applies: wait here for its lock, in this run. Returning instead ended the
    // run every standbyRetryMs, which the supervisor counts as a restart (~1,500 warnings an
    // hour on every standby replica, and the restart alert firing on all of them).
    let lock = await db.tryApplierLock(APPLIER_LOCK_KEY);
    while (!lock) {
      this.status_.applying = false;
      await this.sample().catch(() => undefined);
      progress();
      await sleep(this.standbyRetryMs, signal);
      if (signal.aborted) return;
      lock = await db.tryApplierLock(APPLIER_LOCK_KEY);
    }
    // A stop while the lock was being taken (a PostgreSQL connection takes a moment) has fired
    // its abort already, which a listener added now never hears: the term applied on until NATS
    // closed under it, and the stop waited for that (a stop right after a start hung).
    if (signal.aborted) return void (await lock.release());
    const term = new AbortController();
    const end = () => term.abort();
    signal.addEventListener('abort', end, { once: true });
    let lost = false;
    // eslint-disable-next-line @typescript-eslint/no-floating-promises -- lock.lost only ever resolves
    void lock.lost.then(() => {
      lost = true;
      end();
    });
    try {
      // The tables may have gone since the database was opened (the database dropped and created
      // again, `DROP SCHEMA public CASCADE` to rebuild: docs/data.md): put them back, and the
      // checkpoint with them, so the log is applied again from its start. Before, the loop failed
      // on "relation does not exist" until the process was restarted. A no-op when they are there.
      // Inside the try: a failure here must give the lock back, or no replica would apply again.
      const { applied } = await migrate(db);
      if (applied.length) this.log.warn({ database: db.where, migrationsApplied: applied }, 'read model tables were missing and are created again; the ticket log is applied from its start');
      this.status_.applying = true;
      this.log.info({ database: db.where }, 'applying the ticket log to the read model');
      await this.follow(db, term.signal, progress);
    } finally {
      this.status_.applying = false;
      signal.removeEventListener('abort', end);
      await lock.release();
    }
    if (lost && !signal.aborted) throw new Error('read-model applier lock lost (database connection closed); taking it again');
  }

  /**
   * Refuses to go on when the checkpoint counts in another ticket log than the one NATS holds: a
   * NATS store replaced or OMNI_LOG made again restarts its sequences at 1, and the projection
   * skipped every new entry up to the old checkpoint, silently (tickets missing from lists, new
   * ones sharing numbers with old rows). Nothing is guessed: an operator rebuilds (docs/data.md).
   * A checkpoint from before the log was recorded takes the present log, unless it is past its end.
   *
   * Another creation time is refused at once. A log of the same creation time that ends before the
   * checkpoint is a store restored from a backup, or only a NATS cluster node that is behind
   * answering (an outside cluster trial: a node restarted after its disk was full said 68 while
   * the log was at 1083, and every replica in turn called the store replaced for 70 s): read again
   * for a while, refused if it stays short. Never applied from meanwhile: a log truly shorter than
   * the checkpoint would have its new entries up to it skipped silently. False: stopped meanwhile.
   */
  private async sameLog(db: Database, applied: number, signal: AbortSignal, known?: StreamInfo): Promise<boolean> {
    let info = known ?? (await this.bus.jsm.streams.info(Streams.log));
    const [row] = await db.query<{ log_created: string | null }>('SELECT log_created FROM projection_checkpoint WHERE name = $1', [CHECKPOINT]);
    const recreated = (i: StreamInfo) => !!row?.log_created && row.log_created !== i.created;
    if (applied > 0 && !recreated(info) && applied > info.state.last_seq) {
      const answered = info.state.last_seq;
      const started = Date.now();
      info = await this.whileShort(applied, info, recreated, signal);
      if (signal.aborted) return false;
      if (!recreated(info) && applied <= info.state.last_seq) {
        this.log.warn(
          { checkpoint: applied, answered, logLastSeq: info.state.last_seq, waitedMs: Date.now() - started },
          'a NATS node that was behind answered that the ticket log ends before the read model\'s checkpoint; it has caught up, applying goes on',
        );
      }
    }
    if (applied > 0 && recreated(info)) {
      this.status_.error = 'the ticket log was replaced under the read model: rebuild it (docs/data.md); the cause is in the gateway log';
      throw new LogReplacedError(
        `the read model has applied the ticket log up to sequence ${applied}, but the log NATS holds now was created at ${info.created}, not ${row?.log_created}: the NATS store was replaced or the stream made again. Rebuild the read model from the log (docs/data.md); nothing is applied until then`,
      );
    }
    if (applied > info.state.last_seq && applied > 0) {
      this.status_.error = 'the ticket log NATS holds ends before the read model\'s checkpoint (restored from a backup, or NATS lost its newest entries): check the NATS streams, then rebuild the read model (docs/data.md); the cause is in the gateway log';
      throw new LogReplacedError(
        `the read model has applied the ticket log up to sequence ${applied}, but the log NATS holds now (created at ${info.created}, as before) ends at ${info.state.last_seq} and still did after ${Math.round(this.shortLogWaitMs / 1000)} s: either the NATS store was restored from a backup older than the read model, or NATS lost its newest entries (a NATS node that lost its store: \`nats stream report\`). Nothing is applied until the read model is rebuilt from the log (docs/data.md)`,
      );
    }
    delete this.status_.error;
    // The row deleted under this applier (behind the projection): said as such, and the next term
    // compares the row counts (row-counts.ts: a lost checkpoint row under full tables is replayed).
    if (!row && applied > 0) throw new StaleCheckpointError(applied, undefined);
    if (row?.log_created !== info.created) {
      // A row made here (a new database, or the row lost under full tables) has no counts yet:
      // counted_seq -1 has them taken from the tables (row-counts.ts), not compared.
      await db.query(
        `INSERT INTO projection_checkpoint (name, seq, log_created, counted_seq, updated_at) VALUES ($1, 0, $2, -1, now()) ON CONFLICT (name) DO UPDATE SET log_created = $2`,
        [CHECKPOINT, info.created],
      );
    }
    return true;
  }

  /** The log's stream info read again until it reaches `applied`, its creation time changes, `shortLogWaitMs` pass or the signal aborts. */
  private async whileShort(applied: number, info: StreamInfo, recreated: (i: StreamInfo) => boolean, signal: AbortSignal): Promise<StreamInfo> {
    this.log.info({ checkpoint: applied, logLastSeq: info.state.last_seq, waitMs: this.shortLogWaitMs }, 'NATS says the ticket log ends before the read model\'s checkpoint: asking again before refusing it (a cluster node behind may have answered)');
    const deadline = Date.now() + this.shortLogWaitMs;
    while (!recreated(info) && applied > info.state.last_seq && Date.now() < deadline) {
      await sleep(Math.min(this.shortLogRecheckMs, Math.max(0, deadline - Date.now())), signal);
      if (signal.aborted) break;
      info = await this.bus.jsm.streams.info(Streams.log);
    }
    return info;
  }

  private async follow(db: Database, signal: AbortSignal, progress: () => void): Promise<void> {
    let applied = await this.checkpoint();
    if (!(await this.sameLog(db, applied, signal))) return;
    // The log is the one the checkpoint counts in: do the tables still hold what it stands for?
    if (!(await this.losses.check(db))) applied = 0;
    // A replay resumed after a restart may have reached its end already (killed before it said so).
    await this.losses.reached(db, applied);
    const after = (seq: number): Promise<Consumer> => this.bus.js.consumers.get(Streams.log, seq > 0
      ? { deliver_policy: DeliverPolicy.StartSequence, opt_start_seq: seq + 1 }
      : { deliver_policy: DeliverPolicy.All });
    let consumer = await after(applied);
    this.log.info({ from: applied + 1 }, 'read-model projection resumes after its checkpoint');
    while (!signal.aborted) {
      const batch: FetchedEntry[] = [];
      const fetched = await consumer.fetch({ max_messages: this.batchSize, expires: this.idleMs });
      const onAbort = () => fetched.stop();
      signal.addEventListener('abort', onAbort, { once: true });
      try {
        // Each entry is read as it arrives, not the whole batch after the fetch: reading 500
        // entries at once held the gateway's one thread for ~10 ms, and every inbound message
        // that arrived meanwhile waited for it (the p99 of routing at a steady rate).
        for await (const m of fetched) {
          batch.push(readEntry(m.seq, m.subject, m.data));
          if (signal.aborted) break;
        }
      } finally {
        signal.removeEventListener('abort', onAbort);
      }
      if (batch.length) {
        const next = await this.applyBatch(db, applied, batch);
        if (next === null) {
          // Rows lost: the log is replayed from its start (lost-rows.ts), this batch with it.
          applied = 0;
          consumer = await after(0);
          continue;
        }
        applied = next;
        progress();
        await this.losses.reached(db, applied);
        // Under steady traffic a fetch is never empty: the check comes after a batch as well.
        if (this.losses.due() && !(await this.losses.check(db))) {
          applied = 0;
          consumer = await after(0);
          continue;
        }
      }
      if (!batch.length || batch.length < this.batchSize) {
        // A stop in progress closes the connection under the sample: not worth a warning then.
        // Tables gone (a rebuild with the gateways running) end the term, whose successor makes
        // them again, also when no entry comes to fail on.
        const info = await this.sampleLog().catch((err: unknown) => {
          if ((err as { code?: unknown })?.code === UNDEFINED_TABLE) throw err;
          if (!signal.aborted) this.log.warn({ err: errorMessage(err) }, 'read-model lag not sampled');
          return undefined;
        });
        if (!batch.length) {
          // Idle: is the log the one the checkpoint counts in? A NATS store replaced under a
          // running applier is otherwise followed into (the consumer starts again after the
          // checkpoint, in the new log).
          if (!(await this.sameLog(db, applied, signal, info))) return;
          progress();
          await this.losses.reached(db, applied);
          if (this.losses.due() && !(await this.losses.check(db))) {
            applied = 0;
            consumer = await after(0);
          }
        }
      }
    }
  }

  /** One transaction: every entry after `expected`, then the checkpoint. Returns the new checkpoint, or null when rows were found lost and the log is to be replayed from its start. */
  private async applyBatch(db: Database, expected: number, batch: FetchedEntry[]): Promise<number | null> {
    const entries: SequencedEntry[] = [];
    let invalid = 0;
    let seq = expected;
    for (const m of batch) {
      if (m.seq <= seq) continue; // JetStream never goes back, but a rebuilt consumer could overlap
      seq = m.seq;
      if ('refused' in m) {
        // Not ours to refuse: the router wrote it. Skipped and counted; the log keeps it for a rebuild by a newer version.
        this.log.warn({ seq: m.seq, subject: m.subject, reason: m.refused }, 'ticket-log entry not understood; skipped by the read model');
        invalid++;
        continue;
      }
      entries.push(m);
    }
    const commit = async (from: number, list: SequencedEntry[], verifyLoss: boolean): Promise<Committed> => {
      try {
        return await commitBatch(db, from, list, seq, verifyLoss);
      } catch (err) {
        if (!isDataError(err)) throw err;
        return commitOneByOne(db, this.log, from, list, seq, verifyLoss);
      }
    };
    let committed: Committed;
    try {
      // A ticket row an entry would make from the middle of its log: the row counts are asked
      // first, so a row lost behind the projection is restored by the replay, in order, not made
      // anew from a later entry that would hide the earlier ones from it (an outside trial: a
      // customer writing again after a TRUNCATE left the ticket `new` with one message for good).
      // Rare otherwise (a reply logged before its ticket's first message, an opening entry SQL
      // refused): one count for such a batch.
      committed = await commit(expected, entries, !this.losses.replaying);
    } catch (err) {
      if (!(err instanceof MissingTicketRowError)) throw err;
      this.log.info({ ticketId: err.ticketId, seq: err.seq }, 'a log entry found no row for its ticket: comparing the read model\'s row counts before applying it');
      if (!(await this.losses.check(db))) return null;
      // One entry at a time (a data error's fallback) may have committed those before it.
      const at = await this.checkpoint();
      committed = await commit(at, entries.filter((e) => e.seq > at), false);
    }
    for (const [outcome, n] of committed.outcomes) metrics.readModelApplied.inc({ outcome }, n);
    // An edit or delete of a message SQL never stored (routine: Telegram edits) is no sign of lost rows: not counted in missingTickets.
    if (committed.missingTickets) this.losses.soon();
    if (invalid) metrics.readModelApplied.inc({ outcome: 'invalid' }, invalid);
    this.status_.checkpoint = seq;
    return seq;
  }
}
