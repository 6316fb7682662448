/**
 * Dead letters: what could not be processed is parked on omni.dlq.<source> with the reason and
 * the original bytes, so nothing accepted is ever silently dropped and everything can be replayed.
 * A payload too large to travel in a NATS message (often the very reason it was parked) is kept
 * whole in the object store and the letter points at it.
 */
import type { Bus } from './bus.js';
import { MediaStore } from './media.js';
import { Subjects } from './subjects.js';
import type { DeadLetter } from './schema.js';

const decoder = new TextDecoder('utf-8', { fatal: true });
/** Payloads above this go to the object store: the letter itself must stay well under max_payload. */
export const INLINE_DEAD_LETTER_BYTES = 256 * 1024;

export async function deadLetter(bus: Bus, source: string, subject: string, reason: string, payload: unknown): Promise<void> {
  let text: string;
  let encoding: DeadLetter['payloadEncoding'] = 'utf8';
  if (payload instanceof Uint8Array) {
    try {
      text = decoder.decode(payload);
    } catch {
      text = Buffer.from(payload).toString('base64');
      encoding = 'base64';
    }
  } else if (typeof payload === 'string') {
    text = payload;
  } else {
    text = JSON.stringify(payload) ?? String(payload);
  }
  const letter: DeadLetter = { v: 1, type: 'dead-letter', source, subject, reason, at: new Date().toISOString(), payload: text, payloadEncoding: encoding };
  // Measured as it will travel (JSON-escaped), whatever the payload was: bytes, text or an object.
  if (Buffer.byteLength(JSON.stringify(text)) > INLINE_DEAD_LETTER_BYTES) {
    const bytes = payload instanceof Uint8Array ? payload : Buffer.from(text, 'utf8');
    const stored = await new MediaStore(bus.media, Number.MAX_SAFE_INTEGER).put(bytes, { name: `dead letter from ${source}`, mimeType: 'application/octet-stream' });
    Object.assign(letter, { payload: '', payloadEncoding: 'utf8', payloadObjectKey: stored.objectKey, payloadBytes: stored.size });
  }
  await bus.publishJson(Subjects.deadLetter(source), letter);
}
