/**
 * A mail whose Subject is 380 KB (one header, within mailparser's 1 MB) against a real Dovecot and
 * the whole gateway. The subject rides four times in the router's ticket event, which grew past a
 * NATS message: the router retried it every 10 s for ever and the sender's later mail waited
 * behind it. Asserted: the subject is cut to SUBJECT_MAX_CHARS with a note in the text saying so,
 * and both that mail and the next one of the sender are routed.
 */
import { describe, expect, it } from 'vitest';
import { SUBJECT_MAX_CHARS } from '../../../src/connectors/email/budget.js';
import { mailboxGateway } from './harness.js';
import { plainMail, uniqueId } from './mails.js';

const CRLF = '\r\n';

describe('a 380 KB Subject', () => {
  const rig = mailboxGateway();
  const routed = (messageId: string) =>
    rig.gw.waitForEvent((e) => e.type === 'ticket.message' && (e.entry as any)?.event?.email?.messageId === messageId, 40_000);

  it('is cut with a note, and the mail and the sender\'s next one are routed', async () => {
    const words = Array.from({ length: (380 * 1024) / 8 }, (_, i) => `w${String(i % 100_000).padStart(6, '0')}`);
    const lines: string[] = [];
    for (let i = 0; i < words.length; i += 8) lines.push(words.slice(i, i + 8).join(' '));
    const from = 'Ольга Смирнова <olga@client.example.ru>';
    const long = uniqueId('long-subject');
    await rig.world.imap.append('INBOX', plainMail({ from, messageId: long, subject: lines.join(CRLF + ' '), text: 'Касса не печатает чек' }));
    const opened = await routed(long);
    const event = (opened.entry as any).event;
    expect(event.email.subject).toHaveLength(SUBJECT_MAX_CHARS);
    expect(event.email.subject.startsWith('w000000 w000001')).toBe(true);
    expect(event.text).toMatch(/^Касса не печатает чек\n\n\[the subject was \d+ characters long: only its first 1000 are kept\]$/);
    expect((await rig.gw.ticket(opened.ticketId))!.subject).toBe(event.email.subject);
    const next = uniqueId('next');
    await rig.world.imap.append('INBOX', plainMail({ from, messageId: next, subject: 'Re: чек', inReplyTo: long, text: 'Есть новости?' }));
    expect((await routed(next)).ticketId).toBe(opened.ticketId);
  }, 120_000);
});
