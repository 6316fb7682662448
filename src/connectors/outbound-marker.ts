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
import { kvSafe } from '../core/subjects.js';

/**
 * An in-flight marker names its writer (`by`, the gateway instance) and when (`at`, ms).
 * `round`: how many times `omnigate dlq --replay` sent a failed message again (absent: never). Its
 * outcome is a new one for the ticket: under the first round's ids it was dropped as a duplicate
 * and the replay that failed again left the ticket saying nothing.
 */
export type Marker = { s: 'claimed' | 'in-flight' | 'retry' | 'sent' | 'failed'; attempts: number; pid?: string; by?: string; at?: number; round?: number };

export function markerKey(outboundId: string): string {
  return `out.${kvSafe(outboundId)}`;
}

export function markerOf(entry: KvEntry | null): Marker | null {
  return entry && entry.operation === 'PUT' ? (entry.json() as Marker) : null;
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
 * How long an in-flight marker of another live replica keeps the message its own (0: not at all).
 * Its writer needs the platform call and then the recording, which waits out NATS elections; a
 * writer killed (-9) leaves its marker, and the message comes back after ack_wait anyway, so the
 * grace costs a crashed send at most one more ack_wait. Markers of older versions carry no time.
 * `deadReplicas`: writers known dead (the previous gateway on the embedded data directory), decided at once.
 */
export function othersMayStillSend(marker: Marker | null, o: { replica?: string; deadReplicas?: readonly string[]; ackWaitMs: number }): number {
  if ((marker?.s !== 'in-flight' && marker?.s !== 'claimed') || marker.at === undefined || marker.by === undefined || marker.by === o.replica) return 0;
  if (o.deadReplicas?.includes(marker.by)) return 0;
  return Math.max(0, marker.at + 2 * o.ackWaitMs - Date.now());
}
