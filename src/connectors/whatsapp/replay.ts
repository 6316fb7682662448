/**
 * What a WhatsApp Web dead letter holds, read for `omnigate dlq --replay`. The connector parks
 * the message Baileys handed it (letterOf: its proto WebMessageInfo JSON, longs as strings, bytes
 * as base64, so media keys survive whatever Baileys held them in) when it could not be normalised,
 * the event schema refused it, or it could not be published (NATS gone past the publish's
 * patience, the gateway stopping). Letters of older versions hold `JSON.stringify(msg)`: the same
 * while the bytes sat in proto instances, but a plain Buffer there is `{type: 'Buffer', data: [...]}`,
 * which protobuf's fromObject would drop without a word; readLetter turns those back into bytes. WhatsApp does not deliver a message twice — Baileys acknowledged it — so the letter
 * is the only copy, and a replay through the connector's intake is how such a message gets in.
 *
 * No signature to check: the message came over the session's end-to-end encrypted connection,
 * and the letter reaches the connector only over NATS from the dead-letter stream.
 *
 * Refused here, before that path: a letter that is not JSON or not a WebMessageInfo (nothing any
 * version would read better), and a letter parked for another number than the one the session is
 * linked to now (`meta.me`: the account was re-linked since; its chats are that number's).
 */
import { errorMessage } from '../../core/errors.js';
import { proto, type WAMessage } from './baileys.js';

export type LetterRead = { ok: true; message: WAMessage } | { ok: false; reason: string };

/**
 * The form a message is parked in, the one readLetter reads back: its proto JSON. A message
 * fromObject refuses (nothing Baileys hands over) is parked as it is rather than lost; readLetter
 * reads its Buffers back too.
 */
export function letterOf(msg: WAMessage): unknown {
  try {
    return proto.WebMessageInfo.fromObject(msg as unknown as Record<string, unknown>).toJSON();
  } catch {
    return msg;
  }
}

export function readLetter(payload: Buffer): LetterRead {
  let json: unknown;
  try {
    json = JSON.parse(payload.toString('utf8'), reviveBuffer);
  } catch {
    return { ok: false, reason: 'the letter holds no WhatsApp message (not JSON)' };
  }
  if (typeof json !== 'object' || json === null || Array.isArray(json)) return { ok: false, reason: 'the letter holds no WhatsApp message (not a JSON object)' };
  try {
    return { ok: true, message: proto.WebMessageInfo.fromObject(json as Record<string, unknown>) };
  } catch (err) {
    return { ok: false, reason: `the letter cannot be read as a WhatsApp message: ${errorMessage(err)}` };
  }
}

/**
 * Why the letter is not for the number the session is linked to now, or undefined when it is (or
 * cannot be told: letters of older versions carry no `meta.me`). Compared by number: the device
 * suffix (`:7`) changes with every re-link of the same number.
 */
export function otherNumber(meta: Record<string, string>, me: string | undefined, account: string): string | undefined {
  const parked = meta.me;
  if (!parked || !me || numberOf(parked) === numberOf(me)) return undefined;
  return `the letter's \`meta.me\` ${numberOf(parked)} (the number the message was sent to) is not the number whatsapp account ${account} is linked to now (${numberOf(me)})`;
}

const numberOf = (jid: string) => jid.split('@')[0]!.split(':')[0]!;

/**
 * A Buffer as JSON.stringify wrote it (`{type: 'Buffer', data: [bytes]}`, letters of older
 * versions) or as Baileys' BufferJSON does (`data` in base64), back to bytes; anything else as is.
 */
function reviveBuffer(_key: string, value: unknown): unknown {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return value;
  const v = value as { type?: unknown; data?: unknown };
  if (v.type !== 'Buffer' || Object.keys(v).length !== 2) return value;
  if (typeof v.data === 'string') return Buffer.from(v.data, 'base64');
  if (Array.isArray(v.data) && v.data.every((b) => Number.isInteger(b) && b >= 0 && b <= 255)) return Buffer.from(v.data as number[]);
  return value;
}
