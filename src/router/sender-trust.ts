/**
 * Whether a mail's sender may be taken at its word when threading. Anyone can write any From: a
 * forged one joined a customer's ticket by In-Reply-To, its Reply-To and Cc became the ticket's
 * participants, and the agent's next reply went to the forger. Doubted: a sender taken from a
 * fallback header (the From held no usable mailbox: Reply-To is not covered by DMARC), and one
 * the receiving server found forged (EmailMeta.authentication, read by the email connector), or
 * did not vouch for where the account requires it. A doubted mail joins no existing ticket.
 */
import type { EmailMeta } from '../core/schema.js';

/** Why the mail's sender proves nothing, said in the ticket log; undefined when it may be believed. */
export function senderDoubt(email: EmailMeta): string | undefined {
  if (email.senderHeader !== undefined && email.senderHeader !== 'from') {
    return `its sender was taken from ${email.senderHeader} (the From held no usable address), which proves nothing`;
  }
  const a = email.authentication;
  if (!a) return undefined;
  const server = a.by ? `the receiving server (${a.by})` : 'the receiving server';
  if (a.verdict === 'fail') return `${server} found its From forged: ${evidence(a)}`;
  if (a.required && a.verdict !== 'pass') {
    return a.by ? `${server} did not find its From authentic (${evidence(a) || 'no result'}), and the account requires it (requireAuthenticatedSender)` : 'no trusted server vouched for its From (no Authentication-Results header of trustedAuthServIds), and the account requires it (requireAuthenticatedSender)';
  }
  return undefined;
}

function evidence(a: NonNullable<EmailMeta['authentication']>): string {
  if (a.dmarc === 'fail') return 'dmarc=fail';
  return [a.dmarc && `dmarc=${a.dmarc}`, a.spf && `spf=${a.spf}`, a.dkim ? `dkim=${a.dkim}` : a.spf && 'no dkim signature'].filter(Boolean).join(', ');
}
