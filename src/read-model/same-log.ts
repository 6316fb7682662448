/**
 * Whether the ticket log NATS holds is the one the read model's checkpoint counts in. A NATS store
 * replaced or OMNI_LOG made again restarts its sequences at 1, and the projection skipped every
 * new entry up to the old checkpoint, silently (tickets missing from lists, new ones sharing
 * numbers with old rows). Nothing is guessed: an operator rebuilds (docs/data.md). The log's
 * creation time is recorded with the checkpoint; a checkpoint from before it was recorded takes
 * the present log, unless it is past its end.
 */
import type { StreamInfo } from '@nats-io/jetstream';
import type { Database } from './database.js';
import { StaleCheckpointError } from './commit.js';
import type { LogEnd } from './log-end.js';
import { CHECKPOINT_NAME as CHECKPOINT } from './migrations.js';

/** The read model counts in a ticket log that is not the one NATS holds now: rebuild it (docs/data.md). */
export class LogReplacedError extends Error {}

export class SameLog {
  /** Why nothing is applied, for the projection's status (/readyz); unset while the log is the one. */
  error?: string;

  constructor(private readonly logEnd: LogEnd) {}

  /**
   * Another creation time is refused at once. A log of the same creation time that ends before the
   * checkpoint is a store restored from a backup, or only a NATS cluster node that is behind
   * answering (an outside cluster trial: a node restarted after its disk was full said 68 while
   * the log was at 1083, and every replica in turn called the store replaced for 70 s): read again
   * for a while (log-end.ts), refused if it stays short. Never applied from meanwhile: a log truly
   * shorter than the checkpoint would have its new entries up to it skipped silently. False:
   * stopped meanwhile. `known`: the log's stream info, just read.
   */
  async check(db: Database, applied: number, signal: AbortSignal, known?: StreamInfo): Promise<boolean> {
    const [row] = await db.query<{ log_created: string | null }>('SELECT log_created FROM projection_checkpoint WHERE name = $1', [CHECKPOINT]);
    const recreated = (i: StreamInfo) => !!row?.log_created && row.log_created !== i.created;
    const info = await this.logEnd.reaching(applied, signal, { known, changed: recreated });
    if (signal.aborted) return false;
    if (applied > 0 && recreated(info)) {
      this.error = 'the ticket log was replaced under the read model: rebuild it (docs/data.md); the cause is in the gateway log';
      throw new LogReplacedError(
        `the read model has applied the ticket log up to sequence ${applied}, but the log NATS holds now was created at ${info.created}, not ${row?.log_created}: the NATS store was replaced or the stream made again. Rebuild the read model from the log (docs/data.md); nothing is applied until then`,
      );
    }
    if (applied > info.state.last_seq && applied > 0) {
      this.error = 'the ticket log NATS holds ends before the read model\'s checkpoint (restored from a backup, or NATS lost its newest entries): check the NATS streams, then rebuild the read model (docs/data.md); the cause is in the gateway log';
      throw new LogReplacedError(
        `the read model has applied the ticket log up to sequence ${applied}, but the log NATS holds now (created at ${info.created}, as before) ends at ${info.state.last_seq} and still did after ${Math.round(this.logEnd.waitMs / 1000)} s: either the NATS store was restored from a backup older than the read model, or NATS lost its newest entries (a NATS node that lost its store: \`nats stream report\`). Nothing is applied until the read model is rebuilt from the log (docs/data.md)`,
      );
    }
    delete this.error;
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
}
