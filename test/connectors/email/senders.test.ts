/**
 * Whom a mail is from and how we answer it, against a real Dovecot and the SMTP stand-in: a From
 * that is one RFC 2047 word holding the whole `Имя <addr>`, the Reply-To / Sender / Return-Path
 * fallbacks, a mail with nobody to answer left unread and flagged, replies that answer the
 * customer's mail rather than our auto-acknowledgement, our display name as one encoded word, and
 * a Cyrillic subject split into encoded words only between words, the ticket token whole.
 */
import { jetstreamManager } from '@nats-io/jetstream';
import { simpleParser } from 'mailparser';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { DeadLetter, LogEntry, TicketEvent } from '../../../src/core/schema.js';
import { encodeDisplayName, encodeSubject } from '../../../src/connectors/email/from-header.js';
import type { TestGateway } from '../../helpers/gateway.js';
import { SUPPORT, connected, emailGateway, inboundOf, startWorld, until, type EmailWorld } from './harness.js';
import { encodedWord, plainMail, uniqueId } from './mails.js';

let world: EmailWorld;
let gw: TestGateway;
const PARKED = '$NeedsHuman';

beforeAll(async () => {
  world = await startWorld();
  gw = await emailGateway(world, { pollIntervalMs: 1000, parkedKeyword: PARKED }, { router: { autoAcknowledge: { enabled: true, perSenderPerHour: 10 } } });
  await connected(gw);
});
afterAll(async () => {
  await gw?.stop();
  await world?.stop();
});

const created = (messageId: string) => (e: TicketEvent) =>
  e.type === 'ticket.message' && inboundOf(e)?.email?.messageId === messageId && e.entry?.kind === 'inbound' && e.entry.match.rule === 'new-ticket';

async function flagsOf(messageId: string): Promise<string[]> {
  await world.imap.mailboxOpen('INBOX');
  const uids = (await world.imap.search({ header: { 'message-id': messageId } }, { uid: true })) || [];
  const m = uids.length > 0 ? await world.imap.fetchOne(String(uids[0]), { flags: true }, { uid: true }) : false;
  return m ? [...m.flags!] : [];
}

const b64Word = (text: string) => `=?utf-8?B?${Buffer.from(text, 'utf8').toString('base64')}?=`;

describe('email senders', () => {
  it('a From that is one encoded word holding the whole mailbox becomes a ticket (UTF-8 base64 and windows-1251 Q)', async () => {
    const utf8 = uniqueId('word');
    const cp1251 = uniqueId('word1251');
    await world.imap.append('INBOX', plainMail({ messageId: utf8, from: b64Word('Иван Петров <ivan.word@client.example.ru>') }));
    await world.imap.append('INBOX', plainMail({ messageId: cp1251, from: encodedWord('Бухгалтерия "Ромашка" <buh.word@client.example.ru>', 'windows-1251', 'Q') }));
    const a = inboundOf(await gw.waitForEvent(created(utf8), 20_000))!;
    expect(a.sender).toMatchObject({ id: 'ivan.word@client.example.ru', displayName: 'Иван Петров', handles: { email: 'ivan.word@client.example.ru' } });
    expect(a.email).toMatchObject({ from: 'ivan.word@client.example.ru', senderHeader: 'from' });
    const b = inboundOf(await gw.waitForEvent(created(cp1251), 20_000))!;
    expect(b.sender).toMatchObject({ id: 'buh.word@client.example.ru', displayName: 'Бухгалтерия Ромашка' });
  });

  it('without a usable From, takes Reply-To, then Sender, then Return-Path, and says which on the log entry', async () => {
    const viaReplyTo = uniqueId('rt');
    const viaSender = uniqueId('snd');
    const viaReturnPath = uniqueId('rp');
    await world.imap.append('INBOX', plainMail({ messageId: viaReplyTo, from: 'undisclosed-recipients:;', replyTo: 'Ольга <olga@client.example.ru>', headers: { Sender: 'robot@client.example.ru' } }));
    await world.imap.append('INBOX', plainMail({ messageId: viaSender, from: 'Отдел продаж', headers: { Sender: 'Секретарь <sec@client.example.ru>' } }));
    await world.imap.append('INBOX', plainMail({ messageId: viaReturnPath, from: 'a@client.example.ru, b@client.example.ru', headers: { 'Return-Path': '<bounce-1@lists.client.example.ru>' } }));
    const rt = await gw.waitForEvent(created(viaReplyTo), 20_000);
    expect(inboundOf(rt)!.sender).toMatchObject({ id: 'olga@client.example.ru', displayName: 'Ольга' });
    expect(inboundOf(rt)!.email).toMatchObject({ senderHeader: 'reply-to', senderNote: expect.stringMatching(/^sender taken from reply-to: from: no valid mailbox/) });
    const snd = await gw.waitForEvent(created(viaSender), 20_000);
    expect(inboundOf(snd)!.email).toMatchObject({ from: 'sec@client.example.ru', senderHeader: 'sender' });
    const rp = await gw.waitForEvent(created(viaReturnPath), 20_000);
    expect(inboundOf(rp)!.email).toMatchObject({ from: 'bounce-1@lists.client.example.ru', senderHeader: 'return-path', senderNote: expect.stringContaining('from: 2 mailboxes') });
    // The ticket log keeps the entry with the header it came from.
    const log = await gw.gateway.router!.store.readLog(snd.ticketId);
    const entry = log.find((l) => l.entry.kind === 'inbound')!.entry as Extract<LogEntry, { kind: 'inbound' }>;
    expect(entry.event.email?.senderHeader).toBe('sender');
  });

  it('masks a Message-ID in the log line only when it is one of its own mail\'s addresses', async () => {
    // A broken mailer: the customer's address as the Message-ID (and no usable From, so the intake logs the fallback).
    const addressId = '<Maria.Ivanova@Client.Example.ru>';
    const plainId = uniqueId('logged');
    await world.imap.append('INBOX', plainMail({ messageId: addressId, from: 'undisclosed-recipients:;', replyTo: 'Мария <maria.ivanova@client.example.ru>' }));
    await world.imap.append('INBOX', plainMail({ messageId: plainId, from: 'undisclosed-recipients:;', replyTo: 'Олег <oleg@client.example.ru>' }));
    await gw.waitForEvent(created(addressId), 20_000);
    await gw.waitForEvent(created(plainId), 20_000);
    const lines = () => gw.logs.filter((l) => l.includes('no usable From')).map((l) => JSON.parse(l) as { messageId: string });
    await until(() => lines().length >= 2, 'both fallback log lines');
    const ids = lines().map((l) => l.messageId);
    expect(ids).toContain('<M***@Client.Example.ru>');
    expect(ids).toContain(plainId);
    expect(gw.logs.join('\n').toLowerCase()).not.toContain('maria.ivanova@');
  });

  it('parks a mail with nobody to answer, and leaves it unread and flagged with the configured keyword', async () => {
    const nobody = uniqueId('nobody');
    const handled = uniqueId('handled');
    await world.imap.append('INBOX', plainMail({ messageId: nobody, from: 'Кто-то без адреса', subject: 'Помогите' }));
    await world.imap.append('INBOX', plainMail({ messageId: handled, subject: 'Обычное письмо' }));
    const letter = await gw.waitForStreamMessage<DeadLetter>('OMNI_DLQ', 'omni.dlq.inbound.email.support', (d) => d.reason.includes('no usable sender'), 20_000);
    expect(letter.reason).toMatch(/^email support@example\.ru folder INBOX uid \d+: no usable sender address \(from: no valid mailbox in .*\): nobody to answer$/);
    await gw.waitForEvent(created(handled), 20_000);
    // Flags land after the dead letter is stored: poll for them.
    await until(async () => (await flagsOf(nobody)).includes(PARKED), 'parked flags on the mail');
    const flags = await flagsOf(nobody);
    expect(flags).toEqual(expect.arrayContaining(['\\Flagged', PARKED]));
    expect(flags).not.toContain('\\Seen');
    await until(async () => (await flagsOf(handled)).includes('\\Seen'), 'the ordinary mail marked seen');
    expect(await flagsOf(handled)).not.toContain(PARKED);
    // A later sync does not park it again (our processed keyword is on it as well).
    const again = uniqueId('again');
    await world.imap.append('INBOX', plainMail({ messageId: again }));
    await gw.waitForEvent(created(again), 20_000);
    const info = await (await jetstreamManager(gw.nc)).streams.info('OMNI_DLQ', { subjects_filter: 'omni.dlq.inbound.email.support' });
    expect(info.state.subjects?.['omni.dlq.inbound.email.support']).toBe(1);
  });

  it('an agent reply answers the customer mail, not our auto-acknowledgement; our name is one encoded word', async () => {
    const customer = uniqueId('cust');
    await world.imap.append('INBOX', plainMail({ messageId: customer, from: 'Анна <anna@client.example.ru>', subject: 'Счёт' }));
    const ticketId = (await gw.waitForEvent(created(customer), 20_000)).ticketId;
    const ackMail = await world.smtp.waitFor((m) => m.to.includes('anna@client.example.ru'), 20_000);
    const ack = await simpleParser(ackMail.raw);
    expect(ack.headers.get('auto-submitted')).toBe('auto-replied');
    await gw.waitForEvent((e) => e.type === 'ticket.delivery' && e.ticketId === ticketId && (e.entry as Extract<LogEntry, { kind: 'delivery' }>).status.status === 'sent', 20_000);

    await gw.request('omni.cmd.reply', { ticketId, text: 'Счёт отправлен повторно.' });
    const replyMail = await world.smtp.waitFor((m) => m.to.includes('anna@client.example.ru') && m !== ackMail, 20_000);
    const reply = await simpleParser(replyMail.raw);
    expect(reply.inReplyTo).toBe(customer);
    const refs = [reply.references].flat();
    expect(refs).toContain(ack.messageId);
    expect(refs[refs.length - 1]).toBe(customer);

    // "Служба поддержки" fits one RFC 2047 word: no reader can put a space inside it.
    const head = replyMail.raw.subarray(0, replyMail.raw.indexOf('\r\n\r\n')).toString('latin1');
    const fromLine = head.match(/^From: .*(?:\r\n[ \t].*)*/m)![0];
    expect(fromLine.match(/=\?UTF-8\?B\?/g)).toHaveLength(1);
    expect(reply.from?.value[0]).toMatchObject({ name: 'Служба поддержки', address: SUPPORT });
    expect(replyMail.from).toBe(SUPPORT);
  });

  it('a long Cyrillic subject is split into encoded words only at spaces, the token whole, and the answer threads by it', async () => {
    const customer = uniqueId('subj');
    // nodemailer cut "Re: Не работает оплата картой [#T-1010]" after "оп" and inside the token.
    const asked = 'Не работает оплата картой на сайте после обновления приложения';
    await world.imap.append('INBOX', plainMail({ messageId: customer, from: 'Павел <pavel.subject@client.example.ru>', subject: asked }));
    const ticketId = (await gw.waitForEvent(created(customer), 20_000)).ticketId;
    const subject = `Re: ${asked} [#${ticketId}]`;
    await gw.request('omni.cmd.reply', { ticketId, text: 'Проверьте, пожалуйста, ещё раз.' });
    const sent = await world.smtp.waitFor((m) => m.to.includes('pavel.subject@client.example.ru') && !/^Auto-Submitted:/im.test(m.raw.toString('latin1')), 20_000);

    const head = sent.raw.subarray(0, sent.raw.indexOf('\r\n\r\n')).toString('latin1');
    const lines = head.match(/^Subject: .*(?:\r\n[ \t].*)*/m)![0].split('\r\n');
    for (const line of lines) expect(line.length, line).toBeLessThanOrEqual(76);
    const words = lines.join(' ').slice('Subject: '.length).trim().split(/\s+/);
    expect(words.length).toBeGreaterThan(1);
    const decoded = words.map((w) => {
      const m = /^=\?UTF-8\?B\?([A-Za-z0-9+/=]+)\?=$/.exec(w);
      expect(m, w).not.toBeNull();
      expect(w.length, w).toBeLessThanOrEqual(75);
      const bytes = Buffer.from(m![1]!, 'base64');
      expect(Buffer.from(bytes.toString('utf8'), 'utf8').equals(bytes), `whole UTF-8 characters in ${w}`).toBe(true);
      return bytes.toString('utf8');
    });
    expect(decoded.join('')).toBe(subject);
    // Broken only after a space: each word holds whole words of the subject.
    for (const d of decoded.slice(0, -1)) expect(d, d).toMatch(/\s$/);
    expect(decoded.filter((d) => d.includes(`[#${ticketId}]`))).toHaveLength(1);
    // A reader that puts a space between adjacent encoded words shows at worst a double space.
    const shown = decoded.join(' ').replace(/\s+/g, ' ');
    expect(shown).toBe(subject);
    expect((await simpleParser(sent.raw)).subject).toBe(subject);

    // The customer answers from such a reader, without threading headers: the token finds the ticket.
    const answer = uniqueId('subj-answer');
    await world.imap.append('INBOX', plainMail({ messageId: answer, from: 'Павел <pavel.subject@client.example.ru>', subject: `Re: ${decoded.join(' ')}`, text: 'Теперь работает.' }));
    const joined = await gw.waitForEvent((e) => e.type === 'ticket.message' && inboundOf(e)?.email?.messageId === answer, 20_000);
    expect(joined.ticketId).toBe(ticketId);
    expect(joined.entry).toMatchObject({ match: { rule: 'email-subject-token', value: ticketId } });
  });

  it('encodes a subject only when it must, never cutting a word that fits or a ticket token', () => {
    expect(encodeSubject('Re: Payment failed [#T-1010]')).toBeUndefined();
    expect(encodeSubject('')).toBeUndefined();
    const decode = (w: string) => Buffer.from(w.slice('=?UTF-8?B?'.length, -2), 'base64').toString('utf8');
    // The subject of the report: one word within the first line's room.
    expect(encodeSubject('Re: Не работает оплата картой [#T-1010]')!.map(decode)).toEqual(['Re: Не работает оплата ', 'картой [#T-1010]']);
    // Text that looks like an encoded word is encoded, not left for the reader to decode.
    expect(encodeSubject('Re: =?UTF-8?B?0J8=?= [#T-1]')!.map(decode).join('')).toBe('Re: =?UTF-8?B?0J8=?= [#T-1]');
    // A word longer than one encoded word is cut between characters, but a token glued to it is not.
    const glued = `${'Я'.repeat(30)}[#T-123456]`;
    const words = encodeSubject(glued)!;
    for (const w of words) expect(w.length).toBeLessThanOrEqual(75);
    expect(words.map(decode).join('')).toBe(glued);
    expect(words.map(decode).some((d) => d.includes('[#T-123456]'))).toBe(true);
  });

  it('a long display name is split only at spaces, each word within 75 characters and whole UTF-8', () => {
    const name = 'Служба технической поддержки ООО «Ромашка» — отдел расчётов с покупателями';
    const words = encodeDisplayName(name)!;
    expect(words.length).toBeGreaterThan(1);
    const decoded = words.map((w) => {
      expect(w.length).toBeLessThanOrEqual(75);
      const bytes = Buffer.from(w.slice('=?UTF-8?B?'.length, -2), 'base64');
      expect(Buffer.from(bytes.toString('utf8'), 'utf8').equals(bytes)).toBe(true);
      return bytes.toString('utf8');
    });
    expect(decoded.join('')).toBe(name);
    for (const d of decoded.slice(0, -1)) expect(d.endsWith(' ')).toBe(true);
    expect(encodeDisplayName('Support Team')).toBeUndefined();
    // One word longer than a whole encoded word is cut between characters.
    const long = 'Я'.repeat(60);
    expect(encodeDisplayName(long)!.map((w) => Buffer.from(w.slice(10, -2), 'base64').toString('utf8')).join('')).toBe(long);
  });
});
