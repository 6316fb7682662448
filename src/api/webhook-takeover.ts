/**
 * Taking over a webhook from a holder that vanished (killed, or frozen past its lease TTL)
 * without giving back what it had taken. Its events are still "ack pending" on the durable and
 * would come back only when the server's redelivery timer gets to them — measured on 2.9.10:
 * after newer events of the same tickets had already gone out (inversions at the receiver).
 *
 * So the new holder rewinds: the durable is recreated to start right after its ack floor, and
 * everything after the floor is delivered again, in stream order. The price is duplicates, not
 * inversions: events the old holder delivered beyond the floor go out once more, with the same
 * `x-omnigate-delivery` id, which is what receivers deduplicate on.
 *
 * A clean handover must not rewind. The server cannot tell it apart: events given back with a nak
 * stay "ack pending" until delivered again, exactly like orphans, and acks of other tickets lie
 * beyond the floor (lanes ack out of stream order), so a rewind would send those again. Hence a
 * record per webhook in the state bucket (durable: a handover can outlast the lease TTL, as in a
 * rolling restart), written by each holder: "delivering" when its term starts, "handed-back" once
 * it has given back everything it held. A successor that finds "handed-back" knows the pending
 * events are on their way back in order and does not rewind; one that finds "delivering" (the
 * holder died or froze mid-term) or nothing (first start, or an older gateway) does.
 * Both writes are compare-and-set: a holder that wakes after it was replaced cannot mark the
 * replacement's term as handed back.
 */
import { DeliverPolicy, type JetStreamManager } from '@nats-io/jetstream';
import type { KV } from '@nats-io/kv';
import { z } from 'zod';
import { isCasConflict } from '../core/bus.js';
import { kvSafe } from '../core/subjects.js';

const HandoverRecord = z.object({
  state: z.enum(['delivering', 'handed-back']),
  /** The lease token of the term that wrote it. */
  token: z.number().int(),
  holder: z.string(),
});
type HandoverRecord = z.infer<typeof HandoverRecord>;

/** What a term found when it started, and the revision of its own "delivering" record. */
export interface Term {
  /** How the previous term ended: `unknown` when there was no readable record. */
  predecessor: 'handed-back' | 'delivering' | 'unknown';
  revision: number;
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
    try {
      const revision = entry?.operation === 'PUT' ? await kv.update(key, mine, entry.revision) : await kv.create(key, mine);
      return { predecessor, revision };
    } catch (err) {
      // A stale holder just recorded its hand-back: read again, it may spare us the rewind.
      if (!isCasConflict(err)) throw err;
    }
  }
}

/**
 * Records that this term gave back everything it held. False when a later term has started
 * since (this holder was replaced while it still held events; the successor rewound).
 */
export async function closeTerm(kv: KV, webhook: string, term: Term, token: number, holder: string): Promise<boolean> {
  const done = JSON.stringify({ state: 'handed-back', token, holder } satisfies HandoverRecord);
  try {
    await kv.update(recordKey(webhook), done, term.revision);
    return true;
  } catch (err) {
    if (isCasConflict(err)) return false;
    throw err;
  }
}

/** Returns the stream sequence delivery restarts from, or 0 when nothing was orphaned. */
export async function rewindOrphans(jsm: JetStreamManager, stream: string, durable: string): Promise<number> {
  const info = await jsm.consumers.info(stream, durable).catch(() => null);
  if (!info || info.num_ack_pending === 0) return 0;
  const from = info.ack_floor.stream_seq + 1;
  await jsm.consumers.delete(stream, durable);
  await jsm.consumers.add(stream, { ...info.config, deliver_policy: DeliverPolicy.StartSequence, opt_start_seq: from });
  return from;
}

function safeJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return undefined; // an unreadable record counts as none: the successor rewinds, the safe side
  }
}
