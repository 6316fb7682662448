/**
 * Dead-letter tooling for ops: list what was parked and why, and replay it to the subject it
 * came from once the cause is fixed. Replays carry Nats-Msg-Id "replay:<dlq seq>", and the router
 * and connectors are idempotent, so replaying twice changes nothing.
 */
import { readFileSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import { connect } from '@nats-io/transport-node';
import { DeliverPolicy, jetstream, type JetStreamClient } from '@nats-io/jetstream';
import { Objm } from '@nats-io/obj';
import { natsAccess, type GatewayConfig } from './core/config.js';
import { natsConnectionOptions } from './core/nats-access.js';
import { DeadLetter } from './core/schema.js';
import { MEDIA_BUCKET, Streams, Subjects } from './core/subjects.js';

export interface DlqOptions {
  source?: string;
  since?: string;
  limit: number;
  replay: boolean;
  /** Print a line per letter. */
  out: (line: string) => void;
}

/** The NATS URL a CLI tool should use: the configured one, or the running embedded server's. */
export function toolNatsUrl(config: GatewayConfig): string {
  if (config.nats.url) return config.nats.url;
  const file = join(config.nats.embedded.dataDir, 'nats.url');
  if (existsSync(file)) return readFileSync(file, 'utf8').trim();
  throw new Error(`no nats.url configured and no running embedded server (${file} not found): start the gateway first`);
}

export async function deadLetters(config: GatewayConfig, o: DlqOptions): Promise<{ listed: number; replayed: number }> {
  const nc = await connect(natsConnectionOptions(config.nats.url ? natsAccess(config) : { url: toolNatsUrl(config) }));
  try {
    const js = jetstream(nc);
    const consumer = await js.consumers.get(Streams.deadLetter, {
      filter_subjects: o.source ? Subjects.deadLetter(o.source) : Subjects.deadLetterAll,
      ...(o.since ? { deliver_policy: DeliverPolicy.StartTime, opt_start_time: new Date(o.since).toISOString() } : {}),
    });
    let pending = (await consumer.info(true)).num_pending;
    let listed = 0;
    let replayed = 0;
    while (pending > 0 && listed < o.limit) {
      const batch = await consumer.fetch({ max_messages: Math.min(pending, o.limit - listed, 500), expires: 3000 });
      let got = 0;
      for await (const m of batch) {
        got++;
        pending--;
        const parsed = DeadLetter.safeParse(m.json());
        if (!parsed.success) continue;
        const d = parsed.data;
        listed++;
        o.out(`${m.seq}\t${d.at}\t${d.source}\t${d.subject}\t${d.reason}`);
        // Failed sends are not replayed: their outbound id is settled (at most once); the agent
        // answers again, which makes a new id.
        if (o.replay && d.subject.startsWith('omni.') && !d.subject.startsWith('omni.out.')) {
          const bytes = d.payloadObjectKey
            ? await readStoredPayload(js, d.payloadObjectKey)
            : d.payloadEncoding === 'base64' ? Buffer.from(d.payload, 'base64') : Buffer.from(d.payload, 'utf8');
          await js.publish(d.subject, bytes, { msgID: `replay:${m.seq}` });
          replayed++;
        }
      }
      if (got === 0) break;
    }
    await consumer.delete().catch(() => {});
    return { listed, replayed };
  } finally {
    await nc.drain();
  }
}

/** A payload parked in the object store because it was too large for a message. */
async function readStoredPayload(js: JetStreamClient, objectKey: string): Promise<Uint8Array> {
  const store = await new Objm(js).open(MEDIA_BUCKET);
  const data = await store.getBlob(objectKey);
  if (!data) throw new Error(`dead letter payload ${objectKey} is missing from the object store`);
  return data;
}
