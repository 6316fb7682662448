/**
 * Replies with files, as a Russian support team sends them. Names: Cyrillic, «№», and straight
 * quotes around a company name (ООО "Ромашка"); telegraf writes the name into the multipart
 * header between quotes without escaping, so a `"` in it broke the part and no document reached
 * Telegram. A file refused after the text went out: the failure says the text was delivered. A
 * long screenshot Telegram refuses as a photo (PHOTO_INVALID_DIMENSIONS): sent as a document
 * instead of failing the reply. telegraf's real client against the stand-in Bot API, a real
 * nats-server, the router and the outbound runner.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startGateway, type TestGateway } from '../../helpers/gateway.js';
import { startNats, type TestNats } from '../../helpers/nats-server.js';
import { FakeBotApi } from './bot-api.js';
import type { LogEntry } from '../../../src/core/schema.js';

const TOKEN = '123456:TEST-token-reply-files-abcdef';
let nats: TestNats;
let api: FakeBotApi;
let gw: TestGateway;
let messageId = 1;
const API_TOKEN = 'helpdesk-api-token-0123456789abcdef';

beforeAll(async () => {
  nats = await startNats();
  api = new FakeBotApi(TOKEN);
  await api.start();
  gw = await startGateway(
    {
      outbound: { backoffBase: '100ms' },
      api: { tokens: [{ name: 'helpdesk', token: API_TOKEN }] },
      connectors: [{ type: 'telegram', account: 'bot1', token: '${TG_TOKEN}', apiRoot: api.apiRoot, pollTimeoutS: 1, pacing: { privateChatIntervalMs: 0, groupIntervalMs: 0 } }],
    },
    { nats, env: { TG_TOKEN: TOKEN } },
  );
});
afterAll(async () => {
  await gw?.stop();
  await api?.stop();
  await nats?.stop();
});

/** A ticket for a new private chat, and the document name Telegram saw for a reply carrying `name`. */
async function sentName(chatId: number, name: string, mimeType: string): Promise<string> {
  await replyWithFile(await ticketFor(chatId), name, mimeType);
  const call = await api.waitForCall((c) => (c.method === 'sendDocument' || c.method === 'sendPhoto') && String(c.params.chat_id) === String(chatId));
  const [file] = Object.values(call.files);
  return file!.filename;
}

async function ticketFor(chatId: number): Promise<string> {
  api.push({ message: { message_id: messageId++, date: Math.floor(Date.now() / 1000), chat: { id: chatId, type: 'private', first_name: 'Ольга' }, from: { id: chatId, is_bot: false, first_name: 'Ольга' }, text: 'Пришлите, пожалуйста, документы' } });
  const created = await gw.waitForEvent((e) => e.type === 'ticket.message' && (e.entry as Extract<LogEntry, { kind: 'inbound' }>).event.conversation.id === String(chatId));
  return created.ticketId;
}

async function replyWithFile(ticketId: string, name: string, mimeType: string, bytes = Buffer.from('%PDF-1.4 документ')): Promise<string> {
  // As the helpdesk does it: the REST API, the file inline.
  const contentBase64 = bytes.toString('base64');
  const reply = await fetch(`${gw.httpUrl}/v1/tickets/${ticketId}/replies`, {
    method: 'POST',
    headers: { authorization: `Bearer ${API_TOKEN}`, 'content-type': 'application/json' },
    body: JSON.stringify({ text: 'Документы во вложении', attachments: [{ name, mimeType, contentBase64 }] }),
  });
  const text = await reply.text();
  expect(reply.status, text).toBe(202);
  return (JSON.parse(text) as { outboundId: string }).outboundId;
}

describe('telegram attachment names', () => {
  it('sends a Cyrillic name with № as it is', async () => {
    expect(await sentName(7001, 'Счёт №17 от 07.12.2026.pdf', 'application/pdf')).toBe('Счёт №17 от 07.12.2026.pdf');
  });

  it('keeps the whole name, extension included, when it has straight quotes in it', async () => {
    expect(await sentName(7002, 'Договор ООО "Ромашка" №5.pdf', 'application/pdf')).toBe('Договор ООО «Ромашка» №5.pdf');
    expect(await sentName(7003, 'Акт "сверки.pdf', 'application/pdf')).toBe('Акт «сверки.pdf');
  });
});

describe('a reply that went out in part', () => {
  it('says which parts the customer got when the file after the text is refused', async () => {
    const ticketId = await ticketFor(7004);
    api.failNext('sendDocument', { status: 413, body: { ok: false, error_code: 413, description: 'Request Entity Too Large' } });
    const outboundId = await replyWithFile(ticketId, 'Счёт №18.pdf', 'application/pdf');
    const failed = await gw.waitForEvent((e) => e.type === 'ticket.delivery_failed' && e.ticketId === ticketId);
    const reason = 'too_large: Request Entity Too Large; delivered before this: the text; not delivered: file «Счёт №18.pdf»';
    expect((failed.entry as Extract<LogEntry, { kind: 'delivery' }>).status).toMatchObject({ outboundId, status: 'failed', reason });
    expect((await gw.ticket(ticketId))!.lastDelivery).toMatchObject({ status: 'failed', reason });
    expect(api.calls.filter((c) => c.method === 'sendMessage' && String(c.params.chat_id) === '7004').map((c) => c.params.text)).toEqual(['Документы во вложении']);
  });
});

describe('a picture Telegram will not take as a photo', () => {
  it('goes as a document with the same bytes, and the reply is sent', async () => {
    const ticketId = await ticketFor(7005);
    // A long screenshot of an instruction page (1080 × 24000): Telegram refuses it as a photo.
    api.failNext('sendPhoto', { status: 400, body: { ok: false, error_code: 400, description: 'Bad Request: PHOTO_INVALID_DIMENSIONS' } });
    const png = Buffer.concat([Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]), Buffer.alloc(64, 1)]);
    const outboundId = await replyWithFile(ticketId, 'Инструкция по оплате.png', 'image/png', png);
    const delivered = await gw.waitForEvent((e) => (e.type === 'ticket.delivery' || e.type === 'ticket.delivery_failed') && e.ticketId === ticketId);
    expect((delivered.entry as Extract<LogEntry, { kind: 'delivery' }>).status).toMatchObject({ outboundId, status: 'sent' });
    const doc = await api.waitForCall((c) => c.method === 'sendDocument' && String(c.params.chat_id) === '7005');
    expect(doc.files.document).toMatchObject({ filename: 'Инструкция по оплате.png' });
    expect(Buffer.compare(doc.files.document!.bytes, png)).toBe(0);
  });
});
