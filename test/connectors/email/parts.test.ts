/**
 * The email connector's pure parts, without servers: loop protection on parsed mail, reply
 * trimming, Message-ID helpers, option validation, byte budgets and legacy-charset relabelling.
 */
import { simpleParser } from 'mailparser';
import iconv from 'iconv-lite';
import { describe, expect, it } from 'vitest';
import { classify } from '../../../src/connectors/email/loop-guard.js';
import { copyHeaders, effectiveMessageId, isOurMessageId, outboundMessageId, platformId } from '../../../src/connectors/email/ids.js';
import { markerPattern } from '../../../src/router/threading.js';
import { trimReply } from '../../../src/connectors/email/trim.js';
import { EmailOptions } from '../../../src/connectors/email/index.js';
import { MailboxSender } from '../../../src/connectors/email/sender.js';
import type { MediaStore } from '../../../src/core/media.js';
import { jsonBytes, prefixWithin } from '../../../src/connectors/email/budget.js';
import { legacyFileName, relabelLegacyText } from '../../../src/connectors/email/charset.js';
import { bounceMail, legacyCharsetMail, plainMail, uniqueId, unlabelledMail } from './mails.js';

const ours = { addresses: new Set(['support@example.ru']), domains: new Set(['example.ru']) };

async function verdict(raw: Buffer) {
  const mail = await simpleParser(raw);
  return classify(mail, mail.from!.value[0]!.address!.toLowerCase(), mail.messageId ?? '', ours);
}

describe('loop protection', () => {
  it('marks auto-replies, list and bulk mail; lets people through', async () => {
    expect(await verdict(plainMail({ headers: { 'Auto-Submitted': 'auto-replied' } }))).toEqual({ automated: 'auto-reply' });
    expect(await verdict(plainMail({ headers: { 'Auto-Submitted': 'auto-generated' } }))).toEqual({ automated: 'auto-reply' });
    expect(await verdict(plainMail({ headers: { 'Auto-Submitted': 'no' } }))).toEqual({});
    expect(await verdict(plainMail({ headers: { 'X-Autoreply': 'yes' } }))).toEqual({ automated: 'auto-reply' });
    expect(await verdict(plainMail({ headers: { 'X-Autorespond': 'Out of office' } }))).toEqual({ automated: 'auto-reply' });
    expect(await verdict(plainMail({ headers: { Precedence: 'bulk' } }))).toEqual({ automated: 'bulk' });
    expect(await verdict(plainMail({ headers: { Precedence: 'junk' } }))).toEqual({ automated: 'bulk' });
    expect(await verdict(plainMail({ headers: { Precedence: 'list' } }))).toEqual({ automated: 'list' });
    expect(await verdict(plainMail({ headers: { 'List-Id': '<news.example.com>' } }))).toEqual({ automated: 'list' });
    expect(await verdict(plainMail({}))).toEqual({});
  });

  it('knows the other spellings autoresponders use (seen missed by an outside fuzz), and a header saying no is a person', async () => {
    for (const [name, value] of [['X-Auto-Reply', 'yes'], ['X-Autoresponder', 'vacation'], ['X-Vacation', 'yes'], ['X-Autoresponse', '1'], ['X-Mail-Autoreply', 'yes'], ['Precedence', 'auto_reply']] as const) {
      expect(await verdict(plainMail({ headers: { [name]: value } })), name).toEqual({ automated: 'auto-reply' });
    }
    for (const headers of [{ Precedence: 'bulk; x' }, { 'X-Precedence': 'bulk' }, { 'List-Unsubscribe': '<mailto:unsub@shop.example.ru>' }] as Array<Record<string, string>>) {
      expect(await verdict(plainMail({ headers })), JSON.stringify(headers)).toEqual({ automated: 'bulk' });
    }
    for (const headers of [{ 'X-Auto-Reply': 'no' }, { 'X-Autoreply': 'false' }] as Array<Record<string, string>>) expect(await verdict(plainMail({ headers })), JSON.stringify(headers)).toEqual({});
    // A customer answering our reply through a CRM that adds List-Unsubscribe is a person.
    expect(await verdict(plainMail({ headers: { 'List-Unsubscribe': '<mailto:u@crm.example>' }, inReplyTo: '<omni.T-1042.0123456789abcdef01234567@example.ru>' }))).toEqual({});
  });

  it('marks out-of-office replies that carry only their subject (Exchange, Outlook), not people who mention one', async () => {
    for (const subject of ['Автоматический ответ: Re: Вопрос [#T-1001]', 'Автоответ: Заказ 48213', 'Automatic reply: Re: Payment', 'Out of Office: Re: Вопрос', 'AutoReply: Re: x', 'Нет на месте: Re: Вопрос']) {
      expect(await verdict(plainMail({ subject: `=?utf-8?B?${Buffer.from(subject).toString('base64')}?=`, headers: { 'X-Auto-Response-Suppress': 'All' } })), subject).toEqual({ automated: 'auto-reply' });
    }
    for (const subject of ['Re: Автоматический ответ пришёл вместо оплаты', 'Вопрос про автоответ', 'Out of stock: когда будет?', 'Нет на месте: товар из заказа']) {
      expect(await verdict(plainMail({ subject: `=?utf-8?B?${Buffer.from(subject).toString('base64')}?=` })), subject).toEqual({});
    }
    // Such a subject answering one of our mails, without Exchange's header, is one too.
    const ours = outboundMessageId('T-7', 'T-7:x', 'example.ru');
    expect(await verdict(plainMail({ subject: `=?utf-8?B?${Buffer.from('Автоответ: Re: Вопрос').toString('base64')}?=`, headers: { 'In-Reply-To': ours } }))).toEqual({ automated: 'auto-reply' });
  });

  it('marks our own mail as an echo', async () => {
    expect(await verdict(plainMail({ from: 'support@example.ru' }))).toEqual({ automated: 'echo' });
    expect(await verdict(plainMail({ messageId: outboundMessageId('T-5', 'T-5:x', 'example.ru') }))).toEqual({ automated: 'echo' });
    // Someone else's "omni." Message-ID on another domain is not ours.
    expect(await verdict(plainMail({ messageId: outboundMessageId('T-5', 'T-5:x', 'other.ru') }))).toEqual({});
  });

  it('names the bounced Message-ID and the reason from a DSN; mailer-daemon mail is a bounce even without one', async () => {
    const ourId = outboundMessageId('T-1042', 'T-1042:abc', 'example.ru');
    expect(await verdict(bounceMail({ originalMessageId: ourId, to: 'x@y.ru', diagnostic: '550 5.1.1 User unknown' }))).toEqual({
      automated: 'bounce',
      bounceOf: { platformMessageId: ourId, reason: 'smtp; 550 5.1.1 User unknown', recipients: [{ address: 'x@y.ru', reason: 'smtp; 550 5.1.1 User unknown' }] },
    });
    expect(await verdict(plainMail({ from: 'MAILER-DAEMON@mx.example.ru', subject: 'failure notice' }))).toEqual({ automated: 'bounce' });
    const delayed = bounceMail({ originalMessageId: ourId, to: 'x@y.ru', diagnostic: 'x' }).toString().replace('Action: failed', 'Action: delayed');
    expect(await verdict(Buffer.from(delayed))).toEqual({ automated: 'bounce' });
  });

  it('names each recipient a DSN says failed (the address we sent to, its own reason), not those delivered or delayed', async () => {
    const ourId = outboundMessageId('T-1043', 'T-1043:abc', 'example.ru');
    const report = bounceMail({
      originalMessageId: ourId, to: '', diagnostic: '',
      recipients: [
        { address: 'boss@firm.ru', action: 'delivered' },
        { address: 'Colleague1@Firm.ru', diagnostic: '550 5.1.1 <colleague1@firm.ru>: User unknown' },
        { address: 'box@forward.example', original: '<colleague2@firm.ru>', diagnostic: '552 5.2.2 Mailbox full' },
        { address: 'late@firm.ru', action: 'delayed' },
      ],
    });
    expect(await verdict(report)).toEqual({
      automated: 'bounce',
      bounceOf: {
        platformMessageId: ourId,
        reason: 'smtp; 550 5.1.1 <colleague1@firm.ru>: User unknown',
        recipients: [
          { address: 'colleague1@firm.ru', reason: 'smtp; 550 5.1.1 <colleague1@firm.ru>: User unknown' },
          { address: 'colleague2@firm.ru', reason: 'smtp; 552 5.2.2 Mailbox full' },
        ],
      },
    });
    // Nobody failed: automated, but no failure to record.
    const fine = bounceMail({ originalMessageId: ourId, to: '', diagnostic: '', recipients: [{ address: 'a@firm.ru', action: 'delivered' }, { address: 'b@firm.ru', action: 'delayed' }] });
    expect(await verdict(fine)).toEqual({ automated: 'bounce' });
  });
});

describe('reply trimming', () => {
  it('reads a long quote once, not once per line (a mail of 50,000 quoted lines and an answer under them)', () => {
    const quote = Array.from({ length: 50_000 }, (_, i) => `> строка ${i}`).join('\n');
    const started = performance.now();
    expect(trimReply(`Ответ сверху\n${quote}\nИ ответ снизу`)).toBe(`Ответ сверху\n${quote}\nИ ответ снизу`);
    // By its square this took minutes; linear it is tens of milliseconds. Wide of both under load.
    expect(performance.now() - started).toBeLessThan(20_000);
  });

  it('cuts quoted history, Outlook headers and signatures, keeps interleaved answers', () => {
    expect(trimReply('Спасибо!\n\n12 марта 2024 г., в 10:15, Поддержка <s@x.ru> написал(а):\n> текст')).toBe('Спасибо!');
    expect(trimReply('Thanks\n\nOn Tue, 12 Mar 2024 at 10:15, Support <s@x.ru> wrote:\n> text')).toBe('Thanks');
    expect(trimReply('Ок\n\n-----Original Message-----\nFrom: a')).toBe('Ок');
    expect(trimReply('Ок\n\nОт: Поддержка <s@x.ru>\nОтправлено: 12 марта 2024 г. 10:15\nКому: me')).toBe('Ок');
    expect(trimReply('Ок\n-- \nИван\n+7 900 000-00-00')).toBe('Ок');
    expect(trimReply('Ок\n\nОтправлено с iPhone')).toBe('Ок');
    expect(trimReply('> вопрос 1\nответ 1\n> вопрос 2\nответ 2')).toBe('> вопрос 1\nответ 1\n> вопрос 2\nответ 2');
    expect(trimReply('От: этого текста не отрезать, это просто строка')).toBe('От: этого текста не отрезать, это просто строка');
    expect(trimReply('> только цитата')).toBe('> только цитата'); // nothing would be left: keep all
  });

  // Seen from an outside tester: the attribution lines of Russian Gmail, Yandex and Mail.ru name
  // no "написал(а)", and a rating answer kept them ("5\n\nпн, 7 дек. …:") so it was no rating.
  const QUOTE = '> Оцените, пожалуйста, нашу работу: ответьте цифрой от 1 до 5.\n> \n> Служба поддержки';
  const ATTRIBUTIONS: Array<[string, string]> = [
    ['Gmail (ru)', 'пн, 7 дек. 2026 г. в 01:46, Служба поддержки <support@example.ru>:'],
    ['Yandex', '07.12.2026, 01:46, "Служба поддержки" <support@example.ru>:'],
    ['Mail.ru', 'Понедельник, 7 декабря 2026, 1:46 +03:00 от Служба поддержки <support@example.ru>:'],
    ['Gmail (en)', 'On Mon, Dec 7, 2026 at 1:46 AM Support <support@example.ru> wrote:'],
    ['Gmail (en), wrapped by the client', 'On Mon, Dec 7, 2026 at 1:46 AM Служба технической поддержки <support@example.ru>\nwrote:'],
    ['Gmail (ru), wrapped inside <>', 'пн, 7 дек. 2026 г. в 01:46, Служба технической поддержки ООО «Ромашка» <\nsupport@example.ru>:'],
    ['address only', 'Служба поддержки <support@example.ru>:'],
    // Gmail wraps a long attribution over two lines (outside trial): inside the <>, or just before it.
    ['Gmail (ru), long name wrapped inside <>', 'пн, 7 дек. 2026 г. в 01:46, Служба поддержки ООО Ромашка <\nsupport@romashka.ru>:'],
    ['Gmail (en), long name wrapped inside <>', 'On Mon, Dec 7, 2026 at 1:46 AM Support Team of Some Company <\nsupport@example.com> wrote:'],
    ['Gmail (ru), wrapped before the address', 'пн, 7 дек. 2026 г. в 01:46, Служба поддержки\n<support@romashka.ru>:'],
    ['Gmail (en), wrapped before the address', 'On Mon, Dec 7, 2026 at 1:46 AM Support Team of Some Company\n<support@example.com> wrote:'],
  ];

  it('cuts a mail client\'s attribution line together with the quote under it, whatever its wording', () => {
    for (const [client, line] of ATTRIBUTIONS) {
      expect(trimReply(`5\n\n${line}\n${QUOTE}`), client).toBe('5');
      expect(trimReply(`5\n\n${line}\n\n${QUOTE}\n`), `${client}, blank line before the quote`).toBe('5');
      expect(trimReply(`Спасибо, всё заработало!\n${line}\n${QUOTE}`), `${client}, no blank line above`).toBe('Спасибо, всё заработало!');
      expect(trimReply(`Спасибо!\n\n${line}\n${QUOTE}\n\n-- \nИван`), `${client}, signature under the quote`).toBe('Спасибо!');
    }
    // Outlook's header blocks, English and Russian.
    expect(trimReply('5\n\n-----Original Message-----\nFrom: Support <support@example.ru>\nSent: Monday, December 7, 2026 1:46 AM\nTo: ivan@client.ru\n\nOld text')).toBe('5');
    expect(trimReply('5\n\nОт: Служба поддержки <support@example.ru>\nОтправлено: 7 декабря 2026 г. 1:46\nКому: ivan@client.ru\nТема: Re: Оплата\n\nСтарый текст')).toBe('5');
  });

  it('keeps a line ending with ":" that no quote follows, and an attribution above an interleaved answer', () => {
    // The customer's own sentences: nothing quoted under them.
    const own = 'Проверил ещё раз 07.12.2026 в 01:46, вот что вижу:\nОшибка 500 на странице оплаты.';
    expect(trimReply(own)).toBe(own);
    const address = 'Пишите мне на новый адрес <ivan@client.ru>:\n\nили звоните.';
    expect(trimReply(address)).toBe(address);
    const last = 'Сегодня в 10:15 снова:';
    expect(trimReply(last)).toBe(last);
    // A line ending with ":" without a date or an address is the customer's even above a quote.
    expect(trimReply('Вот что вы мне ответили:\n> Перезагрузите кассу.\nНе помогло.')).toBe('Вот что вы мне ответили:\n> Перезагрузите кассу.\nНе помогло.');
    // A date or a time without an address is the customer's, above their own quote too (review).
    const error = 'Ошибка появилась сегодня в 10:15, текст такой:\n> Error 500';
    expect(trimReply(error)).toBe('Ошибка появилась сегодня в 10:15, текст такой:');
    const wrapped = 'Здравствуйте.\nЗаказ от 07.12.2026 так и не пришёл, деньги списаны.\nВот что вы мне ответили:\n\n> Ждите';
    expect(trimReply(wrapped)).toBe('Здравствуйте.\nЗаказ от 07.12.2026 так и не пришёл, деньги списаны.\nВот что вы мне ответили:');
    // Answers between the quoted lines: the attribution stays with them.
    const interleaved = 'пн, 7 дек. 2026 г. в 01:46, Служба поддержки <support@example.ru>:\n> Какой номер заказа?\n48213\n> Какая карта?\nМир';
    expect(trimReply(interleaved)).toBe(interleaved);
    // Only the customer's sentence above it is theirs, not part of a two-line attribution.
    expect(trimReply('Спасибо, всё работает\nпн, 7 дек. 2026 г. в 01:46, Служба поддержки <support@example.ru>:\n> текст')).toBe('Спасибо, всё работает');
  });

  it('joins two lines into an attribution only when together they name the address, never a customer\'s line to one (outside trial)', () => {
    // A date or a time over two lines, no address: the customer's own words above their quote.
    expect(trimReply('Ошибка появилась сегодня в 10:15,\nтекст такой:\n> Error 500')).toBe('Ошибка появилась сегодня в 10:15,\nтекст такой:');
    // A customer's line with a date above a whole attribution, which names its own date: theirs.
    expect(trimReply('Жду ответа с 7 дек. 2026\nпн, 8 дек. 2026 г. в 01:46, Служба поддержки <support@romashka.ru>:\n> текст')).toBe('Жду ответа с 7 дек. 2026');
    // A finished sentence above an address line: theirs.
    expect(trimReply('Заказ от 07.12.2026 так и не пришёл.\n<support@romashka.ru>:\n> Ждите')).toBe('Заказ от 07.12.2026 так и не пришёл.');
    // An address line that says more than "wrote": an attribution of its own at most, the line above it theirs.
    expect(trimReply('Звонил вам сегодня в 10:15\n<support@romashka.ru> не отвечает, пишу сюда:\n> текст')).toBe('Звонил вам сегодня в 10:15');
    // A wrapped attribution that no quote follows: kept, like a one-line one.
    const unquoted = 'пн, 7 дек. 2026 г. в 01:46, Служба поддержки\n<support@romashka.ru>:\nспасибо';
    expect(trimReply(unquoted)).toBe(unquoted);
  });
});

describe('identifiers and options', () => {
  it('makes the outbound Message-ID deterministic from the outbound id, in the router marker shape', () => {
    const a = outboundMessageId('T-1042', 'T-1042:k1', 'example.ru');
    expect(a).toMatch(/^<omni\.T-1042\.[0-9a-f]{24}@example\.ru>$/);
    expect(outboundMessageId('T-1042', 'T-1042:k1', 'example.ru')).toBe(a);
    expect(outboundMessageId('T-1042', 'T-1042:k2', 'example.ru')).not.toBe(a);
    expect(isOurMessageId(a, new Set(['example.ru']))).toBe(true);
    const mail = (date: string, subject: string) => Buffer.from(`From: a@x.ru\r\nDate: ${date}\r\nSubject: ${subject}\r\n\r\nтекст\r\n`);
    const copy = { from: 'Anna@Client.ru', headers: copyHeaders(mail('Tue, 1 Dec 2026 09:00:00 +0300', '=?utf-8?B?0KHRh9GR0YI=?=')) };
    expect(platformId('Support@Example.ru', '<ABC@x>', copy)).toMatch(/^support@example\.ru:abc@x#[0-9a-f]{12}$/);
    expect(platformId('s@x.ru', `<${'a'.repeat(400)}@x>`, copy)).toMatch(/^s@x\.ru:sha256\.[0-9a-f]{64}#[0-9a-f]{12}$/);
    // Copies of one mail are one id; another mail reusing its Message-ID (another sender, date or subject) is another.
    expect(platformId('s@x.ru', '<ABC@x>', { ...copy, from: 'anna@client.ru' })).toBe(platformId('s@x.ru', '<abc@x>', copy));
    for (const other of [{ from: 'boris@client.ru' }, { headers: copyHeaders(mail('Tue, 1 Dec 2026 09:00:01 +0300', '=?utf-8?B?0KHRh9GR0YI=?=')) }, { headers: copyHeaders(mail('Tue, 1 Dec 2026 09:00:00 +0300', 'Schet 2')) }]) {
      expect(platformId('s@x.ru', '<ABC@x>', { ...copy, ...other })).not.toBe(platformId('s@x.ru', '<ABC@x>', copy));
    }
    // As written, not as parsed: a Date mailparser cannot read (it puts the current time there) is the same text each time;
    // folding and white space do not count.
    expect(copyHeaders(mail('Пн, 12 мар 2024 10:00', 'x'))).toBe(copyHeaders(mail('Пн, 12 мар 2024 10:00', 'x')));
    expect(copyHeaders(Buffer.from('Subject: a\r\n  b\r\nDATE:  15.03.2024\r\n\r\nbody\r\nDate: other\r\n'))).toBe(copyHeaders(Buffer.from('date: 15.03.2024\r\nsubject: a b\r\n\r\n')));
    // An empty Message-ID is none: each such mail gets its own from its bytes.
    for (const empty of [undefined, '', '<>', '< >', '  ']) expect(effectiveMessageId(empty, Buffer.from('mail 1'))).toMatch(/^<nomid\.[0-9a-f]{40}@omnigate\.invalid>$/);
    expect(effectiveMessageId('<>', Buffer.from('mail 1'))).not.toBe(effectiveMessageId('<>', Buffer.from('mail 2')));
    expect(effectiveMessageId(' <a@b> ', Buffer.from('mail 1'))).toBe('<a@b>');
    expect(uniqueId()).not.toBe(uniqueId());
  });

  it('puts the installation id in the Message-ID: two installations never mint the same one', async () => {
    const prod = outboundMessageId('T-1042', 'T-1042:k1', 'example.ru', '0a1b2c3d4e');
    const staging = outboundMessageId('T-1042', 'T-1042:k1', 'example.ru', 'f9e8d7c6b5');
    expect(prod).toMatch(/^<omni\.T-1042\.[0-9a-f]{24}\.0a1b2c3d4e@example\.ru>$/);
    expect(staging).not.toBe(prod);
    expect(outboundMessageId('T-1042', 'T-1042:k1', 'example.ru', '0a1b2c3d4e')).toBe(prod);
    // Still ours for the loop guard, and still the router's marker shape for threading.
    expect(isOurMessageId(prod, new Set(['example.ru']))).toBe(true);
    expect(await verdict(plainMail({ messageId: prod }))).toEqual({ automated: 'echo' });
    expect(markerPattern('T-').exec(prod)?.[1]).toBe('T-1042');
  });

  it('keys the Message-ID by the installation\'s secret: the same for a resend, not computable without the secret', () => {
    const secret = new Uint8Array(32).fill(7);
    const key = { installationId: '0a1b2c3d4e', secret };
    const keyed = outboundMessageId('T-1042', 'T-1042:k1', 'example.ru', key);
    expect(keyed).toMatch(/^<omni\.T-1042\.[0-9a-f]{24}\.0a1b2c3d4e@example\.ru>$/);
    expect(outboundMessageId('T-1042', 'T-1042:k1', 'example.ru', { installationId: '0a1b2c3d4e', secret: new Uint8Array(32).fill(7) })).toBe(keyed);
    // What a stranger can compute from the ticket, the outbound id and the installation id is not it.
    expect(keyed).not.toBe(outboundMessageId('T-1042', 'T-1042:k1', 'example.ru', '0a1b2c3d4e'));
    expect(outboundMessageId('T-1042', 'T-1042:k1', 'example.ru', { installationId: '0a1b2c3d4e', secret: new Uint8Array(32).fill(8) })).not.toBe(keyed);
    expect(isOurMessageId(keyed, new Set(['example.ru']))).toBe(true);
    expect(markerPattern('T-').exec(keyed)?.[1]).toBe('T-1042');
  });

  it('validates options with defaults and clear errors', () => {
    const mailbox = { address: 'support@example.ru', imap: { host: 'imap.example.ru', user: 'u', pass: 'p' }, smtp: { host: 'smtp.example.ru' } };
    const o = EmailOptions.parse({ mailboxes: [mailbox] });
    expect(o.mailboxes[0]).toMatchObject({ folders: ['INBOX'], afterProcessing: 'seen', imap: { port: 993, secure: true }, smtp: { port: 587, starttls: true } });
    expect(o).toMatchObject({ idleRestartMs: 25 * 60_000, firstRun: 'unseen', processedKeyword: '$Omnigate' });
    expect(EmailOptions.safeParse({ mailboxes: [mailbox], idleRestartMs: 30 * 60_000 }).success).toBe(false);
    expect(EmailOptions.safeParse({ mailboxes: [mailbox, mailbox] }).success).toBe(false);
    const move = EmailOptions.safeParse({ mailboxes: [{ ...mailbox, afterProcessing: 'move', processedFolder: 'INBOX' }] });
    expect(move.success).toBe(false);
  });

  it('takes our Message-ID domain from the mailbox address by the one domainOf (core/mail-domains.ts), or from messageIdDomain', () => {
    const [m] = EmailOptions.parse({ mailboxes: [{ address: 'Support@Example.RU', imap: { host: 'i', user: 'u', pass: 'p' }, smtp: { host: 's' } }] }).mailboxes;
    const sender = (o: Partial<typeof m>) => new MailboxSender({ ...m!, ...o }, {} as MediaStore, () => {});
    expect(sender({}).domain).toBe('example.ru');
    expect(sender({ messageIdDomain: 'Mail.Example.RU' }).domain).toBe('mail.example.ru');
    // An address without "@" has no domain: before, the whole address was taken for one.
    expect(() => sender({ address: 'support' })).toThrow(/no domain.*messageIdDomain/);
    expect(sender({ address: 'support', messageIdDomain: 'example.ru' }).domain).toBe('example.ru');
  });
});

describe('byte budgets and legacy charsets', () => {
  it('cuts text by its size as JSON, never inside a surrogate pair', () => {
    const s = 'щ'.repeat(10) + '"\n' + '😀'.repeat(3);
    for (let max = 2; max <= jsonBytes(s) + 1; max++) {
      const p = prefixWithin(s, 1000, max);
      expect(jsonBytes(p)).toBeLessThanOrEqual(max);
      expect(s.startsWith(p) && !/[\ud800-\udbff]$/.test(p)).toBe(true);
    }
    expect(prefixWithin(s, 1000, jsonBytes(s))).toBe(s);
    expect(prefixWithin(s, 4, 1000)).toBe('щщщщ');
  });

  it('relabels only unlabelled 8-bit legacy text; UTF-8 and labelled charsets stay byte for byte', async () => {
    const legacy = legacyCharsetMail({ subject: 'Счёт', text1251: 'Привет', htmlKoi8: '<p>Привет</p>', attachment: Buffer.from('x'), attachmentName: 'a.bin', inline: Buffer.from('y'), messageId: uniqueId() });
    const brokenUtf8 = Buffer.concat([Buffer.from('From: a@b.ru\r\nSubject: x\r\n\r\nПривет, это UTF-8 '), Buffer.from([0xff]), Buffer.from(' с одним сбоем\r\n')]);
    for (const raw of [plainMail({}), legacy, bounceMail({ originalMessageId: uniqueId(), to: 'a@b.ru', diagnostic: 'x' }), brokenUtf8]) expect(relabelLegacyText(raw)).toBeNull();
    const raw = unlabelledMail({ charset: 'koi8-r', messageId: uniqueId(), fromName: 'Пётр', subject: 'СРОЧНО', text: 'СЧЁТ НЕ ОПЛАЧЕН', contentType: 'text/plain; charset=us-ascii' });
    const mail = await simpleParser(relabelLegacyText(raw)!);
    expect([mail.subject, mail.from?.value[0]?.name, mail.text?.trim()]).toEqual(['СРОЧНО', 'Пётр', 'СЧЁТ НЕ ОПЛАЧЕН']);
    // A short windows-1251 name whose first two bytes happen to be valid UTF-8 (CF B8 = «Пё»).
    const short = unlabelledMail({ charset: 'windows-1251', messageId: uniqueId(), fromName: 'Пётр', subject: 'Счёт', text: 'Не пришёл чек', contentType: 'text/plain; charset=us-ascii' });
    const parsed = await simpleParser(relabelLegacyText(short)!);
    expect([parsed.subject, parsed.from?.value[0]?.name, parsed.text?.trim()]).toEqual(['Счёт', 'Пётр', 'Не пришёл чек']);
    // DOS-era CP866 without a label (old accounting software mailing from a console).
    const dos = unlabelledMail({ charset: 'cp866', messageId: uniqueId(), fromName: 'Бухгалтерия', subject: 'Отчёт за ноябрь', text: 'Здравствуйте! Отчёт во вложении, проверьте оплату.', contentType: 'text/plain; charset=us-ascii' });
    const read = await simpleParser(relabelLegacyText(dos)!);
    expect([read.subject, read.from?.value[0]?.name, read.text?.trim()]).toEqual(['Отчёт за ноябрь', 'Бухгалтерия', 'Здравствуйте! Отчёт во вложении, проверьте оплату.']);
  });

  it('reads legacy text behind a label that lies (utf-8) or names no charset (x-foo-bar-42), in bodies and encoded words; a real label stays', async () => {
    for (const label of ['utf-8', 'x-foo-bar-42']) {
      const raw = unlabelledMail({ charset: 'windows-1251', messageId: uniqueId(), fromName: 'Пётр', subject: 'Счёт', text: 'Касса не печатает чеки с утра', contentType: `text/plain; charset=${label}` });
      const mail = await simpleParser(relabelLegacyText(raw)!);
      expect(mail.text?.trim(), label).toBe('Касса не печатает чеки с утра');
    }
    const word = (charset: string) => `=?${charset}?B?${iconv.encode('Счёт не оплачен', 'koi8-r').toString('base64')}?=`;
    const unknownWord = Buffer.from(`From: a@client.ru\r\nSubject: ${word('x-foo-bar')}\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nТекст\r\n`);
    expect((await simpleParser(relabelLegacyText(unknownWord)!)).subject).toBe('Счёт не оплачен');
    // A charset that exists is its sender's word: koi8-r bytes labelled windows-1251 stay as labelled.
    const labelled = unlabelledMail({ charset: 'koi8-r', messageId: uniqueId(), fromName: 'Petr', subject: 'Schet', text: 'Касса', contentType: 'text/plain; charset=windows-1251' });
    expect(relabelLegacyText(labelled)).toBeNull();
    // Real charsets TextDecoder does not know (cp855, cp1125) are iconv-lite's, and mailparser's: left as labelled.
    for (const label of ['cp855', 'cp1125']) {
      const real = unlabelledMail({ charset: 'koi8-r', messageId: uniqueId(), fromName: 'Petr', subject: 'Schet', text: 'Касса', contentType: `text/plain; charset=${label}` });
      expect(relabelLegacyText(real), label).toBeNull();
    }
  });

  it('reads a raw windows-1251 attachment file name in a mail whose text is labelled', async () => {
    // The Bat! and Outlook Express era: the body says its charset, the file name is raw 8-bit.
    const b = 'legacy-name';
    const ascii = (t: string) => Buffer.from(t, 'latin1');
    const raw = Buffer.concat([
      ascii(`From: buh@client.example.ru\r\nTo: support@example.ru\r\nSubject: =?utf-8?B?${Buffer.from('Счёт').toString('base64')}?=\r\nMessage-ID: ${uniqueId()}\r\n`),
      ascii(`MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary="${b}"\r\n\r\n--${b}\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n`),
      Buffer.from('Счёт во вложении.\r\n'),
      ascii(`--${b}\r\nContent-Type: application/pdf\r\nContent-Disposition: attachment; filename="`),
      iconv.encode('Счёт №15 за ноябрь.pdf', 'windows-1251'),
      ascii(`"\r\nContent-Transfer-Encoding: base64\r\n\r\nJVBERi0=\r\n--${b}--\r\n`),
    ]);
    const name = (await simpleParser(raw)).attachments[0]!.filename!;
    expect(legacyFileName(name)).toBe('Счёт №15 за ноябрь.pdf');
    for (const cs of ['koi8-r', 'cp866']) expect(legacyFileName(iconv.encode('Акт сверки.xlsx', cs).toString('latin1'))).toBe('Акт сверки.xlsx');
    // Western names in latin1, UTF-8 names, ASCII: as they were.
    for (const kept of ['café.pdf', 'Müller Straße.doc', 'Счёт.pdf', 'invoice.pdf', 'Ñ.txt']) expect(legacyFileName(kept)).toBe(kept);
  });
});
