/**
 * Applying entries and moving the checkpoint in one transaction, so a crash anywhere leaves SQL
 * exactly at a batch boundary; the row counts kept with the checkpoint (row-counts.ts) move in
 * the same transaction.
 */
import { errorMessage } from '../core/errors.js';
import type { Logger } from '../core/logger.js';
import { applyEntries, type SequencedEntry } from './apply.js';
import type { Database } from './database.js';
import { CHECKPOINT_NAME as CHECKPOINT } from './migrations.js';
import { isDataError } from './read-entry.js';

export class StaleCheckpointError extends Error {
  constructor(expected: number, found: number | undefined) {
    super(
      found === undefined
        ? `the read-model checkpoint row (at ${expected}) is gone under this applier (deleted behind the projection?): the term restarts and compares the row counts`
        : `read-model checkpoint moved from ${expected} to ${found} under this applier: another replica applies the log`,
    );
  }
}

/** What a commit did: entries by outcome, and how many named a ticket SQL does not have. */
export interface Committed {
  outcomes: Map<string, number>;
  missingTickets: number;
}

/** One transaction: the entries, then the checkpoint moved from `expected` to `to`. */
export async function commitBatch(db: Database, expected: number, entries: SequencedEntry[], to: number, verifyLoss = false): Promise<Committed> {
  return db.transaction(async (tx) => {
    const [row] = await tx.query<{ seq: number }>('SELECT seq FROM projection_checkpoint WHERE name = $1 FOR UPDATE', [CHECKPOINT]);
    const found = row?.seq ?? 0;
    if (found !== expected) throw new StaleCheckpointError(expected, row ? found : undefined);
    const added = { tickets: 0, messages: 0, missingTickets: 0 };
    const outcomes = entries.length ? await applyEntries(tx, entries, added, verifyLoss) : new Map<string, number>();
    // The counts move with the checkpoint; they stay true at the new one only if they were at
    // the old one (an older version moved the checkpoint alone: they are taken afresh, row-counts.ts).
    await tx.query(
      `INSERT INTO projection_checkpoint (name, seq, tickets, messages, counted_seq, updated_at) VALUES ($1, $2, $3, $4, $2, now())
       ON CONFLICT (name) DO UPDATE SET seq = $2, tickets = projection_checkpoint.tickets + $3, messages = projection_checkpoint.messages + $4,
         counted_seq = CASE WHEN projection_checkpoint.counted_seq = projection_checkpoint.seq THEN $2 ELSE projection_checkpoint.counted_seq END, updated_at = now()`,
      [CHECKPOINT, to, added.tickets, added.messages],
    );
    return { outcomes, missingTickets: added.missingTickets };
  });
}

/**
 * A batch SQL refused for what one of its entries holds (a value no column takes, over an
 * index's size): the log keeps such an entry for ever, so retrying the batch would stop the read
 * model at it on every start (/healthz 503, lists stale). Each entry then goes alone; one SQL
 * refuses is skipped, logged with its sequence and counted (`outcome="refused"`), and the rest
 * are applied. Only data errors take this path; an outage fails the batch as before.
 */
export async function commitOneByOne(db: Database, log: Logger, expected: number, entries: SequencedEntry[], to: number, verifyLoss = false): Promise<Committed> {
  const outcomes = new Map<string, number>();
  let missingTickets = 0;
  let at = expected;
  for (const e of entries) {
    try {
      const one = await commitBatch(db, at, [e], e.seq, verifyLoss);
      for (const [outcome, n] of one.outcomes) outcomes.set(outcome, (outcomes.get(outcome) ?? 0) + n);
      missingTickets += one.missingTickets;
    } catch (err) {
      if (!isDataError(err)) throw err;
      log.error({ seq: e.seq, ticketId: e.ticketId, kind: e.entry.kind, err: errorMessage(err) }, 'ticket-log entry refused by SQL; skipped by the read model (the log keeps it)');
      await commitBatch(db, at, [], e.seq);
      outcomes.set('refused', (outcomes.get('refused') ?? 0) + 1);
    }
    at = e.seq;
  }
  if (at !== to) await commitBatch(db, at, [], to);
  return { outcomes, missingTickets };
}
