/**
 * The order of a conversation's replies across gateway replicas.
 *
 * Every replica's outbound runner takes from one durable consumer per channel account, so two
 * replies of one conversation can be taken by two replicas, and a reply whose first send failed
 * (and waits in its backoff) or whose pull was cut off (it comes back after `ack_wait`) could be
 * overtaken by the next one. So each reply names the conversation's previous reply, its id and its
 * sequence in `OMNI_OUT`, in a header, and a runner sends it only once that one is settled: sent,
 * failed for good, acknowledged, or gone from the stream. The payload's contract is untouched (a
 * webhook receiver gets the message as before); a message without the header is sent as it comes.
 */
import { headers as makeHeaders, type MsgHdrs } from '@nats-io/transport-node';
import { JetStreamApiError, type JetStreamManager, type StoredMsg } from '@nats-io/jetstream';
import { Streams } from './subjects.js';

export const AFTER_HEADER = 'Omni-After';

export interface PreviousReply {
  /** Its stream sequence in OMNI_OUT. */
  readonly seq: number;
  /** Its outbound id (the runner's marker key). */
  readonly id: string;
}

/** The headers of a reply published after `previous`. */
export function afterHeaders(previous: PreviousReply): MsgHdrs {
  const h = makeHeaders();
  h.set(AFTER_HEADER, `${previous.seq} ${previous.id}`);
  return h;
}

/** The previous reply a message names, or undefined (none, or a value this version cannot read). */
export function previousReplyOf(h: MsgHdrs | undefined): PreviousReply | undefined {
  const value = h?.get(AFTER_HEADER);
  if (!value) return undefined;
  const space = value.indexOf(' ');
  const seq = Number(value.slice(0, space));
  const id = value.slice(space + 1);
  return space > 0 && Number.isSafeInteger(seq) && seq > 0 && id ? { seq, id } : undefined;
}

/**
 * The message stored at `seq` in OMNI_OUT, or null when there is none. Only "no message found"
 * means none: another failure (the stream unreachable in a leader election) is thrown, never
 * taken for a message erased or settled.
 */
export function storedOutbound(jsm: JetStreamManager, seq: number): Promise<StoredMsg | null> {
  return jsm.streams.getMessage(Streams.outbound, { seq }).catch((err: unknown) => {
    if (err instanceof JetStreamApiError && err.code === 10037) return null;
    throw err;
  });
}

/** Whether OMNI_OUT still holds `reply` where it was stored (not when the stream was recreated since and the sequence is another message's). */
export async function holdsReply(jsm: JetStreamManager, reply: PreviousReply): Promise<boolean> {
  return (await storedOutbound(jsm, reply.seq))?.header?.get('Nats-Msg-Id') === reply.id;
}
