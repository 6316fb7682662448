/**
 * A dispatcher's term under its lease, at both ends. Taking over: the term is recorded, the
 * durable rewound to its ack floor, and what a predecessor that handed back had delivered beyond
 * it is skipped. Handing back: what this term delivered beyond the floor is listed for the
 * successor. Meanwhile the term's POSTs end with its lease (postCutOff). The records themselves
 * and why the floor: webhook-takeover.ts.
 */
import { setMaxListeners } from 'node:events';
import type { Bus } from '../core/bus.js';
import { errorMessage } from '../core/errors.js';
import type { Lease } from '../core/lease.js';
import type { Logger } from '../core/logger.js';
import { ackFloor, rewindOrphans } from '../core/rewind.js';
import { Consumers, Streams } from '../core/subjects.js';
import { DoneSet } from './webhook-done.js';
import { closeTerm, openTerm, type Term } from './webhook-takeover.js';

/** Whose term: the webhook, this process's id in the lease bucket, and where to say what happened. */
export interface TermScope {
  bus: Bus;
  webhook: string;
  holder: string;
  log: Logger;
}

/**
 * Records that this holder's term begins and rewinds the durable: whatever is still "ack pending"
 * (held by the predecessor, handed back, or lost in flight) comes again from the ack floor in
 * stream order; what the predecessor listed as delivered is in `done`, to skip. Never trusts the
 * server's nak queue.
 */
export async function takeOver(s: TermScope, lease: Lease): Promise<{ term: Term; done: DoneSet }> {
  const term = await openTerm(s.bus.kv.state, s.webhook, lease.token, s.holder);
  const done = new DoneSet(term.done);
  const rewound = await rewindOrphans(s.bus.jsm, Streams.events, Consumers.webhooks(s.webhook), () => lease.valid());
  if (rewound && term.predecessor === 'handed-back') s.log.info({ webhook: s.webhook, fromSeq: rewound, skipping: done.size }, 'took over after a clean hand-back: delivering from the ack floor, in order, skipping what the predecessor delivered');
  else if (rewound) s.log.warn({ webhook: s.webhook, fromSeq: rewound, predecessor: term.predecessor }, 'took over from a holder that left events unacknowledged: delivering again from the ack floor, in order (receivers deduplicate by x-omnigate-delivery)');
  return { term, done };
}

/**
 * Lists what this term delivered beyond the ack floor for the successor to skip. Only called with
 * everything given back and the server's word on it; when the list cannot be written, the record
 * stays "delivering" and the successor sends everything after the floor again (repeats, never
 * inversions), so a failure here is logged, not thrown.
 */
export async function handBack(s: TermScope, term: Term, token: number, done: DoneSet): Promise<void> {
  try {
    // Only what lies beyond the floor matters to the successor (it restarts after the floor).
    await pruneToFloor(s, done);
    const delivered = done.toRanges();
    if (!delivered) {
      s.log.warn({ webhook: s.webhook, events: done.size }, 'too many events delivered beyond the ack floor to hand over: the next holder sends them again (repeats, no inversions)');
      return;
    }
    const recorded = await closeTerm(s.bus.kv.state, s.webhook, term, token, s.holder, delivered);
    if (!recorded) s.log.warn({ webhook: s.webhook, fence: token }, 'replaced before the hand-back was recorded: the new holder rewinds to the ack floor (repeats, no inversions)');
  } catch (err) {
    s.log.warn({ webhook: s.webhook, err: errorMessage(err) }, 'hand-back not recorded: the next holder rewinds to the ack floor (repeats, no inversions)');
  }
}

/** Forgets what the durable's ack floor covers: the server will not deliver it again (DoneSet). */
export async function pruneToFloor(s: TermScope, done: DoneSet): Promise<void> {
  done.prune(await ackFloor(s.bus.jsm, Streams.events, Consumers.webhooks(s.webhook)));
}

/**
 * The signal that ends a term's POSTs: at the shutdown cut-off, or once the lease ran out by the
 * clock (a process that woke from a freeze). A POST still waiting for its connection when the
 * holder froze would otherwise leave after the successor re-sent the event, under the older
 * token. `detach` at the term's end.
 */
export function postCutOff(s: TermScope, cutOff: AbortSignal, lease: Lease): { signal: AbortSignal; detach: () => void } {
  const stale = new AbortController();
  setMaxListeners(0, stale.signal);
  const onCutOff = () => stale.abort(cutOff.reason);
  if (cutOff.aborted) onCutOff();
  else cutOff.addEventListener('abort', onCutOff, { once: true });
  // The lease timer, first to run after a freeze, ends the lease; this runs right after it.
  lease.lost.then(
    () => {
      if (lease.expired()) stale.abort(new Error('lease ran out'));
    },
    (err: unknown) => s.log.warn({ webhook: s.webhook, err: errorMessage(err) }, 'lease watch failed'),
  );
  return { signal: stale.signal, detach: () => cutOff.removeEventListener('abort', onCutOff) };
}
