/**
 * An agent merged the RT ticket an omnigate ticket is written to into another one. RT keeps
 * answering for the old id with the surviving ticket (GET /ticket/<old> returns the surviving
 * one, a correspond to the old id lands there), so the customer's next messages appeared on the
 * surviving ticket with nothing saying where they came from, and nobody was told. The adapter now
 * writes to the surviving ticket by its own id (an earlier attempt is looked for there, where RT
 * recorded it), logs each redirected event, and says so on the surviving ticket in a comment
 * naming the merge, once per merge and process (after a restart, once more unless that comment is
 * among our last few there).
 */
import type { Logger } from '../../core/logger.js';
import type { TicketEvent } from '../../core/schema.js';
import type { HelpdeskTexts } from '../texts.js';
import type { RtClient } from './client.js';

/** Merges announced by this process, `<merged>><surviving>`; past this many, announced again at worst. */
const MAX_TOLD = 10_000;

export class MergedAway {
  private readonly told = new Set<string>();

  constructor(
    private readonly client: Pick<RtClient, 'getTicket' | 'comment'>,
    private readonly log: Logger,
    private readonly texts: HelpdeskTexts,
    /** Did our user already write this comment on that ticket lately? */
    private readonly alreadyWritten: (rtId: number, content: string) => Promise<boolean>,
  ) {}

  /** The RT ticket `rtId`'s events go to now: itself, or the ticket it was merged into. */
  async live(rtId: number, event: TicketEvent): Promise<number> {
    const surviving = (await this.client.getTicket(rtId)).id;
    if (surviving === rtId) return rtId;
    this.log.warn({ ticketId: event.ticketId, event: event.type, rtTicket: rtId, survivingRtTicket: surviving }, `RT ticket ${rtId} was merged into ${surviving}: writing this event there`);
    const key = `${rtId}>${surviving}`;
    if (this.told.has(key)) return surviving;
    const content = this.texts.mergedHere(`#${rtId}`, `#${event.ticketNumber}`);
    if (!(await this.alreadyWritten(surviving, content))) await this.client.comment(surviving, { content });
    if (this.told.size >= MAX_TOLD) this.told.clear();
    this.told.add(key);
    return surviving;
  }
}
