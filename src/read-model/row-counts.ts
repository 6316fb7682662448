/**
 * The read model's own count of its rows, kept with the checkpoint (projection_checkpoint:
 * tickets, messages, counted_seq; every batch adds what it wrote, an erasure takes off what it
 * deleted, in the transaction that moves or locks the checkpoint), compared with the tables: the
 * checkpoint is only true while the rows it stands for are there (lost-rows.ts).
 */
import type { Database } from './database.js';
import { CHECKPOINT_NAME as CHECKPOINT } from './migrations.js';

export interface RowCounts {
  tickets: number;
  messages: number;
}

/**
 * - `ok`: the tables hold what the counts say;
 * - `counted`: no counts yet, or counts an older version left behind (it moved the checkpoint
 *   without them): the ones found are kept from now on, nothing to compare;
 * - `replay`: fewer rows than counted: the checkpoint was set to 0 and the counts to the ones
 *   found, and the replay recorded with them, for the caller to replay the log over the rows
 *   that are there;
 * - `more`: more rows than counted, none fewer: the counts were taken again.
 */
export interface RowCountCheck {
  outcome: 'ok' | 'counted' | 'replay' | 'more';
  /** The checkpoint the comparison was made at. */
  seq: number;
  found: RowCounts;
  expected: RowCounts;
  /** `replay` because the checkpoint row itself was gone, the tables not empty. */
  checkpointLost?: boolean;
  /** A replay restoring lost rows under way: begun by this check (`replay`), or found recorded by an earlier one. */
  rebuild?: Rebuild;
}

/** A replay restoring lost rows, as recorded with the checkpoint (migration 6). */
export interface Rebuild {
  /** The log's last sequence when it began: the replay is done when the checkpoint reaches it. */
  until: number;
  started: number;
  /** What was found, as logged when it began. */
  reason: string;
}

/** What a check that found rows lost says it found (logged, and kept with a replay it begins). */
export function describeLoss(r: Pick<RowCountCheck, 'seq' | 'found' | 'expected' | 'checkpointLost'>): string {
  return r.checkpointLost
    ? `the read model holds ${r.found.tickets} tickets and ${r.found.messages} messages, but its checkpoint row is gone (deleted behind the projection?)`
    : `the read model holds ${r.found.tickets} tickets and ${r.found.messages} messages, but its checkpoint (sequence ${r.seq}) stands for ${r.expected.tickets} and ${r.expected.messages}`;
}

/**
 * One transaction holding the checkpoint row (a batch and an erasure lock it first, so nothing
 * moves between the count and what is written from it), one count(*) of each table. A `replay`
 * records itself with the checkpoint's reset, to go up to `logEnd`: a process killed mid-replay
 * leaves it for the next to resume, not to take for ordinary lag.
 */
export function checkRowCounts(db: Database, logEnd: number): Promise<RowCountCheck> {
  return db.transaction(async (tx) => {
    const [c] = await tx.query<{
      seq: string | number; tickets: string | number; messages: string | number; counted_seq: string | number;
      rebuild_until: string | number | null; rebuild_started: Date | string | null; rebuild_reason: string | null;
    }>(
      'SELECT seq, tickets, messages, counted_seq, rebuild_until, rebuild_started, rebuild_reason FROM projection_checkpoint WHERE name = $1 FOR UPDATE',
      [CHECKPOINT],
    );
    const [n] = await tx.query<{ tickets: string | number; messages: string | number }>('SELECT (SELECT count(*) FROM tickets) AS tickets, (SELECT count(*) FROM messages) AS messages');
    const seq = Number(c?.seq ?? 0);
    const found = { tickets: Number(n!.tickets), messages: Number(n!.messages) };
    const expected = { tickets: Number(c?.tickets ?? 0), messages: Number(c?.messages ?? 0) };
    const recorded: Rebuild | undefined =
      c && c.rebuild_until !== null
        ? { until: Number(c.rebuild_until), started: c.rebuild_started === null ? Date.now() : new Date(c.rebuild_started).getTime(), reason: c.rebuild_reason ?? 'a replay restoring lost rows was under way' }
        : undefined;
    // A replay begun here replaces one recorded (rows lost again: the log is replayed from its start anew).
    const take = (from: number, rebuild?: Rebuild) =>
      tx.query(
        `INSERT INTO projection_checkpoint (name, seq, tickets, messages, counted_seq, rebuild_until, rebuild_started, rebuild_reason, updated_at)
         VALUES ($1, $2, $3, $4, $2, $5::bigint, $6::timestamptz, $7::text, now())
         ON CONFLICT (name) DO UPDATE SET seq = $2, tickets = $3, messages = $4, counted_seq = $2,
           rebuild_until = coalesce($5::bigint, projection_checkpoint.rebuild_until),
           rebuild_started = coalesce($6::timestamptz, projection_checkpoint.rebuild_started),
           rebuild_reason = coalesce($7::text, projection_checkpoint.rebuild_reason), updated_at = now()`,
        [CHECKPOINT, from, found.tickets, found.messages, rebuild?.until ?? null, rebuild ? new Date(rebuild.started).toISOString() : null, rebuild?.reason ?? null],
      );
    const replay = async (checkpointLost?: true): Promise<RowCountCheck> => {
      // The replay adds what it writes again to the counts found: true once it is done.
      const r = { outcome: 'replay' as const, seq, found, expected, ...(checkpointLost ? { checkpointLost } : {}) };
      const rebuild = { until: logEnd, started: Date.now(), reason: describeLoss(r) };
      await take(0, rebuild);
      return { ...r, rebuild };
    };
    // The checkpoint row itself was lost under full tables (gone, or made again by sameLog: at 0
    // with no counts, -1): what they hold is not known to be the log's start, so the log is
    // replayed over them, as after lost rows. A fresh database has the same row, and no rows.
    if ((!c || (seq === 0 && Number(c.counted_seq) === -1)) && (found.tickets > 0 || found.messages > 0)) return replay(true);
    const rebuild = recorded ? { rebuild: recorded } : {};
    if (!c || Number(c.counted_seq) !== seq) {
      await take(seq);
      return { outcome: 'counted' as const, seq, found, expected, ...rebuild };
    }
    if (found.tickets === expected.tickets && found.messages === expected.messages) return { outcome: 'ok' as const, seq, found, expected, ...rebuild };
    if (found.tickets < expected.tickets || found.messages < expected.messages) return replay();
    await take(seq);
    return { outcome: 'more' as const, seq, found, expected, ...rebuild };
  });
}

/** A replay restoring lost rows reached its end: no longer recorded. */
export async function endRebuild(db: Database): Promise<void> {
  await db.query('UPDATE projection_checkpoint SET rebuild_until = NULL, rebuild_started = NULL, rebuild_reason = NULL WHERE name = $1', [CHECKPOINT]);
}

/** The counts kept with the checkpoint now. */
export async function keptRowCounts(db: Database): Promise<RowCounts> {
  const [n] = await db.query<{ tickets: number; messages: number }>('SELECT tickets, messages FROM projection_checkpoint WHERE name = $1', [CHECKPOINT]);
  return { tickets: Number(n?.tickets ?? 0), messages: Number(n?.messages ?? 0) };
}
