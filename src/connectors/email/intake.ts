/**
 * One raw mail onto the bus: its event, or, when it cannot become one, a dead letter with the
 * reason and the mailbox (what `omnigate dlq --replay` needs to take it through the parser again).
 */
import { loggableMessageId } from '../../core/log-personal.js';
import { InvalidEventError, type ConnectorContext, type ReplayOutcome } from '../contract.js';
import { normalizeMail, type NormalizeDeps } from './normalize.js';

/** Marks a letter whose payload is the raw mail (replayable), as opposed to a note about one. */
export const RAW_MAIL = 'raw-mail';

type MailResult = { ok: true; duplicate: boolean } | { ok: false; reason: string };

/** Parses and publishes; says why not when the mail cannot become an event. */
async function mailToBus(ctx: ConnectorContext, deps: NormalizeDeps, mailbox: string, raw: Buffer, note?: string, where = 'replay'): Promise<MailResult> {
  const n = await normalizeMail(raw, mailbox, deps, note);
  if (n.kind === 'invalid') return { ok: false, reason: n.reason };
  const email = n.event.email!;
  if (email.senderHeader && email.senderHeader !== 'from') {
    const messageId = loggableMessageId(email.messageId, [email.from, ...(email.to ?? []), ...(email.cc ?? []), email.replyTo]);
    ctx.log.info({ mail: where, messageId, senderHeader: email.senderHeader, note: email.senderNote }, 'no usable From: the sender was taken from a fallback header');
  }
  try {
    const r = await ctx.publish(n.event);
    return { ok: true, duplicate: r.duplicate };
  } catch (err) {
    if (!(err instanceof InvalidEventError)) throw err;
    return { ok: false, reason: err.message };
  }
}

/**
 * Resolves once the event (or the dead letter) is stored: then the mail may be acknowledged.
 * `parked`: it became a dead letter, and must be marked in the mailbox as such, not as handled.
 */
export async function publishMail(ctx: ConnectorContext, deps: NormalizeDeps, mailbox: string, where: string, raw: Buffer, note?: string): Promise<'published' | 'parked'> {
  const r = await mailToBus(ctx, deps, mailbox, raw, note, where);
  if (r.ok) return 'published';
  await ctx.deadLetter(`email ${where}: ${r.reason}`, raw, { code: 'invalid_mail', meta: { kind: RAW_MAIL, mailbox } });
  return 'parked';
}

/** `omnigate dlq --replay` of an email letter: the raw mail through the same parser as intake. */
export async function replayMail(ctx: ConnectorContext, deps: NormalizeDeps, mailboxes: Set<string>, raw: Buffer, meta: Record<string, string>): Promise<ReplayOutcome> {
  if (meta.kind !== RAW_MAIL || !meta.mailbox) return { outcome: 'refused', reason: 'the letter holds no raw mail (the mail stays on the server; see the reason)' };
  if (!mailboxes.has(meta.mailbox.toLowerCase())) return { outcome: 'refused', reason: `mailbox ${meta.mailbox} is not configured on email account ${ctx.account}` };
  const r = await mailToBus(ctx, deps, meta.mailbox, raw);
  return r.ok ? { outcome: 'published', duplicate: r.duplicate } : { outcome: 'invalid', reason: r.reason };
}
