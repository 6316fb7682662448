/**
 * How a reply by mail is marked: threading headers that answer the newest mail of the ticket,
 * and the ticket token in the subject and under the text, so the customer's answer finds its
 * ticket again. Its recipients come from mail-recipients.ts.
 */
import type { Ticket } from '../core/schema.js';

/**
 * Mail we send names its ticket in the text as well: the customer's answer quotes it, so the
 * ticket is found even when a relay rewrote our Message-ID and the subject was changed.
 */
export function withTicketFooter(ticketId: string, text: string, html: string | undefined, line: (token: string) => string): { text: string; html?: string } {
  const token = `[#${ticketId}]`;
  if (text.includes(token)) return { text, html };
  // An override without {ticket} still carries the token: quoted answers thread by it.
  const written = line(token);
  const footer = written.includes(token) ? written : `${written} ${token}`;
  return {
    text: `${text}\n\n--\n${footer}`,
    html: html === undefined ? undefined : `${html}<p style="color:#888;font-size:12px">${escapeHtml(footer)}</p>`,
  };
}

/**
 * Outbound email threading: answer the newest mail in the chain, keep the token in the subject.
 * Whom it goes to is chosen by mail-recipients.ts.
 */
export function emailHeaders(t: Ticket, prefix: string, recipients: { to: string[]; cc: string[] }) {
  const token = `[#${t.id}]`;
  const base = (t.subject ?? '').replace(new RegExp(`\\s*\\[#${prefix.replace(/[-]/g, '\\-')}\\d+\\]`, 'g'), '').replace(/^(re|fwd?|ответ|отв|на):\s*/gi, '').trim();
  return {
    to: recipients.to,
    cc: recipients.cc,
    subject: `Re: ${base || 'Ваше обращение'} ${token}`.trim(),
    inReplyTo: t.lastEmailMessageId,
    references: t.emailReferences,
  };
}

function escapeHtml(s: string): string {
  return s.replace(/[&<>"]/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;' })[c]!);
}
