import { Writable } from 'node:stream';
import { afterEach, describe, expect, it } from 'vitest';
import { createLogger } from '../../src/core/logger.js';
import { loggableMessageId, maskPersonalData, registerOwnAddress, setPersonalDataInLogs } from '../../src/core/log-personal.js';

function capture(): { lines: string[]; stream: Writable } {
  const lines: string[] = [];
  const stream = new Writable({ write(chunk: Buffer, _enc, done) { lines.push(chunk.toString()); done(); } });
  return { lines, stream };
}

describe('personal data in log lines', () => {
  afterEach(() => setPersonalDataInLogs('mask'));

  it('masks customers\' addresses and phones in every string of a line, also inside an error text', async () => {
    registerOwnAddress('Support@Romashka.ru');
    const { lines, stream } = capture();
    const log = createLogger({ level: 'info', destination: stream });
    log.warn({ outboundId: 'o-1', reason: '550 5.1.1 <ivan.petrov@mail.ru>: Recipient address rejected', to: ['олег@почта.рф'], mailbox: 'support@romashka.ru' },
      'delivery failed for +7 (916) 123-45-67, asked by support@romashka.ru');
    log.error(new Error('SMTP refused anna@firm.ru'), 'send failed');
    await new Promise((r) => setImmediate(r));
    const text = lines.join('');
    for (const whole of ['ivan.petrov@mail.ru', 'олег@почта.рф', '123-45-67', 'anna@firm.ru']) expect(text).not.toContain(whole);
    expect(text).toContain('i***@mail.ru');
    expect(text).toContain('о***@почта.рф');
    expect(text).toContain('+7********67');
    expect(text).toContain('a***@firm.ru');
    // Ours stays readable, in any case the config wrote it.
    expect(text).toContain('"mailbox":"support@romashka.ru"');
    expect(text).toContain('asked by support@romashka.ru');
  });

  it('leaves what is not an address or a phone alone', () => {
    for (const text of ['T-1042', '2026-12-07T05:41:26+03:00', 'seq 1234567890123', 'user@localhost', 'nats://127.0.0.1:4222', 'x+1 = 2'])
      expect(maskPersonalData(text)).toBe(text);
  });

  it('shows them with log.personalData: show', () => {
    setPersonalDataInLogs('show');
    expect(maskPersonalData('from ivan@mail.ru, +7 916 123 45 67')).toBe('from ivan@mail.ru, +7 916 123 45 67');
  });
});

describe('Message-IDs in log lines', () => {
  it('are kept whole in their own fields: they name a mail, and threading is debugged by them', async () => {
    const { lines, stream } = capture();
    createLogger({ level: 'info', destination: stream }).info({ messageId: '<ivan.petrov.1@mail.ru>', references: ['<a1@mail.ru>'], from: 'ivan.petrov@mail.ru' }, 'no usable From');
    await new Promise((r) => setImmediate(r));
    const line = JSON.parse(lines.join('')) as Record<string, unknown>;
    expect(line.messageId).toBe('<ivan.petrov.1@mail.ru>');
    expect(line.references).toEqual(['<a1@mail.ru>']);
    expect(line.from).toBe('i***@mail.ru');
  });
});

describe('a Message-ID that is its own mail\'s address', () => {
  afterEach(() => setPersonalDataInLogs('mask'));

  it('is masked like an address, case aside; one that only looks like an address is kept whole', () => {
    const mail = ['olga@client.ru', 'support@romashka.ru', undefined, 'Maria.Ivanova@Inbox.ru'];
    expect(loggableMessageId('<maria.ivanova@inbox.ru>', mail)).toBe('<m***@inbox.ru>');
    expect(loggableMessageId('OLGA@client.ru', mail)).toBe('O***@client.ru');
    expect(loggableMessageId('<1a2b.3c@inbox.ru>', mail)).toBe('<1a2b.3c@inbox.ru>');
    expect(loggableMessageId('<maria.ivanova@inbox.ru>', ['someone@else.ru'])).toBe('<maria.ivanova@inbox.ru>');
    setPersonalDataInLogs('show');
    expect(loggableMessageId('<maria.ivanova@inbox.ru>', mail)).toBe('<maria.ivanova@inbox.ru>');
  });
});

describe('WhatsApp numbers without "+" in log lines', () => {
  it('are masked in the fields that hold a person\'s number, not as any run of digits', async () => {
    const { lines, stream } = capture();
    createLogger({ level: 'info', destination: stream }).info({ to: '79161234567', jid: '79161234567@s.whatsapp.net', seq: 79161234567, ticketId: 'T-1042', chatId: '1234567890' }, 'sent');
    await new Promise((r) => setImmediate(r));
    const line = JSON.parse(lines.join('')) as Record<string, unknown>;
    expect(line.to).toBe('7********67');
    expect(line.jid).not.toContain('9161234567'); // masked as an address or as a number, either way
    expect(line.seq).toBe(79161234567);
    expect(line.chatId).toBe('1234567890');
  });
});
