/**
 * Parked mail whose flags did not land yet. A dead letter is stored before its mail is flagged;
 * a sync that fails in between (a dropped session, a refused flag store, a lost lease) reads the
 * mail again, and it must then be flagged, not parked a second time. The connector keeps, per
 * folder, the mail parked and not yet flagged (FolderWatcherDeps.unflagged).
 */
import type { ImapFlow } from 'imapflow';
import { errorMessage } from '../../core/errors.js';
import { acknowledge, confirmUidValidity, type AcknowledgeIn } from './acknowledge.js';
import type { Checkpoint } from './checkpoint.js';

/** The key of a parked mail in the folder's set of mail parked but not yet flagged (FolderWatcherDeps.unflagged). */
export const parkKey = (cp: Checkpoint, uid: number): string => `${cp.uidValidity}:${uid}`;

/**
 * Sets the parked flags on `uids` now (best effort: a failure is logged, and `unflagged` keeps
 * them from being parked again when they are read again, when flagging is tried once more).
 */
export async function flagParked(client: ImapFlow, a: AcknowledgeIn, folder: string, cp: Checkpoint, uids: number[], unflagged: Set<string>): Promise<void> {
  try {
    await confirmUidValidity(client, folder, cp);
    await acknowledge(client, a, [], uids);
    for (const uid of uids) unflagged.delete(parkKey(cp, uid));
  } catch (err) {
    a.log.warn({ folder: a.label, uids, err: errorMessage(err) }, 'could not flag parked mail yet; it is flagged when read again, not parked again');
  }
}
