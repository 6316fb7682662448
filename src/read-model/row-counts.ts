/**
 * The read model's own count of its rows, kept with the checkpoint (projection_checkpoint:
 * tickets, messages, counted_seq; every batch adds what it wrote, an erasure takes off what it
 * deleted, in the transaction that moves or locks the checkpoint), compared with the tables: the
 * checkpoint is only true while the rows it stands for are there (projection.ts, consistent).
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
 *   found, for the caller to replay the log over the rows that are there;
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
}

/**
 * One transaction holding the checkpoint row (a batch and an erasure lock it first, so nothing
 * moves between the count and what is written from it), one count(*) of each table.
 */
export function checkRowCounts(db: Database): Promise<RowCountCheck> {
  return db.transaction(async (tx) => {
    const [c] = await tx.query<{ seq: string | number; tickets: string | number; messages: string | number; counted_seq: string | number }>(
      'SELECT seq, tickets, messages, counted_seq FROM projection_checkpoint WHERE name = $1 FOR UPDATE',
      [CHECKPOINT],
    );
    const [n] = await tx.query<{ tickets: string | number; messages: string | number }>('SELECT (SELECT count(*) FROM tickets) AS tickets, (SELECT count(*) FROM messages) AS messages');
    const seq = Number(c?.seq ?? 0);
    const found = { tickets: Number(n!.tickets), messages: Number(n!.messages) };
    const expected = { tickets: Number(c?.tickets ?? 0), messages: Number(c?.messages ?? 0) };
    const take = (from: number) =>
      tx.query(
        `INSERT INTO projection_checkpoint (name, seq, tickets, messages, counted_seq, updated_at) VALUES ($1, $2, $3, $4, $2, now())
         ON CONFLICT (name) DO UPDATE SET seq = $2, tickets = $3, messages = $4, counted_seq = $2, updated_at = now()`,
        [CHECKPOINT, from, found.tickets, found.messages],
      );
    // The checkpoint row itself was lost under full tables (gone, or made again by sameLog: at 0
    // with no counts, -1): what they hold is not known to be the log's start, so the log is
    // replayed over them, as after lost rows. A fresh database has the same row, and no rows.
    if ((!c || (seq === 0 && Number(c.counted_seq) === -1)) && (found.tickets > 0 || found.messages > 0)) {
      await take(0);
      return { outcome: 'replay' as const, seq, found, expected, checkpointLost: true };
    }
    if (!c || Number(c.counted_seq) !== seq) {
      await take(seq);
      return { outcome: 'counted' as const, seq, found, expected };
    }
    if (found.tickets === expected.tickets && found.messages === expected.messages) return { outcome: 'ok' as const, seq, found, expected };
    if (found.tickets < expected.tickets || found.messages < expected.messages) {
      // The replay adds what it writes again to the counts found: true once it is done.
      await take(0);
      return { outcome: 'replay' as const, seq, found, expected };
    }
    await take(seq);
    return { outcome: 'more' as const, seq, found, expected };
  });
}

/** The counts kept with the checkpoint now. */
export async function keptRowCounts(db: Database): Promise<RowCounts> {
  const [n] = await db.query<{ tickets: number; messages: number }>('SELECT tickets, messages FROM projection_checkpoint WHERE name = $1', [CHECKPOINT]);
  return { tickets: Number(n?.tickets ?? 0), messages: Number(n?.messages ?? 0) };
}
