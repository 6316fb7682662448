/**
 * Per-folder intake checkpoint in the account's KV state: the UIDVALIDITY it belongs to and the
 * highest UID whose mail is stored in JetStream and acknowledged on the server. After a
 * UIDVALIDITY change (or on the very first start) the folder is scanned once up to `filterUntil`,
 * taking only mail not marked processed (and, on a first start, only unread mail if so configured).
 */
import type { AccountState } from '../contract.js';

export interface Checkpoint {
  /** UIDVALIDITY as a decimal string (imapflow hands it over as a BigInt). */
  uidValidity: string;
  lastUid: number;
  /** UIDs up to here are filtered (the one-time scan); above it every mail is taken. */
  filterUntil?: number;
  filter?: 'unseen' | 'unprocessed';
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
