/**
 * Whom an agent's email reply reaches, end to end through a real Dovecot, the gateway and the
 * SMTP stand-in: "reply all" by default (To the author of the mail answered, Cc the rest of the
 * thread), never our own mailbox or its aliases, each address once, at most 20 in Cc; explicit
 * `to`/`cc` on POST /v1/tickets/{id}/replies, and its refusals naming the field.
 */
import { simpleParser, type AddressObject, type ParsedMail } from 'mailparser';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { TicketEvent } from '../../../src/core/schema.js';
import { startGateway, type TestGateway } from '../../helpers/gateway.js';
import type { ReceivedMail } from '../../helpers/smtp.js';
import { PASSWORD, SUPPORT, connected, inboundOf, mailbox, startWorld, type EmailWorld } from './harness.js';
import { plainMail, uniqueId } from './mails.js';

const TOKEN = 'helpdesk-token-0123456789';
const SITE_SECRET = 'site-secret-0123456789';
const ALIAS = 'help@example.ru';
/** A second email connector entry (another team's mailbox): ours as well. */
const SALES = 'sales@example.ru';
const SALES_ALIAS = 'orders@example.ru';
let world: EmailWorld;
let gw: TestGateway;

beforeAll(async () => {
  world = await startWorld([SUPPORT, SALES]);
  gw = await startGateway(
    {
      api: { tokens: [{ name: 'helpdesk', token: TOKEN }] },
      outbound: { backoffBase: '100ms', backoffMax: '1s' },
      connectors: [
        { type: 'email', account: 'support', firstRun: 'all', pollIntervalMs: 500, mailboxes: [mailbox(world, SUPPORT, { aliases: [ALIAS] })] },
        { type: 'email', account: 'sales', firstRun: 'all', pollIntervalMs: 500, mailboxes: [mailbox(world, SALES, { aliases: [SALES_ALIAS] })] },
        // A chat channel, for the refusal of recipients on a ticket that is not mail (nothing is sent to it).
        { type: 'webhook', account: 'site', secret: SITE_SECRET, callbackUrl: 'http://127.0.0.1:8/cb' },
      ],
    },
    { nats: world.nats, env: { IMAP_PASS: PASSWORD } },
  );
  await connected(gw);
});
afterAll(async () => {
  await gw?.stop();
  await world?.stop();
});

async function reply(ticketId: string, body: Record<string, unknown>): Promise<{ status: number; body: any }> {
  const res = await fetch(`${gw.httpUrl}/v1/tickets/${ticketId}/replies`, {
    method: 'POST',
    headers: { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json' },
    body: JSON.stringify(body),
  });
  return { status: res.status, body: await res.json() };
}

/** The mail the stand-in received whose text holds `marker`, parsed (bodies arrive encoded: each is decoded). */
async function sentWith(marker: string): Promise<{ envelope: ReceivedMail; mail: ParsedMail }> {
  const decoded = new Map<ReceivedMail, ParsedMail>();
  const deadline = Date.now() + 20_000;
  for (;;) {
    for (const envelope of world.smtp.received) {
      if (!decoded.has(envelope)) decoded.set(envelope, await simpleParser(envelope.raw));
      const mail = decoded.get(envelope)!;
      if (mail.text?.includes(marker)) return { envelope, mail };
    }
    if (Date.now() > deadline) throw new Error(`no mail with "${marker}" at the SMTP stand-in (${world.smtp.received.length} received)`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

const listOf = (field: AddressObject | AddressObject[] | undefined) => (field ? [field].flat().flatMap((f) => f.value.map((a) => a.address!.toLowerCase())) : []);

async function openedBy(messageId: string): Promise<TicketEvent> {
  return gw.waitForEvent((e) => e.type === 'ticket.message' && inboundOf(e)?.email?.messageId === messageId, 20_000);
}

describe('email reply recipients', () => {
  it('answers the colleague who wrote last, copies the boss and the others on that mail, never our own addresses', async () => {
    const first = uniqueId('boss');
    await world.imap.append('INBOX', plainMail({
      messageId: first,
      from: 'Босс <boss@firm.ru>',
      to: `${SUPPORT}, ${ALIAS}`,
      cc: 'colleague1@firm.ru, Коллега <colleague2@firm.ru>',
      subject: 'Сверка за март',
    }));
    const ticketId = (await openedBy(first)).ticketId;

    const answer1 = `first-answer ${ticketId}`;
    const accepted = await reply(ticketId, { text: answer1 });
    expect(accepted.status).toBe(202);
    const one = await sentWith(answer1);
    expect(listOf(one.mail.to)).toEqual(['boss@firm.ru']);
    expect(listOf(one.mail.cc)).toEqual(['colleague1@firm.ru', 'colleague2@firm.ru']);
    expect(one.envelope.to.map((a) => a.toLowerCase()).sort()).toEqual(['boss@firm.ru', 'colleague1@firm.ru', 'colleague2@firm.ru']);
    expect(one.mail.inReplyTo).toBe(first);

    // colleague2 answers our reply ("reply all" in their client): the boss in another case, our own address again in Cc.
    const second = uniqueId('colleague2');
    await world.imap.append('INBOX', plainMail({
      messageId: second,
      from: 'Коллега <colleague2@firm.ru>',
      to: SUPPORT,
      cc: `BOSS@firm.ru, colleague1@firm.ru, ${ALIAS}, Support@Example.ru`,
      subject: `Re: Сверка за март [#${ticketId}]`,
      inReplyTo: one.mail.messageId,
      references: `${first} ${one.mail.messageId}`,
      text: 'А по апрелю?',
    }));
    const joined = await openedBy(second);
    expect(joined.ticketId).toBe(ticketId);
    expect(joined.entry?.kind === 'inbound' && joined.entry.match.rule).toBe('email-in-reply-to');

    const answer2 = `april-answer ${ticketId}`;
    expect((await reply(ticketId, { text: answer2 })).status).toBe(202);
    const two = await sentWith(answer2);
    expect(listOf(two.mail.to)).toEqual(['colleague2@firm.ru']);
    expect(listOf(two.mail.cc)).toEqual(['boss@firm.ru', 'colleague1@firm.ru']);
    expect(two.envelope.to.map((a) => a.toLowerCase()).sort()).toEqual(['boss@firm.ru', 'colleague1@firm.ru', 'colleague2@firm.ru']);
    // Threading as before: it answers colleague2's mail, the chain in References.
    expect(two.mail.inReplyTo).toBe(second);
    expect([two.mail.references].flat()).toEqual(expect.arrayContaining([first, one.mail.messageId, second]));
    // The ticket's customer stays the boss.
    const ticket = await gw.ticket(ticketId);
    expect(ticket!.contact.id).toBe('boss@firm.ru');

    // colleague1 asks to be forgotten: the boss's ticket no longer names them, and no later reply copies them.
    const { Eraser } = await import('../../../src/core/erasure.js');
    const { createLogger } = await import('../../../src/core/logger.js');
    await new Eraser(gw.gateway.bus, createLogger({ level: 'silent' })).erase({ ticketIds: [], identities: ['colleague1@firm.ru'] }, { reason: 'api', requestedBy: 'test' });
    const record = await gw.gateway.bus.kv.tickets.get(ticketId);
    expect(record!.string()).not.toContain('colleague1@firm.ru');
    const answer3 = `after-erasure ${ticketId}`;
    expect((await reply(ticketId, { text: answer3 })).status).toBe(202);
    const three = await sentWith(answer3);
    expect(three.envelope.to.map((a) => a.toLowerCase()).sort()).toEqual(['boss@firm.ru', 'colleague2@firm.ru']);
  });

  it("counts every email entry's mailboxes and aliases as ours: never copied, and their mail is our echo", async () => {
    const id = uniqueId('both-teams');
    await world.imap.append('INBOX', plainMail({ messageId: id, from: 'client@firm.ru', to: SUPPORT, cc: `${SALES}, Orders <${SALES_ALIAS}>, buh@firm.ru` }));
    const opened = await openedBy(id);
    expect(inboundOf(opened)!.email!.ownAddresses).toEqual(expect.arrayContaining([SUPPORT, ALIAS, SALES, SALES_ALIAS]));
    const marker = `one-team ${opened.ticketId}`;
    expect((await reply(opened.ticketId, { text: marker })).status).toBe(202);
    const { envelope, mail } = await sentWith(marker);
    expect(listOf(mail.to)).toEqual(['client@firm.ru']);
    expect(listOf(mail.cc)).toEqual(['buh@firm.ru']);
    expect(envelope.to.map((a) => a.toLowerCase()).sort()).toEqual(['buh@firm.ru', 'client@firm.ru']);

    // A mail from the other entry's mailbox arriving here is our own mail: parked, no ticket.
    const echo = uniqueId('sales-echo');
    await world.imap.append('INBOX', plainMail({ messageId: echo, from: `Отдел продаж <${SALES}>`, to: SUPPORT, subject: 'Копия' }));
    const letter = await gw.waitForStreamMessage<{ payload: string }>('OMNI_DLQ', 'omni.dlq.router.ignored', (d) => d.payload.includes(echo.slice(1, -1)));
    expect(JSON.parse(letter.payload).automated).toBe('echo');
  });

  it('copies at most 20, each address once', async () => {
    const crowd = Array.from({ length: 25 }, (_, i) => `person${i}@firm.ru`);
    const id = uniqueId('crowd');
    await world.imap.append('INBOX', plainMail({ messageId: id, from: 'lead@firm.ru', cc: [...crowd, 'LEAD@firm.ru', 'Person0@firm.ru'].join(', ') }));
    const ticketId = (await openedBy(id)).ticketId;
    const marker = `to-all ${ticketId}`;
    expect((await reply(ticketId, { text: marker })).status).toBe(202);
    const { mail } = await sentWith(marker);
    expect(listOf(mail.to)).toEqual(['lead@firm.ru']);
    expect(listOf(mail.cc)).toEqual(crowd.slice(0, 20));
    const cut = gw.logs.find((l) => l.includes('copies at most 20') && l.includes(ticketId));
    expect(cut && JSON.parse(cut).left).toBe(crowd.length - 20);
  });

  it('takes explicit to and cc from the API, anyone the agent names, and logs it', async () => {
    const id = uniqueId('explicit');
    await world.imap.append('INBOX', plainMail({ messageId: id, from: 'anna@firm.ru', cc: 'oleg@firm.ru' }));
    const ticketId = (await openedBy(id)).ticketId;

    const both = `director-only ${ticketId}`;
    expect((await reply(ticketId, { text: both, to: ['Director@firm.ru'], cc: ['oleg@firm.ru', 'OLEG@firm.ru'] })).status).toBe(202);
    const a = await sentWith(both);
    expect(listOf(a.mail.to)).toEqual(['director@firm.ru']);
    expect(listOf(a.mail.cc)).toEqual(['oleg@firm.ru']);
    expect(a.envelope.to.map((x) => x.toLowerCase()).sort()).toEqual(['director@firm.ru', 'oleg@firm.ru']);
    const logged = gw.logs.find((l) => l.includes('email reply addressed by the agent') && l.includes(ticketId));
    expect(logged).toBeDefined();
    // Counted, not named: customers' addresses stay out of the log collector (the ticket log has them).
    expect(JSON.parse(logged!).notInTicket).toBe(1);
    expect(logged!.toLowerCase()).not.toContain('director@firm.ru');
    // Whom we wrote to takes part: the director's answer to our mail joins the ticket.
    const directors = uniqueId('director');
    await world.imap.append('INBOX', plainMail({ messageId: directors, from: 'director@firm.ru', inReplyTo: a.mail.messageId, subject: 'Re: ok' }));
    const joined = await openedBy(directors);
    expect(joined.ticketId).toBe(ticketId);
    expect(joined.entry?.kind === 'inbound' && joined.entry.match.rule).toBe('email-in-reply-to');

    // `to` alone: the rest of the thread (the author answered, the director, included) stays in Cc.
    const toOnly = `anna-and-copies ${ticketId}`;
    expect((await reply(ticketId, { text: toOnly, to: ['anna@firm.ru'] })).status).toBe(202);
    const b = await sentWith(toOnly);
    expect(listOf(b.mail.to)).toEqual(['anna@firm.ru']);
    expect(listOf(b.mail.cc)).toEqual(['director@firm.ru']);

    // `cc: []` copies nobody: the author of the newest mail alone.
    const alone = `author-only ${ticketId}`;
    expect((await reply(ticketId, { text: alone, cc: [] })).status).toBe(202);
    const c = await sentWith(alone);
    expect(listOf(c.mail.to)).toEqual(['director@firm.ru']);
    expect(c.mail.cc).toBeUndefined();
    expect(c.envelope.to).toEqual(['director@firm.ru']);

    // Multipart: comma-separated fields.
    const form = new FormData();
    form.set('text', `multipart ${ticketId}`);
    form.set('to', 'oleg@firm.ru');
    form.set('cc', 'director@firm.ru, anna@firm.ru');
    const res = await fetch(`${gw.httpUrl}/v1/tickets/${ticketId}/replies`, { method: 'POST', headers: { authorization: `Bearer ${TOKEN}` }, body: form });
    expect(res.status).toBe(202);
    const d = await sentWith(`multipart ${ticketId}`);
    expect(listOf(d.mail.to)).toEqual(['oleg@firm.ru']);
    expect(listOf(d.mail.cc)).toEqual(['director@firm.ru', 'anna@firm.ru']);
  });

  it('refuses bad recipients naming the field, and recipients on a ticket that is not mail', async () => {
    const id = uniqueId('refused');
    await world.imap.append('INBOX', plainMail({ messageId: id, from: 'refused@firm.ru' }));
    const ticketId = (await openedBy(id)).ticketId;
    const cases: Array<[Record<string, unknown>, string]> = [
      [{ cc: ['ok@firm.ru', 'Иван <ivan@firm.ru>'] }, 'cc.1'],
      [{ to: ['not an address'] }, 'to.0'],
      [{ to: [] }, 'to'],
      [{ cc: Array.from({ length: 21 }, (_, i) => `p${i}@firm.ru`) }, 'cc'],
      [{ to: 'boss@firm.ru' }, 'to'],
    ];
    for (const [extra, field] of cases) {
      const res = await reply(ticketId, { text: 'Ответ', ...extra });
      expect(res.status, JSON.stringify(extra)).toBe(400);
      expect(res.body.error).toMatchObject({ code: 'invalid_request', field });
      expect(res.body.error.message).toContain(field);
    }

    const chat = await fetch(`${gw.httpUrl}/connectors/webhook/site/messages`, {
      method: 'POST',
      headers: { authorization: `Bearer ${SITE_SECRET}` },
      body: JSON.stringify({ messageId: 'chat-1', sender: { id: 'visitor-1', name: 'Ирина' }, text: 'Здравствуйте' }),
    });
    expect(chat.status).toBe(202);
    const chatTicket = (await gw.waitForEvent((e) => e.type === 'ticket.message' && inboundOf(e)?.id === 'webhook:site:chat-1')).ticketId;
    const refused = await reply(chatTicket, { text: 'Ответ', cc: ['boss@firm.ru'] });
    expect(refused.status).toBe(400);
    expect(refused.body.error).toMatchObject({ code: 'invalid_request', field: 'cc' });
    expect(refused.body.error.message).toMatch(/^cc: recipients are chosen only on email tickets/);
  });
});
