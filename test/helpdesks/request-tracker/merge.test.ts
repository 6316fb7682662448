/**
 * Request Tracker: an agent merges two omnigate tickets' RT tickets, then answers on the
 * surviving one. RT merges the requestors and would mail both customers; through omnigate both
 * customers get the answer, once, with its file (a Cyrillic name); an internal comment reaches
 * neither. Real RT 5, real nats-server, the gateway with the Telegram Bot API stand-in.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startGateway, type TestGateway } from '../../helpers/gateway.js';
import { startNats, type TestNats } from '../../helpers/nats-server.js';
import { rtCall, rtInstalled, startRt, type TestRt } from '../../helpers/request-tracker.js';
import { until as poll } from '../form-post.js';
import { FakeBotApi } from '../../connectors/telegram/bot-api.js';
import { RtClient } from '../../../src/helpdesks/request-tracker/client.js';

const TOKEN = '123456:RT-merge-token-abcdefghijklmnop';
const PDF = Buffer.concat([Buffer.from('%PDF-1.4\n'), Buffer.alloc(4000, 7)]);
let rt: TestRt;
let nats: TestNats;
let api: FakeBotApi;
let client: RtClient;
let gw: TestGateway;
let messageId = 1;

const customer = (chatId: number, fields: Record<string, unknown>) => ({
  message: {
    message_id: messageId++,
    date: Math.floor(Date.now() / 1000),
    chat: { id: chatId, type: 'private', first_name: 'Ольга' },
    from: { id: chatId, is_bot: false, first_name: 'Ольга', language_code: 'ru' },
    ...fields,
  },
});
const until = <T>(what: string, probe: () => Promise<T | undefined | null | false>, timeoutMs = 90_000) => poll(what, probe, timeoutMs, 300);
const toChat = (chat: number) => api.calls.filter((c) => ['sendMessage', 'sendDocument', 'sendPhoto'].includes(c.method) && String(c.params.chat_id) === String(chat));

/** A customer's first message: its omnigate ticket and RT ticket. */
async function open(chat: number, fields: Record<string, unknown>): Promise<{ ticketId: string; rtId: number }> {
  api.push(customer(chat, fields));
  const created = await gw.waitForEvent((e) => e.type === 'ticket.created' && e.conversation?.id === String(chat), 30_000);
  const [rtId] = await until('the RT ticket', async () => {
    const ids = await client.findTicketsByCustomField('External ID', created.ticketId);
    return ids.length ? ids : null;
  });
  return { ticketId: created.ticketId, rtId: rtId! };
}

beforeAll(async () => {
  await Promise.all([startRt().then((r) => (rt = r)), startNats().then((n) => (nats = n))]);
  client = new RtClient({ url: rt.url, token: rt.token });
  api = new FakeBotApi(TOKEN);
  await api.start();
  gw = await startGateway(
    {
      outbound: { backoffBase: '100ms' },
      connectors: [{ type: 'telegram', account: 'bot1', token: '${TG_TOKEN}', apiRoot: api.apiRoot, pollTimeoutS: 1, pacing: { privateChatIntervalMs: 0, groupIntervalMs: 0 } }],
      helpdesks: [{ type: 'request-tracker', id: 'rt', url: rt.url, token: '${RT_TOKEN}', user: 'root', pollInterval: '500ms', backoffBase: '200ms', backoffMax: '2s' }],
    },
    { nats, env: { TG_TOKEN: TOKEN, RT_TOKEN: rt.token } },
  );
}, 240_000);
afterAll(async () => {
  await gw?.stop();
  await api?.stop();
  await nats?.stop();
  await rt?.stop();
});

describe.skipIf(!rtInstalled())('request-tracker: tickets merged in RT', () => {
  it("an agent's answer on the surviving ticket reaches both customers once, with its Cyrillic file name; a comment reaches neither", async () => {
    api.addFile('invoice', PDF);
    const a = await open(8101, { caption: 'Счёт не оплачивается', document: { file_id: 'invoice', file_name: 'Счёт №15.pdf', mime_type: 'application/pdf', file_size: PDF.length } });
    const b = await open(8102, { text: 'У меня тоже не проходит оплата по счёту №15' });
    // The customer's file is in RT under its own name.
    const created = (await client.transactionsAfter(0, { types: ['Create'] })).find((t) => t.ticketId === a.rtId)!;
    expect((await client.transactionParts(created.id)).map((p) => p.fileName).filter(Boolean)).toEqual(['Счёт №15.pdf']);

    // The agent merges B into A (REST2 has no merge; the web UI and REST 1.0 do).
    const merge = await fetch(`${rt.url}/REST/1.0/ticket/${b.rtId}/merge/${a.rtId}`, { method: 'POST', body: new URLSearchParams({ user: rt.agentUser, pass: rt.agentPassword }) });
    expect(await merge.text()).toContain('Merge completed');

    const reply = await rtCall(rt, 'agent', 'POST', `/ticket/${a.rtId}/correspond`, {
      Content: 'Оплату по счёту №15 провели, акт во вложении',
      ContentType: 'text/plain',
      // REST2 takes a name beyond U+00FF as its UTF-8 bytes (docs/helpdesks/request-tracker.md)
      Attachments: [{ FileName: Buffer.from('Акт сверки №3.pdf', 'utf8').toString('latin1'), FileType: 'application/pdf', FileContent: PDF.toString('base64') }],
    });
    expect(reply.status).toBe(201);
    expect((await rtCall(rt, 'agent', 'POST', `/ticket/${a.rtId}/comment`, { Content: 'Внутреннее: проверить второй платёж', ContentType: 'text/plain' })).status).toBe(201);

    for (const chat of [8101, 8102]) {
      await until(`the answer in chat ${chat}`, async () => toChat(chat).some((c) => c.method === 'sendDocument'));
    }
    await gw.waitForEvent((e) => e.type === 'ticket.note' && e.ticketId === a.ticketId, 30_000);
    await new Promise((r) => setTimeout(r, 4000)); // more polls: nothing is taken twice
    for (const chat of [8101, 8102]) {
      const calls = toChat(chat);
      expect(calls.filter((c) => String(c.params.text ?? '').includes('Оплату по счёту №15 провели'))).toHaveLength(1);
      const docs = calls.filter((c) => c.method === 'sendDocument');
      expect(docs.map((d) => d.files.document?.filename)).toEqual(['Акт сверки №3.pdf']);
      expect(docs[0]!.files.document!.bytes.equals(PDF)).toBe(true);
      expect(calls.some((c) => String(c.params.text ?? c.params.caption ?? '').includes('Внутреннее'))).toBe(false);
    }
    expect((await gw.ticket(b.ticketId))?.status).toBe('pending');
  }, 300_000);

  it('an omnigate ticket merged into an RT ticket not from omnigate (no External ID) still gets the answers there', async () => {
    const c = await open(8103, { text: 'Где мой возврат?' });
    const native = await rtCall(rt, 'agent', 'POST', '/ticket', { Queue: 'General', Subject: 'Возврат по почте', Content: 'Письмо клиента в RT' });
    const nativeId = Number(native.body.id);
    const merge = await fetch(`${rt.url}/REST/1.0/ticket/${c.rtId}/merge/${nativeId}`, { method: 'POST', body: new URLSearchParams({ user: rt.agentUser, pass: rt.agentPassword }) });
    expect(await merge.text()).toContain('Merge completed');
    expect((await rtCall(rt, 'agent', 'POST', `/ticket/${nativeId}/correspond`, { Content: 'Возврат отправлен сегодня', ContentType: 'text/plain' })).status).toBe(201);
    await until('the answer in chat 8103', async () => toChat(8103).some((m) => String(m.params.text ?? '').includes('Возврат отправлен сегодня')));
    await new Promise((r) => setTimeout(r, 3000));
    expect(toChat(8103).filter((m) => String(m.params.text ?? '').includes('Возврат отправлен'))).toHaveLength(1);
  }, 300_000);
});
