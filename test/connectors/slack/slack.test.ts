/**
 * Slack end to end: Bolt's Web API client and Socket Mode client against the stand-in on
 * 127.0.0.1, signed Events API posts to the gateway, a real nats-server and the router.
 */
import { createHash, createHmac } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startGateway, type TestGateway } from '../../helpers/gateway.js';
import { FakeSlack } from './slack-api.js';
import type { LogEntry } from '../../../src/core/schema.js';

const BOT = 'xoxb-1-test-bot-token';
const APP = 'xapp-1-test-app-token';
const SIGNING = 'slack-signing-secret-0123456789';
let slack: FakeSlack;
let gw: TestGateway;
let seq = 100;

const inboundOf = (e: { entry?: unknown }) => (e.entry as Extract<LogEntry, { kind: 'inbound' }>)?.event;
const ts = () => `1764000${String(seq++).padStart(3, '0')}.000100`;

function envelope(event: Record<string, unknown>, eventId = `Ev${seq++}`) {
  return { type: 'event_callback', team_id: 'T1', api_app_id: 'A1', event_id: eventId, event_time: 1764000000, event };
}

async function postEvent(body: unknown, opts: { secret?: string; retry?: number } = {}) {
  const raw = JSON.stringify(body);
  const t = Math.floor(Date.now() / 1000);
  const sig = `v0=${createHmac('sha256', opts.secret ?? SIGNING).update(`v0:${t}:${raw}`).digest('hex')}`;
  return fetch(`${gw.httpUrl}/connectors/slack/ws_events/events`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', 'x-slack-signature': sig, 'x-slack-request-timestamp': String(t), ...(opts.retry ? { 'x-slack-retry-num': String(opts.retry), 'x-slack-retry-reason': 'http_timeout' } : {}) },
    body: raw,
  });
}

/** Posts exact bytes, signed over those bytes (or over `signedBytes`) with a chosen timestamp. */
async function postSigned(raw: Buffer, opts: { at?: number; signedBytes?: Buffer } = {}) {
  const t = opts.at ?? Math.floor(Date.now() / 1000);
  const sig = `v0=${createHmac('sha256', SIGNING).update(`v0:${t}:`).update(opts.signedBytes ?? raw).digest('hex')}`;
  return fetch(`${gw.httpUrl}/connectors/slack/ws_events/events`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', 'x-slack-signature': sig, 'x-slack-request-timestamp': String(t) },
    body: raw,
  });
}

beforeAll(async () => {
  slack = new FakeSlack(BOT);
  await slack.start();
  gw = await startGateway(
    {
      outbound: { backoffBase: '100ms' },
      connectors: [
        { type: 'slack', account: 'ws_events', mode: 'events', botToken: '${BOT}', signingSecret: '${SIGNING}', apiUrl: slack.apiUrl, perChannelIntervalMs: 0 },
        { type: 'slack', account: 'ws_socket', mode: 'socket', botToken: '${BOT}', appToken: '${APP}', apiUrl: slack.apiUrl, channels: ['CSUPPORT'], perChannelIntervalMs: 0 },
      ],
    },
    { env: { BOT, APP, SIGNING } },
  );
  for (let i = 0; i < 100 && slack.connections === 0; i++) await new Promise((r) => setTimeout(r, 50));
});
afterAll(async () => {
  await gw?.stop();
  await slack?.stop();
});

describe('slack connector', () => {
  it('a DM becomes a ticket and the reply reaches chat.postMessage in the same DM, escaped', async () => {
    const res = await postEvent(envelope({ type: 'message', channel: 'D100', channel_type: 'im', user: 'U1', text: 'Не работает выгрузка', ts: ts() }));
    expect(res.status).toBe(200);
    const created = await gw.waitForEvent((e) => e.type === 'ticket.message' && inboundOf(e)?.conversation.id === 'D100');
    expect(inboundOf(created)!.conversation).toEqual({ id: 'D100', kind: 'private' });
    expect(inboundOf(created)!.sender).toMatchObject({ id: 'U1', displayName: 'Иван', handles: { email: 'ivan@client.ru', slack: 'U1' } });
    await gw.request('omni.cmd.reply', { ticketId: created.ticketId, text: 'Проверьте <настройки> & повторите' });
    const post = await slack.waitForCall((c) => c.method === 'chat.postMessage' && c.params.channel === 'D100');
    expect(post.params.text).toBe('Проверьте &lt;настройки&gt; &amp; повторите');
    expect(post.params.thread_ts).toBeUndefined();
  });

  it('a bad signature gets 401 and creates nothing; a retried event creates nothing new', async () => {
    // Its own channel and event id: were it taken in spite of the signature, it would show.
    const forged = envelope({ type: 'message', channel: 'D201', channel_type: 'im', user: 'U2', text: 'подделка', ts: ts() }, 'EvForged1');
    expect((await postEvent(forged, { secret: 'wrong-secret-0123456789' })).status).toBe(401);
    const body = envelope({ type: 'message', channel: 'D200', channel_type: 'im', user: 'U2', text: 'первое', ts: ts() }, 'EvRetry1');
    expect((await postEvent(body)).status).toBe(200);
    expect((await postEvent(body, { retry: 1 })).status).toBe(200);
    const routed = await gw.waitForEvent((e) => e.type === 'ticket.message' && inboundOf(e)?.conversation.id === 'D200');
    await postEvent(envelope({ type: 'message', channel: 'D200', channel_type: 'im', user: 'U2', text: 'второе', ts: ts() }));
    await gw.waitForEvent((e) => e.type === 'ticket.message' && inboundOf(e)?.text === 'второе');
    const log = await gw.gateway.router!.store.readLog(routed.ticketId);
    expect(log.filter((l) => l.entry.kind === 'inbound').map((l) => (l.entry as any).event.text)).toEqual(['первое', 'второе']);
    // The events posted after the forged one went all the way through; it left no trace anywhere.
    await gw.waitForStreamMessage('OMNI_IN', 'omni.in.slack.ws_events.>', (m) => m.conversation?.id === 'D200');
    await expect(gw.waitForStreamMessage('OMNI_IN', 'omni.in.slack.ws_events.>', (m) => m.conversation?.id === 'D201', 1500)).rejects.toThrow();
    expect((await gw.gateway.router!.store.list()).some((t) => JSON.stringify(t).includes('D201'))).toBe(false);
  });

  it('a request dated more than 5 minutes ahead or behind gets 401; within 5 minutes either way it is taken', async () => {
    const now = Math.floor(Date.now() / 1000);
    const body = (ch: string) => Buffer.from(JSON.stringify(envelope({ type: 'message', channel: ch, channel_type: 'im', user: 'U2', text: 'время', ts: ts() })));
    const future = await postSigned(body('D231'), { at: now + 6 * 60 });
    expect(future.status).toBe(401);
    expect(((await future.json()) as { message: string }).message).toMatch(/5 minutes/);
    expect((await postSigned(body('D232'), { at: now - 6 * 60 })).status).toBe(401);
    expect((await postSigned(body('D233'), { at: now + 4 * 60 })).status).toBe(200);
    expect((await postSigned(body('D234'), { at: now - 4 * 60 })).status).toBe(200);
    await gw.waitForEvent((e) => e.type === 'ticket.message' && inboundOf(e)?.conversation.id === 'D234');
    await gw.waitForEvent((e) => e.type === 'ticket.message' && inboundOf(e)?.conversation.id === 'D233');
    expect((await gw.gateway.router!.store.list()).some((t) => /D23[12]/.test(JSON.stringify(t)))).toBe(false);
  });

  it('the signature covers the raw bytes: a body with a byte that is not UTF-8 verifies as sent, not as decoded', async () => {
    // 0xFF inside the JSON string: decoding as UTF-8 turns it into U+FFFD (3 bytes), so a check over
    // the decoded text would refuse Slack's genuine signature and accept one over the altered text.
    const json = JSON.stringify(envelope({ type: 'message', channel: 'D240', channel_type: 'im', user: 'U2', text: 'байт X', ts: ts() }));
    const raw = Buffer.from(json, 'utf8');
    const at = raw.indexOf(Buffer.from('X'));
    const bytes = Buffer.concat([raw.subarray(0, at), Buffer.from([0xff]), raw.subarray(at + 1)]);
    const decoded = Buffer.from(bytes.toString('utf8'), 'utf8');
    expect(decoded.equals(bytes)).toBe(false);
    expect((await postSigned(bytes, { signedBytes: decoded })).status).toBe(401);
    expect((await postSigned(bytes)).status).toBe(200);
    const created = await gw.waitForEvent((e) => e.type === 'ticket.message' && inboundOf(e)?.conversation.id === 'D240');
    expect(inboundOf(created)!.text).toBe('байт \uFFFD');
  });

  it('Slack markup and entities arrive as plain text (Cyrillic intact); the reply escapes them again', async () => {
    const raw = 'a &lt; b &amp; c &gt; d: <@UBOT>, <@U4242> и <#C777|общий>; см. <https://example.com/docs?a=1&amp;b=2|инструкцию> или <mailto:help@example.com|help@example.com> <!here>';
    await postEvent(envelope({ type: 'message', channel: 'D210', channel_type: 'im', user: 'U21', text: raw, ts: ts() }));
    const created = await gw.waitForEvent((e) => e.type === 'ticket.message' && inboundOf(e)?.conversation.id === 'D210');
    expect(inboundOf(created)!.format).toBe('plain');
    expect(inboundOf(created)!.text).toBe('a < b & c > d: @omnigate, @U4242 и #общий; см. инструкцию (https://example.com/docs?a=1&b=2) или help@example.com @here');
    await gw.request('omni.cmd.reply', { ticketId: created.ticketId, text: 'a < b & c > d' });
    const post = await slack.waitForCall((c) => c.method === 'chat.postMessage' && c.params.channel === 'D210');
    expect(post.params.text).toBe('a &lt; b &amp; c &gt; d');
  });

  it('a channel thread is one ticket over Socket Mode and replies carry its thread_ts', async () => {
    const top = ts();
    slack.pushSocketEvent(envelope({ type: 'message', channel: 'CSUPPORT', channel_type: 'channel', user: 'U3', text: 'Упал импорт', ts: top }));
    const first = await gw.waitForEvent((e) => e.type === 'ticket.message' && inboundOf(e)?.conversation.threadId === top);
    slack.pushSocketEvent(envelope({ type: 'message', channel: 'CSUPPORT', channel_type: 'channel', user: 'U3', text: 'лог во вложении', ts: ts(), thread_ts: top }));
    const second = await gw.waitForEvent((e) => e.type === 'ticket.message' && inboundOf(e)?.text === 'лог во вложении');
    expect(second.ticketId).toBe(first.ticketId);
    await gw.request('omni.cmd.reply', { ticketId: first.ticketId, text: 'Смотрим' });
    const post = await slack.waitForCall((c) => c.method === 'chat.postMessage' && c.params.channel === 'CSUPPORT');
    expect(post.params.thread_ts).toBe(top);
  });

  it('ignores our own posts and other bots (loop guard) and chatter without a mention; a mention starts a thread that continues without one', async () => {
    slack.pushSocketEvent(envelope({ type: 'message', channel: 'CRANDOM', channel_type: 'channel', user: 'U9', text: 'обед?', ts: ts() }));
    slack.pushSocketEvent(envelope({ type: 'message', channel: 'CSUPPORT', channel_type: 'channel', user: 'UBOT', text: 'наш ответ', ts: ts() }));
    slack.pushSocketEvent(envelope({ type: 'message', subtype: 'bot_message', channel: 'CSUPPORT', bot_id: 'B9', text: 'бот', ts: ts() }));
    const mention = ts();
    slack.pushSocketEvent(envelope({ type: 'message', channel: 'CRANDOM', channel_type: 'channel', user: 'U9', text: '<@UBOT> помогите', ts: mention }));
    const started = await gw.waitForEvent((e) => e.type === 'ticket.message' && inboundOf(e)?.conversation.threadId === mention);
    // Its thread continues the conversation without another mention.
    slack.pushSocketEvent(envelope({ type: 'message', channel: 'CRANDOM', channel_type: 'channel', user: 'U9', text: 'подробности в треде', ts: ts(), thread_ts: mention }));
    const continued = await gw.waitForEvent((e) => e.type === 'ticket.message' && inboundOf(e)?.text === 'подробности в треде');
    expect(continued.ticketId).toBe(started.ticketId);
    const tickets = await gw.gateway.router!.store.list();
    const texts = await Promise.all(tickets.map(async (t) => (await gw.gateway.router!.store.readLog(t.id)).map((l) => (l.entry as any).event?.text)));
    expect(texts.flat()).not.toContain('обед?');
    expect(texts.flat()).not.toContain('наш ответ');
    expect(texts.flat()).not.toContain('бот');
  });

  it('a mention inside someone else\'s thread makes that thread the conversation; later replies there follow without one', async () => {
    const theirs = ts();
    slack.pushSocketEvent(envelope({ type: 'message', channel: 'CRANDOM', channel_type: 'channel', user: 'U10', text: 'у кого-нибудь работает экспорт?', ts: theirs }));
    slack.pushSocketEvent(envelope({ type: 'message', channel: 'CRANDOM', channel_type: 'channel', user: 'U11', text: '<@UBOT> и у нас не работает', ts: ts(), thread_ts: theirs }));
    const opened = await gw.waitForEvent((e) => e.type === 'ticket.message' && inboundOf(e)?.conversation.threadId === theirs);
    slack.pushSocketEvent(envelope({ type: 'message', channel: 'CRANDOM', channel_type: 'channel', user: 'U11', text: 'ошибка 500 с утра', ts: ts(), thread_ts: theirs }));
    const continued = await gw.waitForEvent((e) => e.type === 'ticket.message' && inboundOf(e)?.text === 'ошибка 500 с утра');
    expect(continued.ticketId).toBe(opened.ticketId);
    const log = await gw.gateway.router!.store.readLog(opened.ticketId);
    expect(log.filter((l) => l.entry.kind === 'inbound').map((l) => (l.entry as any).event.text)).toEqual(['@omnigate и у нас не работает', 'ошибка 500 с утра']);
  });

  it('a file round-trips through the object store with the same bytes', async () => {
    const bytes = Buffer.from('PNG…'.repeat(5000));
    slack.files.set('F77', bytes);
    slack.pushSocketEvent(envelope({
      type: 'message', subtype: 'file_share', channel: 'CSUPPORT', channel_type: 'channel', user: 'U4', text: 'скрин', ts: ts(),
      files: [{ id: 'F77', name: 'screen.png', mimetype: 'image/png', size: bytes.length, url_private_download: `http://127.0.0.1:${slack.port}/files/F77` }],
    }));
    const created = await gw.waitForEvent((e) => e.type === 'ticket.message' && inboundOf(e)?.text === 'скрин');
    const att = inboundOf(created)!.attachments[0]!;
    expect(att.sha256).toBe(createHash('sha256').update(bytes).digest('hex'));
    await gw.request('omni.cmd.reply', { ticketId: created.ticketId, text: 'Вернули файл', attachments: [att] });
    await slack.waitForCall((c) => c.method === 'files.completeUploadExternal');
    const uploaded = [...slack.uploads.values()].find((u) => u.length === bytes.length);
    expect(uploaded && Buffer.compare(uploaded, bytes)).toBe(0);
  });

  it('waits out a 429 Retry-After (state rate_limited), and fails channel_not_found for good', async () => {
    const res = await postEvent(envelope({ type: 'message', channel: 'D300', channel_type: 'im', user: 'U5', text: 'срочно', ts: ts() }));
    expect(res.status).toBe(200);
    const created = await gw.waitForEvent((e) => e.type === 'ticket.message' && inboundOf(e)?.conversation.id === 'D300');
    slack.failNext('chat.postMessage', { status: 429, headers: { 'retry-after': '1' }, body: { ok: false, error: 'ratelimited' } });
    await gw.request('omni.cmd.reply', { ticketId: created.ticketId, text: 'после паузы' });
    const sent = await gw.waitForEvent((e) => e.type === 'ticket.delivery' && e.ticketId === created.ticketId);
    expect((sent.entry as Extract<LogEntry, { kind: 'delivery' }>).status).toMatchObject({ status: 'sent', attempts: 2 });
    const tries = slack.calls.filter((c) => c.method === 'chat.postMessage' && c.params.channel === 'D300');
    expect(tries[1]!.at - tries[0]!.at).toBeGreaterThanOrEqual(500); // 1 s; stand-in stamps can be late under load
    const limited = await gw.waitForStreamMessage<{ state: string; detail?: string }>('OMNI_EVENTS', 'omni.events.connector.slack.ws_events', (m) => m.state === 'rate_limited');
    expect(limited.detail).toMatch(/1s/);

    slack.failNext('chat.postMessage', { status: 200, body: { ok: false, error: 'channel_not_found' } });
    await gw.request('omni.cmd.reply', { ticketId: created.ticketId, text: 'в никуда' });
    const failed = await gw.waitForEvent((e) => e.type === 'ticket.delivery' && e.ticketId === created.ticketId && (e.entry as any).status.status === 'failed');
    expect((failed.entry as Extract<LogEntry, { kind: 'delivery' }>).status.reason).toMatch(/^channel_not_found/);

    // Longer than Slack keeps (it would drop the rest silently): failed at once, never posted.
    const before = slack.calls.filter((c) => c.method === 'chat.postMessage').length;
    const outboundId = (await gw.request('omni.cmd.reply', { ticketId: created.ticketId, text: 'я'.repeat(40_001) })).result.outboundId as string;
    const tooLong = await gw.waitForEvent((e) => e.type === 'ticket.delivery' && (e.entry as any).status.outboundId === outboundId);
    expect((tooLong.entry as Extract<LogEntry, { kind: 'delivery' }>).status).toMatchObject({ status: 'failed', reason: expect.stringMatching(/^text_too_long: text is 40001 characters/) });
    expect(slack.calls.filter((c) => c.method === 'chat.postMessage').length).toBe(before);
  });

  it('a Socket Mode disconnect frame reconnects without losing the event in flight', async () => {
    const bytes = Buffer.from('журнал ошибок\n'.repeat(100));
    slack.files.set('F88', bytes);
    let release!: () => void;
    slack.downloadGate = new Promise((r) => (release = r));
    const arrived = slack.nextDownload();
    const before = slack.connections;
    const top = ts();
    const envelopeId = slack.pushSocketEvent(envelope({ type: 'message', subtype: 'file_share', channel: 'CSUPPORT', channel_type: 'channel', user: 'U6', text: 'во время переподключения', ts: top,
      files: [{ id: 'F88', name: 'errors.log', mimetype: 'text/plain', size: bytes.length, url_private_download: `http://127.0.0.1:${slack.port}/files/F88` }] }));
    await arrived; // held on its download, unacknowledged
    slack.disconnect();
    for (let i = 0; i < 150 && slack.connections === before; i++) await new Promise((r) => setTimeout(r, 100));
    expect(slack.connections).toBeGreaterThan(before);
    expect(slack.acked.has(envelopeId)).toBe(false);
    release();
    slack.downloadGate = undefined;
    const routed = await gw.waitForEvent((e) => e.type === 'ticket.message' && inboundOf(e)?.conversation.threadId === top);
    for (let i = 0; i < 100 && !slack.acked.has(envelopeId); i++) await new Promise((r) => setTimeout(r, 100));
    expect(slack.acked.has(envelopeId)).toBe(true);
    expect(slack.downloads.get('F88')).toBe(1);
    const log = await gw.gateway.router!.store.readLog(routed.ticketId);
    expect(log.filter((l) => l.entry.kind === 'inbound')).toHaveLength(1);
  });
});
