/**
 * WhatsApp Cloud API end to end over HTTP: signed webhooks into the real gateway (nats-server,
 * router, outbound runner), replies out to a stand-in Graph API on 127.0.0.1.
 */
import { createHash } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startGateway, type TestGateway } from '../../helpers/gateway.js';
import type { InboundMessage, LogEntry, TicketEvent } from '../../../src/core/schema.js';
import { FakeGraphApi, newWamid, signWebhook, webhookBody } from './graph-api.js';

const PHONE_ID = '106540352242922';
const ACCESS_TOKEN = 'EAAG-test-access-token-0123456789';
const APP_SECRET = 'app-secret-0123456789abcdef';
const VERIFY = 'verify-me-please';

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

async function deliver(from: string, messages: unknown[], name = 'Мария Иванова'): Promise<void> {
  const res = await post(webhookBody(PHONE_ID, { contacts: [{ profile: { name }, wa_id: from }], messages }));
  expect(res.status).toBe(200);
}

beforeAll(async () => {
  graph = new FakeGraphApi(ACCESS_TOKEN, PHONE_ID);
  await graph.start();
  gw = await startGateway(
    {
      outbound: { backoffBase: '100ms' },
      connectors: [{
        type: 'whatsapp-cloud', account: 'shop', phoneNumberId: PHONE_ID, accessToken: '${WA_TOKEN}', appSecret: '${WA_APP_SECRET}',
        verifyToken: VERIFY, graphApiUrl: graph.base, maxFileBytes: 100_000, pacing: { perChatIntervalMs: 0, perSecond: 0 },
      }],
    },
    { env: { WA_TOKEN: ACCESS_TOKEN, WA_APP_SECRET: APP_SECRET } },
  );
  webhookUrl = `${gw.httpUrl}/connectors/whatsapp-cloud/shop/webhook`;
});
afterAll(async () => {
  await gw?.stop();
  await graph?.stop();
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
  });

  it('refuses a bad or missing signature with 401 and creates nothing', async () => {
    const from = '79160000011';
    const forged = webhookBody(PHONE_ID, { messages: [textMessage(from, 'поддельное сообщение')] });
    expect((await post(forged, signWebhook('some-other-app-secret-000', forged))).status).toBe(401);
    expect((await post(forged, null)).status).toBe(401);
    expect((await post(forged, 'sha256=zz')).status).toBe(401);
    const sentinel = newWamid();
    await deliver(from, [textMessage(from, 'настоящее сообщение', { id: sentinel })]);
    const created = await messageEvent(sentinel);
    expect((await gw.ticket(created.ticketId))?.messageCount).toBe(1);
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

  it('fails a reply outside the 24-hour window with outside_24h_window and never calls Graph', async () => {
    const from = '79160000013';
    const wamid = newWamid();
    await deliver(from, [textMessage(from, 'Вопрос, заданный вчера', { id: wamid, ageS: 25 * 3600 })]);
    const created = await messageEvent(wamid);
    await gw.request('omni.cmd.reply', { ticketId: created.ticketId, text: 'Извините за задержку' });
    const failed = await gw.waitForEvent((e) => e.type === 'ticket.delivery' && e.ticketId === created.ticketId);
    expect(deliveryOf(failed)).toMatchObject({ status: 'failed' });
    expect(deliveryOf(failed)!.reason).toMatch(/^outside_24h_window: /);
    expect(graph.calls.some((c) => c.json?.to === from)).toBe(false);
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

  it('retries on Graph rate limits and reports permanent refusals with the reason', async () => {
    const from = '79160000015';
    const wamid = newWamid();
    await deliver(from, [textMessage(from, 'Помогите', { id: wamid })]);
    const created = await messageEvent(wamid);
    graph.failMessages.push({ status: 429, error: { message: 'Too many messages', code: 130429 } });
    await gw.request('omni.cmd.reply', { ticketId: created.ticketId, text: 'Первый ответ' });
    const sent = await gw.waitForEvent((e) => e.type === 'ticket.delivery' && e.ticketId === created.ticketId);
    expect(deliveryOf(sent)).toMatchObject({ status: 'sent', attempts: 2 });

    graph.failMessages.push({ status: 400, error: { message: 'Message undeliverable', code: 131026 } });
    await gw.request('omni.cmd.reply', { ticketId: created.ticketId, text: 'Второй ответ' });
    const failed = await gw.waitForEvent((e) => e.type === 'ticket.delivery' && e.ticketId === created.ticketId && deliveryOf(e)?.status === 'failed');
    expect(deliveryOf(failed)!.reason).toMatch(/^undeliverable: /);
  });
});
