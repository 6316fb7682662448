/**
 * The RT tickets merged into each RT ticket, as the poller asks for them on every agent
 * transaction (an answer on the surviving ticket goes to the customers of the merged ones too).
 * Asked of RT once per ticket, not once per transaction: a search per answer, comment and status
 * change was most of the poller's RT traffic, for sets that change only when an agent merges.
 *
 * RT records a merge as `AddLink` transactions with Field `MergedInto` (on both tickets). The
 * poller reads them in transaction order with everything else, so a merge is seen before any
 * answer made after it, and then every set is forgotten: a merge also moves the tickets merged
 * into the merged one (RT rewrites their EffectiveId), and merges are rare enough that working out
 * which sets changed is not worth it. Forgotten as well when the poller starts a term: merges read
 * by another replica meanwhile were never seen here.
 */
import type { RtClient, RtTicket, RtTransaction } from './client.js';

/** Enough tickets for a busy team's open work; past it the oldest set is asked again. */
const MAX_SETS = 10_000;

export class MergeSets {
  private readonly sets = new Map<number, RtTicket[]>();

  constructor(private readonly client: Pick<RtClient, 'mergedInto'>) {}

  async of(rtTicket: number): Promise<RtTicket[]> {
    const known = this.sets.get(rtTicket);
    if (known) return known;
    const merged = await this.client.mergedInto(rtTicket);
    if (this.sets.size >= MAX_SETS) this.sets.delete(this.sets.keys().next().value!);
    this.sets.set(rtTicket, merged);
    return merged;
  }

  forget(): void {
    this.sets.clear();
  }
}

/** The transaction types that say a merge happened (see above). */
export const MERGE_TYPES = ['AddLink'];

export function isMerge(txn: RtTransaction): boolean {
  return txn.type === 'AddLink' && txn.field === 'MergedInto';
}
