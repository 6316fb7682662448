/**
 * WhatsApp Cloud API end to end over HTTP: signed webhooks into the real gateway (nats-server,
 * router, outbound runner), replies out to a stand-in Graph API on 127.0.0.1.
 */
import { createHash } from 'node:crypto';
import { DiscardPolicy, jetstream, jetstreamManager } from '@nats-io/jetstream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startGateway, type TestGateway } from '../../helpers/gateway.js';
import { startNats, type TestNats } from '../../helpers/nats-server.js';
import type { DeadLetter, DeliveryStatus, InboundMessage, LogEntry, TicketEvent } from '../../../src/core/schema.js';
import { hashKey } from '../../../src/core/subjects.js';
import { FakeGraphApi, newWamid, signWebhook, webhookBody } from './graph-api.js';
import { metrics } from '../../../src/core/metrics.js';

const PHONE_ID = '106540352242922';
const ACCESS_TOKEN = 'EAAG-test-access-token-0123456789';
const APP_SECRET = 'app-secret-0123456789abcdef';
const VERIFY = 'verify-me-please';

let nats: TestNats;
let graph: FakeGraphApi;
let gw: TestGateway;
let webhookUrl: string;

const inboundOf = (e: TicketEvent) => (e.entry as Extract<LogEntry, { kind: 'inbound' }> | undefined)?.event as InboundMessage | undefined;
const deliveryOf = (e: TicketEvent) => (e.entry as Extract<LogEntry, { kind: 'delivery' }> | undefined)?.status;
const messageEvent = (wamid: string) => gw.waitForEvent((e) => e.type === 'ticket.message' && inboundOf(e)?.platform.messageId === wamid);

function textMessage(from: string, text: string, o: { id?: string; ageS?: number; context?: string } = {}) {
  return {
    from, id: o.id ?? newWamid(), timestamp: String(Math.floor(Date.now() / 1000) - (o.ageS ?? 0)), type: 'text', text: { body: text },
    ...(o.context ? { context: { from, id: o.context } } : {}),
  };
}

async function post(body: string, signature: string | null = signWebhook(APP_SECRET, body)): Promise<Response> {
  return fetch(webhookUrl, { method: 'POST', headers: { 'content-type': 'application/json', ...(signature ? { 'x-hub-signature-256': signature } : {}) }, body });
}

const recordKey = (wamid: string) => `whatsapp.shop.wac-out-${Buffer.from(wamid).toString('base64url')}`;
const stored = async (key: string) => {
  const e = await gw.gateway.bus.kv.state.get(key);
  return e && e.operation === 'PUT' ? e.string() : null;
};
const API_TOKEN = 'helpdesk-api-token-0123456789abcdef';
const statusOf = (wamid: string, status: string, extra: Record<string, unknown> = {}) =>
  ({ id: wamid, status, timestamp: String(Math.floor(Date.now() / 1000)), recipient_id: '79160000000', ...extra });

/** Every delivery status stored for `outboundId` (the runner's and the webhooks'), from the stream. */
async function statusesOf(outboundId: string): Promise<DeliveryStatus[]> {
  const c = await jetstream(gw.nc).consumers.get('OMNI_STATUS', { filter_subjects: 'omni.status.whatsapp.shop' });
  const out: DeliveryStatus[] = [];
  for await (const m of await c.fetch({ max_messages: 10_000, expires: 1000 })) {
    const s = m.json<DeliveryStatus>();
    if (s.outboundId === outboundId) out.push(s);
  }
  return out;
}

async function startCloudGateway(): Promise<TestGateway> {
  const g = await startGateway(
    {
      outbound: { backoffBase: '100ms' },
      api: { tokens: [{ name: 'helpdesk', token: API_TOKEN }] },
      connectors: [{
        type: 'whatsapp-cloud', account: 'shop', phoneNumberId: PHONE_ID, accessToken: '${WA_TOKEN}', appSecret: '${WA_APP_SECRET}',
        verifyToken: VERIFY, graphApiUrl: graph.base, maxFileBytes: 100_000, pacing: { perChatIntervalMs: 0, perSecond: 0 }, statusWaitMs: 1500,
        templates: [{ name: 'order_update', language: 'ru', parameters: ['name', 'order'] }],
      }],
    },
    { nats, env: { WA_TOKEN: ACCESS_TOKEN, WA_APP_SECRET: APP_SECRET } },
  );
  webhookUrl = `${g.httpUrl}/connectors/whatsapp-cloud/shop/webhook`;
  return g;
}

/** A customer message, a reply to it, and the reply's wamid once the runner reported it sent. */
async function sentReply(from: string, text: string): Promise<{ ticketId: string; outboundId: string; wamid: string }> {
  const inbound = newWamid();
  await deliver(from, [textMessage(from, 'Здравствуйте, есть вопрос', { id: inbound })]);
  const created = await messageEvent(inbound);
  const reply = await gw.request('omni.cmd.reply', { ticketId: created.ticketId, text });
  const outboundId: string = reply.result.outboundId;
  const sent = await gw.waitForEvent((e) => e.type === 'ticket.delivery' && deliveryOf(e)?.outboundId === outboundId && deliveryOf(e)?.status === 'sent');
  return { ticketId: created.ticketId, outboundId, wamid: deliveryOf(sent)!.platformMessageId! };
}

async function deliver(from: string, messages: unknown[], name = 'Мария Иванова'): Promise<void> {
  const res = await post(webhookBody(PHONE_ID, { contacts: [{ profile: { name }, wa_id: from }], messages }));
  expect(res.status).toBe(200);
}

beforeAll(async () => {
  nats = await startNats();
  graph = new FakeGraphApi(ACCESS_TOKEN, PHONE_ID);
  await graph.start();
  gw = await startCloudGateway();
});
afterAll(async () => {
  await gw?.stop();
  await graph?.stop();
  await nats?.stop();
});

describe('whatsapp-cloud connector', () => {
  it('answers the webhook verification handshake only with the right verify token', async () => {
    const ok = await fetch(`${webhookUrl}?hub.mode=subscribe&hub.verify_token=${VERIFY}&hub.challenge=1158201444`);
    expect(ok.status).toBe(200);
    expect(await ok.text()).toBe('1158201444');
    expect((await fetch(`${webhookUrl}?hub.mode=subscribe&hub.verify_token=wrong-token&hub.challenge=1`)).status).toBe(403);
    expect((await fetch(`${webhookUrl}?hub.mode=unsubscribe&hub.verify_token=${VERIFY}&hub.challenge=1`)).status).toBe(403);
    await graph.waitForCall((c) => c.method === 'GET' && c.path.endsWith(`/${PHONE_ID}`));
    expect(gw.gateway.connectors.health()[0]).toMatchObject({ channel: 'whatsapp', type: 'whatsapp-cloud', state: 'connected' });
  });

  it('signed webhook → ticket → reply → Graph messages call; status webhooks become delivered and read', async () => {
    const from = '79161234567';
    const wamid = newWamid();
    await deliver(from, [textMessage(from, 'Добрый день! Где мой заказ №7781?', { id: wamid })]);
    const created = await messageEvent(wamid);
    const event = inboundOf(created)!;
    expect(event.channel).toBe('whatsapp');
    expect(event.conversation).toMatchObject({ id: `${from}@s.whatsapp.net`, kind: 'private' });
    expect(event.sender).toMatchObject({ id: `${from}@s.whatsapp.net`, displayName: 'Мария Иванова', handles: { phone: '+79161234567', wa_id: from } });

    const reply = await gw.request('omni.cmd.reply', { ticketId: created.ticketId, text: 'Здравствуйте, Мария! Заказ передан курьеру.' });
    expect(reply.ok).toBe(true);
    const call = await graph.waitForCall((c) => c.path === `/v21.0/${PHONE_ID}/messages` && c.json?.to === from);
    expect(call.auth).toBe(`Bearer ${ACCESS_TOKEN}`);
    expect(call.json).toMatchObject({ messaging_product: 'whatsapp', to: from, type: 'text', text: { body: 'Здравствуйте, Мария! Заказ передан курьеру.' }, context: { message_id: wamid } });
    const sent = await gw.waitForEvent((e) => e.type === 'ticket.delivery' && e.ticketId === created.ticketId && deliveryOf(e)?.status === 'sent');
    const outWamid = deliveryOf(sent)!.platformMessageId!;
    expect(outWamid).toMatch(/^wamid\.OUT/);

    const status = (s: string) => ({ id: outWamid, status: s, timestamp: String(Math.floor(Date.now() / 1000)), recipient_id: from });
    expect((await post(webhookBody(PHONE_ID, { statuses: [status('delivered')] }))).status).toBe(200);
    expect((await post(webhookBody(PHONE_ID, { statuses: [status('read')] }))).status).toBe(200);
    const delivered = await gw.waitForEvent((e) => e.type === 'ticket.delivery' && e.ticketId === created.ticketId && deliveryOf(e)?.status === 'delivered');
    const read = await gw.waitForEvent((e) => e.type === 'ticket.delivery' && e.ticketId === created.ticketId && deliveryOf(e)?.status === 'read');
    expect(deliveryOf(delivered)).toMatchObject({ platformMessageId: outWamid, channel: 'whatsapp', account: 'shop' });
    expect(deliveryOf(read)?.platformMessageId).toBe(outWamid);
    // read is final: the send record is gone, so state does not grow with every message.
    expect(await stored(recordKey(outWamid))).toBeNull();
  });

  it('a status webhook that arrives before the send record is stored waits for it and is reported', async () => {
    const from = '79160000021';
    const inbound = newWamid();
    await deliver(from, [textMessage(from, 'Когда доставка?', { id: inbound })]);
    const created = await messageEvent(inbound);
    let early: Promise<Response> | undefined;
    graph.beforeMessageAnswer = async (wamid) => {
      graph.beforeMessageAnswer = undefined;
      // Meta's webhook overtakes its own Graph answer: nothing is stored for this wamid yet.
      early = post(webhookBody(PHONE_ID, { statuses: [statusOf(wamid, 'delivered', { recipient_id: from })] }));
      await new Promise((r) => setTimeout(r, 300));
    };
    await gw.request('omni.cmd.reply', { ticketId: created.ticketId, text: 'Завтра до 18:00' });
    const delivered = await gw.waitForEvent((e) => e.type === 'ticket.delivery' && e.ticketId === created.ticketId && deliveryOf(e)?.status === 'delivered');
    expect(deliveryOf(delivered)!.platformMessageId).toMatch(/^wamid\.OUT/);
    expect((await early!).status).toBe(200);
  });

  it('sent and failed status webhooks: sent adds nothing to the runner\'s own, failed carries Meta\'s reason and ends the record; replays add nothing', async () => {
    const { ticketId, outboundId, wamid } = await sentReply('79160000022', 'Ваш заказ отменён');
    const sentHook = webhookBody(PHONE_ID, { statuses: [statusOf(wamid, 'sent')] });
    expect((await post(sentHook)).status).toBe(200);
    const failure = { errors: [{ code: 131026, title: 'Message undeliverable', error_data: { details: 'Receiver is incapable of receiving this message' } }] };
    const failedHook = webhookBody(PHONE_ID, { statuses: [statusOf(wamid, 'failed', failure)] });
    expect((await post(failedHook)).status).toBe(200);
    const failed = await gw.waitForEvent((e) => e.type === 'ticket.delivery' && e.ticketId === ticketId && deliveryOf(e)?.status === 'failed');
    expect(deliveryOf(failed)).toMatchObject({ outboundId, platformMessageId: wamid, reason: 'undeliverable: 131026 Message undeliverable: Receiver is incapable of receiving this message' });
    expect(await stored(recordKey(wamid))).toBeNull();

    // Meta redelivers webhooks it thinks we missed.
    expect((await post(sentHook)).status).toBe(200);
    expect((await post(failedHook)).status).toBe(200);
    const statuses = await statusesOf(outboundId);
    expect(statuses.map((s) => s.status).sort()).toEqual(['failed', 'sent']);
    // The replayed failure's record is gone: answered at once, dropped after statusWaitMs.
    const dropped = () => gw.logs.some((l) => l.includes(wamid) && l.includes('WhatsApp Cloud status dropped'));
    for (const deadline = Date.now() + 15_000; !dropped() && Date.now() < deadline;) await new Promise((r) => setTimeout(r, 50));
    expect(dropped()).toBe(true);
  });

  it('a replayed delivered webhook adds nothing; a status for a wamid we never sent is answered at once, dropped after the wait and recorded', async () => {
    const { outboundId, wamid } = await sentReply('79160000023', 'Счёт отправлен');
    const body = webhookBody(PHONE_ID, { statuses: [statusOf(wamid, 'delivered')] });
    for (let i = 0; i < 3; i++) expect((await post(body)).status).toBe(200);
    expect((await statusesOf(outboundId)).filter((s) => s.status === 'delivered')).toHaveLength(1);
    expect(await stored(recordKey(wamid))).not.toBeNull(); // not final yet: read may follow

    const stranger = newWamid();
    const dropped = () => gw.logs.some((l) => l.includes(stranger) && l.includes('"level":"info"') && l.includes('status dropped'));
    const counted = async () => (await metrics.skippedUpdates.get()).values.find((v) => v.labels.channel === 'whatsapp' && v.labels.reason === 'unknown_message_status')?.value ?? 0;
    const before = await counted();
    expect((await post(webhookBody(PHONE_ID, { statuses: [statusOf(stranger, 'delivered')] }))).status).toBe(200);
    // Meta had its answer before the wait for a send record (statusWaitMs) was over.
    expect(dropped()).toBe(false);
    for (const deadline = Date.now() + 15_000; !dropped() && Date.now() < deadline;) await new Promise((r) => setTimeout(r, 50));
    expect(dropped()).toBe(true);
    expect(await counted()).toBe(before + 1);
  });

  it('a failed-status webhook with 131047 becomes outside_24h_window, and the ticket is open again with the reason', async () => {
    const { ticketId, outboundId, wamid } = await sentReply('79160000024', 'Ответ, который Meta не доставит');
    const failure = { errors: [{ code: 131047, title: 'Re-engagement message', message: 'Re-engagement message', error_data: { details: 'Message failed to send because more than 24 hours have passed since the customer last replied to this number.' } }] };
    expect((await post(webhookBody(PHONE_ID, { statuses: [statusOf(wamid, 'failed', failure)] }))).status).toBe(200);
    const failed = await gw.waitForEvent((e) => e.type === 'ticket.delivery_failed' && e.ticketId === ticketId);
    expect(deliveryOf(failed)).toMatchObject({ outboundId, status: 'failed' });
    expect(deliveryOf(failed)!.reason).toMatch(/^outside_24h_window: 131047 Re-engagement message: Message failed to send because more than 24 hours/);
    expect(failed.status).toBe('open');
    expect(failed.lastDelivery).toMatchObject({ status: 'failed', reason: expect.stringMatching(/^outside_24h_window: /) });
  });

  it('refuses a bad or missing signature with 401 and creates nothing', async () => {
    const from = '79160000011';
    const forged = webhookBody(PHONE_ID, { messages: [textMessage(from, 'поддельное сообщение')] });
    expect((await post(forged, signWebhook('some-other-app-secret-000', forged))).status).toBe(401);
    expect((await post(forged, null)).status).toBe(401);
    expect((await post(forged, 'sha256=zz')).status).toBe(401);
    // A valid signature with junk after it is no signature (the hex decoder stopped at the junk).
    expect((await post(forged, `${signWebhook(APP_SECRET, forged)}zz`)).status).toBe(401);
    const sentinel = newWamid();
    await deliver(from, [textMessage(from, 'настоящее сообщение', { id: sentinel })]);
    const created = await messageEvent(sentinel);
    expect((await gw.ticket(created.ticketId))?.messageCount).toBe(1);
  });

  it('a webhook for a phone number id that is not this account\'s is counted and answered 200, its message not taken', async () => {
    const counted = async () => (await metrics.skippedUpdates.get()).values.find((v) => v.labels.channel === 'whatsapp' && v.labels.reason === 'other_phone_number')?.value ?? 0;
    const before = await counted();
    const from = '79160000019';
    const body = webhookBody('999000111', { contacts: [{ profile: { name: 'Ошибка' }, wa_id: from }], messages: [textMessage(from, 'не сюда')] });
    expect((await post(body)).status).toBe(200);
    expect((await post(body)).status).toBe(200);
    expect(await counted()).toBe(before + 2);
    const sentinel = newWamid();
    await deliver(from, [textMessage(from, 'сюда', { id: sentinel })]);
    const created = await messageEvent(sentinel);
    expect((await gw.ticket(created.ticketId))?.messageCount).toBe(1); // the other number's message is not in it
  });

  it('a replayed webhook creates nothing new', async () => {
    const from = '79160000012';
    const body = webhookBody(PHONE_ID, { contacts: [{ profile: { name: 'Пётр' }, wa_id: from }], messages: [textMessage(from, 'Первое и единственное')] });
    expect((await post(body)).status).toBe(200);
    expect((await post(body)).status).toBe(200);
    expect((await post(body)).status).toBe(200);
    const sentinel = newWamid();
    await deliver(from, [textMessage(from, 'второе', { id: sentinel })]);
    const created = await messageEvent(sentinel);
    expect((await gw.ticket(created.ticketId))?.messageCount).toBe(2);
  });

  it('refuses a free-form reply after the 24-hour window at once (REST 409, outside_reply_window); the ticket says until when', async () => {
    const from = '79160000013';
    const wamid = newWamid();
    const ageS = 25 * 3600;
    await deliver(from, [textMessage(from, 'Вопрос, заданный вчера', { id: wamid, ageS })]);
    const created = await messageEvent(wamid);
    const ticket = await gw.ticket(created.ticketId);
    const endsAt = Date.parse(ticket!.replyWindowEndsAt!);
    expect(Math.abs(endsAt - (Date.now() - ageS * 1000 + 24 * 3600_000))).toBeLessThan(60_000);
    const refused = await gw.request('omni.cmd.reply', { ticketId: created.ticketId, text: 'Извините за задержку' });
    expect(refused).toMatchObject({ ok: false, error: { code: 'outside_reply_window', field: 'template' } });
    const rest = await fetch(`${gw.httpUrl}/v1/tickets/${created.ticketId}/replies`, {
      method: 'POST', headers: { authorization: `Bearer ${API_TOKEN}`, 'content-type': 'application/json' }, body: JSON.stringify({ text: 'Извините за задержку' }),
    });
    expect(rest.status).toBe(409);
    expect(((await rest.json()) as { error: { code: string } }).error.code).toBe('outside_reply_window');
    expect(graph.calls.some((c) => c.json?.to === from)).toBe(false);
    expect((await gw.ticket(created.ticketId))!.status).not.toBe('pending');

    // A message sent within the window but failed by Meta's own rule (131047) still maps to the reason.
    const fresh = newWamid();
    await deliver(from, [textMessage(from, 'Я снова здесь', { id: fresh })]);
    await messageEvent(fresh);
    expect(Date.parse((await gw.ticket(created.ticketId))!.replyWindowEndsAt!)).toBeGreaterThan(Date.now() + 23 * 3600_000);
    graph.failMessages.push({ status: 400, error: { message: 'Re-engagement message', code: 131047 } });
    await gw.request('omni.cmd.reply', { ticketId: created.ticketId, text: 'Теперь можно' });
    const failed = await gw.waitForEvent((e) => e.type === 'ticket.delivery' && e.ticketId === created.ticketId && deliveryOf(e)?.status === 'failed');
    expect(deliveryOf(failed)!.reason).toMatch(/^outside_24h_window: /);
  });

  it('sends a configured template after the window; an unconfigured one is refused at the command without a Graph call', async () => {
    const from = '79160000025';
    const wamid = newWamid();
    await deliver(from, [textMessage(from, 'Где мой заказ? (пятница вечером)', { id: wamid, ageS: 60 * 3600 })]);
    const created = await messageEvent(wamid);
    const template = { name: 'order_update', language: 'ru', parameters: { order: 'A-17', name: 'Мария' } };
    const reply = await gw.request('omni.cmd.reply', { ticketId: created.ticketId, text: 'Шаблон order_update: заказ A-17', template });
    expect(reply).toMatchObject({ ok: true });
    const sent = await gw.waitForEvent((e) => e.type === 'ticket.delivery' && e.ticketId === created.ticketId && deliveryOf(e)?.outboundId === reply.result.outboundId);
    expect(deliveryOf(sent)).toMatchObject({ status: 'sent', platformMessageId: expect.stringMatching(/^wamid\.OUT/) });
    const call = graph.calls.find((c) => c.json?.to === from && c.json?.type === 'template')!;
    expect(call.json.template).toEqual({
      name: 'order_update', language: { code: 'ru' },
      components: [{ type: 'body', parameters: [{ type: 'text', text: 'Мария' }, { type: 'text', text: 'A-17' }] }],
    });
    expect((await gw.ticket(created.ticketId))!.status).toBe('pending');

    const calls = graph.calls.length;
    const wrong = await gw.request('omni.cmd.reply', { ticketId: created.ticketId, text: 'Шаблон', template: { name: 'promo', language: 'ru', parameters: [] } });
    // The router's check from config (test/api/reply-templates.test.ts); the connector's own stays (templates.test.ts).
    expect(wrong).toMatchObject({ ok: false, error: { code: 'invalid_request', field: 'template.name', message: 'template.name: template promo/ru is not configured for whatsapp/shop (configured: order_update/ru)' } });
    expect(graph.calls.length).toBe(calls);
  });

  it('stores inbound media from Graph and uploads outbound media; oversize is recorded as failed', async () => {
    const from = '79160000014';
    const jpeg = Buffer.concat([Buffer.from([0xff, 0xd8, 0xff, 0xe0]), Buffer.alloc(40_000, 9)]);
    graph.addMedia('media-1', jpeg, 'image/jpeg');
    graph.addMedia('media-big', Buffer.alloc(150_000, 1), 'application/pdf');
    const img = newWamid();
    const big = newWamid();
    await deliver(from, [
      { from, id: img, timestamp: String(Math.floor(Date.now() / 1000)), type: 'image', image: { id: 'media-1', mime_type: 'image/jpeg', caption: 'Фото чека' } },
      { from, id: big, timestamp: String(Math.floor(Date.now() / 1000)), type: 'document', document: { id: 'media-big', mime_type: 'application/pdf', filename: 'Акт сверки.pdf' } },
    ]);
    const created = await messageEvent(img);
    const att = inboundOf(created)!.attachments[0]!;
    expect(inboundOf(created)!.text).toBe('Фото чека');
    expect(att).toMatchObject({ status: 'stored', kind: 'image', mimeType: 'image/jpeg', size: jpeg.length, sha256: createHash('sha256').update(jpeg).digest('hex') });
    const bigAtt = inboundOf(await messageEvent(big))!.attachments[0]!;
    expect(bigAtt).toMatchObject({ status: 'failed', name: 'Акт сверки.pdf', size: 150_000 });

    await gw.request('omni.cmd.reply', { ticketId: created.ticketId, text: 'Спасибо, вот ваш чек', attachments: [att] });
    const upload = await graph.waitForCall((c) => c.path === `/v21.0/${PHONE_ID}/media`);
    expect(upload.fields).toMatchObject({ messaging_product: 'whatsapp', type: 'image/jpeg' });
    expect(Buffer.compare(upload.files!.file!.bytes, jpeg)).toBe(0);
    const mediaSend = await graph.waitForCall((c) => c.json?.to === from && c.json?.type === 'image');
    expect(mediaSend.json.image.id).toMatch(/^up-/);
  });

  it('waits out a Graph rate limit (Retry-After: 1) in the same attempt and reports permanent refusals with the reason', async () => {
    const from = '79160000015';
    const wamid = newWamid();
    await deliver(from, [textMessage(from, 'Помогите', { id: wamid })]);
    const created = await messageEvent(wamid);
    graph.failMessages.push({ status: 429, error: { message: 'Too many messages', code: 130429 } });
    await gw.request('omni.cmd.reply', { ticketId: created.ticketId, text: 'Первый ответ' });
    const sent = await gw.waitForEvent((e) => e.type === 'ticket.delivery' && e.ticketId === created.ticketId);
    expect(deliveryOf(sent)).toMatchObject({ status: 'sent', attempts: 1 }); // a rate limit costs time, not an attempt
    expect(graph.calls.filter((c) => c.path.endsWith('/messages') && c.json?.to === from)).toHaveLength(2);

    graph.failMessages.push({ status: 400, error: { message: 'Message undeliverable', code: 131026 } });
    await gw.request('omni.cmd.reply', { ticketId: created.ticketId, text: 'Второй ответ' });
    const failed = await gw.waitForEvent((e) => e.type === 'ticket.delivery' && e.ticketId === created.ticketId && deliveryOf(e)?.status === 'failed');
    expect(deliveryOf(failed)!.reason).toMatch(/^undeliverable: /);
  });

  it('the sweep removes send records past the retention and starts the clock on records from before it (run at start)', async () => {
    const kv = gw.gateway.bus.kv.state;
    const old = newWamid();
    const fresh = newWamid();
    const legacy = newWamid();
    const day = 86_400_000;
    await kv.put(recordKey(old), JSON.stringify({ outboundId: 'o-old', ticketId: 't-1', at: Date.now() - 31 * day }));
    await kv.put(recordKey(fresh), JSON.stringify({ outboundId: 'o-fresh', ticketId: 't-1', at: Date.now() - 29 * day }));
    // How the record was keyed before: the whole key hashed by the account state.
    const legacyKey = `whatsapp.shop.${hashKey(`wac-out-${legacy}`)}`;
    await kv.put(legacyKey, JSON.stringify({ outboundId: 'o-legacy', ticketId: 't-1' }));

    await gw.stop();
    gw = await startCloudGateway();
    for (let i = 0; i < 50 && (await stored(recordKey(old))); i++) await new Promise((r) => setTimeout(r, 100));
    expect(await stored(recordKey(old))).toBeNull();
    expect(JSON.parse((await stored(recordKey(fresh)))!)).toMatchObject({ outboundId: 'o-fresh' });
    for (let i = 0; i < 50 && !JSON.parse((await stored(legacyKey))!).at; i++) await new Promise((r) => setTimeout(r, 100));
    expect(JSON.parse((await stored(legacyKey))!).at).toBeGreaterThan(Date.now() - 60_000);
  });
});

describe('whatsapp-cloud webhook: malformed input', () => {
  const DLQ = 'omni.dlq.inbound.whatsapp.shop';
  const metadata = { display_phone_number: '74950000000', phone_number_id: PHONE_ID };
  const change = (value: Record<string, unknown>) => ({ field: 'messages', value: { messaging_product: 'whatsapp', metadata, ...value } });
  const envelope = (entry: unknown) => JSON.stringify({ object: 'whatsapp_business_account', entry });

  /** Every dead letter of the account so far, oldest first. */
  async function letters(): Promise<DeadLetter[]> {
    const c = await jetstream(gw.nc).consumers.get('OMNI_DLQ', { filter_subjects: DLQ });
    const out: DeadLetter[] = [];
    for await (const m of await c.fetch({ max_messages: 10_000, expires: 1000 })) out.push(m.json<DeadLetter>());
    return out;
  }

  it('one malformed message between good ones: both good ones stored, the bad one parked naming its field, 200; a retry stores nothing twice', async () => {
    const from = '79160000031';
    const [good1, bad, good2, untimed] = [newWamid(), newWamid(), newWamid(), newWamid()];
    const body = webhookBody(PHONE_ID, {
      contacts: [{ profile: { name: 'Ольга' }, wa_id: from }],
      messages: [
        textMessage(from, 'Первое', { id: good1 }),
        { ...textMessage(from, 'С неверным временем', { id: bad }), timestamp: '99999999999999' },
        textMessage(from, 'Третье', { id: good2 }),
        // No time at all is no wrong time: stored, as before the check.
        { ...textMessage(from, 'Без времени', { id: untimed }), timestamp: null },
      ],
    });
    const before = (await letters()).length;
    expect((await post(body)).status).toBe(200);
    const first = await messageEvent(good1);
    const second = await messageEvent(good2);
    expect(second.ticketId).toBe(first.ticketId);
    expect(inboundOf(second)!.sender.displayName).toBe('Ольга');
    expect((await messageEvent(untimed)).ticketId).toBe(first.ticketId);
    const parked = (await letters()).slice(before);
    expect(parked).toHaveLength(1);
    expect(parked[0]!.reason).toContain(bad);
    expect(parked[0]!.reason).toMatch(/entry\.0\.changes\.0\.value\.messages\.1\.timestamp: /);
    expect(JSON.parse(parked[0]!.payload)).toMatchObject({ id: bad, timestamp: '99999999999999' });

    // Meta redelivers (a 500 elsewhere, or its own doubt): nothing new is stored.
    expect((await post(body)).status).toBe(200);
    const sentinel = newWamid();
    await deliver(from, [textMessage(from, 'Четвёртое', { id: sentinel })]);
    await messageEvent(sentinel);
    expect((await gw.ticket(first.ticketId))?.messageCount).toBe(4);
  });

  it('a malformed entry, change, list, contact, field or status is parked with its path; everything readable in the same body is stored', async () => {
    const from = '79160000032';
    const other = '79160000033';
    const now = String(Math.floor(Date.now() / 1000));
    const [good3, good4, badImage, badTime, badContacts] = [newWamid(), newWamid(), newWamid(), newWamid(), newWamid()];
    const body = envelope([
      null,
      {
        id: 'WABA-1',
        changes: [
          null,
          change({
            contacts: {},
            messages: [
              textMessage(from, 'Читаемое', { id: good3 }),
              { from, id: badImage, timestamp: now, type: 'image', image: { id: 'media-x', mime_type: 5 } },
              { ...textMessage(from, 'x', { id: badTime }), timestamp: '1e20' },
              { from, id: badContacts, timestamp: now, type: 'contacts', contacts: [null] },
            ],
            statuses: [{ id: {}, status: 'delivered', timestamp: now, recipient_id: from }],
          }),
          change({ messages: {} }),
          change({ contacts: [null, { wa_id: other, profile: { name: 'Анна' } }], messages: [textMessage(other, 'Тоже читаемое', { id: good4 })] }),
        ],
      },
    ]);
    const before = (await letters()).length;
    const res = await post(body);
    expect(res.status).toBe(200);
    const stored3 = inboundOf(await messageEvent(good3))!;
    expect(stored3.text).toBe('Читаемое');
    expect(stored3.sender.displayName).toBeUndefined(); // its contacts were unreadable (parked)
    expect(inboundOf(await messageEvent(good4))!.sender.displayName).toBe('Анна');

    const reasons = (await letters()).slice(before).map((l) => l.reason);
    const expected = [
      /^whatsapp-cloud webhook: entry\.0: /,
      /^whatsapp-cloud webhook: entry\.1\.changes\.0: /,
      /^whatsapp-cloud webhook: entry\.1\.changes\.1\.value\.contacts: /,
      new RegExp(`^whatsapp-cloud message ${badImage}: entry\\.1\\.changes\\.1\\.value\\.messages\\.1\\.image\\.mime_type: `),
      new RegExp(`^whatsapp-cloud message ${badTime}: entry\\.1\\.changes\\.1\\.value\\.messages\\.2\\.timestamp: `),
      new RegExp(`^whatsapp-cloud message ${badContacts}: entry\\.1\\.changes\\.1\\.value\\.messages\\.3\\.contacts\\.0: `),
      /^whatsapp-cloud status: entry\.1\.changes\.1\.value\.statuses\.0\.id: /,
      /^whatsapp-cloud webhook: entry\.1\.changes\.2\.value\.messages: /,
      /^whatsapp-cloud webhook: entry\.1\.changes\.3\.value\.contacts\.0: /,
    ];
    for (const re of expected) expect(reasons.filter((r) => re.test(r)), `${re} in ${JSON.stringify(reasons)}`).toHaveLength(1);
    expect(reasons).toHaveLength(expected.length);
  });

  it('a status without a value is parked naming the field; values no report carries, other change fields and skipped messages are counted; the rest of the body is taken', async () => {
    const skips = async () => Object.fromEntries((await metrics.skippedUpdates.get()).values.filter((v) => v.labels.channel === 'whatsapp').map((v) => [v.labels.reason, v.value]));
    const { ticketId, outboundId, wamid } = await sentReply('79160000037', 'Проверка статусов');
    const from = '79160000038';
    const sentinel = newWamid();
    const body = envelope([{
      id: 'WABA-1',
      changes: [
        { field: 'message_template_status_update', value: { event: 'APPROVED', message_template_name: 'order_update' } },
        change({
          statuses: [
            statusOf(wamid, 'bogus'),
            statusOf(wamid, ''),
            statusOf(wamid, 'deleted'),
            // Meta's timestamp is not read (a report is dated on arrival): unreadable, it costs no report.
            statusOf(wamid, 'delivered', { timestamp: 'вчера' }),
            statusOf(wamid, 'read', { timestamp: undefined }),
          ],
          messages: [
            { from, id: newWamid(), timestamp: String(Math.floor(Date.now() / 1000)), type: 'system', system: { body: 'number changed' } },
            { from, id: newWamid(), timestamp: String(Math.floor(Date.now() / 1000)), type: 'reaction', reaction: { message_id: sentinel, emoji: '' } },
            textMessage(from, 'Рядом со статусами', { id: sentinel }),
          ],
        }),
      ],
    }]);
    const skipped = await skips();
    const before = (await letters()).length;
    expect((await post(body)).status).toBe(200);
    await messageEvent(sentinel);
    await gw.waitForEvent((e) => e.type === 'ticket.delivery' && e.ticketId === ticketId && deliveryOf(e)?.status === 'read');
    expect((await statusesOf(outboundId)).map((s) => s.status).sort()).toEqual(['delivered', 'read', 'sent']);

    const parked = (await letters()).slice(before);
    expect(parked.map((l) => l.reason)).toEqual([
      `whatsapp-cloud status ${wamid}: entry.0.changes.1.value.statuses.1.status: expected a status such as "delivered"; received ""`,
    ]);
    for (const l of parked) expect(l.meta).toMatchObject({ kind: 'status', phoneNumberId: PHONE_ID });
    const counted = await skips();
    const grew = (reason: string) => (counted[reason] ?? 0) - (skipped[reason] ?? 0);
    expect([grew('unreported_status'), grew('other_change_field'), grew('system_message'), grew('reaction_removed')]).toEqual([2, 1, 1, 1]);

    // Said at warn once per status value and field, however often Meta sends them.
    expect((await post(body)).status).toBe(200);
    expect((await skips()).unreported_status).toBe((skipped.unreported_status ?? 0) + 4);
    const warned = (what: string) => gw.logs.filter((l) => l.includes('"level":"warn"') && l.includes(what)).length;
    expect(warned('"status":"deleted"')).toBe(1);
    expect(warned('"status":"bogus"')).toBe(1);
    expect(warned('"field":"message_template_status_update"')).toBe(1);
  });

  it('a signed body that is JSON but not an object (null, a number, a list) is parked and answered 200, not a 500', async () => {
    const before = (await letters()).length;
    for (const body of ['null', '42', '[]', '"whatsapp_business_account"']) {
      const res = await post(body);
      expect(res.status, body).toBe(200);
    }
    const parked = (await letters()).slice(before);
    expect(parked.map((l) => l.payload)).toEqual(['null', '42', '[]', '"whatsapp_business_account"']);
    for (const l of parked) expect(l.reason).toMatch(/^whatsapp-cloud webhook: body: expected a JSON object/);
    const from = '79160000034';
    const sentinel = newWamid();
    await deliver(from, [textMessage(from, 'После мусора', { id: sentinel })]);
    await messageEvent(sentinel);
  });

  it('media info from Graph that cannot be used leaves the attachment failed with the reason; the message is stored', async () => {
    const from = '79160000036';
    graph.addMedia('media-odd', Buffer.from('%PDF-1.4 test'), 'application/pdf', { mime_type: 5 });
    const wamid = newWamid();
    await deliver(from, [{ from, id: wamid, timestamp: String(Math.floor(Date.now() / 1000)), type: 'document', document: { id: 'media-odd', mime_type: 'application/pdf', filename: 'Счёт.pdf' } }]);
    const att = inboundOf(await messageEvent(wamid))!.attachments[0]!;
    expect(att).toMatchObject({ status: 'failed', name: 'Счёт.pdf', mimeType: 'application/pdf' });
    expect(att.error).toMatch(/mime_type/);
  });

  it('a status report that cannot be stored (the status stream refuses writes) still answers 500, so Meta retries; 200 once it can', async () => {
    const { ticketId, wamid } = await sentReply('79160000035', 'Проверка доставки');
    const jsm = await jetstreamManager(gw.nc);
    const { config, state } = await jsm.streams.info('OMNI_STATUS');
    const body = webhookBody(PHONE_ID, { statuses: [statusOf(wamid, 'delivered')] });
    await jsm.streams.update('OMNI_STATUS', { ...config, max_msgs: state.messages, discard: DiscardPolicy.New });
    try {
      expect((await post(body)).status).toBe(500);
    } finally {
      await jsm.streams.update('OMNI_STATUS', config);
    }
    expect((await post(body)).status).toBe(200);
    await gw.waitForEvent((e) => e.type === 'ticket.delivery' && e.ticketId === ticketId && deliveryOf(e)?.status === 'delivered');
  });
});
