/**
 * Headers too long for a ticket, against a real Dovecot and the whole gateway. A 380 KB Subject
 * (one header, within mailparser's 1 MB) rides four times in the router's ticket event, and a
 * 300 KB Message-ID three times in the ticket record: either grew past a NATS message, and the
 * router retried it every 10 s for ever while the sender's later mail waited behind it. Asserted:
 * the subject is cut to SUBJECT_MAX_CHARS with a note in the text saying so, a Message-ID over
 * MAX_MESSAGE_ID_CHARS counts as none, and the sender's mails are all routed.
 */
import { describe, expect, it } from 'vitest';
import { SUBJECT_MAX_CHARS } from '../../../src/connectors/email/budget.js';
import { MAX_MESSAGE_ID_CHARS } from '../../../src/connectors/email/ids.js';
import { mailboxGateway } from './harness.js';
import { plainMail, uniqueId } from './mails.js';

const CRLF = '\r\n';

describe('headers too long for a ticket', () => {
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

  it('a 300 KB Message-ID counts as none, and the sender\'s next mail, In-Reply-To it, is routed', async () => {
    const from = 'mid@client.example.ru';
    const huge = (c: string) => `<${c.repeat(300 * 1024)}@client.example.ru>`;
    await rig.world.imap.append('INBOX', plainMail({ from, messageId: huge('1'), subject: 'Счёт', text: 'Пришлите счёт' }));
    const first = await rig.gw.waitForEvent((e) => e.type === 'ticket.message' && (e.entry as any)?.event?.sender?.id === from, 40_000);
    expect.soft((first.entry as any).event.email.messageId).toMatch(/^<nomid\.[0-9a-f]{40}@omnigate\.invalid>$/);
    await rig.world.imap.append('INBOX', plainMail({ from, messageId: huge('2'), inReplyTo: huge('1'), references: huge('1'), subject: 'Re: Счёт', text: 'Так что со счётом?' }));
    const second = await rig.gw.waitForEvent((e) => e.type === 'ticket.message' && (e.entry as any)?.event?.text === 'Так что со счётом?', 40_000);
    expect((second.entry as any).event.email.inReplyTo).toBeUndefined();
    expect((second.entry as any).event.email.references).toEqual([]);
    const ticket = (await rig.gw.ticket(first.ticketId))!;
    expect(JSON.stringify(ticket).length).toBeLessThan(16 * MAX_MESSAGE_ID_CHARS);
  }, 120_000);
});
