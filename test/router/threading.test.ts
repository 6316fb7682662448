import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startGateway, type TestGateway } from '../helpers/gateway.js';
import { chatMessage, emailMessage, publishEvent } from '../helpers/events.js';
import type { InboundMessage, LogEntry, TicketEvent } from '../../src/core/schema.js';
import { TicketStore } from '../../src/router/tickets.js';
import { Threader } from '../../src/router/threading.js';
import { ticketFor } from '../../src/router/inbound-ticket.js';

let gw: TestGateway;

beforeAll(async () => {
  gw = await startGateway({ router: { reopenWindow: '1500ms', colleagueDomains: ['client.ru', 'Romashka.RU', 'Компания.рф', 'XN--80AA3AGJL3D.XN--P1AI.'] } });
});
afterAll(async () => gw?.stop());

async function route(event: Parameters<typeof publishEvent>[1]): Promise<TicketEvent> {
  await publishEvent(gw.nc, event);
  return gw.waitForEvent((e) => e.type === 'ticket.message' && (e.entry as { event?: { id: string } })?.event?.id === event.id);
}

function matchOf(e: TicketEvent) {
  return (e.entry as Extract<LogEntry, { kind: 'inbound' }>).match;
}

describe('chat threading', () => {
  it('keeps one open ticket per conversation and separates conversations', async () => {
    const a1 = await route(chatMessage({ chat: 'chat-a' }));
    const a2 = await route(chatMessage({ chat: 'chat-a' }));
    const b1 = await route(chatMessage({ chat: 'chat-b' }));
    expect(a2.ticketId).toBe(a1.ticketId);
    expect(b1.ticketId).not.toBe(a1.ticketId);
    expect(matchOf(a1)).toEqual({ rule: 'new-ticket', value: 'chat-a' });
    expect(matchOf(a2)).toEqual({ rule: 'open-conversation', value: 'chat-a' });
    expect(a1.ticketId).toMatch(/^T-\d+$/);
  });

  it('reopens a closed ticket within the reopen window and opens a new one after it', async () => {
    const first = await route(chatMessage({ chat: 'chat-reopen' }));
    const closed = await gw.request('omni.cmd.status', { ticketId: first.ticketId, status: 'closed' });
    expect(closed.ok).toBe(true);
    const again = await route(chatMessage({ chat: 'chat-reopen' }));
    expect(again.ticketId).toBe(first.ticketId);
    expect(matchOf(again).rule).toBe('reopened');
    expect((await gw.ticket(first.ticketId))!.status).toBe('open');

    await gw.request('omni.cmd.status', { ticketId: first.ticketId, status: 'resolved' });
    await new Promise((r) => setTimeout(r, 1700)); // past the 1.5 s reopen window
    const later = await route(chatMessage({ chat: 'chat-reopen' }));
    expect(later.ticketId).not.toBe(first.ticketId);
    expect(matchOf(later).rule).toBe('new-ticket');
  });

  it('decides a new ticket on the record as it is, not as this replica cached it (another replica reopened it)', async () => {
    const first = await route(chatMessage({ chat: 'chat-stale' }));
    await gw.request('omni.cmd.status', { ticketId: first.ticketId, status: 'resolved' });
    await new Promise((r) => setTimeout(r, 1700)); // past the 1.5 s reopen window; our cache says resolved
    // Another replica (a store with caches of its own) reopens it meanwhile: an agent, or a message it routed.
    const elsewhere = new TicketStore(gw.gateway.bus, 'T-', 1001);
    await elsewhere.apply(first.ticketId, (t) => ({ next: { ...t, status: 'open', closedAt: undefined }, outcome: null }));
    const next = await route(chatMessage({ chat: 'chat-stale' }));
    expect(next.ticketId).toBe(first.ticketId);
    expect(matchOf(next).rule).toBe('open-conversation');
  });

  it('after taking a partition over, a message goes to the conversation\'s newest ticket, not to an older one an agent reopened', async () => {
    const first = await route(chatMessage({ chat: 'chat-epochs' }));
    await gw.request('omni.cmd.status', { ticketId: first.ticketId, status: 'resolved' });
    await new Promise((r) => setTimeout(r, 1700));
    const second = await route(chatMessage({ chat: 'chat-epochs' }));
    expect(second.ticketId).not.toBe(first.ticketId);
    // An agent reopens the old ticket; then this replica takes the partition over from another
    // one (what it knew of the conversation's epochs is forgotten, as on a cold start).
    expect((await gw.request('omni.cmd.status', { ticketId: first.ticketId, status: 'open' })).ok).toBe(true);
    // Wired: the replica forgot once per unit it took at its start (partitions + the unpartitioned one).
    const generation = (store: unknown) => (store as { epochGeneration: number }).epochGeneration;
    expect(generation(gw.gateway.router!.store)).toBeGreaterThanOrEqual(gw.gateway.bus.partitions + 1);
    gw.gateway.router!.store.forgetEpochs();
    const third = await route(chatMessage({ chat: 'chat-epochs' }));
    expect(third.ticketId).toBe(second.ticketId);
    const fourth = await route(chatMessage({ chat: 'chat-epochs' }));
    expect(fourth.ticketId).toBe(second.ticketId);
  });

  it('treats each Slack thread as its own conversation', async () => {
    const t1 = await route(chatMessage({ channel: 'slack', account: 'ws', chat: 'C1', threadId: '1700000000.000100', kind: 'channel' }));
    const t1b = await route(chatMessage({ channel: 'slack', account: 'ws', chat: 'C1', threadId: '1700000000.000100', kind: 'channel' }));
    const t2 = await route(chatMessage({ channel: 'slack', account: 'ws', chat: 'C1', threadId: '1700000000.000200', kind: 'channel' }));
    expect(t1b.ticketId).toBe(t1.ticketId);
    expect(t2.ticketId).not.toBe(t1.ticketId);
    expect(matchOf(t1b).value).toBe('C1/1700000000.000100');
  });
});

describe('email threading', () => {
  it('never puts another sender\'s mail into a ticket because it reuses a Message-ID; the same sender\'s mails with one Message-ID share a ticket', async () => {
    const reused = '<same-id@mailer.example>';
    const mail = (from: string, n: string) => ({ ...emailMessage({ messageId: reused, from, subject: `Счёт ${n}` }), id: `email:support:reused-${n}`, platform: { messageId: `reused-${n}` } });
    const anna = await route(mail('anna@client.ru', '1'));
    const boris = await route(mail('boris@other.ru', '2'));
    expect(boris.ticketId).not.toBe(anna.ticketId);
    expect(matchOf(boris).rule).toBe('new-ticket');
    // A mailer that gives all its mails one Message-ID: the sender's own ticket.
    const annaAgain = await route(mail('anna@client.ru', '3'));
    expect(annaAgain.ticketId).toBe(anna.ticketId);
    // And Boris's next mail with it is his ticket's, not a third.
    const borisAgain = await route(mail('boris@other.ru', '4'));
    expect(borisAgain.ticketId).toBe(boris.ticketId);
    const log = await gw.gateway.router!.store.readLog(anna.ticketId);
    expect(log.map((l) => (l.entry as Extract<LogEntry, { kind: 'inbound' }>).event?.sender.id)).toEqual(['anna@client.ru', 'anna@client.ru']);
  });

  it('joins by In-Reply-To, by References, by subject token and by marker', async () => {
    const root = await route(emailMessage({ messageId: '<root-1@client.ru>', from: 'olga@client.ru' }));
    const byReply = await route(emailMessage({ messageId: '<r2@client.ru>', from: 'olga@client.ru', inReplyTo: '<root-1@client.ru>' }));
    expect(byReply.ticketId).toBe(root.ticketId);
    expect(matchOf(byReply)).toEqual({ rule: 'email-in-reply-to', value: 'root-1@client.ru' });

    const byRefs = await route(emailMessage({ messageId: '<r3@client.ru>', from: 'olga@client.ru', references: ['<unknown@x>', '<r2@client.ru>'], inReplyTo: '<lost@outlook>' }));
    expect(byRefs.ticketId).toBe(root.ticketId);
    expect(matchOf(byRefs)).toEqual({ rule: 'email-references', value: 'r2@client.ru' });

    const byToken = await route(emailMessage({ messageId: '<r4@client.ru>', from: 'boss@client.ru', subject: `RE: Вопрос по заказу [#${root.ticketId}]` }));
    expect(byToken.ticketId).toBe(root.ticketId);
    // A colleague at a declared customer domain (router.colleagueDomains), and the log says so.
    expect(matchOf(byToken)).toEqual({ rule: 'email-subject-token', value: `${root.ticketId} (a colleague at client.ru, router.colleagueDomains)` });
    // Now a participant: the token alone, as for anyone who took part.
    const again = await route(emailMessage({ messageId: '<r4a@client.ru>', from: 'boss@client.ru', subject: `RE: [#${root.ticketId}]` }));
    expect(matchOf(again)).toEqual({ rule: 'email-subject-token', value: root.ticketId });

    // Ticket numbers are guessable: the token alone does not let a stranger in.
    const strangerToken = await route(emailMessage({ messageId: '<r4b@gmail.com>', from: 'someone@gmail.com', subject: `RE: [#${root.ticketId}]` }));
    expect(strangerToken.ticketId).not.toBe(root.ticketId);
    expect(matchOf(strangerToken).rule).toBe('new-ticket');
    const publicDomain = await route(emailMessage({ messageId: '<pd-1@mail.ru>', from: 'ivan@mail.ru' }));
    const sameFreeMail = await route(emailMessage({ messageId: '<pd-2@mail.ru>', from: 'petr@mail.ru', subject: `RE: [#${publicDomain.ticketId}]` }));
    expect(sameFreeMail.ticketId).not.toBe(publicDomain.ticketId); // a shared public mail domain proves nothing

    const byMarker = await route(emailMessage({ messageId: '<r5@relay>', from: 'olga@client.ru', subject: 'без номера', references: [`<omni.${root.ticketId}.abc123@shop.example>`] }));
    expect(byMarker.ticketId).toBe(root.ticketId);
    expect(matchOf(byMarker).rule).toBe('email-marker');
  });

  it('finds the ticket by the [#T-…] our reply carried in its text, when headers and subject lost it', async () => {
    const root = await route(emailMessage({ messageId: '<body-1@client.ru>', from: 'nina@client.ru' }));
    const quoted = `Спасибо, получилось.\n\n> Здравствуйте! Проверили оплату.\n> Обращение [#${root.ticketId}]`;
    const answerMail: InboundMessage = { ...emailMessage({ messageId: '<body-2@relay>', from: 'nina@client.ru', subject: 'Оплата', text: 'Спасибо, получилось.' }), fullText: quoted };
    const answer = await route(answerMail);
    expect(answer.ticketId).toBe(root.ticketId);
    expect(matchOf(answer)).toEqual({ rule: 'email-marker', value: `body [#${root.ticketId}]` });
    const strangerMail: InboundMessage = { ...emailMessage({ messageId: '<body-3@else.ru>', from: 'x@else.ru', subject: 'Оплата' }), fullText: quoted };
    const stranger = await route(strangerMail);
    expect(stranger.ticketId).not.toBe(root.ticketId);
  });

  it('does not merge a stranger replying to a mail they were not on', async () => {
    const root = await route(emailMessage({ messageId: '<news-1@shop.example>', from: 'anna@client.ru' }));
    const stranger = await route(emailMessage({ messageId: '<s1@other.ru>', from: 'stranger@other.ru', inReplyTo: '<news-1@shop.example>' }));
    expect(stranger.ticketId).not.toBe(root.ticketId);
    expect(matchOf(stranger).rule).toBe('new-ticket');
    const cc = await route(emailMessage({ messageId: '<cc1@client.ru>', from: 'anna@client.ru', cc: ['petr@client.ru'], inReplyTo: '<news-1@shop.example>' }));
    expect(cc.ticketId).toBe(root.ticketId);
    const petr = await route(emailMessage({ messageId: '<p1@client.ru>', from: 'petr@client.ru', inReplyTo: '<cc1@client.ru>' }));
    expect(petr.ticketId).toBe(root.ticketId); // was on copy, so he took part
  });

  it('looks at every ticket token in the subject and joins the first whose ticket the sender took part in (outside trial T9)', async () => {
    const other = await route(emailMessage({ messageId: '<tok-a1@mail.example>', from: 'alla@mail.example', subject: 'Доставка' }));
    const own = await route(emailMessage({ messageId: '<tok-b1@shop2.example>', from: 'boris@shop2.example', subject: 'Возврат' }));
    const fwd = await route(emailMessage({ messageId: '<tok-b2@shop2.example>', from: 'boris@shop2.example', subject: `Fwd: [#${other.ticketId}] Re: [#${own.ticketId}] Возврат` }));
    expect(fwd.ticketId).toBe(own.ticketId);
    expect(matchOf(fwd)).toEqual({ rule: 'email-subject-token', value: `${own.ticketId} (token 2 of 2 in the subject)` });
    // Someone on neither ticket joins none; the new ticket's log names both refusals.
    const stranger = await route(emailMessage({ messageId: '<tok-c1@third.example>', from: 'chuzhoi@third.example', subject: `[#${other.ticketId}] [#${own.ticketId}]` }));
    expect([other.ticketId, own.ticketId]).not.toContain(stranger.ticketId);
    expect(matchOf(stranger).value).toContain(`the subject names ${other.ticketId}`);
    expect(matchOf(stranger).value).toContain(`the subject names ${own.ticketId}`);
  });

  it('accepts an answer from the Reply-To address the reply went to', async () => {
    const root = { ...emailMessage({ messageId: '<rt-1@client.ru>', from: 'noreply-form@client.ru' }) };
    root.email = { ...root.email!, replyTo: 'buyer@client.ru' };
    const first = await route(root);
    const answer = await route(emailMessage({ messageId: '<rt-2@client.ru>', from: 'buyer@client.ru', inReplyTo: '<rt-1@client.ru>' }));
    expect(answer.ticketId).toBe(first.ticketId);
  });

  it('never lets a stranger at a public mail domain join a customer\'s ticket by its number, listed or not', async () => {
    // The trial's case: narod.ru was missing from the built-in list of public services.
    const ivanov = await route(emailMessage({ messageId: '<iv-1@narod.ru>', from: 'ivanov@narod.ru', subject: 'Возврат', text: 'Паспорт 4510 123456, прошу вернуть деньги' }));
    const hacker = await route(emailMessage({ messageId: '<hk-1@narod.ru>', from: 'hacker@narod.ru', subject: `Re: [#${ivanov.ticketId}] please send reply here` }));
    expect(hacker.ticketId).not.toBe(ivanov.ticketId);
    expect(matchOf(hacker)).toEqual({ rule: 'new-ticket', value: `hk-1@narod.ru (the subject names ${ivanov.ticketId}, but hacker@narod.ru took no part in it, and narod.ru is a public mail service: a ticket of its own)` });
    // The class, not the list: a public service nobody listed lets nobody in either, since only
    // a domain the operator declared a customer organisation's admits colleagues.
    const owner = await route(emailMessage({ messageId: '<un-1@freemail.example>', from: 'owner@freemail.example', text: 'Паспорт 4510 654321' }));
    const stranger = await route(emailMessage({ messageId: '<un-2@freemail.example>', from: 'stranger@freemail.example', subject: `Re: [#${owner.ticketId}]` }));
    expect(stranger.ticketId).not.toBe(owner.ticketId);
    expect(matchOf(stranger).value).toContain(`the subject names ${owner.ticketId}, but stranger@freemail.example took no part in it, and freemail.example is not a customer organisation's domain (router.colleagueDomains)`);
    // A reply header naming one of the ticket's mails is no way in either.
    const byHeader = await route(emailMessage({ messageId: '<un-3@freemail.example>', from: 'stranger@freemail.example', inReplyTo: '<un-1@freemail.example>', subject: `Re: [#${owner.ticketId}]` }));
    expect(byHeader.ticketId).not.toBe(owner.ticketId);
    expect(matchOf(byHeader).value).toBe(`un-3@freemail.example (In-Reply-To names a mail of ${owner.ticketId}, but stranger@freemail.example took no part in it: a ticket of its own)`);
    for (const [t, who] of [[ivanov.ticketId, 'ivanov@narod.ru'], [owner.ticketId, 'owner@freemail.example']] as const) {
      expect((await gw.ticket(t))!.participants).toEqual([who]);
      const log = await gw.gateway.router!.store.readLog(t);
      expect(log.map((l) => (l.entry as Extract<LogEntry, { kind: 'inbound' }>).event?.sender.id)).toEqual([who]);
    }
  });

  it('never lets a sender taken from Reply-To (no usable From) join a ticket as the person it names', async () => {
    // Reply-To is not covered by DMARC: "From: Undisclosed:;" and "Reply-To: olga@…" made the mail Olga's.
    const olga = await route(emailMessage({ messageId: '<ol-1@romashka.ru>', from: 'olga@romashka.ru', subject: 'Счёт', text: 'Пришлите счёт' }));
    const forged = emailMessage({ messageId: '<fk-1@evil.example>', from: 'olga@romashka.ru', subject: `Re: [#${olga.ticketId}] пришлите реквизиты сюда`, inReplyTo: '<ol-1@romashka.ru>' });
    forged.email = { ...forged.email!, senderHeader: 'reply-to', senderNote: 'From held no mailbox' };
    const landed = await route(forged);
    expect(landed.ticketId).not.toBe(olga.ticketId);
    expect(matchOf(landed).value).toContain(`but its sender was taken from reply-to (the From held no usable address), which proves nothing: a ticket of its own`);
    expect((await gw.ticket(olga.ticketId))!.messageCount).toBe(1);
  });

  it('lets a mail whose From the receiving server found forged join no ticket by any rule', async () => {
    const ivan = await route(emailMessage({ messageId: '<iv-1@romashka.ru>', from: 'ivan@romashka.ru', subject: 'Сверка', text: 'Пришлите акт' }));
    const T = ivan.ticketId;
    const forged = (o: Parameters<typeof emailMessage>[0], authentication: NonNullable<InboundMessage['email']>['authentication']) => {
      const e = emailMessage({ ...o, from: o.from, cc: ['spy@evil.example'] });
      e.email = { ...e.email!, replyTo: 'attacker@evil.example', authentication };
      return e;
    };
    const fail = { verdict: 'fail' as const, by: 'mx.example.ru', dmarc: 'fail' };
    // Every rule: In-Reply-To, References, subject token, marker, quoted token, colleague.
    const tries = [
      forged({ messageId: '<fg-1@evil.example>', from: 'ivan@romashka.ru', inReplyTo: '<iv-1@romashka.ru>' }, fail),
      forged({ messageId: '<fg-2@evil.example>', from: 'ivan@romashka.ru', references: ['<iv-1@romashka.ru>'] }, fail),
      forged({ messageId: '<fg-3@evil.example>', from: 'ivan@romashka.ru', subject: `Re: [#${T}]` }, fail),
      forged({ messageId: '<fg-4@evil.example>', from: 'ivan@romashka.ru', references: [`<omni.${T}.abc123@shop.example>`] }, fail),
      forged({ messageId: '<fg-5@evil.example>', from: 'ivan@romashka.ru', subject: 'без номера', text: `> [#${T}] ответ` }, fail),
      forged({ messageId: '<fg-6@evil.example>', from: 'boss@romashka.ru', subject: `Re: [#${T}]` }, { verdict: 'fail', by: 'mxs.mail.ru', spf: 'softfail', dkim: 'none' }),
      // The account requires a trusted pass; the mail has none.
      forged({ messageId: '<fg-7@evil.example>', from: 'ivan@romashka.ru', inReplyTo: '<iv-1@romashka.ru>' }, { verdict: 'none', required: true }),
    ];
    const values: string[] = [];
    for (const e of tries) {
      const landed = await route(e);
      expect(landed.ticketId).not.toBe(T);
      expect(matchOf(landed).rule).toBe('new-ticket');
      values.push(matchOf(landed).value);
    }
    expect(values[0]).toContain(`In-Reply-To names a mail of ${T}, but the receiving server (mx.example.ru) found its From forged: dmarc=fail: a ticket of its own`);
    expect(values[5]).toContain(`the subject names ${T}, but the receiving server (mxs.mail.ru) found its From forged: spf=softfail, dkim=none: a ticket of its own`);
    expect(values[6]).toContain('no trusted server vouched for its From (no Authentication-Results header of trustedAuthServIds), and the account requires it (requireAuthenticatedSender)');
    // The same Message-ID as Ivan's own mail (a lost claim joins only the sender's own ticket): not Ivan's ticket either.
    const reuse = forged({ messageId: '<iv-1@romashka.ru>', from: 'ivan@romashka.ru' }, fail);
    reuse.id = 'email:support:fg-reuse';
    reuse.platform = { messageId: 'fg-reuse' };
    expect((await route(reuse)).ticketId).not.toBe(T);
    const ticket = (await gw.ticket(T))!;
    expect(ticket.participants).toEqual(['ivan@romashka.ru']);
    expect(ticket.messageCount).toBe(1);
  });

  it('sends a redelivered mail of a doubted sender to the ticket it opened, not a second one (a crash before its marker)', async () => {
    const store = gw.gateway.router!.store;
    const threader = new Threader(store, { reopenWindowMs: 7 * 86_400_000, now: Date.now });
    const e = emailMessage({ messageId: '<fg-redeliver@evil.example>', from: 'petr@romashka.ru', subject: 'Счёт', text: 'Пришлите счёт' });
    e.email = { ...e.email!, authentication: { verdict: 'fail', by: 'mx.example.ru', dmarc: 'fail' } };
    const first = await ticketFor(store, threader, e, true);
    expect(first.openedNow).toBe(true);
    // The same message again, as after a crash between its ticket and its processed marker.
    const again = await ticketFor(store, threader, e, true);
    expect(again.ticket.id).toBe(first.ticket.id);
    // Another mail reusing that Message-ID and From, its From found forged too: a ticket of its own.
    const other = emailMessage({ messageId: '<fg-redeliver@evil.example>', from: 'petr@romashka.ru', subject: 'Счёт', text: 'Реквизиты сюда' });
    other.email = { ...other.email!, authentication: { verdict: 'fail', by: 'mx.example.ru', dmarc: 'fail' } };
    other.id = 'email:support:fg-redeliver-2';
    other.platform = { messageId: 'fg-redeliver-2' };
    const third = await ticketFor(store, threader, other, true);
    expect(third.ticket.id).not.toBe(first.ticket.id);
  });

  it('lets a colleague in by the subject token only at a declared customer domain where a participant is', async () => {
    const root = await route(emailMessage({ messageId: '<co-1@romashka.ru>', from: 'buh@romashka.ru', subject: 'Сверка' }));
    // Declared (written "Romashka.RU" in the config), a participant there: the manager joins.
    const manager = await route(emailMessage({ messageId: '<co-2@romashka.ru>', from: 'Director@Romashka.ru', subject: `RE: Сверка [#${root.ticketId}]` }));
    expect(manager.ticketId).toBe(root.ticketId);
    expect(matchOf(manager).value).toBe(`${root.ticketId} (a colleague at romashka.ru, router.colleagueDomains)`);
    expect((await gw.ticket(root.ticketId))!.participants).toEqual(['buh@romashka.ru', 'director@romashka.ru']);
    // A company domain nobody declared: its own ticket, and why.
    const other = await route(emailMessage({ messageId: '<co-3@vasilek.ru>', from: 'boss@vasilek.ru', subject: `RE: [#${root.ticketId}]` }));
    expect(other.ticketId).not.toBe(root.ticketId);
    expect(matchOf(other).value).toContain('vasilek.ru is not a customer organisation\'s domain (router.colleagueDomains)');
    // A declared domain, but nobody from it takes part in that ticket.
    const elsewhere = await route(emailMessage({ messageId: '<co-4@client.ru>', from: 'anyone@client.ru', subject: `RE: [#${other.ticketId}]` }));
    expect(elsewhere.ticketId).not.toBe(other.ticketId);
    expect(matchOf(elsewhere).value).toContain(`the subject names ${other.ticketId}, but anyone@client.ru took no part in it, and nobody at client.ru did`);
  });

  it('matches a Cyrillic customer domain however the mail writes it: Unicode or "xn--", any case, a trailing dot (outside trial)', async () => {
    // Declared "Компания.рф": a mail from its punycode form joins a thread begun in Cyrillic.
    const root = await route(emailMessage({ messageId: '<idn-1@x.example>', from: 'buh@компания.рф', subject: 'Сверка' }));
    const punycode = await route(emailMessage({ messageId: '<idn-2@x.example>', from: 'Director@XN--80AQEIGDI5K.XN--P1AI', subject: `RE: [#${root.ticketId}]` }));
    expect(punycode.ticketId).toBe(root.ticketId);
    expect(matchOf(punycode).value).toBe(`${root.ticketId} (a colleague at xn--80aqeigdi5k.xn--p1ai, router.colleagueDomains)`);
    const dotted = await route(emailMessage({ messageId: '<idn-3@x.example>', from: 'zam@КОМПАНИЯ.РФ.', subject: `RE: [#${root.ticketId}]` }));
    expect(dotted.ticketId).toBe(root.ticketId);
    // Declared as "XN--80AA3AGJL3D.XN--P1AI." (ромашка.рф): a mail in Cyrillic joins one begun in punycode.
    const other = await route(emailMessage({ messageId: '<idn-4@x.example>', from: 'buh@xn--80aa3agjl3d.xn--p1ai', subject: 'Акт' }));
    const cyrillic = await route(emailMessage({ messageId: '<idn-5@x.example>', from: 'boss@ромашка.рф', subject: `RE: [#${other.ticketId}]` }));
    expect(cyrillic.ticketId).toBe(other.ticketId);
    // Another .рф domain (лечениенаркомании.рф) is not the declared one, however alike its punycode looks.
    const stranger = await route(emailMessage({ messageId: '<idn-6@x.example>', from: 'ivan@xn--80aanaardaperhcem4a6i.xn--p1ai', subject: `RE: [#${root.ticketId}]` }));
    expect(stranger.ticketId).not.toBe(root.ticketId);
    expect(matchOf(stranger).value).toContain('xn--80aanaardaperhcem4a6i.xn--p1ai is not a customer organisation\'s domain (router.colleagueDomains)');
  });

  it('records why each message landed in its ticket in the log', async () => {
    const root = await route(emailMessage({ messageId: '<why-1@client.ru>', from: 'why@client.ru' }));
    await route(emailMessage({ messageId: '<why-2@client.ru>', from: 'why@client.ru', inReplyTo: '<why-1@client.ru>' }));
    const log = await gw.gateway.router!.store.readLog(root.ticketId);
    const inbound = log.map((l) => l.entry).filter((e): e is Extract<LogEntry, { kind: 'inbound' }> => e.kind === 'inbound');
    expect(inbound.map((e) => e.match.rule)).toEqual(['new-ticket', 'email-in-reply-to']);
  });
});

describe('reactions', () => {
  it('are logged on the ticket but reopen nothing, wake nothing and are never quoted', async () => {
    const question = await route(chatMessage({ chat: 'react-chat', id: 'q-1', text: 'Где мой заказ?' }));
    expect((await gw.request('omni.cmd.status', { ticketId: question.ticketId, status: 'pending' })).ok).toBe(true);
    const thumbs = { ...chatMessage({ chat: 'react-chat', id: 'r-1', text: '' }), parts: [{ type: 'reaction' as const, emoji: '👍', targetPlatformMessageId: 'a-1' }] };
    const reacted = await route(thumbs);
    expect(reacted.ticketId).toBe(question.ticketId);
    let ticket = (await gw.ticket(question.ticketId))!;
    expect(ticket.status).toBe('pending'); // still waiting for the customer
    expect(ticket.lastInboundPlatformId).toBe('q-1'); // a reply quotes the question, not the 👍

    expect((await gw.request('omni.cmd.status', { ticketId: question.ticketId, status: 'closed' })).ok).toBe(true);
    const late = { ...chatMessage({ chat: 'react-chat', id: 'r-2', text: '' }), parts: [{ type: 'reaction' as const, emoji: '❤️', targetPlatformMessageId: 'a-1' }] };
    expect((await route(late)).ticketId).toBe(question.ticketId);
    ticket = (await gw.ticket(question.ticketId))!;
    expect(ticket.status).toBe('closed');
  });
});

describe('loop guard and edits', () => {
  it('never opens a ticket for automated messages', async () => {
    const auto = { ...emailMessage({ messageId: '<ooo@client.ru>', from: 'away@client.ru' }), automated: 'auto-reply' as const };
    await publishEvent(gw.nc, auto);
    const parked = await gw.waitForStreamMessage<{ reason: string; payload: string }>('OMNI_DLQ', 'omni.dlq.router.ignored', (d) => d.payload.includes('<ooo@client.ru>'));
    expect(parked.reason).toMatch(/loop guard: auto-reply/);
    const tickets = await gw.gateway.router!.store.list();
    expect(tickets.some((t) => t.contact.id === 'away@client.ru')).toBe(false);
  });

  it('appends edits and deletions to the ticket of the original message', async () => {
    const original = chatMessage({ chat: 'edit-chat', id: 'orig-1' });
    const created = await route(original);
    const edit = {
      v: 1, type: 'message.edited', id: 'webhook:site:edit:orig-1:1', channel: 'webhook', account: 'site',
      conversation: original.conversation, sender: original.sender, targetPlatformMessageId: 'orig-1', text: 'исправлено',
      platform: { messageId: 'orig-1' }, receivedAt: new Date().toISOString(),
    };
    await publishEvent(gw.nc, edit);
    const edited = await gw.waitForEvent((e) => e.type === 'ticket.edited' && e.ticketId === created.ticketId);
    expect((edited.entry as Extract<LogEntry, { kind: 'edited' }>).event.text).toBe('исправлено');
    const log = await gw.gateway.router!.store.readLog(created.ticketId);
    expect(log.map((l) => l.entry.kind)).toEqual(['inbound', 'edited']);
  });

  it('parks an edit or deletion that names a message of another conversation (a webhook client\'s ids are account-wide)', async () => {
    const victim = chatMessage({ chat: 'victim-chat', id: 'victim-1', text: 'мой заказ 48213' });
    const victimTicket = await route(victim);
    const other = chatMessage({ chat: 'other-chat', id: 'other-1', from: 'mallory' });
    await route(other);
    const change = (type: 'message.edited' | 'message.deleted', n: number) => ({
      v: 1, type, id: `webhook:site:${type}:victim-1:${n}`, channel: 'webhook', account: 'site',
      conversation: other.conversation, sender: other.sender, targetPlatformMessageId: 'victim-1',
      ...(type === 'message.edited' ? { text: 'ПОДМЕНА' } : {}),
      platform: { messageId: `foreign-${n}` }, receivedAt: new Date().toISOString(),
    });
    await publishEvent(gw.nc, change('message.edited', 1));
    await publishEvent(gw.nc, change('message.deleted', 2));
    for (const type of ['message.edited', 'message.deleted']) {
      const parked = await gw.waitForStreamMessage<{ reason: string; code: string }>('OMNI_DLQ', 'omni.dlq.router', (d) => d.reason.startsWith(`${type} from conversation other-chat for message victim-1`));
      expect(parked.code).toBe('foreign_target');
      expect(parked.reason).toContain(`which is in conversation victim-chat (${victimTicket.ticketId})`);
    }
    // Both were parked (above) before the victim's next message: its log shows neither change.
    await route(chatMessage({ chat: 'victim-chat', id: 'victim-2' }));
    const log = await gw.gateway.router!.store.readLog(victimTicket.ticketId);
    expect(log.map((l) => l.entry.kind)).toEqual(['inbound', 'inbound']);
  });

  it('parks edits and deletions of a message it never saw, even when the conversation has an open ticket', async () => {
    const original = chatMessage({ chat: 'edit-unknown-chat', id: 'seen-1' });
    const created = await route(original);
    const change = (type: 'message.edited' | 'message.deleted', n: number) => ({
      v: 1, type, id: `webhook:site:${type}:never-seen:${n}`, channel: 'webhook', account: 'site',
      conversation: original.conversation, sender: original.sender, targetPlatformMessageId: 'never-seen',
      ...(type === 'message.edited' ? { text: 'правка чужого' } : {}),
      platform: { messageId: `never-seen-${n}` }, receivedAt: new Date().toISOString(),
    });
    await publishEvent(gw.nc, change('message.edited', 1));
    await publishEvent(gw.nc, change('message.deleted', 2));
    for (const type of ['message.edited', 'message.deleted']) {
      const parked = await gw.waitForStreamMessage<{ reason: string; payload: string }>('OMNI_DLQ', 'omni.dlq.router', (d) => d.reason.startsWith(`${type} for unknown message never-seen`));
      expect(parked.reason).toContain('the original never reached the router');
    }
    // A later message of the conversation is routed after both (one lane): the log shows none of them.
    const next = chatMessage({ chat: 'edit-unknown-chat', id: 'seen-2' });
    expect((await route(next)).ticketId).toBe(created.ticketId);
    const log = await gw.gateway.router!.store.readLog(created.ticketId);
    expect(log.map((l) => l.entry.kind)).toEqual(['inbound', 'inbound']);
  });
});
