/**
 * Telegram in operation: health states, the polling lease across replicas, forum topics,
 * formatting, several bots in one gateway, flaky file downloads, files from a --local Bot API
 * server, webhook registration and offset checkpoints across a token change. telegraf's real
 * client against stand-in Bot API servers on 127.0.0.1 and a real nats-server.
 */
import { createHash, randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { Kvm } from '@nats-io/kv';
import { Objm } from '@nats-io/obj';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { startGateway, type TestGateway } from '../../helpers/gateway.js';
import { startNats, type TestNats } from '../../helpers/nats-server.js';
import { until } from '../../api/support.js';
import { FakeBotApi } from './bot-api.js';
import type { ConnectorStateEvent, LogEntry } from '../../../src/core/schema.js';

const TOKEN = '123456:OPS-token-abcdefghijklmnop';
const TOKEN2 = '654321:OPS-second-token-qrstuvwxyz';
let nats: TestNats;
let nc: NatsConnection;
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
const states = (account: string) => `omni.events.connector.telegram.${account}`;
const deliveryOf = (e: { entry?: unknown }) => (e.entry as Extract<LogEntry, { kind: 'delivery' }>).status;

beforeAll(async () => {
  nats = await startNats();
  nc = await connect({ servers: nats.url });
  api = new FakeBotApi(TOKEN);
  api2 = new FakeBotApi(TOKEN2, { id: 888000, username: 'omni_sales_bot', first_name: 'Продажи' });
  await Promise.all([api.start(), api2.start()]);
});
afterEach(async () => {
  await Promise.all(gateways.splice(0).map((g) => g.stop()));
});
afterAll(async () => {
  await Promise.all([api?.stop(), api2?.stop()]);
  await nc?.close();
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
    // Standing by, saying whose lease it is and until when (not `connected` while nothing polls).
    await until(() => second.gateway.connectors.health()[0]!.state === 'standby', 'standby');
    expect(second.gateway.connectors.health()[0]!.detail).toMatch(/held by .* until/);
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

  it('reads files straight from disk when a --local Bot API server answers getFile with a path, past 20 MB', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'tg-local-'));
    mkdirSync(join(dir, TOKEN, 'documents'), { recursive: true });
    try {
      const big = randomBytes(21 * 1024 * 1024);
      const bigPath = join(dir, TOKEN, 'documents', 'file_1.zip');
      writeFileSync(bigPath, big);
      api.addLocalFile('local-big', bigPath, big.length);
      // Not announced anywhere: only the count while streaming can stop it.
      const overPath = join(dir, TOKEN, 'documents', 'file_2.bin');
      writeFileSync(overPath, Buffer.alloc(23 * 1024 * 1024, 1));
      api.addLocalFile('local-over', overPath);
      const gw = await gateway([connector('local', { maxFileBytes: 22 * 1024 * 1024 })]);
      api.push(text(6020, '', { text: undefined, document: { file_id: 'local-big', file_name: 'логи.zip', mime_type: 'application/zip', file_size: big.length } }));
      const created = await gw.waitForEvent((e) => e.type === 'ticket.message' && inboundOf(e)?.conversation.id === '6020', 30_000);
      expect(inboundOf(created)!.attachments[0]).toMatchObject({ status: 'stored', size: big.length, sha256: createHash('sha256').update(big).digest('hex') });
      const stored = await (await new Objm(nc).open('omni_media')).getBlob(inboundOf(created)!.attachments[0]!.objectKey!);
      expect(Buffer.compare(Buffer.from(stored!), big)).toBe(0);

      api.push(text(6021, '', { text: undefined, document: { file_id: 'local-over', file_name: 'дамп.bin', mime_type: 'application/octet-stream' } }));
      const over = await gw.waitForEvent((e) => e.type === 'ticket.message' && inboundOf(e)?.conversation.id === '6021', 30_000);
      expect(inboundOf(over)!.attachments[0]).toMatchObject({ status: 'failed', name: 'дамп.bin' });
      expect(inboundOf(over)!.attachments[0]!.error).toMatch(/file is over 23068672 bytes/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('retries setWebhook after a 5xx at start, then reports connected', async () => {
    const url = 'https://gateway.example.test/connectors/telegram/hook/webhook';
    api.failNext('setWebhook', { status: 502, body: { ok: false, error_code: 502, description: 'Bad Gateway' } });
    const gw = await gateway([connector('hook', { mode: 'webhook', webhook: { secretToken: 'webhook-secret-0123456789', url } })]);
    const down = await gw.waitForStreamMessage<ConnectorStateEvent>('OMNI_EVENTS', states('hook'), (e) => e.state === 'disconnected');
    expect(down.detail).toMatch(/setWebhook failed/);
    await gw.waitForStreamMessage<ConnectorStateEvent>('OMNI_EVENTS', states('hook'), (e) => e.state === 'connected' && Date.parse(e.at) >= Date.parse(down.at));
    const calls = api.calls.filter((c) => c.method === 'setWebhook' && c.params.url === url);
    expect(calls).toHaveLength(2);
    expect(calls[1]!.params).toMatchObject({ secret_token: 'webhook-secret-0123456789', allowed_updates: ['message', 'edited_message', 'my_chat_member'] });
  });

  it('stops retrying setWebhook when Telegram refuses the URL, with its reason in health', async () => {
    const url = 'https://gateway.example.test/connectors/telegram/badhook/webhook';
    api.failNext('setWebhook', { status: 400, body: { ok: false, error_code: 400, description: 'Bad Request: bad webhook: Failed to resolve host: Name or service not known' } });
    const gw = await gateway([connector('badhook', { mode: 'webhook', webhook: { secretToken: 'webhook-secret-0123456789', url } })]);
    const stalled = await gw.waitForStreamMessage<ConnectorStateEvent>('OMNI_EVENTS', states('badhook'), (e) => e.state === 'stalled');
    expect(stalled.detail).toMatch(/refused the webhook.*bad webhook: Failed to resolve host/);
    await new Promise((r) => setTimeout(r, 1500)); // longer than the first retry would wait
    expect(api.calls.filter((c) => c.method === 'setWebhook' && c.params.url === url)).toHaveLength(1);
    expect(gw.gateway.connectors.health().find((h) => h.account === 'badhook')).toMatchObject({ state: 'stalled' });
  });

  it('waits at most an hour on a huge retry_after from getUpdates, saying Telegram asked for longer, instead of retrying at once', async () => {
    const warnings: string[] = [];
    const onWarning = (w: Error) => warnings.push(w.name);
    process.on('warning', onWarning);
    const huge = { status: 429, body: { ok: false, error_code: 429, description: 'Too Many Requests: retry after 3000000', parameters: { retry_after: 3_000_000 } } };
    try {
      api.failNext('getUpdates', ...Array.from({ length: 50 }, () => huge));
      const from = api.polls.length;
      const gw = await gateway([connector('patient')]);
      const limited = await gw.waitForStreamMessage<ConnectorStateEvent>('OMNI_EVENTS', states('patient'), (e) => e.state === 'rate_limited', 15_000);
      expect(limited.detail).toMatch(/getUpdates/);
      await new Promise((r) => setTimeout(r, 2000));
      expect(api.polls.length - from).toBe(1); // Node's timers overflow past ~24.8 days and fire at once
      expect(warnings).not.toContain('TimeoutOverflowWarning');
      expect(gw.logs.join('')).toMatch(/getUpdates: Telegram asked to wait 3000000 s \(retry_after\), longer than .*; waiting 3600 s/);
    } finally {
      process.off('warning', onWarning);
      api.clearScripted('getUpdates');
    }
  });

  it('backs off as usual on a negative or unreadable retry_after from getUpdates', async () => {
    const tooMany = (retryAfter: unknown) => ({ status: 429, body: { ok: false, error_code: 429, description: 'Too Many Requests', parameters: { retry_after: retryAfter } } });
    try {
      api.failNext('getUpdates', tooMany(-5), tooMany('soon'));
      const from = api.polls.length;
      await gateway([connector('hasty')]);
      await until(() => api.polls.length - from >= 3, 'three polls', 15_000);
      const [a, b, c] = api.polls.slice(from) as [number, number, number];
      expect(b - a).toBeGreaterThanOrEqual(900); // the first backoff (1 s), not at once
      expect(c - b).toBeGreaterThanOrEqual(1800); // the second (2 s)
    } finally {
      api.clearScripted('getUpdates');
    }
  });

  it('holds a reply on a huge retry_after from sendMessage (an hour at most) instead of calling again at once', async () => {
    const warnings: string[] = [];
    const onWarning = (w: Error) => warnings.push(w.name);
    process.on('warning', onWarning);
    const huge = { status: 429, body: { ok: false, error_code: 429, description: 'Too Many Requests: retry after 3000000', parameters: { retry_after: 3_000_000 } } };
    try {
      const gw = await gateway([connector('sendwait')]);
      api.push(text(7301, 'Счёт не пришёл'));
      const created = await gw.waitForEvent((e) => e.type === 'ticket.message' && e.account === 'sendwait' && inboundOf(e)?.conversation.id === '7301');
      api.failNext('sendMessage', ...Array.from({ length: 20 }, () => huge));
      await gw.request('omni.cmd.reply', { ticketId: created.ticketId, text: 'Проверяем' });
      const toChat = () => api.calls.filter((c) => c.method === 'sendMessage' && String(c.params.chat_id) === '7301');
      await until(() => toChat().length > 0, 'the first sendMessage', 15_000);
      await new Promise((r) => setTimeout(r, 2000));
      expect(toChat()).toHaveLength(1);
      await expect(gw.waitForEvent((e) => e.type === 'ticket.delivery' && e.ticketId === created.ticketId, 500)).rejects.toThrow(/no matching ticket event/);
      expect(warnings).not.toContain('TimeoutOverflowWarning');
      expect(gw.logs.join('')).toMatch(/sendMessage: Telegram asked to wait 3000000 s \(retry_after\), longer than/);
    } finally {
      process.off('warning', onWarning);
      api.clearScripted('sendMessage');
    }
  });

  it('starts afresh when the account switches to another bot, whose update ids are lower', async () => {
    const kv = await new Kvm(nc).open('omni_state');
    api.nextUpdateId = Math.max(api.nextUpdateId, 90_000);
    const first = await gateway([connector('switch')]);
    const oldId = api.push(text(6030, 'старому боту'));
    await first.waitForEvent((e) => e.type === 'ticket.message' && inboundOf(e)?.conversation.id === '6030');
    await api.waitForPolls(1); // the next poll goes out only after the checkpoint was written
    expect(JSON.parse((await kv.get('telegram.switch.offset'))!.string())).toEqual({ botId: 777000, offset: oldId + 1 });
    await first.stop();
    gateways.splice(gateways.indexOf(first), 1);

    const from = api2.offsets.length;
    const second = await gateway([{ ...connector('switch'), token: '${TG_TOKEN2}', apiRoot: api2.apiRoot }], { TG_TOKEN2: TOKEN2 });
    const newId = api2.push(text(6031, 'новому боту'));
    expect(newId).toBeLessThan(oldId);
    await second.waitForEvent((e) => e.type === 'ticket.message' && e.account === 'switch' && inboundOf(e)?.conversation.id === '6031');
    expect(api2.offsets[from]).toBe(0);
    expect(second.logs.join('')).toMatch(/offset checkpoint is for another bot/);
    await api2.waitForPolls(1);
    expect(JSON.parse((await kv.get('telegram.switch.offset'))!.string())).toEqual({ botId: 888000, offset: newId + 1 });
  });

  it('takes an offset checkpoint in the old bare-number format as the current bot\'s', async () => {
    const kv = await new Kvm(nc).open('omni_state');
    const confirmed = api.push(text(6040, 'подтверждено до обновления'));
    await kv.put('telegram.legacy.offset', String(confirmed + 1));
    const from = api.offsets.length;
    const gw = await gateway([connector('legacy')]);
    const next = api.push(text(6041, 'после обновления'));
    await gw.waitForEvent((e) => e.type === 'ticket.message' && e.account === 'legacy' && inboundOf(e)?.conversation.id === '6041');
    expect(api.offsets[from]).toBe(confirmed + 1);
    expect((await gw.gateway.router!.store.list()).filter((t) => t.account === 'legacy' && t.conversation.id === '6040')).toHaveLength(0);
    await api.waitForPolls(1);
    expect(JSON.parse((await kv.get('telegram.legacy.offset'))!.string())).toEqual({ botId: 777000, offset: next + 1 });
  });
});
