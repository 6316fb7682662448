/**
 * One raw mail onto the bus: its event, or, when it cannot become one, a dead letter with the
 * reason. A dead letter is one NATS message, so a large raw mail cannot ride in it: it goes whole
 * to the object store and the dead letter names it, with the head of the mail (its headers,
 * mostly) inline for whoever looks at it first.
 */
import { isUtf8 } from 'node:buffer';
import { MediaTooLargeError } from '../../core/media.js';
import { InvalidEventError, type ConnectorContext } from '../contract.js';
import { jsonBytes } from './budget.js';
import { normalizeMail, type NormalizeDeps } from './normalize.js';

/** The raw mail rides in the dead letter as long as it encodes to at most this many bytes. */
const INLINE_BYTES = 256 * 1024;
/** Of a larger mail, this many leading bytes ride in the dead letter (at most 6× that once JSON-escaped). */
const HEAD_BYTES = 64 * 1024;
const REASON_CHARS = 2000;

/** Resolves once the event (or the dead letter) is stored: then the mail may be acknowledged. */
export async function publishMail(ctx: ConnectorContext, deps: NormalizeDeps, mailbox: string, where: string, raw: Buffer, note?: string): Promise<void> {
  const n = await normalizeMail(raw, mailbox, deps, note);
  if (n.kind === 'invalid') return parkMail(ctx, `email ${where}: ${n.reason}`, raw);
  try {
    await ctx.publish(n.event);
  } catch (err) {
    if (!(err instanceof InvalidEventError)) throw err;
    await parkMail(ctx, `email ${where}: ${err.message}`, raw);
  }
}

export async function parkMail(ctx: ConnectorContext, reason: string, raw: Buffer): Promise<void> {
  const why = reason.length > REASON_CHARS ? `${reason.slice(0, REASON_CHARS)}…` : reason;
  // The dead letter carries valid UTF-8 as JSON text, anything else as base64: either is at least as long as the bytes.
  const encoded = raw.byteLength > INLINE_BYTES ? Infinity : isUtf8(raw) ? jsonBytes(raw.toString('utf8')) : Math.ceil(raw.byteLength / 3) * 4;
  if (encoded <= INLINE_BYTES) return ctx.deadLetter(why, raw);
  let where: string;
  try {
    const stored = await ctx.media.put(raw, { name: 'mail.eml', mimeType: 'message/rfc822' });
    where = `stored whole in the object store as ${stored.objectKey}`;
  } catch (err) {
    if (!(err instanceof MediaTooLargeError)) throw err; // the object store is down: retry the mail later
    where = `over media.maxBytes, not stored (it stays in the mailbox)`;
  }
  await ctx.deadLetter(`${why} [raw mail of ${raw.byteLength} bytes ${where}; this letter holds its first ${HEAD_BYTES} bytes]`, raw.subarray(0, HEAD_BYTES));
}
