/**
 * Handing a webhook's delivery from one holder to the next without breaking per-ticket order.
 *
 * Every new term starts the durable again right after its ack floor (when anything is left "ack
 * pending"), so everything not yet acknowledged comes in stream order from a consumer with no
 * history: events the old holder still held, events it handed back with a nak, events lost in
 * flight at its last pull. An earlier design trusted the server to redeliver handed-back naks
 * ahead of newer events; on nats-server 2.9 that redelivery queue lives in the consumer leader's
 * memory (cleared when the leader moves) and does not cover events lost in flight, which then came
 * back after ack_wait behind newer events of their ticket: the inversions of issue 17.
 *
 * Beyond the floor lie events the old holder already delivered (lanes ack out of stream order).
 * A holder that ends its term cleanly lists them (DoneSet) in a record per webhook in the state
 * bucket, and the successor skips those: no repeats after a clean handover. A holder that died or
 * froze mid-term leaves the record "delivering": the successor posts everything after the floor
 * again (repeats with the same `x-omnigate-delivery` id, which receivers deduplicate on; never
 * an inversion among first copies).
 *
 * Both record writes are compare-and-set: a holder that wakes after it was replaced cannot mark
 * the replacement's term as handed back. The rewind itself (deleting and recreating the durable)
 * is only done while the caller's lease is still valid: a stale holder recreating the durable
 * under its successor would throw away the successor's position.
 */
import type { KV } from '@nats-io/kv';
import { z } from 'zod';
import { isCasConflict } from '../core/bus.js';
import { kvSafe } from '../core/subjects.js';
import type { Ranges } from './webhook-done.js';

const HandoverRecord = z.object({
  state: z.enum(['delivering', 'handed-back']),
  /** The lease token of the term that wrote it. */
  token: z.number().int(),
  holder: z.string(),
  /** With "handed-back": stream sequences beyond the ack floor already delivered (skip them). */
  done: z.array(z.tuple([z.number().int(), z.number().int()])).optional(),
});
type HandoverRecord = z.infer<typeof HandoverRecord>;

/** What a term found when it started, and the revision of its own "delivering" record. */
export interface Term {
  /** How the previous term ended: `unknown` when there was no readable record. */
  predecessor: 'handed-back' | 'delivering' | 'unknown';
  revision: number;
  /** What a predecessor that handed back had delivered beyond the floor; empty otherwise. */
  done: Ranges;
}

const recordKey = (webhook: string) => `webhook-dispatch.${kvSafe(webhook)}`;

/** Records that this holder's term begins; returns how the previous one ended. */
export async function openTerm(kv: KV, webhook: string, token: number, holder: string): Promise<Term> {
  const key = recordKey(webhook);
  const mine = JSON.stringify({ state: 'delivering', token, holder } satisfies HandoverRecord);
  for (;;) {
    const entry = await kv.get(key);
    const found = entry?.operation === 'PUT' ? HandoverRecord.safeParse(safeJson(entry.string())) : undefined;
    const predecessor = found?.success ? found.data.state : 'unknown';
    const done = found?.success && found.data.state === 'handed-back' ? (found.data.done ?? []) : [];
    try {
      const revision = entry?.operation === 'PUT' ? await kv.update(key, mine, entry.revision) : await kv.create(key, mine);
      return { predecessor, revision, done };
    } catch (err) {
      // A stale holder just recorded its hand-back: read again, it may spare us the rewind.
      if (!isCasConflict(err)) throw err;
    }
  }
}

/**
 * Records that this term ended cleanly, with what it delivered beyond the ack floor. False when
 * a later term has started since (this holder was replaced mid-term; the successor repeats).
 */
export async function closeTerm(kv: KV, webhook: string, term: Term, token: number, holder: string, delivered: Ranges): Promise<boolean> {
  const done = JSON.stringify({ state: 'handed-back', token, holder, done: delivered } satisfies HandoverRecord);
  try {
    await kv.update(recordKey(webhook), done, term.revision);
    return true;
  } catch (err) {
    if (isCasConflict(err)) return false;
    throw err;
  }
}

function safeJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return undefined; // an unreadable record counts as none: the successor rewinds, the safe side
  }
}
