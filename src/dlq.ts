/**
 * Dead-letter tooling for ops: list what was parked and why, and replay it once the cause is
 * fixed, each letter the way its source takes it in:
 *   router      the event (or delivery status) back onto its subject, Nats-Msg-Id "replay:<seq>"
 *               (an unread_subject letter onto omni.in.<channel>.<account>, which the router reads);
 *   connector   the platform payload back through the connector's own intake (omni.replay.*,
 *               answered by a running gateway): a raw mail goes through the mail parser again;
 *   webhook     the event POSTed once more to the webhook, by its dispatcher on a running gateway;
 *   outbound    the message back onto omni.out.* under its original id (idempotency key), after
 *               its "failed" marker is reset by compare-and-set, so it is still sent at most once.
 * Refused, with the reason: loop-guard drops, truncated payloads (but a router letter naming its
 * message in OMNI_IN is replayed from there, whole, while the stream keeps it), outbound
 * letters whose send may have reached the customer (outcome_unknown) or was sent since.
 * Needs only the `nats` section of the config.
 */
import { join } from 'node:path';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { DeliverPolicy, jetstream, type JetStreamClient } from '@nats-io/jetstream';
import { Kvm } from '@nats-io/kv';
import { Objm } from '@nats-io/obj';
import type { GatewayConfig } from './core/config-schema.js';
import { natsConnectionOptions, type NatsAccess } from './core/nats-access.js';
import { readEmbeddedAccess, URL_FILE } from './core/embedded-access.js';
import { isCasConflict } from './core/bus.js';
import { UNREAD_SUBJECT, sourceOf, sourceSubjectFilter } from './core/dead-letter.js';
import type { ReplayOutcome } from './core/replay.js';
import { errorMessage } from './core/errors.js';
import { DeadLetter, OutboundMessage } from './core/schema.js';
import { Buckets, MEDIA_BUCKET, Streams, Subjects, kvSafe } from './core/subjects.js';
import { jsonOrUndefined } from './core/json-input.js';

export interface DlqOptions {
  source?: string;
  since?: string;
  limit: number;
  replay: boolean;
  /** Print a line per letter. */
  out: (line: string) => void;
}

export type NatsSection = GatewayConfig['nats'];

/** What happened to one letter on replay. */
export const REPLAY_OUTCOMES = ['replayed', 'invalid', 'refused', 'failed'] as const;
export type Outcome = { outcome: (typeof REPLAY_OUTCOMES)[number]; detail?: string };

/** A webhook POST may take its whole timeout; a mail its parse and publish. */
const SERVICE_REPLAY_TIMEOUT_MS = 60_000;

/**
 * How a CLI tool reaches NATS: the configured deployment, or the running embedded server through
 * its nats.url (URL and credential; reading it takes the service user, as the file is 0600).
 */
export function toolNatsAccess(nats: NatsSection): NatsAccess {
  const { url, user, pass, token, tls, credsFile, nkey } = nats;
  if (url) return { url, user, pass, token, tls, credsFile, nkey };
  const file = join(nats.embedded.dataDir, URL_FILE);
  let embedded: NatsAccess | undefined;
  try {
    embedded = readEmbeddedAccess(nats.embedded.dataDir);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'EACCES') throw new Error(`cannot read ${file} (${(err as NodeJS.ErrnoException).code}): it is private to the user the gateway runs as; run this as that user`);
    throw err;
  }
  if (embedded) return embedded;
  throw new Error(`no nats.url configured and no running embedded server (${file} not found): start the gateway first`);
}

export async function deadLetters(nats: NatsSection, o: DlqOptions): Promise<{ listed: number; replayed: number; refused: number; failed: number }> {
  const access = toolNatsAccess(nats);
  // The client says only "connection refused": which server, and which setting named it. The
  // URL printed is without the embedded server's credential (readEmbeddedAccess took it out).
  const nc = await connect(natsConnectionOptions(access)).catch((err: unknown) => {
    throw new Error(`cannot reach NATS at ${access.url} (${nats.url ? 'nats.url' : `the embedded server's address in ${join(nats.embedded.dataDir, URL_FILE)}: is the gateway running?`}): ${errorMessage(err)}`);
  });
  const counts = { listed: 0, replayed: 0, refused: 0, failed: 0 };
  try {
    const js = jetstream(nc);
    const consumer = await js.consumers.get(Streams.deadLetter, {
      filter_subjects: o.source ? sourceSubjectFilter(o.source) : Subjects.deadLetterAll,
      ...(o.since ? { deliver_policy: DeliverPolicy.StartTime, opt_start_time: new Date(o.since).toISOString() } : {}),
    });
    let pending = (await consumer.info(true)).num_pending;
    while (pending > 0 && counts.listed < o.limit) {
      const batch = await consumer.fetch({ max_messages: Math.min(pending, o.limit - counts.listed, 500), expires: 3000 });
      let got = 0;
      for await (const m of batch) {
        got++;
        pending--;
        const parsed = DeadLetter.safeParse(m.json());
        if (!parsed.success) continue;
        const d = parsed.data;
        counts.listed++;
        const line = `${m.seq}\t${d.at}\t${d.source}\t${d.subject}\t${d.reason}`;
        if (!o.replay) {
          o.out(line);
          continue;
        }
        const r = await replayOne(nc, js, m.seq, d).catch((err): Outcome => ({ outcome: 'failed', detail: errorMessage(err) }));
        if (r.outcome === 'replayed') counts.replayed++;
        else if (r.outcome === 'failed') counts.failed++;
        else counts.refused++;
        o.out(`${line}\t${r.outcome}${r.detail ? `: ${r.detail}` : ''}`);
      }
      if (got === 0) break;
    }
    await consumer.delete().catch(() => {});
    return counts;
  } finally {
    await nc.drain();
  }
}

/** Replays one letter (stream sequence `seq`) the way its source takes it in; the console uses it too. */
export async function replayOne(nc: NatsConnection, js: JetStreamClient, seq: number, d: DeadLetter): Promise<Outcome> {
  if (d.truncated) return replayTruncated(js, seq, d);
  switch (sourceOf(d.source)) {
    case 'router': {
      // Back where it was stored, unless no router reads that subject: it would be parked there again.
      if (d.code !== UNREAD_SUBJECT) return republish(js, d.subject, await payloadOf(js, d), seq);
      const read = Subjects.inboundReadOf(d.subject);
      if (!read) return { outcome: 'refused', detail: `${d.subject} names no channel and account and no router reads it: the publisher must send it again on omni.in.<channel>.<account>` };
      const outcome = await republish(js, read, await payloadOf(js, d), seq);
      return outcome.outcome === 'replayed' ? { ...outcome, detail: `onto ${read} (no router reads ${d.subject})` } : outcome;
    }
    case 'connector':
      return replayThroughService(nc, d, `${d.source.split('.').slice(1).join('/')} connector`);
    case 'outbound':
      return replayOutbound(js, seq, d);
    case 'loop-guard':
      return { outcome: 'refused', detail: 'dropped on purpose by the loop guard; the router would drop it again' };
    case 'webhook':
      return replayThroughService(nc, d, `dispatcher for webhook ${d.source.slice('webhook.'.length)}`);
    case 'helpdesk':
      return replayThroughService(nc, d, `syncing replica of helpdesk ${d.source.slice('helpdesk.'.length)}`);
    default:
      return { outcome: 'refused', detail: `unknown source ${d.source}` };
  }
}

/**
 * A letter that kept only the first part of its payload. A router letter that names the message's
 * sequence in OMNI_IN (a message too large to route: `too_large`, whose letter is cut at the bus's
 * own limit) is replayed from there, whole, as long as the stream keeps it (nats.retention): once
 * max_payload was raised, as docs/operating.md says. Any other is refused: a part is not the message.
 */
async function replayTruncated(js: JetStreamClient, seq: number, d: DeadLetter): Promise<Outcome> {
  const kept = `only the first part of the ${d.payloadBytes ?? '?'}-byte payload was kept`;
  const inboundSeq = d.meta?.stream === Streams.inbound ? Number(d.meta.seq) : NaN;
  if (sourceOf(d.source) !== 'router' || !Number.isSafeInteger(inboundSeq) || inboundSeq < 1) return { outcome: 'refused', detail: kept };
  const jsm = await js.jetstreamManager();
  const stored = await jsm.streams.getMessage(Streams.inbound, { seq: inboundSeq }).catch((err: unknown) => {
    if (/no message found|not found/i.test(errorMessage(err))) return null;
    throw err;
  });
  if (!stored) return { outcome: 'refused', detail: `${kept}, and ${Streams.inbound} no longer holds message ${inboundSeq} (older than nats.retention): the sender must send it again` };
  if (stored.subject !== d.subject) return { outcome: 'refused', detail: `${kept}, and ${Streams.inbound} message ${inboundSeq} is on ${stored.subject}, not ${d.subject}: not this letter's message` };
  const outcome = await republish(js, d.subject, stored.data, seq);
  return outcome.outcome === 'replayed' ? { ...outcome, detail: `the whole message from ${Streams.inbound} (sequence ${inboundSeq}); the letter kept only its first part` } : outcome;
}

/**
 * Through the part that parked it, on a running gateway: a connector (omni.replay.inbound.<channel>.<account>)
 * or a webhook dispatcher (omni.replay.webhook.<name>).
 */
async function replayThroughService(nc: NatsConnection, d: DeadLetter, who: string): Promise<Outcome> {
  if (d.payloadObjectKey) return { outcome: 'refused', detail: 'payload kept in the object store by an older version: too large to hand over' };
  let answer;
  try {
    answer = await nc.request(Subjects.replay(d.source), JSON.stringify({ payload: d.payload, payloadEncoding: d.payloadEncoding, meta: d.meta }), { timeout: SERVICE_REPLAY_TIMEOUT_MS });
  } catch (err) {
    if (/no responders|503/i.test(errorMessage(err))) {
      return { outcome: 'refused', detail: `no running ${who} takes replays (start the gateway${who.includes('connector') ? '; some connectors have no replay' : ''})` };
    }
    throw err;
  }
  const r = answer.json<ReplayOutcome>();
  if (r.outcome === 'published') return { outcome: 'replayed', detail: r.duplicate ? 'already taken before (a duplicate, or done already): nothing new written' : undefined };
  return { outcome: r.outcome, detail: r.reason };
}

/**
 * A failed send goes out again under its original id: the runner's marker says "failed", so it is
 * reset to "retry" by compare-and-set first (a concurrent replay loses and is refused).
 */
async function replayOutbound(js: JetStreamClient, seq: number, d: DeadLetter): Promise<Outcome> {
  if (d.code === 'outcome_unknown' || d.reason.startsWith('outcome_unknown')) {
    return { outcome: 'refused', detail: 'the send may have reached the customer; check the chat and answer again' };
  }
  const bytes = await payloadOf(js, d);
  const parsed = OutboundMessage.safeParse(jsonOrUndefined(bytes));
  if (!parsed.success) return { outcome: 'refused', detail: 'not a valid outbound message' };
  const msg = parsed.data;
  const kv = await new Kvm(js).open(Buckets.dedup);
  const key = `out.${kvSafe(msg.id)}`;
  const entry = await kv.get(key);
  let reset: number | undefined;
  if (entry && entry.operation === 'PUT') {
    const marker = entry.json<{ s: string }>();
    if (marker.s === 'sent') return { outcome: 'refused', detail: `outbound ${msg.id} was sent since` };
    if (marker.s !== 'failed') return { outcome: 'refused', detail: `outbound ${msg.id} is being sent (${marker.s})` };
    try {
      // The next round: its outcome is a new one for the ticket (outbound-runner.ts, Marker).
      reset = await kv.update(key, JSON.stringify({ s: 'retry', attempts: 0, round: ((marker as { round?: number }).round ?? 0) + 1 }), entry.revision);
    } catch (err) {
      if (isCasConflict(err)) return { outcome: 'refused', detail: `outbound ${msg.id} changed meanwhile (another replay?)` };
      throw err;
    }
  }
  // One id per reset of the marker: a replay of a letter whose earlier replay failed again goes
  // out (the same id would be dropped by the duplicate window and leave the marker at "retry").
  let ack;
  try {
    ack = await js.publish(d.subject, bytes, { msgID: `replay:${seq}:${msg.id}:${entry?.revision ?? 0}` });
  } catch (err) {
    // Not published: the marker goes back to "failed", or every later replay is refused as "being sent".
    if (reset !== undefined) await kv.update(key, JSON.stringify({ s: 'failed', attempts: 0 }), reset).catch(() => undefined);
    throw err;
  }
  if (ack.duplicate) {
    return { outcome: 'refused', detail: `outbound ${msg.id}: replayed less than the duplicate window (nats.duplicateWindow) ago and JetStream dropped this repeat: nothing published` };
  }
  return { outcome: 'replayed', detail: `outbound ${msg.id}` };
}

/**
 * A router letter back onto `subject`, once per letter within the duplicate window (a double
 * click replays once). Dropped as such a repeat it says so: it was reported "replayed" while
 * nothing was published, e.g. an edit replayed again after its first replay was parked anew.
 */
async function republish(js: JetStreamClient, subject: string, payload: Uint8Array, seq: number): Promise<Outcome> {
  const ack = await js.publish(subject, payload, { msgID: `replay:${seq}` });
  if (!ack.duplicate) return { outcome: 'replayed' };
  return {
    outcome: 'refused',
    detail: `letter ${seq} was replayed less than the duplicate window (nats.duplicateWindow) ago and JetStream dropped this repeat: nothing published; if that replay was parked again, replay the newer letter, else try again later`,
  };
}

async function payloadOf(js: JetStreamClient, d: DeadLetter): Promise<Uint8Array> {
  if (d.payloadObjectKey) return readStoredPayload(js, d.payloadObjectKey);
  return d.payloadEncoding === 'base64' ? Buffer.from(d.payload, 'base64') : Buffer.from(d.payload, 'utf8');
}

/** A payload an older version parked in the object store because it was too large for a message. */
async function readStoredPayload(js: JetStreamClient, objectKey: string): Promise<Uint8Array> {
  const store = await new Objm(js).open(MEDIA_BUCKET);
  const data = await store.getBlob(objectKey);
  if (!data) throw new Error(`dead letter payload ${objectKey} is missing from the object store`);
  return data;
}
