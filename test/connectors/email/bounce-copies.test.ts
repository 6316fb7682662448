/**
 * A bounce of a reply that went to several people, end to end through a real Dovecot, the
 * gateway and the SMTP stand-in: when only copies (Cc) failed, the reply stays delivered, the
 * log says which copy bounced and why, and later replies stop copying it; when the reply's To
 * is among the failed recipients, it is a failed reply as before. The same when the mail server
 * refuses recipients at RCPT TO while it takes the mail for others: an outside trial saw a reply
 * whose To (the customer) was refused with 550 and whose Cc was taken recorded `sent`.
 */
import { simpleParser, type AddressObject, type ParsedMail } from 'mailparser';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { LogEntry, TicketEvent } from '../../../src/core/schema.js';
import { startGateway, type TestGateway } from '../../helpers/gateway.js';
import { PASSWORD, SUPPORT, connected, inboundOf, mailbox, startWorld, type EmailWorld } from './harness.js';
import { bounceMail, plainMail, uniqueId } from './mails.js';

const TOKEN = 'helpdesk-token-0123456789';
let world: EmailWorld;
let gw: TestGateway;

beforeAll(async () => {
  world = await startWorld();
  gw = await startGateway(
    {
      api: { tokens: [{ name: 'helpdesk', token: TOKEN }] },
      outbound: { backoffBase: '100ms', backoffMax: '1s' },
      connectors: [{ type: 'email', account: 'support', firstRun: 'all', pollIntervalMs: 500, mailboxes: [mailbox(world, SUPPORT)] }],
    },
    { nats: world.nats, env: { IMAP_PASS: PASSWORD } },
  );
  await connected(gw);
});
afterAll(async () => {
  await gw?.stop();
  await world?.stop();
});

async function reply(ticketId: string, text: string): Promise<string> {
  const res = await fetch(`${gw.httpUrl}/v1/tickets/${ticketId}/replies`, {
    method: 'POST',
    headers: { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json' },
    body: JSON.stringify({ text }),
  });
  expect(res.status).toBe(202);
  return ((await res.json()) as { outboundId: string }).outboundId;
}

/** The mail the stand-in received whose text holds `marker`, parsed. */
async function sentWith(marker: string): Promise<ParsedMail> {
  return (await envelopeWith(marker)).mail;
}

/** The mail whose text holds `marker`, parsed, with the recipients the server took it for. */
async function envelopeWith(marker: string, rcpt?: string): Promise<{ mail: ParsedMail; to: string[] }> {
  const deadline = Date.now() + 20_000;
  for (;;) {
    for (const envelope of world.smtp.received) {
      const mail = await simpleParser(envelope.raw);
      const to = envelope.to.map((a) => a.toLowerCase());
      if (mail.text?.includes(marker) && (!rcpt || to.includes(rcpt))) return { mail, to };
    }
    if (Date.now() > deadline) throw new Error(`no mail with "${marker}" at the SMTP stand-in`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

const listOf = (field: AddressObject | AddressObject[] | undefined) => (field ? [field].flat().flatMap((f) => f.value.map((a) => a.address!.toLowerCase())) : []);
const deliveryOf = (e: TicketEvent) => (e.entry?.kind === 'delivery' ? e.entry.status : undefined);

/** Replies with `text`, and waits until the mail is sent and its `sent` applied to the ticket. */
async function sentReply(ticketId: string, text: string): Promise<ParsedMail> {
  const outboundId = await reply(ticketId, text);
  const mail = await sentWith(text);
  await gw.waitForEvent((e) => e.type === 'ticket.delivery' && deliveryOf(e)?.outboundId === outboundId && deliveryOf(e)?.status === 'sent', 20_000);
  return mail;
}

describe('a bounce of a reply with copies', () => {
  it('keeps the reply delivered when only copies bounced, stops copying them, and fails it when its To bounced', async () => {
    const first = uniqueId('cc-bounce');
    await world.imap.append('INBOX', plainMail({
      messageId: first,
      from: 'Босс <boss@firm.ru>',
      to: SUPPORT,
      cc: 'colleague1@firm.ru, colleague2@firm.ru, colleague3@firm.ru',
      subject: 'Акт сверки',
    }));
    const ticketId = (await gw.waitForEvent((e) => e.type === 'ticket.message' && inboundOf(e)?.email?.messageId === first, 20_000)).ticketId;

    const one = await sentReply(ticketId, `answer-one ${ticketId}`);
    expect(listOf(one.to)).toEqual(['boss@firm.ru']);
    expect(listOf(one.cc)).toEqual(['colleague1@firm.ru', 'colleague2@firm.ru', 'colleague3@firm.ru']);

    // Two copies bounced; the boss got it.
    await world.imap.append('INBOX', bounceMail({
      originalMessageId: one.messageId!, to: '', diagnostic: '',
      recipients: [
        { address: 'boss@firm.ru', action: 'delivered' },
        { address: 'colleague1@firm.ru', diagnostic: '550 5.1.1 <colleague1@firm.ru>: User unknown' },
        { address: 'COLLEAGUE2@firm.ru', diagnostic: '552 5.2.2 Mailbox full' },
      ],
    }));
    const note = await gw.waitForEvent((e) => e.type === 'ticket.note' && e.ticketId === ticketId, 20_000);
    const text = (note.entry as Extract<LogEntry, { kind: 'note' }>).text;
    expect(text).toContain('colleague1@firm.ru (smtp; 550 5.1.1 <colleague1@firm.ru>: User unknown)');
    expect(text).toContain('colleague2@firm.ru (smtp; 552 5.2.2 Mailbox full)');
    expect(note.status).toBe('pending');
    const kept = await gw.ticket(ticketId);
    expect(kept!.status).toBe('pending');
    expect(kept!.lastDelivery).toMatchObject({ status: 'sent' });
    expect(kept!.failedReplies).toBeUndefined();
    expect(kept!.emailParties?.bouncedCopies).toEqual(['colleague1@firm.ru', 'colleague2@firm.ru']);

    // The next reply copies only the colleague whose mail arrived.
    const two = await sentReply(ticketId, `answer-two ${ticketId}`);
    expect(listOf(two.to)).toEqual(['boss@firm.ru']);
    expect(listOf(two.cc)).toEqual(['colleague3@firm.ru']);

    // A DSN with two failed recipients, a copy and the To: the customer has no answer.
    await world.imap.append('INBOX', bounceMail({
      originalMessageId: two.messageId!, to: '', diagnostic: '',
      recipients: [
        { address: 'colleague3@firm.ru', diagnostic: '550 5.1.1 colleague3 unknown' },
        { address: 'boss@firm.ru', diagnostic: '550 5.7.1 boss rejected' },
      ],
    }));
    const failed = await gw.waitForEvent((e) => e.type === 'ticket.delivery_failed' && e.ticketId === ticketId, 20_000);
    expect(failed.status).toBe('open');
    expect(failed.failedReplies).toHaveLength(1);
    expect(failed.lastDelivery).toMatchObject({ status: 'failed', reason: expect.stringMatching(/^bounced: smtp; 550 5\.1\.1 colleague3 unknown/) });
    // A failed reply, not a copy's bounce: nobody is added to the copies left out.
    expect((await gw.ticket(ticketId))!.emailParties?.bouncedCopies).toEqual(['colleague1@firm.ru', 'colleague2@firm.ru']);

    // One of the bounced copies writes again: their mailbox works, so they are copied again.
    const back = uniqueId('colleague1-back');
    await world.imap.append('INBOX', plainMail({
      messageId: back, from: 'colleague1@firm.ru', to: SUPPORT, cc: 'boss@firm.ru',
      subject: `Re: Акт сверки [#${ticketId}]`, inReplyTo: two.messageId!, references: `${first} ${two.messageId!}`, text: 'Ящик починили',
    }));
    await gw.waitForEvent((e) => e.type === 'ticket.message' && inboundOf(e)?.email?.messageId === back, 20_000);
    expect((await gw.ticket(ticketId))!.emailParties?.bouncedCopies).toEqual(['colleague2@firm.ru']);
  });

  it('fails a reply whose To the server refused at RCPT TO though it took the copies; notes refused copies and stops copying them; retries a To deferred with 4xx', async () => {
    const first = uniqueId('rcpt-refused');
    await world.imap.append('INBOX', plainMail({
      messageId: first, from: 'Клиент <bad.klient@firm2.ru>', to: SUPPORT, cc: 'kollega@firm2.ru, gone@firm2.ru, grey@firm2.ru', subject: 'Заказ 1024',
    }));
    const ticketId = (await gw.waitForEvent((e) => e.type === 'ticket.message' && inboundOf(e)?.email?.messageId === first, 20_000)).ticketId;

    // The customer's own address refused; the copies taken.
    world.smtp.rejectRecipient('bad.klient@firm2.ru', 550, '5.1.1 <bad.klient@firm2.ru>: no such user');
    const refused = await reply(ticketId, `answer-refused ${ticketId}`);
    const failed = await gw.waitForEvent((e) => e.type === 'ticket.delivery_failed' && e.ticketId === ticketId, 20_000);
    expect(failed.lastDelivery).toMatchObject({ status: 'failed', outboundId: refused, reason: expect.stringContaining('bad.klient@firm2.ru') });
    expect(failed.lastDelivery!.reason).toContain('no such user');
    expect(failed.failedReplies).toHaveLength(1);
    const toCopies = await envelopeWith(`answer-refused ${ticketId}`);
    expect(toCopies.to.sort()).toEqual(['gone@firm2.ru', 'grey@firm2.ru', 'kollega@firm2.ru']);
    world.smtp.clearRejections();

    // A copy refused for good and one refused for now: the reply reached its To.
    world.smtp.rejectRecipient('gone@firm2.ru', 550, '5.1.1 <gone@firm2.ru>: user unknown');
    world.smtp.rejectRecipient('grey@firm2.ru', 451, '4.7.1 greylisted, try again later');
    const one = await sentReply(ticketId, `answer-copies ${ticketId}`);
    expect(listOf(one.to)).toEqual(['bad.klient@firm2.ru']);
    const note = await gw.waitForEvent((e) => e.type === 'ticket.note' && e.ticketId === ticketId && (e.entry as Extract<LogEntry, { kind: 'note' }>).text.includes('refused'), 20_000);
    const text = (note.entry as Extract<LogEntry, { kind: 'note' }>).text;
    expect(text).toContain('gone@firm2.ru');
    expect(text).toContain('user unknown');
    expect(text).toContain('grey@firm2.ru (for now:');
    const kept = await gw.ticket(ticketId);
    expect(kept!.lastDelivery).toMatchObject({ status: 'sent' });
    expect(kept!.emailParties?.bouncedCopies).toEqual(['gone@firm2.ru']);
    world.smtp.clearRejections();

    // The next reply leaves the refused copy out and still copies the greylisted one; its To
    // deferred once (451) is sent on the next attempt.
    world.smtp.rejectRecipient('bad.klient@firm2.ru', 451, '4.7.1 try again later', 1);
    const two = await sentReply(ticketId, `answer-later ${ticketId}`);
    expect(listOf(two.to)).toEqual(['bad.klient@firm2.ru']);
    expect(listOf(two.cc).sort()).toEqual(['grey@firm2.ru', 'kollega@firm2.ru']);
    expect((await envelopeWith(`answer-later ${ticketId}`, 'bad.klient@firm2.ru')).to).toContain('kollega@firm2.ru');
  });
});
