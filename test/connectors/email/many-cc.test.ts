/**
 * Mails Cc'ing tens of thousands of addresses (a 300 KB header; anyone in a ticket's thread can
 * send one) against a real Dovecot and the whole gateway. Every Cc became a participant of the
 * ticket: after three such mails the ticket record was larger than a NATS message, and no later
 * message of that ticket, the customer's own included, was stored, without a word in the log.
 * Asserted: a ticket holds at most MAX_PARTICIPANTS, where the answer goes (Reply-To) among them,
 * and the ticket keeps taking mail.
 */
import { describe, expect, it } from 'vitest';
import { MAX_PARTICIPANTS } from '../../../src/router/ticket-changes.js';
import { mailboxGateway } from './harness.js';
import { plainMail, uniqueId } from './mails.js';

const CRLF = '\r\n';
const CC = 30_000;

/** `n` distinct addresses tagged `tag`, folded six to a line. */
function foldedCc(tag: string, n: number): string {
  const lines: string[] = [];
  for (let i = 0; i < n; i += 6) lines.push(Array.from({ length: 6 }, (_, j) => `${tag}${(i + j).toString(36)}@a.ru`).join(', '));
  return lines.join(',' + CRLF + ' ');
}

describe('mails Cc\'ing 30,000 addresses each', () => {
  const rig = mailboxGateway();
  const from = 'Ольга Смирнова <olga@client.example.ru>';
  const routed = (messageId: string) =>
    rig.gw.waitForEvent((e) => e.type === 'ticket.message' && (e.entry as any)?.event?.email?.messageId === messageId, 60_000);

  it('leave the ticket at most MAX_PARTICIPANTS, Reply-To among them, and the ticket keeps taking mail', async () => {
    const first = uniqueId('cc-first');
    await rig.world.imap.append('INBOX', plainMail({ from, messageId: first, subject: 'Сверка', replyTo: 'buh@client.example.ru', cc: foldedCc('a', CC) }));
    const opened = await routed(first);
    const after1 = (await rig.gw.ticket(opened.ticketId))!.participants;
    expect.soft(after1).toHaveLength(MAX_PARTICIPANTS);
    expect.soft(after1.slice(0, 2)).toEqual(['olga@client.example.ru', 'buh@client.example.ru']);
    // Two more such mails in the thread: the record grew past a NATS message on the old code.
    for (const tag of ['b', 'c']) {
      const more = uniqueId(`cc-${tag}`);
      await rig.world.imap.append('INBOX', plainMail({ from, messageId: more, subject: 'Re: Сверка', inReplyTo: first, cc: foldedCc(tag, CC) }));
      expect((await routed(more)).ticketId).toBe(opened.ticketId);
    }
    const last = uniqueId('cc-last');
    await rig.world.imap.append('INBOX', plainMail({ from, messageId: last, subject: 'Re: Сверка', inReplyTo: first, text: 'Так что со сверкой?' }));
    expect((await routed(last)).ticketId).toBe(opened.ticketId);
    expect((await rig.gw.ticket(opened.ticketId))!.participants).toHaveLength(MAX_PARTICIPANTS);
  }, 240_000);
});
