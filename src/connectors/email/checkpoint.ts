/**
 * Per-folder intake checkpoint in the account's KV state: the UIDVALIDITY it belongs to and the
 * UID up to which every mail is stored in JetStream (or parked) and acknowledged on the server.
 * On the very first start, and after a UIDVALIDITY change, the folder is scanned once up to
 * `filterUntil`, taking only mail not marked processed: on a first start (or when the folder was
 * never fully read) only unread mail if so configured; after a change, only mail received since
 * the folder was last fully read.
 */
import type { AccountState } from '../contract.js';

export interface Checkpoint {
  /** UIDVALIDITY as a decimal string (imapflow hands it over as a BigInt). */
  uidValidity: string;
  lastUid: number;
  /** UIDs up to here are filtered (the one-time scan); above it every mail is taken. */
  filterUntil?: number;
  filter?: 'unseen' | 'unprocessed';
  /** The scan takes only mail received (IMAP INTERNALDATE) on or after this day. */
  since?: string;
  /** When a sync last found nothing left to read: all mail received before it was handled. */
  caughtUpAt?: string;
}

const DAY_MS = 24 * 60 * 60 * 1000;

/** The checkpoint of a folder read for the first time, or whose UIDs a UIDVALIDITY change voided: scan it once up to its current top. */
export function scanCheckpoint(old: Checkpoint | null, uidValidity: string, uidNext: number, firstRun: 'unseen' | 'all'): Checkpoint {
  const filterUntil = Math.max(0, uidNext - 1);
  if (old?.caughtUpAt) {
    // Mail received before the last catch-up was handled, or skipped on purpose by the first-run
    // rule; a day's margin for clocks and because SEARCH SINCE counts whole days.
    const since = new Date(Date.parse(old.caughtUpAt) - DAY_MS).toISOString();
    return { uidValidity, lastUid: 0, filterUntil, filter: 'unprocessed', since, caughtUpAt: old.caughtUpAt };
  }
  return { uidValidity, lastUid: 0, filterUntil, filter: firstRun === 'unseen' ? 'unseen' : 'unprocessed' };
}

export class CheckpointStore {
  private readonly key: string;

  constructor(
    private readonly state: AccountState,
    mailbox: string,
    folder: string,
  ) {
    this.key = `uid:${mailbox.toLowerCase()}:${folder}`;
  }

  async load(): Promise<Checkpoint | null> {
    const entry = await this.state.get(this.key);
    if (!entry) return null;
    try {
      const cp = JSON.parse(entry.value) as Checkpoint;
      return typeof cp.uidValidity === 'string' && Number.isInteger(cp.lastUid) ? cp : null;
    } catch {
      return null;
    }
  }

  async save(cp: Checkpoint): Promise<void> {
    await this.state.put(this.key, JSON.stringify(cp));
  }
}
