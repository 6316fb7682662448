/**
 * Rows lost behind the projection, and the replay that restores them. The checkpoint is only
 * true while the rows it stands for are there. Each batch also adds the ticket and message rows
 * it wrote to counts kept in the checkpoint row; the applier compares them with the tables at its
 * start, every `checkEveryMs` (after a batch or when idle), and soon after a batch met entries for
 * tickets SQL does not have. Rows deleted behind its back (TRUNCATE tickets CASCADE, a DELETE)
 * are restored by replaying the log from its start over the rows that are there, deleting
 * nothing (docs/data.md): before, the projection went on from its checkpoint and lists silently
 * lacked the old tickets.
 *
 * The replay is recorded with the checkpoint (migration 6), not only here: a process killed
 * mid-replay left a checkpoint below the log's end, and its successor finished the replay as
 * ordinary lag, with no `rebuilding` status and no closing line.
 */
import type { Bus } from '../core/bus.js';
import type { Logger } from '../core/logger.js';
import { Streams } from '../core/subjects.js';
import type { Database } from './database.js';
import { checkRowCounts, describeLoss, endRebuild, keptRowCounts } from './row-counts.js';

/** After a batch with entries for tickets SQL does not have, the next check comes no later than this after the last one. */
const ORPHAN_CHECK_GAP_MS = 60_000;

export class LostRows {
  /** When the tables were last compared with the checkpoint's counts, and when they are next. */
  private lastCheckAt = 0;
  private nextCheckAt = 0;
  /** The replay in progress, as recorded with the checkpoint: done when the checkpoint reaches `until`. */
  private rebuild?: { until: number; started: number; reason: string };

  constructor(
    private readonly bus: Bus,
    private readonly log: Logger,
    private readonly checkEveryMs: number,
    /** A replay begins: the checkpoint is at 0 and the log, to `logEnd`, is the lag. */
    private readonly onReplay: (logEnd: number) => void,
  ) {}

  /** For /readyz: what was found, while the replay restoring it runs. */
  rebuilding(): string | undefined {
    return this.rebuild && `${this.rebuild.reason}; replaying the log to restore lost rows (docs/data.md)`;
  }

  get replaying(): boolean {
    return this.rebuild !== undefined;
  }

  /** A periodic check is due (none while a replay runs: it ends at the counts it restores). */
  due(): boolean {
    return !this.rebuild && Date.now() >= this.nextCheckAt;
  }

  /**
   * Entries for tickets SQL does not have: legitimate now and then (an entry before any
   * message), but also what rows deleted behind the projection's back look like.
   */
  soon(): void {
    this.nextCheckAt = Math.min(this.nextCheckAt, this.lastCheckAt + Math.min(ORPHAN_CHECK_GAP_MS, this.checkEveryMs));
  }

  /**
   * Whether the tables hold the rows the checkpoint stands for: the tickets and messages counted
   * against what the batches wrote (less what erasure deleted), in one transaction holding the
   * checkpoint row (a batch and an erasure lock it first, so nothing moves between the count and
   * what is written from it). One count(*) of each table, so at a term's start, every
   * `checkEveryMs`, and soon after entries for missing tickets, never per batch. Three answers:
   *
   * - counts an older version left behind, or none yet: the ones found are kept (nothing to compare);
   * - fewer rows than counted (rows lost behind the projection: TRUNCATE tickets CASCADE, a DELETE,
   *   an older replica's erasure during a rolling upgrade): the checkpoint goes to 0 and the counts
   *   to the ones found, and the log is replayed from its start over the rows that are there.
   *   Nothing is deleted: a replay writes only what is missing (apply.ts), so it restores what the
   *   log still holds and ends at the latest state. Returns false then;
   * - more rows than counted, none fewer (a table restored from a backup, an older version's
   *   writes): nothing to restore; the counts are taken again and a warning names the numbers.
   *
   * A replay recorded by an earlier applier (killed mid-way, or another replica's) is taken up.
   */
  async check(db: Database): Promise<boolean> {
    this.lastCheckAt = Date.now();
    this.nextCheckAt = this.lastCheckAt + this.checkEveryMs;
    const info = await this.bus.jsm.streams.info(Streams.log);
    const r = await checkRowCounts(db, info.state.last_seq);
    const { seq, found, expected } = r;
    const fields = { checkpoint: seq, tickets: found.tickets, expectedTickets: expected.tickets, messages: found.messages, expectedMessages: expected.messages };
    const what = describeLoss(r);
    const resumed = r.outcome !== 'replay' && r.rebuild && !this.rebuild;
    // The row is what is true: a replay another replica finished or began meanwhile is taken from it.
    this.rebuild = r.rebuild;
    if (resumed) {
      this.log.warn(
        { checkpoint: seq, until: r.rebuild!.until, startedAt: new Date(r.rebuild!.started).toISOString(), found: r.rebuild!.reason },
        'a replay restoring lost rows was under way when the applier last stopped: it resumes from the checkpoint (docs/data.md); lists lack the lost rows until it is done',
      );
    }
    switch (r.outcome) {
      case 'ok':
        return true;
      case 'counted':
        this.log.info({ checkpoint: seq, tickets: found.tickets, messages: found.messages }, 'read-model row counts taken at the checkpoint (kept with it from now on, to tell rows lost behind the projection)');
        return true;
      case 'more':
        this.log.warn(fields, `${what}: rows were added behind the projection (a table restored from a backup, an older version's writes?). Nothing to restore; the counts are taken again from the tables`);
        return true;
      case 'replay':
        break;
    }
    this.log.error(
      fields,
      `${what}${r.checkpointLost ? '' : ': rows were deleted behind the projection (a TRUNCATE or DELETE, an older version\'s erasure?)'}. Replaying the log to restore lost rows, from sequence 1 over the rows that are there (nothing is deleted; docs/data.md); lists lack the lost rows until it is done`,
    );
    this.onReplay(info.state.last_seq);
    return false;
  }

  /** Ends the replay, with its closing line, once the checkpoint reached where the log ended when it began. */
  async reached(db: Database, applied: number): Promise<void> {
    if (!this.rebuild || applied < this.rebuild.until) return;
    await endRebuild(db);
    const n = await keptRowCounts(db);
    this.log.warn({ checkpoint: applied, ...n, ms: Date.now() - this.rebuild.started }, 'read model replayed the log: lost rows restored');
    this.rebuild = undefined;
  }
}
