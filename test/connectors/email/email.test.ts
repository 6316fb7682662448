/**
 * Email end to end: imapflow against a real Dovecot (mail APPENDed by the test), nodemailer
 * against the smtp-server stand-in, a real nats-server, the router and the outbound runner.
 */
import { createHash, randomBytes } from 'node:crypto';
import { jetstream } from '@nats-io/jetstream';
import { Objm } from '@nats-io/obj';
import { simpleParser } from 'mailparser';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { DeadLetter, InboundMessage, LogEntry } from '../../../src/core/schema.js';
import type { TestGateway } from '../../helpers/gateway.js';
import { SUPPORT, connected, emailGateway, inboundOf, startWorld, type EmailWorld } from './harness.js';
import { alternativeMail, bounceMail, hugeHeaderMail, legacyCharsetMail, manyPartsMail, plainMail, uniqueId, unlabelledMail } from './mails.js';
import { outboundMessageId } from '../../../src/connectors/email/ids.js';

let world: EmailWorld;
let gw: TestGateway;

beforeAll(async () => {
  world = await startWorld();
  // A long fallback poll: anything that arrives within the tests came through IDLE. Satisfaction
  // requests go out only when a test runs the scan with a clock an hour ahead.
  gw = await emailGateway(world, { pollIntervalMs: 60_000 }, { router: { csat: { enabled: true, delay: '1h' } } });
  await connected(gw);
});
afterAll(async () => {
  await gw?.stop();
  await world?.stop();
});

// ticket.created carries no log entry: the ticket.message that opened it says 'new-ticket'.
const created = (messageId: string) => (e: Parameters<Parameters<TestGateway['waitForEvent']>[0]>[0]) =>
  e.type === 'ticket.message' && inboundOf(e)?.email?.messageId === messageId && e.entry?.kind === 'inbound' && e.entry.match.rule === 'new-ticket';
const messageOf = (messageId: string) => (e: Parameters<Parameters<TestGateway['waitForEvent']>[0]>[0]) =>
  e.type === 'ticket.message' && inboundOf(e)?.email?.messageId === messageId;
const sha256 = (b: Uint8Array) => createHash('sha256').update(b).digest('hex');

async function append(raw: Buffer, folder = 'INBOX'): Promise<void> {
  await world.imap.append(folder, raw);
}

/** The inbound event as JetStream stored it: its size on the wire and its content. */
async function storedInbound(messageId: string): Promise<{ bytes: number; event: InboundMessage }> {
  const c = await jetstream(gw.nc).consumers.get('OMNI_IN', { filter_subjects: 'omni.in.email.support.>' });
  try {
    for (;;) {
      const m = await c.next({ expires: 5000 });
      if (!m) throw new Error(`no inbound event for ${messageId}`);
      const event = m.json<InboundMessage>();
      if (event.email?.messageId === messageId) return { bytes: m.data.byteLength, event };
    }
  } finally {
    await c.delete().catch(() => {});
  }
}

const inboundLetter = (pred: (d: DeadLetter) => boolean) => gw.waitForStreamMessage<DeadLetter>('OMNI_DLQ', 'omni.dlq.inbound.email.support', pred);

async function ignored(messageId: string): Promise<DeadLetter> {
  return gw.waitForStreamMessage<DeadLetter>('OMNI_DLQ', 'omni.dlq.router.ignored', (d) => d.payload.includes(JSON.stringify(messageId).slice(1, -1)));
}

describe('email connector', () => {
  let ticketId = '';
  let customerMessageId = '';
  let ourMessageId = '';

  it('turns a mail APPENDed to the mailbox into a ticket through IDLE', async () => {
    customerMessageId = uniqueId();
    const t0 = Date.now();
    await append(plainMail({
      messageId: customerMessageId,
      subject: 'Не работает касса',
      cc: 'Бухгалтерия <buh@client.example.ru>',
      text: 'Касса не печатает чеки с утра.\n\n-- \nИван Петров\nООО «Ромашка»',
    }));
    const event = await gw.waitForEvent(created(customerMessageId));
    // The fallback poll is a minute away: only IDLE can be this quick (well under a second on an
    // idle machine; the bound leaves room for a loaded one).
    expect(Date.now() - t0, 'mail → ticket through IDLE, ms').toBeLessThan(30_000);
    ticketId = event.ticketId;
    const msg = inboundOf(event)!;
    expect(msg.conversation).toMatchObject({ id: SUPPORT, kind: 'email', title: 'Не работает касса' });
    expect(msg.sender).toMatchObject({ id: 'ivan@client.example.ru', displayName: 'Иван Петров', handles: { email: 'ivan@client.example.ru' } });
    expect(msg.text).toBe('Касса не печатает чеки с утра.');
    expect(msg.fullText).toContain('ООО «Ромашка»');
    expect(msg.email).toMatchObject({ messageId: customerMessageId, subject: 'Не работает касса', from: 'ivan@client.example.ru', to: [SUPPORT], cc: ['buh@client.example.ru'] });
    expect(msg.platform.messageId).toMatch(new RegExp(`^${SUPPORT.replace(/\./g, '\\.')}:${customerMessageId.slice(1, -1).toLowerCase().replace(/\./g, '\\.')}#[0-9a-f]{12}$`));
    expect(msg.automated).toBeUndefined();
    // Acknowledged on the server only after the event was stored: \Seen plus our keyword.
    const uid = (await world.imap.mailboxOpen('INBOX')) && (await world.imap.search({ header: { 'message-id': customerMessageId } }, { uid: true }));
    const flags = await world.imap.fetchOne(String((uid as number[])[0]), { flags: true }, { uid: true });
    expect(flags && [...flags.flags!]).toEqual(expect.arrayContaining(['\\Seen', '$Omnigate']));
  });

  it('stores every mail whose Message-ID is empty or reused, and never puts another sender\'s mail into a ticket by it', async () => {
    const word = (w: string) => gw.waitForEvent((e) => e.type === 'ticket.message' && ((e.entry as { event?: InboundMessage })?.event?.text ?? '').includes(w));
    await append(plainMail({ messageId: '<>', from: 'Анна <anna@client.example.ru>', subject: 'Пустой id', text: 'Первое: Брусника' }));
    await append(plainMail({ messageId: '<>', from: 'Борис <boris@other.example.ru>', subject: 'Пустой id', text: 'Второе: Морошка' }));
    await append(plainMail({ messageId: '< >', from: 'Борис <boris@other.example.ru>', subject: 'Пробел', text: 'Третье: Голубика' }));
    const reused = '<reused-by-mailer@crm.example.ru>';
    await append(plainMail({ messageId: reused, from: 'Анна <anna@client.example.ru>', subject: 'Счёт 1', text: 'Четвёртое: Клюква' }));
    await append(plainMail({ messageId: reused, from: 'Борис <boris@other.example.ru>', subject: 'Счёт 2', text: 'Пятое: Черника' }));
    const [first, second, third, fourth, fifth] = await Promise.all(['Брусника', 'Морошка', 'Голубика', 'Клюква', 'Черника'].map(word));
    // Each its own message; <> and < > are no Message-ID at all (each mail gets one of its own).
    const ids = [first, second, third, fourth, fifth].map((e) => (e!.entry as { event: InboundMessage }).event.id);
    expect(new Set(ids).size).toBe(5);
    for (const e of [first, second, third]) expect((e!.entry as { event: InboundMessage }).event.email!.messageId).toMatch(/^<nomid\./);
    expect(fifth!.ticketId).not.toBe(fourth!.ticketId);
    expect(second!.ticketId).not.toBe(first!.ticketId);

    // One mail read twice is one message, also with a Date mailparser cannot read (it puts the time of reading there).
    const badDate = plainMail({ messageId: uniqueId('baddate'), date: 'Пн, 12 мар 2024 10:00', text: 'Дважды: Шикша' });
    await append(badDate);
    await append(badDate);
    await append(plainMail({ messageId: uniqueId('after-baddate'), text: 'После: Княженика' }));
    const twice = await word('Шикша');
    await word('Княженика'); // appended after both copies: they were read by now
    expect((await gw.ticket(twice!.ticketId))?.messageCount).toBe(1);
  });

  it('sends the agent reply over SMTP with threading headers and the token; the answer to it joins the ticket', async () => {
    const reply = await gw.request('omni.cmd.reply', { ticketId, text: 'Здравствуйте, Иван! Перезагрузите кассу.', html: '<p>Здравствуйте, Иван! <b>Перезагрузите</b> кассу.</p>' });
    expect(reply).toMatchObject({ ok: true });
    const mail = await world.smtp.waitFor((m) => m.raw.includes(`omni.${ticketId}.`));
    const parsed = await simpleParser(mail.raw);
    ourMessageId = parsed.messageId!;
    // The installation id (created once, in omni_meta) is part of every Message-ID we mint.
    expect(ourMessageId).toMatch(new RegExp(`^<omni\\.${ticketId}\\.[0-9a-f]{24}\\.${gw.gateway.bus.installationId}@example\\.ru>$`));
    // Keyed by the installation's secret: not computable from the ticket, the outbound id and the
    // installation id a stranger can know (outside trial T9 computed an acknowledgement's exactly).
    const { installationId, messageIdSecret } = gw.gateway.bus;
    expect(messageIdSecret).toHaveLength(32);
    expect(ourMessageId).not.toBe(outboundMessageId(ticketId, reply.result.outboundId as string, 'example.ru', installationId));
    expect(ourMessageId).toBe(outboundMessageId(ticketId, reply.result.outboundId as string, 'example.ru', { installationId, secret: messageIdSecret }));
    expect(parsed.inReplyTo).toBe(customerMessageId);
    expect([parsed.references].flat()).toContain(customerMessageId);
    expect(parsed.subject).toBe(`Re: Не работает касса [#${ticketId}]`);
    expect(parsed.from?.value[0]).toMatchObject({ address: SUPPORT, name: 'Служба поддержки' });
    // "Reply all": the customer in To, the accountant they copied in Cc (docs/connectors/email.md).
    expect(mail.to).toEqual(['ivan@client.example.ru', 'buh@client.example.ru']);
    expect(parsed.to).toMatchObject({ value: [{ address: 'ivan@client.example.ru' }] });
    expect(parsed.cc).toMatchObject({ value: [{ address: 'buh@client.example.ru' }] });
    // The router may add a footer under the agent's text (src/router/commands.ts).
    expect(parsed.text?.trim()).toMatch(/^Здравствуйте, Иван! Перезагрузите кассу\.(\n|$)/);
    expect(parsed.html).toContain('<b>Перезагрузите</b>');
    expect(parsed.headers.get('auto-submitted')).toBeUndefined();
    const delivery = await gw.waitForEvent((e) => e.type === 'ticket.delivery' && e.ticketId === ticketId);
    const status = (delivery.entry as Extract<LogEntry, { kind: 'delivery' }>).status;
    expect(status).toMatchObject({ status: 'sent', platformMessageId: ourMessageId });

    // The customer answers, quoting us; no token in the subject.
    const answerId = uniqueId();
    await append(plainMail({
      messageId: answerId,
      subject: 'Re: касса',
      inReplyTo: ourMessageId,
      references: `${customerMessageId} ${ourMessageId}`,
      text: 'Перезагрузил, заработало. Спасибо!\n\n12 марта 2024 г., в 10:15, Служба поддержки <support@example.ru> написал(а):\n> Здравствуйте, Иван! Перезагрузите кассу.',
    }));
    const joined = await gw.waitForEvent(messageOf(answerId));
    expect(joined.ticketId).toBe(ticketId);
    expect(joined.entry).toMatchObject({ match: { rule: 'email-in-reply-to' } });
    expect(inboundOf(joined)!.text).toBe('Перезагрузил, заработало. Спасибо!');
  });

  it('takes "5" above the attribution line of Russian Gmail (one line or wrapped), Yandex and Mail.ru and the quote as the rating, without reopening', async () => {
    const clients: Array<[string, string]> = [
      ['gmail', 'пн, 7 дек. 2026 г. в 01:46, Служба поддержки <support@example.ru>:'],
      ['yandex', '07.12.2026, 01:46, "Служба поддержки" <support@example.ru>:'],
      ['mailru', 'Понедельник, 7 декабря 2026, 1:46 +03:00 от Служба поддержки <support@example.ru>:'],
      // Gmail wraps a long one before the address (outside trial).
      ['gmail-wrapped', 'пн, 7 дек. 2026 г. в 01:46, Служба поддержки ООО Ромашка\n<support@example.ru>:'],
    ];
    const tickets = new Map<string, { ticketId: string; messageId: string }>();
    for (const [client] of clients) {
      const messageId = uniqueId(`csat-${client}`);
      await append(plainMail({ messageId, from: `Клиент <csat.${client}@client.example.ru>`, subject: 'Не проходит оплата', text: 'Оплата картой не проходит.' }));
      const ticketId = (await gw.waitForEvent(created(messageId))).ticketId;
      // An answer that reached the customer: only that is asked to be rated.
      await gw.request('omni.cmd.reply', { ticketId, text: 'Исправили, попробуйте ещё раз.' });
      await gw.waitForEvent((e) => e.type === 'ticket.delivery' && e.ticketId === ticketId && (e.entry as any)?.status?.status === 'sent');
      await gw.request('omni.cmd.status', { ticketId, status: 'resolved' });
      tickets.set(client, { ticketId, messageId });
    }
    await gw.gateway.sla!.check(Date.now() + 2 * 3_600_000);
    for (const [client, attribution] of clients) {
      const { ticketId, messageId } = tickets.get(client)!;
      const request = await world.smtp.waitFor((m) => m.to.includes(`csat.${client}@client.example.ru`) && m.raw.includes(`omni.${ticketId}.`) && /^Auto-Submitted:/im.test(m.raw.toString()), 20_000);
      const asked = (await simpleParser(request.raw)).text!.trim().split('\n').map((l) => `> ${l}`).join('\n');
      const answer = uniqueId(`csat-${client}-answer`);
      await append(plainMail({
        messageId: answer,
        from: `Клиент <csat.${client}@client.example.ru>`,
        subject: `Re: Не проходит оплата [#${ticketId}]`,
        inReplyTo: (await simpleParser(request.raw)).messageId,
        references: messageId,
        text: `5\n\n${attribution}\n${asked}`,
      }));
      const rating = await gw.waitForEvent((e) => e.type === 'ticket.rating' && e.ticketId === ticketId);
      expect(rating.entry, client).toMatchObject({ kind: 'rating', rating: 5 });
      expect(rating.status, client).toBe('resolved');
      expect((await gw.ticket(ticketId))!.status, client).toBe('resolved');
    }
  });

  it('round-trips windows-1251 and KOI8-R text and a multi-MB attachment intact, into the object store and back out', async () => {
    const attachment = randomBytes(3 * 1024 * 1024 + 17);
    const inline = randomBytes(20_000);
    const messageId = uniqueId('legacy');
    await append(legacyCharsetMail({
      messageId,
      subject: 'Счёт 42: оплата не прошла, ЁЖИК',
      text1251: 'Добрый день!\nПрикладываю выписку. Ёжик, щука, съешь ещё этих мягких французских булок.',
      htmlKoi8: '<html><body><p>Добрый день! Выписка во вложении. Съешь же ещё этих мягких булок.</p><img src="cid:logo@client.example.ru"></body></html>',
      attachment,
      attachmentName: 'Выписка за март.bin',
      inline,
    }));
    const event = await gw.waitForEvent(created(messageId), 20_000);
    const msg = inboundOf(event)! as InboundMessage;
    expect(msg.email!.subject).toBe('Счёт 42: оплата не прошла, ЁЖИК');
    expect(msg.sender).toMatchObject({ id: 'olga@client.example.ru', displayName: 'Ольга Смирнова', handles: { email: 'olga@client.example.ru', replyTo: 'buh@client.example.ru' } });
    expect(msg.email).toMatchObject({ replyTo: 'buh@client.example.ru', cc: ['glavbuh@client.example.ru'] });
    expect(msg.text).toBe('Добрый день!\nПрикладываю выписку. Ёжик, щука, съешь ещё этих мягких французских булок.');
    expect(msg.html).toContain('Съешь же ещё этих мягких булок.');
    expect(msg.html).toContain('cid:logo@client.example.ru');
    const file = msg.attachments.find((a) => a.kind === 'document')!;
    expect(file).toMatchObject({ name: 'Выписка за март.bin', size: attachment.byteLength, sha256: sha256(attachment), status: 'stored' });
    const logo = msg.attachments.find((a) => a.kind === 'inline')!;
    expect(logo).toMatchObject({ name: 'logo.png', mimeType: 'image/png', contentId: 'logo@client.example.ru', sha256: sha256(inline) });
    const store = await new Objm(gw.nc).open('omni_media');
    expect(Buffer.from((await store.getBlob(file.objectKey!))!).equals(attachment)).toBe(true);

    // And out again: the agent forwards the stored file; the SMTP server gets the same bytes.
    const reply = await gw.request('omni.cmd.reply', {
      ticketId: event.ticketId,
      text: 'Получили, спасибо.',
      attachments: [{ objectKey: file.objectKey, name: file.name, mimeType: file.mimeType, size: file.size }],
    });
    expect(reply.ok).toBe(true);
    const out = await world.smtp.waitFor((m) => m.raw.includes(`omni.${event.ticketId}.`), 20_000);
    const parsed = await simpleParser(out.raw);
    expect(parsed.attachments[0]!.filename).toBe('Выписка за март.bin');
    expect(sha256(parsed.attachments[0]!.content)).toBe(sha256(attachment));
  });

  it('opens no ticket for auto-replies, list mail, bulk mail or bounces, and fails our delivery on a bounce', async () => {
    expect(ourMessageId).not.toBe('');
    const autoReply = uniqueId('ooo');
    const xAutoreply = uniqueId('xauto');
    const list = uniqueId('list');
    const bulk = uniqueId('bulk');
    await append(plainMail({ messageId: autoReply, subject: 'Автоответ: Не работает касса', headers: { 'Auto-Submitted': 'auto-replied' }, text: 'Я в отпуске до понедельника.' }));
    await append(plainMail({ messageId: xAutoreply, from: 'robot@client.example.ru', headers: { 'X-Autoreply': 'yes' } }));
    await append(plainMail({ messageId: list, from: 'news@lists.example.ru', headers: { 'List-Id': '<news.lists.example.ru>' } }));
    await append(plainMail({ messageId: bulk, from: 'promo@shop.example.ru', headers: { Precedence: 'bulk' } }));
    const bounce = bounceMail({ originalMessageId: ourMessageId, to: 'ivan@client.example.ru', diagnostic: '550 5.1.1 <ivan@client.example.ru>: Recipient address rejected: User unknown' });
    await append(bounce);

    const kinds = await Promise.all([autoReply, xAutoreply, list, bulk].map(async (id) => (JSON.parse((await ignored(id)).payload) as InboundMessage).automated));
    expect(kinds).toEqual(['auto-reply', 'auto-reply', 'list', 'bulk']);

    const failed = await gw.waitForEvent((e) => e.type === 'ticket.delivery' && e.ticketId === ticketId && (e.entry as Extract<LogEntry, { kind: 'delivery' }>).status.status === 'failed');
    const status = (failed.entry as Extract<LogEntry, { kind: 'delivery' }>).status;
    expect(status.platformMessageId).toBe(ourMessageId);
    expect(status.reason).toContain('550 5.1.1');
    expect(status.reason).toContain('User unknown');
    // A bounce is a failed reply like any other: announced, and on the ticket with the reason.
    const announced = await gw.waitForEvent((e) => e.type === 'ticket.delivery_failed' && e.ticketId === ticketId);
    expect(announced.status).toBe('open');
    expect(announced.lastDelivery).toMatchObject({ status: 'failed', reason: expect.stringMatching(/^bounced: .*550 5\.1\.1/) });
  });

  it('recognises its own mail coming back (our From address, our Message-ID) as an echo', async () => {
    const echo = uniqueId('echo');
    await append(plainMail({ messageId: echo, from: `Служба поддержки <${SUPPORT}>`, subject: 'Копия' }));
    const letter = await ignored(echo);
    expect((JSON.parse(letter.payload) as InboundMessage).automated).toBe('echo');
  });

  it('parks a mail with no usable sender with the reason, leaves it unread and flagged, and keeps reading', async () => {
    const noSender = uniqueId('nofrom');
    await append(Buffer.from(`To: ${SUPPORT}\r\nSubject: =?utf-8?B?0JHQtdC3INC+0YLQv9GA0LDQstC40YLQtdC70Y8=?=\r\nMessage-ID: ${noSender}\r\n\r\nкто я?\r\n`));
    const letter = await gw.waitForStreamMessage<DeadLetter>('OMNI_DLQ', 'omni.dlq.inbound.email.support', (d) => d.reason.includes('no usable sender'));
    expect(letter.reason).toMatch(/^email support@example\.ru folder INBOX uid \d+: no usable sender address \(no From, Reply-To, Sender or Return-Path header\)/);
    expect(Buffer.from(letter.payload, letter.payloadEncoding === 'base64' ? 'base64' : 'utf8').toString()).toContain(noSender);

    // Broken MIME that mailparser tolerates: an unterminated multipart with a damaged base64 part.
    // Decision: whatever can be read becomes a ticket (a human can still answer it); the damaged
    // file is named under the text, not stored as the garbage bytes its base64 decodes to.
    const broken = uniqueId('broken');
    await append(Buffer.from([
      'From: petr@client.example.ru', `To: ${SUPPORT}`, 'Subject: broken', `Message-ID: ${broken}`,
      'Content-Type: multipart/mixed; boundary="xyz"', '', '--xyz', 'Content-Type: text/plain; charset=utf-8', '',
      'Текст до поломки', '--xyz', 'Content-Type: application/pdf; name="a.pdf"', 'Content-Transfer-Encoding: base64', '',
      'JVBERi0xLj!!!not-base64***', '',
    ].join('\r\n')));
    const event = await gw.waitForEvent(created(broken));
    expect(inboundOf(event)!.text).toBe('Текст до поломки\n\n[the attachment «a.pdf» could not be read: its base64 encoding is broken (damaged on the way), so it was not stored; ask the sender to send it again]');
    expect(inboundOf(event)!.attachments).toEqual([]);
  });

  it('keeps a 600k-character Cyrillic mail under the NATS payload limit, its whole text and HTML in the object store', async () => {
    const lines = Array.from({ length: 8000 }, (_, i) => `Строка ${i}: съешь же ещё этих мягких французских булок, да выпей чаю.`);
    const text = lines.join('\n');
    const html = `<html><body>${lines.map((l) => `<p class="line">${l}</p>`).join('\n')}</body></html>`;
    expect(text.length).toBeGreaterThan(550_000);
    const messageId = uniqueId('long');
    await append(alternativeMail({ messageId, subject: 'Выгрузка журнала', text, html }));
    const event = await gw.waitForEvent(created(messageId), 20_000);
    const { bytes, event: stored } = await storedInbound(messageId);
    expect(bytes).toBeLessThan(1_000_000);
    expect(stored.fullText!.startsWith(lines.slice(0, 100).join('\n'))).toBe(true);
    expect(stored.fullText).toMatch(/\[… \d+ more characters not shown: the whole text is in the attachment message\.txt\]$/);
    expect(stored.text.startsWith(lines[0]!)).toBe(true);
    expect(stored.html).toBeUndefined();
    expect(inboundOf(event)!.attachments.map((a) => a.name)).toEqual(['message.txt', 'message.html']);
    const store = await new Objm(gw.nc).open('omni_media');
    const whole = async (name: string) => Buffer.from((await store.getBlob(stored.attachments.find((a) => a.name === name)!.objectKey!))!).toString('utf8');
    expect((await whole('message.txt')).trimEnd()).toBe(text);
    expect((await whole('message.html')).trimEnd()).toBe(html);
  });

  it('reads unlabelled 8-bit windows-1251 and KOI8-R mail as Cyrillic, not U+FFFD', async () => {
    const cp1251 = uniqueId('cp1251');
    const koi8 = uniqueId('koi8');
    const text = 'Добрый день!\nКасса снова не печатает чеки, съешь же ещё этих булок.';
    await append(unlabelledMail({ charset: 'windows-1251', messageId: cp1251, fromName: 'Пётр Иванов', subject: 'Счёт не оплачен', text, contentType: 'text/plain' }));
    await append(unlabelledMail({ charset: 'koi8-r', messageId: koi8, fromName: 'Пётр Иванов', subject: 'СРОЧНО: касса', text, multipart: true }));
    for (const [id, subject] of [[cp1251, 'Счёт не оплачен'], [koi8, 'СРОЧНО: касса']] as const) {
      const msg = inboundOf(await gw.waitForEvent(created(id)))!;
      expect(msg.email!.subject).toBe(subject);
      expect(msg.conversation.title).toBe(subject);
      expect(msg.sender).toMatchObject({ id: 'petrov@client.example.ru', displayName: 'Пётр Иванов' });
      expect(msg.text).toBe(text);
    }
  });

  it('keeps a body it cannot read (multipart without a boundary) whole as message.eml, and reads windows-1251 labelled utf-8 or an unknown charset', async () => {
    const noBoundary = Buffer.from([
      'From: Ирина <irina@client.example.ru>', 'To: support@example.ru', 'Subject: Без границы', `Message-ID: ${uniqueId('nob')}`,
      'MIME-Version: 1.0', 'Content-Type: multipart/alternative', '', 'Здравствуйте, касса не печатает чеки: Кизильник', '',
    ].join('\r\n'));
    await append(noBoundary);
    const kept = (await gw.waitForEvent((e) => e.type === 'ticket.message' && inboundOf(e)?.email?.subject === 'Без границы').then(inboundOf))!;
    expect(kept.text).toBe('[the body could not be read (multipart/alternative without a boundary): the whole mail is attached as message.eml]');
    expect(kept.attachments).toEqual([expect.objectContaining({ name: 'message.eml', mimeType: 'message/rfc822', status: 'stored', size: noBoundary.byteLength })]);
    const stored = await gw.gateway.bus.media.getBlob(kept.attachments[0]!.objectKey!);
    expect(Buffer.from(stored!).toString('utf8')).toContain('Кизильник');
    // A subject-only mail's empty alternative (boundary there, no text) is empty, not unreadable.
    await append(Buffer.from([
      'From: Ирина <irina@client.example.ru>', 'To: support@example.ru', 'Subject: Только тема', `Message-ID: ${uniqueId('empty')}`,
      'MIME-Version: 1.0', 'Content-Type: multipart/alternative; boundary="b1"', '', 'This is a multi-part message in MIME format.', '--b1--', '',
    ].join('\r\n')));
    const empty = (await gw.waitForEvent((e) => e.type === 'ticket.message' && inboundOf(e)?.email?.subject === 'Только тема').then(inboundOf))!;
    expect(empty.attachments).toEqual([]);

    for (const label of ['utf-8', 'x-foo-bar-42']) {
      await append(unlabelledMail({ charset: 'windows-1251', messageId: uniqueId('lie'), fromName: 'Пётр Иванов', subject: `Метка ${label}`, text: 'Касса не печатает чеки с утра', contentType: `text/plain; charset=${label}` }));
      const read = (await gw.waitForEvent((e) => e.type === 'ticket.message' && inboundOf(e)?.email?.subject === `Метка ${label}`).then(inboundOf))!;
      expect(read.text, label).toBe('Касса не печатает чеки с утра');
    }
  });

  it('parks a mail mailparser refuses with the reason; of a large one only the head, with its size', async () => {
    const many = uniqueId('many');
    await append(manyPartsMail(many));
    const letter = await inboundLetter((d) => d.reason.includes('Max allowed child nodes'));
    expect(letter.reason).toMatch(/^email support@example\.ru folder INBOX uid \d+: mailparser could not read the mail: Max allowed child nodes exceeded$/);
    expect(letter.payload).toContain(many);

    // Its header block alone is over 1 MB: the dead letter keeps the head (deadLetters.maxPayloadBytes)
    // and the size; the mail itself stays in the mailbox, named by the reason.
    const huge = uniqueId('huge');
    const raw = hugeHeaderMail(huge);
    expect(raw.byteLength).toBeGreaterThan(1024 * 1024);
    await append(raw);
    const big = await inboundLetter((d) => d.reason.includes('Max header size'));
    expect(big.reason).toMatch(/^email support@example\.ru folder INBOX uid \d+: mailparser could not read the mail: Max header size for a MIME node exceeded$/);
    expect(big).toMatchObject({ truncated: true, payloadBytes: raw.byteLength, code: 'invalid_mail', meta: { kind: 'raw-mail', mailbox: SUPPORT } });
    expect(big.payloadObjectKey).toBeUndefined();
    expect(Buffer.byteLength(JSON.stringify(big.payload))).toBeLessThanOrEqual(256 * 1024);
    expect(raw.subarray(0, 1000).toString('utf8').startsWith(big.payload.slice(0, 1000))).toBe(true);

    // Both are acknowledged, and the folder keeps being read.
    const after = uniqueId('after');
    await append(plainMail({ messageId: after, subject: 'после' }));
    await gw.waitForEvent(created(after));
    await world.imap.mailboxOpen('INBOX');
    const parked = await world.imap.search({ or: [{ header: { 'message-id': many } }, { header: { 'message-id': huge } }] }, { uid: true });
    expect(parked).toHaveLength(2);
    const flagged = await world.imap.search({ uid: (parked as number[]).join(','), keyword: '$Omnigate' }, { uid: true });
    expect(flagged).toHaveLength(2);
  });

  it('retries an SMTP 4xx and fails a 5xx with the server reply', async () => {
    const tempId = uniqueId();
    await append(plainMail({ from: 'temp@client.example.ru', messageId: tempId, subject: 'temp' }));
    const permId = uniqueId();
    await append(plainMail({ from: 'gone@client.example.ru', messageId: permId, subject: 'perm' }));
    const [temp, perm] = await Promise.all([gw.waitForEvent(created(tempId)), gw.waitForEvent(created(permId))]);
    world.smtp.rejectRecipient('temp@client.example.ru', 451, '4.7.1 Greylisted, try again later', 2);
    world.smtp.rejectRecipient('gone@client.example.ru', 550, '5.1.1 Mailbox does not exist');
    await gw.request('omni.cmd.reply', { ticketId: temp.ticketId, text: 'Ответ' });
    await gw.request('omni.cmd.reply', { ticketId: perm.ticketId, text: 'Ответ' });
    const sent = await gw.waitForEvent((e) => e.type === 'ticket.delivery' && e.ticketId === temp.ticketId);
    expect((sent.entry as Extract<LogEntry, { kind: 'delivery' }>).status).toMatchObject({ status: 'sent', attempts: 3 });
    const failed = await gw.waitForEvent((e) => e.type === 'ticket.delivery' && e.ticketId === perm.ticketId);
    expect((failed.entry as Extract<LogEntry, { kind: 'delivery' }>).status).toMatchObject({ status: 'failed' });
    expect((failed.entry as Extract<LogEntry, { kind: 'delivery' }>).status.reason).toMatch(/^recipient_rejected: .*550 5\.1\.1 Mailbox does not exist/);
  });

  it('marks automated replies with Auto-Submitted', async () => {
    const id = uniqueId();
    await append(plainMail({ from: 'auto@client.example.ru', messageId: id }));
    const ev = await gw.waitForEvent(created(id));
    // The router's auto-acknowledgement path is covered by the router tests; here an outbound
    // message flagged automated goes straight onto the connector's outbound subject.
    const outbound = {
      v: 1, type: 'message.outbound', id: `${ev.ticketId}:auto`, ticketId: ev.ticketId, channel: 'email', account: 'support',
      conversation: { id: SUPPORT, kind: 'email' }, text: 'Мы получили ваше обращение.', author: { id: 'omnigate' }, createdAt: new Date().toISOString(),
      automated: true, email: { to: ['auto@client.example.ru'], subject: `Re: Вопрос [#${ev.ticketId}]`, inReplyTo: id, references: [id] },
    };
    await jetstream(gw.nc).publish('omni.out.email.support', JSON.stringify(outbound), { msgID: outbound.id });
    const mail = await world.smtp.waitFor((m) => m.to.includes('auto@client.example.ru'));
    const parsed = await simpleParser(mail.raw);
    expect(parsed.headers.get('auto-submitted')).toBe('auto-replied');
    expect(parsed.messageId).toMatch(new RegExp(`^<omni\\.${ev.ticketId}\\.`));
  });
});
