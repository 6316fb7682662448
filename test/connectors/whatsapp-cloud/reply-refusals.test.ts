/**
 * Replies WhatsApp refuses, as a support team's week one meets them. A template reply after the
 * 24-hour window whose parameter WhatsApp will not take (an address typed on two lines, a tab from
 * a pasted table, a run of spaces, an empty value): before, the helpdesk got 202, the ticket said
 * pending, and the Graph API refused it (132018) afterwards; now it is a 400 naming
 * template.parameters, with no Graph call, while Cyrillic values that fit still go. A free-form
 * reply after the window: the 409 names the templates the account can send. And a reply
 * whose file is refused after its text went out: the failure says the text was delivered.
 * The real gateway (nats-server, router, outbound runner) against the stand-in Graph API, which
 * refuses such parameters as Meta does.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startGateway, type TestGateway } from '../../helpers/gateway.js';
import { startNats, type TestNats } from '../../helpers/nats-server.js';
import { FakeGraphApi, newWamid, signWebhook, webhookBody } from './graph-api.js';
import type { InboundMessage, LogEntry } from '../../../src/core/schema.js';

const PHONE_ID = '106540352242922';
const ACCESS_TOKEN = 'EAAG-test-access-token-0123456789';
const APP_SECRET = 'app-secret-0123456789abcdef';
const API_TOKEN = 'helpdesk-api-token-0123456789abcdef';
const DAY_AND_MINUTE_S = 24 * 3600 + 60;

let nats: TestNats;
let graph: FakeGraphApi;
let gw: TestGateway;

beforeAll(async () => {
  nats = await startNats();
  graph = new FakeGraphApi(ACCESS_TOKEN, PHONE_ID);
  await graph.start();
  gw = await startGateway(
    {
      outbound: { backoffBase: '100ms' },
      api: { tokens: [{ name: 'helpdesk', token: API_TOKEN }] },
      connectors: [{
        type: 'whatsapp-cloud', account: 'shop', phoneNumberId: PHONE_ID, accessToken: '${WA_TOKEN}', appSecret: '${WA_APP_SECRET}',
        verifyToken: 'verify-me-please', graphApiUrl: graph.base, pacing: { perChatIntervalMs: 0, perSecond: 0 },
        templates: [{ name: 'delivery_address', language: 'ru', parameters: ['name', 'address'] }],
      }],
    },
    { nats, env: { WA_TOKEN: ACCESS_TOKEN, WA_APP_SECRET: APP_SECRET } },
  );
});
afterAll(async () => {
  await gw?.stop();
  await graph?.stop();
  await nats?.stop();
});

/** A ticket whose customer last wrote 24 h 1 min ago: only a template may go. */
async function staleTicket(from: string): Promise<string> {
  const id = newWamid();
  const message = { from, id, timestamp: String(Math.floor(Date.now() / 1000) - DAY_AND_MINUTE_S), type: 'text', text: { body: 'Куда доставить заказ?' } };
  const body = webhookBody(PHONE_ID, { messages: [message], contacts: [{ profile: { name: 'Иван' }, wa_id: from }] });
  const res = await fetch(`${gw.httpUrl}/connectors/whatsapp-cloud/shop/webhook`, { method: 'POST', headers: { 'content-type': 'application/json', 'x-hub-signature-256': signWebhook(APP_SECRET, body) }, body });
  expect(res.status).toBe(200);
  const created = await gw.waitForEvent((e) => e.type === 'ticket.message' && ((e.entry as Extract<LogEntry, { kind: 'inbound' }>).event as InboundMessage).platform.messageId === id);
  return created.ticketId;
}

async function freshTicket(from: string): Promise<string> {
  const id = newWamid();
  const message = { from, id, timestamp: String(Math.floor(Date.now() / 1000)), type: 'text', text: { body: 'Пришлите акт сверки' } };
  const body = webhookBody(PHONE_ID, { messages: [message], contacts: [{ profile: { name: 'Иван' }, wa_id: from }] });
  const res = await fetch(`${gw.httpUrl}/connectors/whatsapp-cloud/shop/webhook`, { method: 'POST', headers: { 'content-type': 'application/json', 'x-hub-signature-256': signWebhook(APP_SECRET, body) }, body });
  expect(res.status).toBe(200);
  const created = await gw.waitForEvent((e) => e.type === 'ticket.message' && ((e.entry as Extract<LogEntry, { kind: 'inbound' }>).event as InboundMessage).platform.messageId === id);
  return created.ticketId;
}

function reply(ticketId: string, parameters: Record<string, string>): Promise<Response> {
  return fetch(`${gw.httpUrl}/v1/tickets/${ticketId}/replies`, {
    method: 'POST',
    headers: { authorization: `Bearer ${API_TOKEN}`, 'content-type': 'application/json' },
    body: JSON.stringify({ text: `Адрес доставки: ${parameters.address}`, template: { name: 'delivery_address', language: 'ru', parameters } }),
  });
}

const templateCalls = () => graph.calls.filter((c) => c.json?.type === 'template').length;

describe('whatsapp-cloud template parameters', () => {
  it.each([
    ['a line break', { name: 'Иван', address: 'ул. Ленина, д. 5\nкв. 12' }, 'address has a line break or a tab'],
    ['a tab', { name: 'Иван\tСидоров', address: 'ул. Ленина, д. 5' }, 'name has a line break or a tab'],
    ['five spaces in a row', { name: 'Иван', address: 'ул. Ленина,     д. 5' }, 'address has more than 4 spaces in a row'],
    ['an empty value', { name: '', address: 'ул. Ленина, д. 5' }, 'name is empty'],
  ])('refuses a parameter with %s at the request, before any Graph call', async (_what, parameters, says) => {
    const ticketId = await staleTicket(`7916${Math.floor(1_000_000 + Math.random() * 8_999_999)}`);
    const before = templateCalls();
    const res = await reply(ticketId, parameters);
    const body = (await res.json()) as { error: { code: string; field: string; message: string } };
    expect(res.status, JSON.stringify(body)).toBe(400);
    expect(body.error).toMatchObject({ code: 'invalid_request', field: 'template.parameters' });
    expect(body.error.message).toContain(`template delivery_address: ${says}`);
    expect(templateCalls()).toBe(before);
    expect((await gw.ticket(ticketId))!.lastDelivery).toBeUndefined();
  });

  it('tells an agent whose free-form reply is too late which templates the account can send', async () => {
    const ticketId = await staleTicket('79163334455');
    const res = await fetch(`${gw.httpUrl}/v1/tickets/${ticketId}/replies`, {
      method: 'POST',
      headers: { authorization: `Bearer ${API_TOKEN}`, 'content-type': 'application/json' },
      body: JSON.stringify({ text: 'Иван, ваш заказ доставят завтра.' }),
    });
    expect(res.status).toBe(409);
    const { error } = (await res.json()) as { error: { code: string; field: string; message: string } };
    expect(error).toMatchObject({ code: 'outside_reply_window', field: 'template' });
    expect(error.message).toMatch(/^the channel allowed free-form replies until \S+ \(its window after the customer's last message\); send one of the templates configured for whatsapp\/shop as template \{name, language, parameters\}: delivery_address\/ru \(name, address\)$/);
  });

  it('sends Cyrillic parameters that fit, quotes and № included', async () => {
    const ticketId = await staleTicket('79161112233');
    const res = await reply(ticketId, { name: 'Иван Сидоров', address: 'ООО «Ромашка», ул. Ленина, д. 5, кв. №12' });
    expect(res.status).toBe(202);
    const call = await graph.waitForCall((c) => c.json?.type === 'template' && c.json?.to === '79161112233');
    expect(call.json.template.components[0].parameters.map((p: { text: string }) => p.text)).toEqual(['Иван Сидоров', 'ООО «Ромашка», ул. Ленина, д. 5, кв. №12']);
  });
});

describe('whatsapp-cloud reply delivered in part', () => {
  it('names the text as delivered when the file after it is refused for good', async () => {
    const ticketId = await freshTicket('79162223344');
    // The text goes; the document message after it is refused (media WhatsApp cannot take).
    let calls = 0;
    graph.failMessagesTo = (to) => (to === '79162223344' && ++calls === 2
      ? { status: 400, error: { message: '(#131053) Media upload error', type: 'OAuthException', code: 131053, error_data: { details: 'Unsupported file' }, fbtrace_id: 'test' } }
      : undefined);
    const res = await fetch(`${gw.httpUrl}/v1/tickets/${ticketId}/replies`, {
      method: 'POST',
      headers: { authorization: `Bearer ${API_TOKEN}`, 'content-type': 'application/json' },
      body: JSON.stringify({ text: 'Акт сверки во вложении', attachments: [{ name: 'Акт сверки 2026.pdf', mimeType: 'application/pdf', contentBase64: Buffer.from('%PDF-1.4 акт').toString('base64') }] }),
    });
    expect(res.status).toBe(202);
    const failed = await gw.waitForEvent((e) => e.type === 'ticket.delivery_failed' && e.ticketId === ticketId);
    graph.failMessagesTo = undefined;
    const reason = (failed.entry as Extract<LogEntry, { kind: 'delivery' }>).status.reason!;
    expect(reason).toMatch(/^media_failed: .*131053.*; delivered before this: the text; not delivered: file «Акт сверки 2026\.pdf»$/);
    expect(graph.calls.filter((c) => c.json?.to === '79162223344' && c.json?.type === 'text').map((c) => c.json.text.body)).toEqual(['Акт сверки во вложении']);
  });
});
