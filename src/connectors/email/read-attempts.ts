/**
 * Reads of a mail that came back without content, counted per UID: such a mail is tried again a
 * few times and then parked by its place on the server, instead of stalling the folder for ever.
 * The counts outlive an IMAP session (a failed read may be what ended it) but not the
 * UIDVALIDITY they were made under: the same UID is other mail then.
 */
import type { Logger } from '../../core/logger.js';

/** Reads of a mail that returned no content before it is parked instead of tried again. */
export const MAX_ATTEMPTS = 3;

export class ReadAttempts {
  private readonly byUid = new Map<number, { count: number; error: string }>();
  private uidValidity?: string;

  constructor(
    private readonly log: Logger,
    /** mailbox/folder, for logs. */
    private readonly label: string,
  ) {}

  /** Counts from here on are under `uidValidity`; true when it is not the one they were under (they are dropped). */
  under(uidValidity: string): boolean {
    if (this.uidValidity === uidValidity) return false;
    this.byUid.clear();
    this.uidValidity = uidValidity;
    return true;
  }

  /** Read without content too often: to be parked, not tried again. */
  spent(uid: number): boolean {
    return (this.byUid.get(uid)?.count ?? 0) >= MAX_ATTEMPTS;
  }

  failed(uid: number, error: string): void {
    const count = (this.byUid.get(uid)?.count ?? 0) + 1;
    this.byUid.set(uid, { count, error });
    this.log.warn({ folder: this.label, uid, attempt: count, err: error }, 'could not read a mail; trying again later');
  }

  /** How the reads of `uid` went, for its dead letter. */
  of(uid: number): { count: number; error: string } | undefined {
    return this.byUid.get(uid);
  }

  /** Handled (stored or parked): its count is done with. */
  forget(uid: number): void {
    this.byUid.delete(uid);
  }
}
