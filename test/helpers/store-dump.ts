/**
 * Everything the bus stores, as text: every message of every stream (KV buckets and the object
 * store are streams too: `KV_*`, `OBJ_*`), a dead letter's base64 payload decoded. Erasure tests
 * grep this for what must be gone.
 */
import { PATIENT } from './nats-server.js';
import { jetstream, jetstreamManager } from '@nats-io/jetstream';
import type { NatsConnection } from '@nats-io/transport-node';

export async function dumpStreams(nc: NatsConnection): Promise<Map<string, string[]>> {
  const jsm = await jetstreamManager(nc, PATIENT);
  const js = jetstream(nc, PATIENT);
  const out = new Map<string, string[]>();
  for await (const s of jsm.streams.list()) {
    const texts: string[] = [];
    out.set(s.config.name, texts);
    if (s.state.messages === 0) continue;
    const c = await js.consumers.get(s.config.name);
    try {
      for (;;) {
        const m = await c.next({ expires: 1000 });
        if (!m) break;
        let text = `${m.subject}\n${headersText(m.headers)}\n${Buffer.from(m.data).toString('utf8')}`;
        try {
          const letter = JSON.parse(m.string()) as { payload?: string; payloadEncoding?: string };
          if (letter.payloadEncoding === 'base64' && letter.payload) text += `\n${Buffer.from(letter.payload, 'base64').toString('utf8')}`;
        } catch {
          // not JSON (object-store chunks): the raw text above is what is searched
        }
        texts.push(text);
        // Up to what the stream held when listed: a stream written all the time (lease renewals in
        // KV_omni_leases) never reaches "nothing pending" for a reader slower than its writers,
        // which under a loaded Node 24 run kept an erasure test reading for five minutes.
        if (m.info.pending === 0 || m.seq >= s.state.last_seq) break;
      }
    } finally {
      await c.delete().catch(() => {});
    }
  }
  return out;
}

function headersText(h: { keys(): string[]; values(k: string): string[] } | undefined): string {
  if (!h) return '';
  return h.keys().map((k) => `${k}: ${h.values(k).join(', ')}`).join('\n');
}

/** Where `needle` (case-insensitive) occurs: "<stream>#<index>" per hit. */
export function findIn(dump: Map<string, string[]>, needle: string): string[] {
  const n = needle.toLowerCase();
  const hits: string[] = [];
  for (const [stream, texts] of dump) texts.forEach((t, i) => t.toLowerCase().includes(n) && hits.push(`${stream}#${i}: ${t.slice(0, 160).replace(/\s+/g, ' ')}`));
  return hits;
}
