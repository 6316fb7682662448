/**
 * A bounce of a reply that went to several people, end to end through a real Dovecot, the
 * gateway and the SMTP stand-in: when only copies (Cc) failed, the reply stays delivered, the
 * log says which copy bounced and why, and later replies stop copying it; when the reply's To
 * is among the failed recipients, it is a failed reply as before.
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
  const deadline = Date.now() + 20_000;
  for (;;) {
    for (const envelope of world.smtp.received) {
      const mail = await simpleParser(envelope.raw);
      if (mail.text?.includes(marker)) return mail;
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
});
