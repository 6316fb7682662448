/**
 * Which mail a sync takes next: every UID above the cursor, oldest first, except inside the
 * one-time scan range (checkpoint.ts), where only the mail the scan's filter admits. A scan range
 * left with nothing to take is closed, and the checkpoint saved, so later syncs search plainly.
 */
import type { ImapFlow } from 'imapflow';
import type { Checkpoint } from './checkpoint.js';

export interface PendingIn {
  processedKeyword: string;
  /** No mail of this sync is left for a later one: only then may the scan range close. */
  nothingDeferred(): boolean;
  save(cp: Checkpoint): Promise<void>;
}

/** UIDs above `cursor`, oldest first; inside the one-time scan range only those the filter admits. */
export async function pendingUids(client: ImapFlow, cp: Checkpoint, cursor: number, p: PendingIn): Promise<number[]> {
  const all = ((await client.search({ uid: `${cursor + 1}:*` }, { uid: true })) || []).filter((u) => u > cursor);
  all.sort((a, b) => a - b);
  if (cp.filterUntil && cp.lastUid >= cp.filterUntil) {
    delete cp.filterUntil;
    delete cp.filter;
    delete cp.since;
  }
  if (!cp.filterUntil || cursor >= cp.filterUntil) return all;
  const criteria = {
    uid: `${cursor + 1}:${cp.filterUntil}`,
    unKeyword: p.processedKeyword,
    ...(cp.filter === 'unseen' ? { seen: false } : {}),
    ...(cp.since ? { since: new Date(cp.since) } : {}),
  };
  const admitted = new Set((await client.search(criteria, { uid: true })) || []);
  const out = all.filter((u) => u > cp.filterUntil! || admitted.has(u));
  if (!out.some((u) => u <= cp.filterUntil!) && p.nothingDeferred()) {
    // The scan range holds nothing more to take: close it.
    cp.lastUid = Math.max(cp.lastUid, cp.filterUntil);
    delete cp.filterUntil;
    delete cp.filter;
    delete cp.since;
    await p.save(cp);
  }
  return out;
}
