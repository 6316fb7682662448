/**
 * Dead letters: what could not be processed is parked on omni.dlq.<source> with the reason and
 * the original bytes, so nothing accepted is ever silently dropped and everything can be replayed.
 */
import type { Bus } from './bus.js';
import { Subjects } from './subjects.js';
import type { DeadLetter } from './schema.js';

const decoder = new TextDecoder('utf-8', { fatal: true });

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
  const letter: DeadLetter = {
    v: 1,
    type: 'dead-letter',
    source,
    subject,
    reason,
    at: new Date().toISOString(),
    payload: text,
    payloadEncoding: encoding,
  };
  await bus.publishJson(Subjects.deadLetter(source), letter);
}
