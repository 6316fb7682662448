/**
 * POST /v1/tickets/:id/replies with a `template`: a template the ticket's channel account would
 * refuse (not configured, wrong parameters, attachments) or drop (a channel without templates) is
 * a 400 naming the field, with nothing queued or logged; a fitting one is accepted and sent. The
 * webhook channel passes templates on to its receiver. Real gateway, stand-ins for the Graph and
 * Telegram Bot APIs.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { post, startApiHarness, until, type ApiHarness } from './support.js';
import { FakeGraphApi, newWamid, signWebhook, webhookBody } from '../connectors/whatsapp-cloud/graph-api.js';
import { FakeBotApi } from '../connectors/telegram/bot-api.js';
import type { LogEntry } from '../../src/core/schema.js';

const PHONE_ID = '106540352242922';
const ACCESS_TOKEN = 'EAAG-test-access-token-0123456789';
const APP_SECRET = 'app-secret-0123456789abcdef';
const TG_TOKEN = '123456:TEST-token-abcdefghijklmnop';

let h: ApiHarness;
let graph: FakeGraphApi;
let bot: FakeBotApi;
let telegramMessageId = 1;

beforeAll(async () => {
  graph = new FakeGraphApi(ACCESS_TOKEN, PHONE_ID);
  await graph.start();
  bot = new FakeBotApi(TG_TOKEN);
  await bot.start();
  h = await startApiHarness({ outbound: { backoffBase: '100ms' } }, {
    moreConnectors: [
      {
        type: 'whatsapp-cloud', account: 'shop', phoneNumberId: PHONE_ID, accessToken: '${WA_TOKEN}', appSecret: '${WA_APP_SECRET}',
        verifyToken: 'verify-me-please', graphApiUrl: graph.base, pacing: { perChatIntervalMs: 0, perSecond: 0 },
        templates: [
          { name: 'order_update', language: 'ru', parameters: ['name', 'order'] },
          { name: 'order_update', language: 'en_US', parameters: ['name', 'order'] },
          { name: 'payment_reminder', language: 'ru' },
        ],
      },
      { type: 'telegram', account: 'bot1', token: '${TG_TOKEN}', apiRoot: bot.apiRoot, pollTimeoutS: 1, pacing: { privateChatIntervalMs: 0, groupIntervalMs: 0 } },
    ],
    env: { WA_TOKEN: ACCESS_TOKEN, WA_APP_SECRET: APP_SECRET, TG_TOKEN },
  });
});
afterAll(async () => {
  await h?.stop();
  await graph?.stop();
  await bot?.stop();
});

/** A WhatsApp customer's message (`ageS` seconds old) through the signed webhook; the ticket's id. */
async function whatsappTicket(from: string, ageS = 0): Promise<string> {
  const wamid = newWamid();
  const message = { from, id: wamid, timestamp: String(Math.floor(Date.now() / 1000) - ageS), type: 'text', text: { body: 'Где мой заказ?' } };
  const body = webhookBody(PHONE_ID, { contacts: [{ profile: { name: 'Мария Иванова' }, wa_id: from }], messages: [message] });
  const res = await fetch(`${h.gw.httpUrl}/connectors/whatsapp-cloud/shop/webhook`, {
    method: 'POST', headers: { 'content-type': 'application/json', 'x-hub-signature-256': signWebhook(APP_SECRET, body) }, body,
  });
  expect(res.status).toBe(200);
  const e = await h.gw.waitForEvent((ev) => ev.type === 'ticket.message' && (ev.entry as any)?.event?.platform?.messageId === wamid);
  return e.ticketId;
}

async function telegramTicket(chatId: number): Promise<string> {
  const message_id = telegramMessageId++;
  bot.push({
    message: {
      message_id, date: Math.floor(Date.now() / 1000),
      chat: { id: chatId, type: 'private', first_name: 'Ольга' },
      from: { id: chatId, is_bot: false, first_name: 'Ольга', language_code: 'ru' },
      text: 'Здравствуйте! Не проходит оплата',
    },
  });
  const e = await h.gw.waitForEvent((ev) => ev.type === 'ticket.message' && ev.channel === 'telegram' && (ev.entry as any)?.event?.conversation?.id === String(chatId));
  return e.ticketId;
}

const outboundEntries = async (id: string) =>
  ((await h.api(`/v1/tickets/${id}`)).body.log as LogEntry[]).filter((e) => e.kind === 'outbound');

describe('POST /v1/tickets/:id/replies with a template', () => {
  it('refuses a template name the account has not configured: 400 naming template.name, nothing queued', async () => {
    const id = await whatsappTicket('79160000101', 30 * 3600);
    const calls = graph.calls.length;
    const res = await h.api(`/v1/tickets/${id}/replies`, post({ text: 'Шаблон', template: { name: 'order_updte', language: 'ru', parameters: ['Мария', 'A-17'] } }, { 'idempotency-key': 'tpl-1' }));
    expect(res.status).toBe(400);
    expect(res.body.error).toMatchObject({ code: 'invalid_request', field: 'template.name' });
    expect(res.body.error.message).toContain('order_updte/ru is not configured for whatsapp/shop (configured: order_update/ru, order_update/en_US, payment_reminder/ru)');
    expect(await outboundEntries(id)).toEqual([]);
    // A refusal is not stored under the key: the corrected request with the same key goes.
    const fixed = await h.api(`/v1/tickets/${id}/replies`, post({ text: 'Шаблон', template: { name: 'order_update', language: 'ru', parameters: ['Мария', 'A-17'] } }, { 'idempotency-key': 'tpl-1' }));
    expect(fixed.status).toBe(202);
    await graph.waitForCall((c) => c.json?.to === '79160000101' && c.json?.type === 'template');
    expect(graph.calls.length).toBe(calls + 1);
  });

  it('names template.language when only the translation is missing', async () => {
    const id = await whatsappTicket('79160000102');
    const res = await h.api(`/v1/tickets/${id}/replies`, post({ text: 'Шаблон', template: { name: 'payment_reminder', language: 'en_US' } }));
    expect(res.status).toBe(400);
    expect(res.body.error).toMatchObject({ code: 'invalid_request', field: 'template.language' });
  });

  it('refuses a wrong parameter count, a missing or an unknown named parameter: 400 naming template.parameters', async () => {
    const id = await whatsappTicket('79160000103');
    for (const parameters of [['Мария'], ['Мария', 'A-17', 'лишний'], { name: 'Мария' }, { name: 'Мария', order: 'A-17', city: 'Казань' }]) {
      const res = await h.api(`/v1/tickets/${id}/replies`, post({ text: 'Шаблон', template: { name: 'order_update', language: 'ru', parameters } }));
      expect(res.status, JSON.stringify(parameters)).toBe(400);
      expect(res.body.error).toMatchObject({ code: 'invalid_request', field: 'template.parameters' });
    }
    const none = await h.api(`/v1/tickets/${id}/replies`, post({ text: 'Шаблон', template: { name: 'payment_reminder', language: 'ru', parameters: ['лишний'] } }));
    expect(none.status).toBe(400);
    expect(none.body.error.message).toBe('template.parameters: template payment_reminder takes 0 parameters (none), got 1');
    expect(await outboundEntries(id)).toEqual([]);
  });

  it('refuses a template with attachments: 400 naming attachments', async () => {
    const id = await whatsappTicket('79160000104');
    const attachments = [{ name: 'чек.txt', mimeType: 'text/plain', contentBase64: Buffer.from('чек').toString('base64') }];
    const res = await h.api(`/v1/tickets/${id}/replies`, post({ text: 'Шаблон', attachments, template: { name: 'order_update', language: 'ru', parameters: ['Мария', 'A-17'] } }));
    expect(res.status).toBe(400);
    expect(res.body.error).toMatchObject({ code: 'invalid_request', field: 'attachments' });
  });

  it('refuses a template on a Telegram ticket (it would go as plain text): 400 naming template', async () => {
    const id = await telegramTicket(7001);
    const res = await h.api(`/v1/tickets/${id}/replies`, post({ text: 'Ваш заказ A-17 готов', template: { name: 'order_update', language: 'ru', parameters: ['Ольга', 'A-17'] } }));
    expect(res.status).toBe(400);
    expect(res.body.error).toMatchObject({ code: 'invalid_request', field: 'template' });
    expect(res.body.error.message).toContain('sends no templates');
    expect(await outboundEntries(id)).toEqual([]);
    // Without the template the same reply goes.
    const plain = await h.api(`/v1/tickets/${id}/replies`, post({ text: 'Ваш заказ A-17 готов' }));
    expect(plain.status).toBe(202);
    await bot.waitForCall((c) => c.method === 'sendMessage' && c.params.chat_id === '7001');
  });

  it('accepts a fitting template (202), also after the 24-hour window, and sends it', async () => {
    const from = '79160000105';
    const id = await whatsappTicket(from, 60 * 3600);
    const res = await h.api(`/v1/tickets/${id}/replies`, post({ text: 'Шаблон order_update: заказ A-17', template: { name: 'order_update', language: 'ru', parameters: { order: 'A-17', name: 'Мария' } } }));
    expect(res.status).toBe(202);
    const call = await graph.waitForCall((c) => c.json?.to === from && c.json?.type === 'template');
    expect(call.json.template).toEqual({
      name: 'order_update', language: { code: 'ru' },
      components: [{ type: 'body', parameters: [{ type: 'text', text: 'Мария' }, { type: 'text', text: 'A-17' }] }],
    });
    await h.gw.waitForEvent((e) => e.type === 'ticket.delivery' && e.ticketId === id && (e.entry as any)?.status?.status === 'sent');
  });

  it('passes a template on to a webhook channel receiver unchecked (202)', async () => {
    const id = await h.openTicket('tpl-webhook-1');
    const template = { name: 'receiver_side', language: 'ru', parameters: ['Ирина'] };
    const res = await h.api(`/v1/tickets/${id}/replies`, post({ text: 'Шаблон получателя', template }));
    expect(res.status).toBe(202);
    await until(() => h.sent.some((s) => s.ticketId === id && s.template?.name === 'receiver_side'), 'the template at the callback');
  });
});
