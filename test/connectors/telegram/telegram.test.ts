/**
 * Telegram end to end: telegraf's real Bot API client against the stand-in on 127.0.0.1, a real
 * nats-server, the router and the outbound runner.
 */
import { createHash } from 'node:crypto';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { startGateway, type TestGateway } from '../../helpers/gateway.js';
import { startNats, type TestNats } from '../../helpers/nats-server.js';
import { Kvm } from '@nats-io/kv';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { jetstreamManager } from '@nats-io/jetstream';
import { FakeBotApi } from './bot-api.js';
import { deadLetters } from '../../../src/dlq.js';
import { loadNatsSection } from '../../../src/core/config.js';
import type { ConnectorStateEvent, DeadLetter, LogEntry } from '../../../src/core/schema.js';

const TOKEN = '123456:TEST-token-abcdefghijklmnop';
let nats: TestNats;
let nc: NatsConnection;
let api: FakeBotApi;
const gateways: TestGateway[] = [];
let messageId = 1;

function telegramConfig(extra: Record<string, unknown> = {}) {
  return {
    outbound: { backoffBase: '100ms' },
    connectors: [{
      type: 'telegram', account: 'bot1', token: '${TG_TOKEN}', apiRoot: api.apiRoot, pollTimeoutS: 1,
      pacing: { privateChatIntervalMs: 0, groupIntervalMs: 0 }, ...extra,
    }],
  };
}

async function gateway(extra: Record<string, unknown> = {}): Promise<TestGateway> {
  const gw = await startGateway(telegramConfig(extra), { nats, env: { TG_TOKEN: TOKEN } });
  gateways.push(gw);
  return gw;
}

function privateMessage(chatId: number, fields: Record<string, unknown> = {}) {
  return {
    message: {
      message_id: messageId++,
      date: Math.floor(Date.now() / 1000),
      chat: { id: chatId, type: 'private', first_name: 'Ольга', last_name: 'Смирнова' },
      from: { id: chatId, is_bot: false, first_name: 'Ольга', last_name: 'Смирнова', username: 'olga_s', language_code: 'ru' },
      text: 'Здравствуйте! Не проходит оплата',
      ...fields,
    },
  };
}

const inboundOf = (e: { entry?: unknown }) => (e.entry as Extract<LogEntry, { kind: 'inbound' }>)?.event;

beforeAll(async () => {
  nats = await startNats();
  nc = await connect({ servers: nats.url });
  api = new FakeBotApi(TOKEN);
  await api.start();
});
afterEach(async () => {
  await Promise.all(gateways.splice(0).map((g) => g.stop()));
  api.honourOffset = true;
});
afterAll(async () => {
  await api?.stop();
  await nc?.close();
  await nats?.stop();
});

describe('telegram connector', () => {
  it('turns a private message into a ticket and delivers the reply to the same chat, quoting it', async () => {
    const gw = await gateway();
    api.push(privateMessage(5001, { entities: [{ type: 'bold', offset: 0, length: 13 }] }));
    const created = await gw.waitForEvent((e) => e.type === 'ticket.message');
    const event = inboundOf(created)!;
    expect(event.conversation).toMatchObject({ id: '5001', kind: 'private' });
    expect(event.sender).toMatchObject({ id: '5001', displayName: 'Ольга Смирнова', handles: { username: '@olga_s' }, language: 'ru' });
    expect(event.html).toBe('<b>Здравствуйте!</b> Не проходит оплата');

    const reply = await gw.request('omni.cmd.reply', { ticketId: created.ticketId, text: 'Добрый день! <Проверяем> & ответим' });
    expect(reply.ok).toBe(true);
    const sent = await api.waitForCall((c) => c.method === 'sendMessage' && c.params.chat_id === '5001');
    expect(sent.params.text).toBe('Добрый день! <Проверяем> & ответим');
    expect(sent.params.parse_mode).toBeUndefined();
    expect(sent.params.reply_parameters).toMatchObject({ message_id: Number(event.platform.messageId.split(':')[1]) });
    const delivery = await gw.waitForEvent((e) => e.type === 'ticket.delivery' && e.ticketId === created.ticketId);
    expect((delivery.entry as Extract<LogEntry, { kind: 'delivery' }>).status.status).toBe('sent');
    expect(gw.logs.join('')).not.toContain(TOKEN.split(':')[1]);
  });

  it('splits a long reply into ordered messages, quoting only the first', async () => {
    const gw = await gateway();
    api.push(privateMessage(5011));
    const created = await gw.waitForEvent((e) => e.type === 'ticket.message' && inboundOf(e)?.conversation.id === '5011');
    const long = Array.from({ length: 300 }, (_, i) => `Шаг ${i + 1}: проверьте настройку номер ${i + 1}.`).join('\n');
    await gw.request('omni.cmd.reply', { ticketId: created.ticketId, text: long });
    await gw.waitForEvent((e) => e.type === 'ticket.delivery' && e.ticketId === created.ticketId);
    const sent = api.calls.filter((c) => c.method === 'sendMessage' && c.params.chat_id === '5011');
    expect(sent.length).toBeGreaterThan(1);
    expect(sent.map((c) => c.params.text).join('\n')).toBe(long);
    expect(sent[0]!.params.reply_parameters).toBeDefined();
    expect(sent.slice(1).every((c) => c.params.reply_parameters === undefined)).toBe(true);
  });

  it('round-trips a photo through the object store with the same bytes', async () => {
    const gw = await gateway();
    const bytes = Buffer.alloc(300_000, 7);
    bytes.write('JPEG-ish header', 0);
    api.addFile('photo-big', bytes);
    api.push(privateMessage(5002, { text: undefined, caption: 'Скриншот ошибки', photo: [
      { file_id: 'photo-small', width: 90, height: 90, file_size: 1000 },
      { file_id: 'photo-big', width: 1280, height: 960, file_size: bytes.length },
    ] }));
    const created = await gw.waitForEvent((e) => e.type === 'ticket.message' && inboundOf(e)?.conversation.id === '5002');
    const [att] = inboundOf(created)!.attachments;
    expect(att).toMatchObject({ status: 'stored', mimeType: 'image/jpeg', size: bytes.length, kind: 'image' });
    expect(att!.sha256).toBe(createHash('sha256').update(bytes).digest('hex'));
    expect(inboundOf(created)!.text).toBe('Скриншот ошибки');

    await gw.request('omni.cmd.reply', { ticketId: created.ticketId, text: 'Вот что мы видим', attachments: [att] });
    const photo = await api.waitForCall((c) => c.method === 'sendPhoto' && String(c.params.chat_id) === '5002');
    expect(Buffer.compare(photo.files.photo!.bytes, bytes)).toBe(0);
  });

  it('records a file over the size limit as not fetched, with the reason, and still opens the ticket', async () => {
    const gw = await gateway({ maxFileBytes: 1024 });
    api.addFile('doc-1', Buffer.alloc(4096, 1));
    api.push(privateMessage(5003, { text: undefined, document: { file_id: 'doc-1', file_name: 'отчёт.pdf', mime_type: 'application/pdf', file_size: 4096 } }));
    const created = await gw.waitForEvent((e) => e.type === 'ticket.message' && inboundOf(e)?.conversation.id === '5003');
    expect(inboundOf(created)!.attachments[0]).toMatchObject({ status: 'failed', name: 'отчёт.pdf' });
    expect(inboundOf(created)!.attachments[0]!.error).toMatch(/4096 bytes; the Bot API serves files up to 1024 bytes/);
  });

  it('appends an edit to the same ticket', async () => {
    const gw = await gateway();
    const original = privateMessage(5004);
    api.push(original);
    const created = await gw.waitForEvent((e) => e.type === 'ticket.message' && inboundOf(e)?.conversation.id === '5004');
    api.push({ edited_message: { ...original.message, text: 'Исправила номер заказа', edit_date: Math.floor(Date.now() / 1000) + 5 } });
    const edited = await gw.waitForEvent((e) => e.type === 'ticket.edited');
    expect(edited.ticketId).toBe(created.ticketId);
  });

  it('ignores a group message without a mention and takes one that mentions the bot', async () => {
    const gw = await gateway({ groups: 'mention' });
    const group = { id: -100777, type: 'supergroup', title: 'Клиенты ООО Ромашка' };
    api.push({ message: { message_id: messageId++, date: 1, chat: group, from: { id: 9, first_name: 'Пётр' }, text: 'всем привет' } });
    api.push({ message: { message_id: messageId++, date: 1, chat: group, from: { id: 9, first_name: 'Пётр' }, text: '@omni_support_bot помогите', entities: [{ type: 'mention', offset: 0, length: 17 }] } });
    const routed = await gw.waitForEvent((e) => e.type === 'ticket.message' && inboundOf(e)?.conversation.id === '-100777');
    expect(inboundOf(routed)!.text).toBe('@omni_support_bot помогите');
    const log = await gw.gateway.router!.store.readLog(routed.ticketId);
    expect(log.filter((l) => l.entry.kind === 'inbound')).toHaveLength(1);
  });

  it('waits out a 429 retry_after and then delivers, in the same attempt', async () => {
    const gw = await gateway({ pacing: { privateChatIntervalMs: 0, groupIntervalMs: 0, rateLimitQuietMs: 300 } });
    api.push(privateMessage(5005));
    const created = await gw.waitForEvent((e) => e.type === 'ticket.message' && inboundOf(e)?.conversation.id === '5005');
    api.failNext('sendMessage', { status: 429, body: { ok: false, error_code: 429, description: 'Too Many Requests: retry after 1', parameters: { retry_after: 1 } } });
    await gw.request('omni.cmd.reply', { ticketId: created.ticketId, text: 'Ответ после паузы' });
    const delivered = await gw.waitForEvent((e) => e.type === 'ticket.delivery' && e.ticketId === created.ticketId);
    const status = (delivered.entry as Extract<LogEntry, { kind: 'delivery' }>).status;
    expect(status.status).toBe('sent');
    expect(status.attempts).toBe(1); // waiting out a 429 is not a failed attempt
    const attempts = api.calls.filter((c) => c.method === 'sendMessage' && c.params.chat_id === '5005');
    expect(attempts).toHaveLength(2);
    expect(attempts[1]!.at - attempts[0]!.at).toBeGreaterThanOrEqual(500); // the platform's 1 s wait was honoured (stand-in stamps can be late under load)
    const states = 'omni.events.connector.telegram.bot1';
    const limited = await gw.waitForStreamMessage<ConnectorStateEvent>('OMNI_EVENTS', states, (e) => e.state === 'rate_limited');
    expect(limited.detail).toMatch(/wait 1s/);
    await gw.waitForStreamMessage<ConnectorStateEvent>('OMNI_EVENTS', states, (e) => e.state === 'connected' && Date.parse(e.at) >= Date.parse(limited.at));
  });

  it('ends a reply to a user who blocked the bot as a failed delivery with the reason, without retrying', async () => {
    const gw = await gateway();
    api.push(privateMessage(5006));
    const created = await gw.waitForEvent((e) => e.type === 'ticket.message' && inboundOf(e)?.conversation.id === '5006');
    api.failNext('sendMessage', { status: 403, body: { ok: false, error_code: 403, description: 'Forbidden: bot was blocked by the user' } });
    await gw.request('omni.cmd.reply', { ticketId: created.ticketId, text: 'Вы здесь?' });
    const failed = await gw.waitForEvent((e) => e.type === 'ticket.delivery' && e.ticketId === created.ticketId);
    const status = (failed.entry as Extract<LogEntry, { kind: 'delivery' }>).status;
    expect(status.status).toBe('failed');
    expect(status.reason).toBe('blocked_by_user: Forbidden: bot was blocked by the user');
    expect(api.calls.filter((c) => c.method === 'sendMessage' && c.params.chat_id === '5006')).toHaveLength(1);
  });

  it('retries a sendMessage that met a 5xx and a dropped connection, then delivers it once', async () => {
    const gw = await gateway();
    api.push(privateMessage(5016));
    const created = await gw.waitForEvent((e) => e.type === 'ticket.message' && inboundOf(e)?.conversation.id === '5016');
    api.failNext('sendMessage', { status: 502, body: { ok: false, error_code: 502, description: 'Bad Gateway' } }, { drop: true });
    await gw.request('omni.cmd.reply', { ticketId: created.ticketId, text: 'Ответ сквозь сбои' });
    const delivered = await gw.waitForEvent((e) => e.type === 'ticket.delivery' && e.ticketId === created.ticketId);
    const status = (delivered.entry as Extract<LogEntry, { kind: 'delivery' }>).status;
    expect(status).toMatchObject({ status: 'sent', attempts: 3 });
    expect(api.calls.filter((c) => c.method === 'sendMessage' && c.params.chat_id === '5016').map((c) => c.params.text))
      .toEqual(['Ответ сквозь сбои', 'Ответ сквозь сбои', 'Ответ сквозь сбои']);
  });

  it('ends a reply to a chat Telegram does not know as a failed delivery with the reason, without retrying', async () => {
    const gw = await gateway();
    api.push(privateMessage(5017));
    const created = await gw.waitForEvent((e) => e.type === 'ticket.message' && inboundOf(e)?.conversation.id === '5017');
    api.failNext('sendMessage', { status: 400, body: { ok: false, error_code: 400, description: 'Bad Request: chat not found' } });
    await gw.request('omni.cmd.reply', { ticketId: created.ticketId, text: 'Вы здесь?' });
    const failed = await gw.waitForEvent((e) => e.type === 'ticket.delivery' && e.ticketId === created.ticketId);
    const status = (failed.entry as Extract<LogEntry, { kind: 'delivery' }>).status;
    expect(status).toMatchObject({ status: 'failed', attempts: 1, reason: 'chat_not_found: Bad Request: chat not found' });
    expect(api.calls.filter((c) => c.method === 'sendMessage' && c.params.chat_id === '5017')).toHaveLength(1);
  });

  it('fails an attachment over the upload limit (413) at once, after the text went out', async () => {
    const gw = await gateway();
    const bytes = Buffer.alloc(2048, 3);
    api.addFile('doc-413', bytes);
    api.push(privateMessage(5018, { text: undefined, document: { file_id: 'doc-413', file_name: 'выгрузка.csv', mime_type: 'text/csv', file_size: bytes.length } }));
    const created = await gw.waitForEvent((e) => e.type === 'ticket.message' && inboundOf(e)?.conversation.id === '5018');
    const [att] = inboundOf(created)!.attachments;
    api.failNext('sendDocument', { status: 413, body: { ok: false, error_code: 413, description: 'Request Entity Too Large' } });
    await gw.request('omni.cmd.reply', { ticketId: created.ticketId, text: 'Возвращаем файл', attachments: [att] });
    const failed = await gw.waitForEvent((e) => e.type === 'ticket.delivery' && e.ticketId === created.ticketId);
    const status = (failed.entry as Extract<LogEntry, { kind: 'delivery' }>).status;
    expect(status).toMatchObject({ status: 'failed', attempts: 1, reason: 'too_large: Request Entity Too Large; delivered before this: the text; not delivered: file «выгрузка.csv»' });
    expect(api.calls.filter((c) => c.method === 'sendDocument' && String(c.params.chat_id) === '5018')).toHaveLength(1);
    expect(api.calls.filter((c) => c.method === 'sendMessage' && c.params.chat_id === '5018')).toHaveLength(1);
  });

  it('a crash after the JetStream ack but before the offset advanced creates no duplicate on restart', async () => {
    api.honourOffset = false; // Telegram never saw our confirmation: it serves the update again
    const first = await gateway();
    const updateId = api.push(privateMessage(5007, { text: 'Один раз' }));
    const created = await first.waitForEvent((e) => e.type === 'ticket.message' && inboundOf(e)?.conversation.id === '5007');
    await first.stop();
    gateways.splice(gateways.indexOf(first), 1);
    // ...nor did the checkpoint reach KV: the fresh gateway starts from nothing.
    const kv = await new Kvm(nc).open('omni_state');
    await kv.purge('telegram.bot1.offset');
    const servedBefore = api.served.get(updateId) ?? 0;
    const second = await gateway();
    api.push(privateMessage(5008, { text: 'после рестарта' })); // a later update, served after the re-read one
    await second.waitForEvent((e) => e.type === 'ticket.message' && inboundOf(e)?.conversation.id === '5008');
    expect(api.served.get(updateId)).toBeGreaterThan(servedBefore); // the fresh gateway did read it again
    const log = await second.gateway.router!.store.readLog(created.ticketId);
    expect(log.filter((l) => l.entry.kind === 'inbound')).toHaveLength(1);
    const tickets = (await second.gateway.router!.store.list()).filter((t) => t.conversation.id === '5007');
    expect(tickets).toHaveLength(1);
  });

  it('resumes from the offset checkpointed in KV', async () => {
    const first = await gateway();
    const updateId = api.push(privateMessage(5012));
    await first.waitForEvent((e) => e.type === 'ticket.message' && inboundOf(e)?.conversation.id === '5012');
    await first.stop();
    gateways.splice(gateways.indexOf(first), 1);
    const from = api.offsets.length;
    const second = await gateway();
    api.push(privateMessage(5013));
    await second.waitForEvent((e) => e.type === 'ticket.message' && inboundOf(e)?.conversation.id === '5013');
    expect(api.offsets[from]).toBeGreaterThanOrEqual(updateId + 1);
  });

  it('parks a malformed update with the reason and keeps polling', async () => {
    const gw = await gateway();
    api.push({ message: { message_id: 'not-a-number', chat: {} } });
    const letter = await gw.waitForStreamMessage<DeadLetter>('OMNI_DLQ', 'omni.dlq.inbound.telegram.bot1', (l) => /message lacks/.test(l.reason));
    expect(letter.reason).toMatch(/message lacks message_id, chat.id or date/);
    expect(JSON.parse(letter.payload).message.message_id).toBe('not-a-number');
    api.push({ message: { message_id: messageId++, date: 1, chat: { id: 5014, type: 'private' }, from: { id: 5014 }, photo: 'not-a-list', text: 7 } });
    await gw.waitForStreamMessage<DeadLetter>('OMNI_DLQ', 'omni.dlq.inbound.telegram.bot1', (l) => /not a string/.test(l.reason));
    api.push(privateMessage(5009));
    await gw.waitForEvent((e) => e.type === 'ticket.message' && inboundOf(e)?.conversation.id === '5009');
  });

  it('replays a parked update through the connector: still invalid stays parked, a good one opens a ticket', async () => {
    const gw = await gateway();
    await api.waitForCall((c) => c.method === 'getMe');
    // One the parser still refuses, and one an older version parked that it now takes.
    await gw.gateway.bus.deadLetters.park({
      source: 'connector', scope: 'telegram.bot1', subject: 'omni.in.telegram.bot1', code: 'invalid_payload',
      reason: 'replay-test bad', payload: { update_id: 77_001, message: { message_id: 'x', chat: {} } },
    });
    await gw.gateway.bus.deadLetters.park({
      source: 'connector', scope: 'telegram.bot1', subject: 'omni.in.telegram.bot1', code: 'invalid_payload',
      reason: 'replay-test good', payload: { update_id: 77_002, ...privateMessage(5077, { text: 'после исправления' }) },
    });
    const lines: string[] = [];
    await deadLetters(loadNatsSection(undefined, { OMNIGATE_NATS__URL: nats.url }), { source: 'inbound.telegram.bot1', limit: 1000, replay: true, out: (l) => lines.push(l) });
    expect(lines.find((l) => l.includes('replay-test bad'))).toMatch(/\tinvalid: message lacks message_id, chat\.id or date/);
    expect(lines.find((l) => l.includes('replay-test good'))).toMatch(/\treplayed$/);
    const e = await gw.waitForEvent((ev) => ev.type === 'ticket.message' && inboundOf(ev)?.conversation.id === '5077');
    expect(inboundOf(e)!.text).toBe('после исправления');
  });

  it('webhook mode refuses a wrong secret token (401, nothing published) and takes a right one', async () => {
    const secretToken = 'webhook-secret-0123456789';
    const gw = await gateway({ account: 'wh', mode: 'webhook', webhook: { secretToken } });
    const url = `${gw.httpUrl}/connectors/telegram/wh/webhook`;
    await api.waitForCall((c) => c.method === 'getMe');
    const post = (update: unknown, secret?: string) => fetch(url, {
      method: 'POST',
      headers: { 'content-type': 'application/json', ...(secret ? { 'x-telegram-bot-api-secret-token': secret } : {}) },
      body: JSON.stringify(update),
    });
    expect((await post({ update_id: 99_000, ...privateMessage(5015, { text: 'подделка' }) }, 'wrong-secret-0123456789')).status).toBe(401);
    expect((await post({ update_id: 99_002, ...privateMessage(5015, { text: 'без секрета' }) })).status).toBe(401);
    const update = { update_id: 99_001, ...privateMessage(5010, { text: 'через вебхук' }) };
    let ok = await post(update, secretToken);
    for (let i = 0; i < 50 && ok.status === 503; i++) { // 503 until getMe answered: Telegram would retry
      await new Promise((r) => setTimeout(r, 100));
      ok = await post(update, secretToken);
    }
    expect(ok.status).toBe(200);
    const routed = await gw.waitForEvent((e) => e.type === 'ticket.message' && inboundOf(e)?.conversation.id === '5010');
    expect(inboundOf(routed)!.text).toBe('через вебхук');
    const jsm = await jetstreamManager(gw.nc);
    // Inbound subjects carry the conversation's partition: count the account's across all of them.
    const info = await jsm.streams.info('OMNI_IN', { subjects_filter: 'omni.in.telegram.wh.>' });
    expect(Object.values(info.state.subjects ?? {}).reduce((a, b) => a + b, 0)).toBe(1); // the refused posts published nothing
    expect((await gw.gateway.router!.store.list()).filter((t) => t.conversation.id === '5015')).toHaveLength(0);
  });
});
