/**
 * One raw mail onto the bus: its event, or, when it cannot become one, a dead letter with the
 * reason (core's dead letter keeps a large mail whole in the object store and names it).
 */
import { InvalidEventError, type ConnectorContext } from '../contract.js';
import { normalizeMail, type NormalizeDeps } from './normalize.js';

const REASON_CHARS = 2000;

/**
 * Resolves once the event (or the dead letter) is stored: then the mail may be acknowledged.
 * `parked`: it became a dead letter, and must be marked in the mailbox as such, not as handled.
 */
export async function publishMail(ctx: ConnectorContext, deps: NormalizeDeps, mailbox: string, where: string, raw: Buffer, note?: string): Promise<'published' | 'parked'> {
  const n = await normalizeMail(raw, mailbox, deps, note);
  if (n.kind === 'invalid') {
    await parkMail(ctx, `email ${where}: ${n.reason}`, raw);
    return 'parked';
  }
  const email = n.event.email!;
  if (email.senderHeader && email.senderHeader !== 'from') {
    ctx.log.info({ mail: where, messageId: email.messageId, senderHeader: email.senderHeader, note: email.senderNote }, 'no usable From: the sender was taken from a fallback header');
  }
  try {
    await ctx.publish(n.event);
    return 'published';
  } catch (err) {
    if (!(err instanceof InvalidEventError)) throw err;
    await parkMail(ctx, `email ${where}: ${err.message}`, raw);
    return 'parked';
  }
}

/** Parks the raw mail with the reason; the dead letter keeps a large mail whole in the object store. */
export async function parkMail(ctx: ConnectorContext, reason: string, raw: Buffer): Promise<void> {
  await ctx.deadLetter(reason.length > REASON_CHARS ? `${reason.slice(0, REASON_CHARS)}…` : reason, raw);
}
