/**
 * The outbound runner's marker per outbound id in `omni_dedup` (`out.<id>`): `in-flight` before
 * the platform call (`claimed` before it, while a connector that marks the wire still paces or
 * waits out a rate limit: nothing sent yet), `retry` after a transient failure, `sent`/`failed`
 * at the end. Every write
 * but the final one is a compare-and-set, so two deliveries of one message (to two replicas)
 * cannot both start an attempt.
 */
import type { KV, KvEntry } from '@nats-io/kv';
import { isCasConflict } from '../core/bus.js';
import { HolderWatch, SERVER_AGE_MS } from '../core/holder-watch.js';
import { kvSafe } from '../core/subjects.js';

/**
 * An in-flight marker names its writer (`by`, the gateway instance) and when (`at`, ms).
 * `round`: how many times `omnigate dlq --replay` sent a failed message again (absent: never). Its
 * outcome is a new one for the ticket: under the first round's ids it was dropped as a duplicate
 * and the replay that failed again left the ticket saying nothing.
 */
export type Marker = {
  s: 'claimed' | 'in-flight' | 'retry' | 'sent' | 'failed';
  attempts: number;
  pid?: string;
  by?: string;
  at?: number;
  round?: number;
  /** How many times a gateway took this reply over from one that died holding it (absent: never); see `takenOverFromDead`. */
  takeovers?: number;
};

/**
 * How many gateways may die holding one reply, each taken over by the next, before it fails for
 * good (`outbound.maxTakeovers`). A reply that itself kills the gateway (an attachment loaded into
 * memory past its limit, a connector bug) was taken over by every restart without end: a crash
 * loop, with the conversation's later replies held behind it. Three is past the deaths one reply
 * meets by chance (a kill -9, an OOM of something else, a node lost) while it is sent, which takes
 * seconds, and ends a loop after four crashes.
 */
export const DEFAULT_MAX_TAKEOVERS = 3;

export function markerKey(outboundId: string): string {
  return `out.${kvSafe(outboundId)}`;
}

export function markerOf(entry: KvEntry | null): Marker | null {
  return entry && entry.operation === 'PUT' ? (entry.json() as Marker) : null;
}

/**
 * Whether reading `marker` (past the wait for its writer, othersMayStillSend) takes over an
 * attempt a dead gateway left unfinished: claimed or in flight, and not written by this process
 * (`replica`), whose own in-place retry re-reads its own marker.
 */
export function takenOverFromDead(marker: Marker | null, replica: string | undefined): boolean {
  return (marker?.s === 'claimed' || marker?.s === 'in-flight') && (replica === undefined || marker.by !== replica);
}

/**
 * The failure reason of a reply `died` gateways died holding, the last with its marker in `state`
 * (`gateway_died_while_sending`). Permanent: another try would be another takeover. A claimed
 * reply had not reached its platform call (nothing went out); one in flight was resent only
 * because its receiver deduplicates, so a replay cannot duplicate it either way.
 */
export function diedHoldingReason(state: Marker['s'], died: number, maxTakeovers: number): string {
  const where = state === 'claimed' ? 'before its platform call (nothing went out)' : 'during its platform call (the receiver deduplicates by its key)';
  return `gateway_died_while_sending: ${died} gateways died holding this reply, the last ${where}; not taken over again (outbound.maxTakeovers: ${maxTakeovers}), as the reply may be what kills them. Look for the cause in those gateways' last log lines, then replay it`;
}

/** Whether the marker says the message is decided: sent or failed for good. */
export function settled(marker: Marker | null): boolean {
  return marker?.s === 'sent' || marker?.s === 'failed';
}

/** Writes a marker unless it moved since `revision` (0: must not exist). The new revision, or null on a lost race. */
export async function writeMarker(kv: KV, key: string, marker: Marker, revision: number): Promise<number | null> {
  try {
    return revision ? await kv.update(key, JSON.stringify(marker), revision) : await kv.create(key, JSON.stringify(marker));
  } catch (err) {
    if (isCasConflict(err)) return null;
    throw err;
  }
}

/**
 * What one runner has seen of other replicas' markers: a marker is its writer's for 2 × ack_wait
 * of this process's own observation of that revision, unchanged (core/holder-watch.ts).
 */
export function markerWatch(ackWaitMs: number): HolderWatch {
  return new HolderWatch(2 * ackWaitMs, Math.max(SERVER_AGE_MS, 2 * ackWaitMs));
}

/**
 * How long an in-flight marker of another live replica keeps the message its own (0: not at all).
 * Its writer needs the platform call and then the recording, which waits out NATS elections; a
 * writer killed (-9) leaves its marker, and the message comes back after ack_wait anyway, so the
 * grace costs a crashed send at most one more ack_wait or two. Measured by `watch`, from when this
 * process first saw that revision of the marker, not from the writer's `at`: a writer whose clock
 * ran 2 minutes behind wrote markers the others took over at once, and sent the reply again while
 * it was still sending it. Markers of older versions carry no time and no writer: not waited for.
 * `deadReplicas`: writers known dead (the previous gateway on the embedded data directory), decided at once.
 */
export function othersMayStillSend(entry: KvEntry | null, watch: HolderWatch, o: { replica?: string; deadReplicas?: readonly string[] }): number {
  const marker = markerOf(entry);
  if (!entry || (marker?.s !== 'in-flight' && marker?.s !== 'claimed') || marker.at === undefined || marker.by === undefined || marker.by === o.replica) return 0;
  if (o.deadReplicas?.includes(marker.by)) return 0;
  return watch.remainingMs(entry.key, entry.revision, entry.created);
}
