/**
 * The outbound runner's side of `Connector.marksWire`: the attempt's marker turns `in-flight` only
 * when a platform call is about to be made, and back to `claimed` when the platform refused before
 * anything of the message went out. Each is a compare-and-set: a copy taken over meanwhile stops
 * before its call.
 */
import type { SendAttempt } from './contract.js';

/** Another replica took the message over while this one paced its send: the call is not made. */
export class TakenOverError extends Error {
  constructor() {
    super('another replica took this message over');
  }
}

/**
 * `onWire`/`offWire` for one attempt. `mark` writes the attempt's marker in state `s` at `at`
 * (compare-and-set) and says whether it was written; `ackWaitMs` is the outbound consumer's.
 */
export function wireMarks(mark: (next: { s: 'in-flight' | 'claimed'; at: number }) => Promise<boolean>, ackWaitMs: number): Pick<SendAttempt, 'onWire' | 'offWire'> {
  let onWire = false;
  let markedAt = 0;
  const set = async (s: 'in-flight' | 'claimed') => {
    // Written again when it is old: a reply that waits out rate limits between its parts keeps
    // saying it is alive, or another replica offered it would judge it dead (2 × ack_wait) and
    // report outcome_unknown while this one still sends.
    if (onWire === (s === 'in-flight') && Date.now() - markedAt < ackWaitMs / 2) return;
    const at = Date.now();
    if (!(await mark({ s, at }))) throw new TakenOverError();
    onWire = s === 'in-flight';
    markedAt = at;
  };
  return { onWire: () => set('in-flight'), offWire: () => set('claimed') };
}
