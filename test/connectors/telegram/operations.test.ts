/**
 * Telegram in operation: health states, the polling lease across replicas, forum topics,
 * formatting, several bots in one gateway and flaky file downloads. telegraf's real client
 * against stand-in Bot API servers on 127.0.0.1 and a real nats-server.
 */
import { createHash } from 'node:crypto';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { startGateway, type TestGateway } from '../../helpers/gateway.js';
import { startNats, type TestNats } from '../../helpers/nats-server.js';
import { FakeBotApi } from './bot-api.js';
import type { ConnectorStateEvent, LogEntry } from '../../../src/core/schema.js';

const TOKEN = '123456:OPS-token-abcdefghijklmnop';
const TOKEN2 = '654321:OPS-second-token-qrstuvwxyz';
let nats: TestNats;
let api: FakeBotApi;
let api2: FakeBotApi;
const gateways: TestGateway[] = [];
let messageId = 1;

function connector(account: string, extra: Record<string, unknown> = {}) {
  return { type: 'telegram', account, token: '${TG_TOKEN}', apiRoot: api.apiRoot, pollTimeoutS: 1, pacing: { privateChatIntervalMs: 0, groupIntervalMs: 0 }, ...extra };
}

async function gateway(connectors: Array<Record<string, unknown>>, env: Record<string, string> = { TG_TOKEN: TOKEN }): Promise<TestGateway> {
  const gw = await startGateway({ outbound: { backoffBase: '100ms' }, connectors }, { nats, env });
  gateways.push(gw);
  return gw;
}

function text(chatId: number, body: string, fields: Record<string, unknown> = {}) {
  return {
    message: {
      message_id: messageId++,
      date: Math.floor(Date.now() / 1000),
      chat: { id: chatId, type: 'private', first_name: 'Анна' },
      from: { id: chatId, is_bot: false, first_name: 'Анна', language_code: 'ru' },
      text: body,
      ...fields,
    },
  };
}

const inboundOf = (e: { entry?: unknown }) => (e.entry as Extract<LogEntry, { kind: 'inbound' }>)?.event;
const deliveryOf = (e: { entry?: unknown }) => (e.entry as Extract<LogEntry, { kind: 'delivery' }>).status;

beforeAll(async () => {
  nats = await startNats();
  api = new FakeBotApi(TOKEN);
  api2 = new FakeBotApi(TOKEN2, { id: 888000, username: 'omni_sales_bot', first_name: 'Продажи' });
  await Promise.all([api.start(), api2.start()]);
});
afterEach(async () => {
  await Promise.all(gateways.splice(0).map((g) => g.stop()));
});
afterAll(async () => {
  await Promise.all([api?.stop(), api2?.stop()]);
  await nats?.stop();
});

describe('telegram connector in operation', () => {
  it('reports auth_failed when getMe answers 401, and never logs the token', async () => {
    const gw = await gateway([connector('badtoken')], { TG_TOKEN: '123456:WRONG-token-abcdefghijk' });
    const state = await gw.waitForStreamMessage<ConnectorStateEvent>('OMNI_EVENTS', 'omni.events.connector.telegram.badtoken', (e) => e.state === 'auth_failed');
    expect(state.detail).toMatch(/getMe 401/);
    expect(gw.gateway.connectors.health().find((h) => h.account === 'badtoken')).toMatchObject({ state: 'auth_failed' });
    expect(gw.logs.join('')).not.toContain('WRONG-token');
  });

  it('lets only one replica poll a bot, and the other takes over when it stops', async () => {
    const first = await gateway([connector('shared')]);
    await first.waitForStreamMessage<ConnectorStateEvent>('OMNI_EVENTS', 'omni.events.connector.telegram.shared', (e) => e.state === 'connected' && !e.detail);
    const second = await gateway([connector('shared')]);
    expect(second.gateway.connectors.health()[0]!.detail).toMatch(/standby/);
    api.push(text(6001, 'первый'));
    await first.waitForEvent((e) => e.type === 'ticket.message' && inboundOf(e)?.conversation.id === '6001');
    await api.waitForPolls(3); // both replicas run for a few long-poll cycles
    expect(api.conflicts).toBe(0); // two pollers would have overlapped (Telegram: 409)

    await first.stop();
    gateways.splice(gateways.indexOf(first), 1);
    api.push(text(6002, 'после переключения'));
    const routed = await second.waitForEvent((e) => e.type === 'ticket.message' && inboundOf(e)?.conversation.id === '6002', 15_000);
    expect(inboundOf(routed)!.text).toBe('после переключения');
    expect(api.conflicts).toBe(0);
  });

  it('keeps forum topics apart and answers inside the topic', async () => {
    const gw = await gateway([connector('forum', { groups: 'all' })]);
    const forum = { id: -100200, type: 'supergroup', title: 'Поддержка ООО Ромашка', is_forum: true };
    const inTopic = (topic: number, body: string) => ({ message: {
      message_id: messageId++, date: Math.floor(Date.now() / 1000), chat: forum, from: { id: 31, first_name: 'Игорь' },
      message_thread_id: topic, is_topic_message: true, reply_to_message: { message_id: topic }, text: body,
    } });
    api.push(inTopic(11, 'касса не печатает чек'));
    api.push(inTopic(12, 'нужен акт сверки'));
    const a = await gw.waitForEvent((e) => e.type === 'ticket.message' && e.account === 'forum' && inboundOf(e)?.conversation.threadId === '11');
    const b = await gw.waitForEvent((e) => e.type === 'ticket.message' && e.account === 'forum' && inboundOf(e)?.conversation.threadId === '12');
    expect(a.ticketId).not.toBe(b.ticketId);
    expect(inboundOf(a)!.replyTo).toBeUndefined(); // the topic opener is not a reply
    await gw.request('omni.cmd.reply', { ticketId: b.ticketId, text: 'Акт отправим сегодня' });
    const sent = await api.waitForCall((c) => c.method === 'sendMessage' && c.params.chat_id === '-100200');
    expect(sent.params.message_thread_id).toBe(12);
  });

  it('sends HTML replies as text plus entities, and plain text when Telegram refuses the formatting', async () => {
    const gw = await gateway([connector('fmt')]);
    api.push(text(6003, 'как оплатить?'));
    const created = await gw.waitForEvent((e) => e.type === 'ticket.message' && inboundOf(e)?.conversation.id === '6003');
    api.failNext('sendMessage', { status: 400, body: { ok: false, error_code: 400, description: "Bad Request: can't parse entities: unsupported start tag" } });
    await gw.request('omni.cmd.reply', {
      ticketId: created.ticketId,
      text: 'Оплата: «по счёту» < 5 дней & без комиссии',
      html: '<p>Оплата: <b>&laquo;по счёту&raquo;</b> &lt; 5 дней &amp; без&nbsp;комиссии</p>',
    });
    const delivered = await gw.waitForEvent((e) => e.type === 'ticket.delivery' && e.ticketId === created.ticketId);
    expect(deliveryOf(delivered).status).toBe('sent');
    const [formatted, plain] = api.calls.filter((c) => c.method === 'sendMessage' && c.params.chat_id === '6003');
    expect(formatted!.params).toMatchObject({ text: 'Оплата: «по счёту» < 5 дней & без\u00a0комиссии', entities: [{ type: 'bold', offset: 8, length: 10 }] });
    expect(formatted!.params.parse_mode).toBeUndefined();
    expect(plain!.params.text).toBe(formatted!.params.text);
    expect(plain!.params.entities).toBeUndefined();
  });

  it('runs two bots in one gateway, each answering through its own token', async () => {
    const gw = await gateway(
      [connector('support'), { ...connector('sales'), token: '${TG_TOKEN2}', apiRoot: api2.apiRoot }],
      { TG_TOKEN: TOKEN, TG_TOKEN2: TOKEN2 },
    );
    api.push(text(6004, 'в поддержку'));
    api2.push(text(6004, 'в продажи')); // same user, other bot: another conversation
    const support = await gw.waitForEvent((e) => e.type === 'ticket.created' && e.account === 'support');
    const sales = await gw.waitForEvent((e) => e.type === 'ticket.created' && e.account === 'sales');
    expect(support.ticketId).not.toBe(sales.ticketId);
    await gw.request('omni.cmd.reply', { ticketId: sales.ticketId, text: 'Пришлём прайс' });
    const sent = await api2.waitForCall((c) => c.method === 'sendMessage' && c.params.chat_id === '6004');
    expect(sent.params.text).toBe('Пришлём прайс');
    expect(api.calls.some((c) => c.method === 'sendMessage' && c.params.text === 'Пришлём прайс')).toBe(false);
  });

  it('retries a flaky getFile, and records a file Telegram refuses with the reason', async () => {
    const gw = await gateway([connector('files')]);
    const voice = Buffer.from('OggS-голосовое-сообщение');
    api.addFile('voice-1', voice);
    api.failNext('getFile', { status: 502, body: { ok: false, error_code: 502, description: 'Bad Gateway' } });
    api.push(text(6005, '', { text: undefined, voice: { file_id: 'voice-1', mime_type: 'audio/ogg', duration: 3 } }));
    const created = await gw.waitForEvent((e) => e.type === 'ticket.message' && inboundOf(e)?.conversation.id === '6005');
    expect(inboundOf(created)!.attachments[0]).toMatchObject({ status: 'stored', kind: 'voice', sha256: createHash('sha256').update(voice).digest('hex') });

    api.failNext('getFile', { status: 400, body: { ok: false, error_code: 400, description: 'Bad Request: file is too big' } });
    api.push(text(6006, '', { text: undefined, caption: 'видео с ошибкой', video: { file_id: 'video-1', mime_type: 'video/mp4' } }));
    const big = await gw.waitForEvent((e) => e.type === 'ticket.message' && inboundOf(e)?.conversation.id === '6006');
    expect(inboundOf(big)!.text).toBe('видео с ошибкой');
    expect(inboundOf(big)!.attachments[0]).toMatchObject({ status: 'failed', kind: 'video' });
    expect(inboundOf(big)!.attachments[0]!.error).toMatch(/file is too big/);
  });
});
