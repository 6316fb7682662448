/**
 * Zammad end to end through the real gateway: Telegram stand-in → router → helpdesk host →
 * Zammad stand-in (test/helpers/zammad-standin.ts, the documented REST API and signed webhooks)
 * and back: an agent's answer reaches the Telegram chat once, internal notes stay internal,
 * states map both ways, an outage loses nothing and keeps order.
 */
import { createHash } from 'node:crypto';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { startGateway, type TestGateway } from '../helpers/gateway.js';
import { startNats, type TestNats } from '../helpers/nats-server.js';
import { FakeBotApi } from '../connectors/telegram/bot-api.js';
import { ZammadStandin, type StandinTicket } from '../helpers/zammad-standin.js';
import { until as poll } from './form-post.js';
import type { LogEntry } from '../../src/core/schema.js';
import { deadLetters } from '../../src/dlq.js';
import { loadNatsSection } from '../../src/core/config.js';
import { registry } from '../../src/core/metrics.js';
import { RetentionSweeper } from '../../src/core/retention.js';
import { pino } from 'pino';
import { jetstream } from '@nats-io/jetstream';

const TG_TOKEN = '123456:TEST-token-abcdefghijklmnop';
const ZAMMAD_TOKEN = 'zammad-token-0123456789abcdef';
const SECRET = 'webhook-secret-0123456789';
const API_TOKEN = 'api-reader-token-0123456789';
let nats: TestNats;
let api: FakeBotApi;
let zammad: ZammadStandin;
const gateways: TestGateway[] = [];
let messageId = 1;

async function gateway(poll = '0s', extra: Record<string, unknown> = {}, on: { nats?: TestNats; id?: string } = {}): Promise<TestGateway> {
  const id = on.id ?? 'zammad';
  const gw = await startGateway({
    outbound: { backoffBase: '100ms' },
    router: { autoAcknowledge: { enabled: false } },
    api: { tokens: [{ name: 'ops', token: API_TOKEN, readOnly: true }, { name: 'dpo', token: 'dpo-token-0123456789abcdef-erase', admin: true }] },
    connectors: [{ type: 'telegram', account: 'bot1', token: '${TG_TOKEN}', apiRoot: api.apiRoot, pollTimeoutS: 1, pacing: { privateChatIntervalMs: 0, groupIntervalMs: 0 } }],
    helpdesks: [{
      type: 'zammad', id, url: zammad.url, token: '${ZAMMAD_TOKEN}', group: 'Users', groups: [{ channel: 'telegram', group: 'Telegram' }],
      webhook: { secret: SECRET }, poll: { interval: poll }, backoffBase: '100ms', backoffMax: '400ms', redeliverAfter: '5s', ...extra,
    }],
  }, { nats: on.nats ?? nats, env: { TG_TOKEN, ZAMMAD_TOKEN } });
  gateways.push(gw);
  zammad.webhook = { endpoint: `${gw.httpUrl}/helpdesks/${id}/zammad/webhook`, signatureToken: SECRET };
  return gw;
}

function message(chatId: number, fields: Record<string, unknown> = {}) {
  return {
    message: {
      message_id: messageId++, date: Math.floor(Date.now() / 1000),
      chat: { id: chatId, type: 'private', first_name: 'Ольга', last_name: 'Смирнова' },
      from: { id: chatId, is_bot: false, first_name: 'Ольга', last_name: 'Смирнова', username: 'olga_s', language_code: 'ru' },
      text: 'Здравствуйте! Не проходит оплата', ...fields,
    },
  };
}

/** This file's poll: every 100 ms for up to 30 s. */
const until = <T>(what: string, probe: () => T | undefined | null | false | Promise<T | undefined | null | false>, timeoutMs = 30_000): Promise<T> => poll(what, probe, timeoutMs, 100);

/** The Zammad ticket of an omnigate ticket: of `gw`'s installation when given (two may share a ticket id). */
const zammadTicketOf = (ticketId: string, gw?: TestGateway) =>
  until(`Zammad ticket for ${ticketId}`, () => [...zammad.tickets.values()].find((t) => (gw ? t.omnigate_ticket === `${ticketId}@${gw.gateway.bus.installationId}` : String(t.omnigate_ticket).startsWith(`${ticketId}@`))));
const sendsTo = (chat: number, text: string) => api.calls.filter((c) => c.method === 'sendMessage' && String(c.params.chat_id) === String(chat) && String(c.params.text).includes(text));

/** A customer's first message, synced: the omnigate ticket id and its Zammad ticket. */
async function openTicket(gw: TestGateway, chat: number, text: string): Promise<{ ticketId: string; zt: StandinTicket }> {
  api.push(message(chat, { text }));
  const created = await gw.waitForEvent((e) => e.type === 'ticket.created' && e.conversation?.id === String(chat), 20_000);
  const zt = await zammadTicketOf(created.ticketId, gw);
  await until('the link on the omnigate ticket', async () => (await gw.ticket(created.ticketId))?.externalRefs?.length);
  return { ticketId: created.ticketId, zt };
}

beforeAll(async () => {
  nats = await startNats();
  api = new FakeBotApi(TG_TOKEN);
  await api.start();
  zammad = new ZammadStandin({ token: ZAMMAD_TOKEN });
  zammad.triggers = [
    { name: 'omnigate: agent article', when: (e) => e.article?.sender === 'Agent' },
    { name: 'omnigate: state changed', when: (e) => e.stateChanged },
  ];
  await zammad.start();
});
afterEach(async () => {
  zammad.up();
  await Promise.all(gateways.splice(0).map((g) => g.stop()));
});
afterAll(async () => {
  await zammad?.stop();
  await api?.stop();
  await nats?.stop();
});

describe('zammad helpdesk adapter', () => {
  it('opens a Zammad ticket with the text and photo of a Telegram message, linked both ways', async () => {
    const gw = await gateway();
    const bytes = Buffer.alloc(50_000, 9);
    bytes.write('JPEG-ish', 0);
    api.addFile('zphoto', bytes);
    api.push(message(7001, { text: undefined, caption: 'Скриншот ошибки', photo: [{ file_id: 'zphoto', width: 800, height: 600, file_size: bytes.length }] }));
    const created = await gw.waitForEvent((e) => e.type === 'ticket.created' && e.conversation?.id === '7001', 20_000);
    const zt = await zammadTicketOf(created.ticketId);
    expect(zammad.groups.find((g) => g.id === zt.group_id)!.name).toBe('Telegram');
    const [first] = zammad.ticketArticles(zt.id);
    expect(first).toMatchObject({ sender: 'Customer', internal: false, type: 'web', body: 'Скриншот ошибки' });
    expect(first!.attachments).toHaveLength(1);
    expect(createHash('sha256').update(first!.attachments[0]!.data).digest('hex')).toBe(createHash('sha256').update(bytes).digest('hex'));
    expect(first!.attachments[0]!.preferences['Mime-Type']).toBe('image/jpeg');
    const customer = zammad.users.find((u) => u.id === zt.customer_id)!;
    expect(customer).toMatchObject({ login: 'telegram-bot1-7001', firstname: 'Ольга', lastname: 'Смирнова' });

    const ticket = await until('externalRefs', async () => (await gw.ticket(created.ticketId))?.externalRefs?.[0]);
    expect(ticket).toMatchObject({ system: 'zammad', externalId: String(zt.id), url: `${zammad.url}/#ticket/zoom/${zt.id}` });
    // The REST API shows it.
    const viaApi = await fetch(`${gw.httpUrl}/v1/tickets/${created.ticketId}`, { headers: { authorization: `Bearer ${API_TOKEN}` } }).then((r) => r.json() as Promise<{ ticket: { externalRefs?: unknown[] } }>);
    expect(viaApi.ticket.externalRefs).toEqual([expect.objectContaining({ system: 'zammad', externalId: String(zt.id) })]);

    const ready = await fetch(`${gw.httpUrl}/readyz`, { headers: { authorization: `Bearer ${API_TOKEN}` } }).then((r) => r.json() as Promise<{ helpdesks?: Array<{ id: string; type: string; syncing: boolean; state: string }> }>);
    expect(ready.helpdesks).toEqual([expect.objectContaining({ id: 'zammad', type: 'zammad', syncing: true, state: 'connected' })]);

    // The first message was announced twice (created + message): one article.
    api.push(message(7001, { text: 'И ещё: номер заказа 48213' }));
    await until('the second article', () => zammad.ticketArticles(zt.id).length === 2);
    const second = zammad.ticketArticles(zt.id)[1]!;
    expect(second).toMatchObject({ sender: 'Customer', origin_by_id: zt.customer_id, body: 'И ещё: номер заказа 48213', created_by_id: zammad.integration.id });
    // Our own customer articles never made the agent trigger fire.
    expect(zammad.deliveries.filter((d) => d.body.ticket.id === zt.id)).toHaveLength(0);
  });

  it('titles a ticket by what the customer wrote, not by «Здравствуйте!», and shows a name as it is written', async () => {
    const gw = await gateway();
    // A direction override made "\u202eавлО" display as "Олва" in Zammad: taken out at the edge.
    api.push(message(7101, { text: 'Здравствуйте!\n\nНе проходит оплата заказа 48213', from: { id: 7101, is_bot: false, first_name: '\u202eОльга\u202c', last_name: 'Смирнова' } }));
    const created = await gw.waitForEvent((e) => e.type === 'ticket.created' && e.conversation?.id === '7101', 20_000);
    const zt = await zammadTicketOf(created.ticketId);
    expect(zt.title).toBe(`Не проходит оплата заказа 48213 [${created.ticketId}]`);
    expect(zammad.users.find((u) => u.id === zt.customer_id)).toMatchObject({ firstname: 'Ольга', lastname: 'Смирнова' });
    // Only a greeting: the greeting it is.
    const { zt: greeting, ticketId } = await openTicket(gw, 7102, 'Добрый день!');
    expect(greeting.title).toBe(`Добрый день! [${ticketId}]`);
  });

  it('tells the agents, on the Zammad ticket, that an answer was not sent because omnigate erased its ticket', async () => {
    const gw = await gateway();
    const { ticketId, zt } = await openTicket(gw, 7103, 'Удалите мои данные');
    const { Eraser } = await import('../../src/core/erasure.js');
    const { createLogger } = await import('../../src/core/logger.js');
    await new Eraser(gw.gateway.bus, createLogger({ level: 'silent' })).erase({ ticketIds: [ticketId], identities: ['7103'] }, { reason: 'api', requestedBy: 'test' });
    gw.gateway.router!.store.invalidate(undefined, ticketId); // as the erasure route does

    zammad.agentArticle(zt.id, { body: 'Ваши данные удалены, всего доброго!' });
    const told = await until('the note that the answer was not sent', () => zammad.ticketArticles(zt.id).find((a) => a.internal && String(a.body).includes('НЕ отправлен')));
    expect(told.body).toContain(ticketId);
    expect(sendsTo(7103, 'Ваши данные удалены')).toHaveLength(0);
    // Its own note is no agent's answer: taken once, not again.
    await new Promise((r) => setTimeout(r, 1500));
    expect(zammad.ticketArticles(zt.id).filter((a) => String(a.body).includes('НЕ отправлен'))).toHaveLength(1);
    expect(gw.logs.some((l) => l.includes('agent answer NOT sent'))).toBe(true);
  });

  it("takes an agent's public answer to the Telegram chat once, keeps an internal note internal, and mirrors a state change", async () => {
    const gw = await gateway();
    const { ticketId, zt } = await openTicket(gw, 7002, 'Где мой заказ?');
    const articlesBefore = zammad.ticketArticles(zt.id).length;

    zammad.agentArticle(zt.id, { body: '<p>Здравствуйте, Ольга!</p><p>Заказ уже в пути.</p>' });
    const sent = await api.waitForCall((c) => c.method === 'sendMessage' && String(c.params.chat_id) === '7002', 20_000);
    expect(sent.params.text).toBe('Здравствуйте, Ольга!\nЗаказ уже в пути.');
    const reply = await gw.waitForEvent((e) => e.type === 'ticket.reply' && e.ticketId === ticketId);
    const out = (reply.entry as Extract<LogEntry, { kind: 'outbound' }>).message;
    expect(out.author).toEqual({ id: `helpdesk:zammad:${zammad.agent.id}`, name: 'Emma Agent' });

    zammad.agentArticle(zt.id, { body: 'Клиент VIP, проверить доставку', internal: true });
    const note = await gw.waitForEvent((e) => e.type === 'ticket.note' && e.ticketId === ticketId, 20_000);
    expect(note.entry).toMatchObject({ kind: 'note', text: 'Клиент VIP, проверить доставку' });
    // A note of white space alone (notes refuse it) is taken as an empty one, not parked.
    zammad.agentArticle(zt.id, { body: ' \n ', internal: true });
    const blank = await gw.waitForEvent((e) => e.type === 'ticket.note' && e.ticketId === ticketId && e.id !== note.id, 20_000);
    expect(blank.entry).toMatchObject({ kind: 'note', text: '(empty note)' });

    // Zammad repeats a delivery (a retry after a lost answer): still one message in the chat.
    const delivered = zammad.deliveries.find((d) => d.body.article?.body?.includes('Заказ уже в пути'))!;
    const raw = JSON.stringify(delivered.body);
    const { createHmac } = await import('node:crypto');
    const again = await fetch(zammad.webhook!.endpoint, {
      method: 'POST', body: raw,
      headers: { 'content-type': 'application/json', 'x-hub-signature': `sha1=${createHmac('sha1', SECRET).update(raw).digest('hex')}`, 'x-zammad-delivery': delivered.delivery },
    });
    expect(again.status).toBe(200);
    const forged = await fetch(zammad.webhook!.endpoint, { method: 'POST', body: raw, headers: { 'content-type': 'application/json', 'x-hub-signature': 'sha1=00' } });
    expect(forged.status).toBe(401);

    zammad.agentSetState(zt.id, 'closed');
    await until('the omnigate ticket closed', async () => (await gw.ticket(ticketId))?.status === 'closed', 20_000);
    await zammad.idle();
    await new Promise((r) => setTimeout(r, 1000));
    expect(sendsTo(7002, 'Заказ уже в пути')).toHaveLength(1);
    expect(api.calls.filter((c) => String(c.params.chat_id) === '7002' && String(c.params.text ?? '').includes('VIP'))).toHaveLength(0);
    // Nothing taken from Zammad was written back to it (echo): no new articles, state unchanged.
    expect(zammad.ticketArticles(zt.id).length).toBe(articlesBefore + 3);
    expect(zammad.stateName(zammad.tickets.get(zt.id)!)).toBe('closed');
  });

  it('writes an omnigate status change and a reply sent through the API to Zammad, without taking them back', async () => {
    const gw = await gateway();
    const { ticketId, zt } = await openTicket(gw, 7003, 'Вопрос по счёту');
    const r = await gw.request('omni.cmd.reply', { ticketId, text: 'Ответ из API', author: { id: 'agent-7', name: 'Мария' } });
    expect(r.ok).toBe(true);
    await until('the API reply as an agent article', () => zammad.ticketArticles(zt.id).find((a) => a.body.startsWith('Ответ из API')));
    const a = zammad.ticketArticles(zt.id).find((x) => x.body.startsWith('Ответ из API'))!;
    expect(a).toMatchObject({ sender: 'Agent', internal: false, type: 'web', created_by_id: zammad.integration.id });
    await gw.request('omni.cmd.status', { ticketId, status: 'resolved' });
    await until('Zammad closed', () => zammad.stateName(zammad.tickets.get(zt.id)!) === 'closed');
    await zammad.idle();
    await new Promise((r2) => setTimeout(r2, 1000));
    // The trigger fired for our own agent article and state change; the echo was dropped.
    expect(zammad.deliveries.some((d) => d.body.ticket.id === zt.id)).toBe(true);
    expect(sendsTo(7003, 'Ответ из API')).toHaveLength(1);
    expect((await gw.ticket(ticketId))!.status).toBe('resolved');
  });

  it('keeps every customer message, in order, while Zammad is down, and delivers them when it is back', async () => {
    const gw = await gateway();
    const { ticketId, zt } = await openTicket(gw, 7004, 'Первое');
    zammad.down();
    for (const text of ['Второе', 'Третье', 'Четвёртое']) {
      api.push(message(7004, { text }));
      await gw.waitForEvent((e) => e.type === 'ticket.message' && e.ticketId === ticketId && (e.entry as any)?.event?.text === text, 20_000);
    }
    await until('a failed attempt logged', () => gw.logs.some((l) => l.includes('helpdesk did not take the event; retrying')));
    await new Promise((r) => setTimeout(r, 1500));
    zammad.up();
    await until('all messages in Zammad', () => zammad.ticketArticles(zt.id).length === 4, 30_000);
    expect(zammad.ticketArticles(zt.id).map((a) => a.body)).toEqual(['Первое', 'Второе', 'Третье', 'Четвёртое']);
  });

  it('writes an article once when Zammad took it but the answer was lost', async () => {
    const gw = await gateway();
    const { zt } = await openTicket(gw, 7007, 'Первое сообщение');
    zammad.cutAfter.add('POST ticket_articles');
    api.push(message(7007, { text: 'Второе сообщение' }));
    await until('the retry after the lost answer', () => gw.logs.some((l) => l.includes('the earlier attempt had reached Zammad')), 30_000);
    api.push(message(7007, { text: 'Третье сообщение' }));
    await until('the third article', () => zammad.ticketArticles(zt.id).length >= 3);
    expect(zammad.ticketArticles(zt.id).map((a) => a.body)).toEqual(['Первое сообщение', 'Второе сообщение', 'Третье сообщение']);
  });

  it('finds answers by polling when the webhook never arrived', async () => {
    const gw = await gateway('500ms');
    const { zt } = await openTicket(gw, 7005, 'Есть кто-нибудь?');
    const hook = zammad.webhook;
    zammad.webhook = undefined; // the trigger is missing or its deliveries failed for good
    zammad.agentArticle(zt.id, { body: 'Да, мы здесь', contentType: 'text/plain' });
    zammad.webhook = hook;
    await api.waitForCall((c) => c.method === 'sendMessage' && String(c.params.chat_id) === '7005' && c.params.text === 'Да, мы здесь', 30_000);
    await new Promise((r) => setTimeout(r, 2000));
    expect(sendsTo(7005, 'Да, мы здесь')).toHaveLength(1);
  });

  it('parks what Zammad refuses for good, with its reason, and records no link', async () => {
    const gw = await gateway('0s', { groups: [{ channel: 'telegram', group: 'Нет такой группы' }] });
    api.push(message(7006, { text: 'В какую группу?' }));
    const created = await gw.waitForEvent((e) => e.type === 'ticket.created' && e.conversation?.id === '7006', 20_000);
    const letter = await gw.waitForStreamMessage<{ source: string; code: string; reason: string; meta: Record<string, string> }>(
      'OMNI_DLQ', 'omni.dlq.helpdesk.zammad', (d) => d.meta?.ticketId === created.ticketId, 30_000,
    );
    expect(letter).toMatchObject({ source: 'helpdesk.zammad', code: 'http_422' });
    expect(letter.reason).toMatch(/No lookup value found for 'group'/);
    expect([...zammad.tickets.values()].some((t) => String(t.omnigate_ticket).startsWith(`${created.ticketId}@`))).toBe(false);
    expect((await gw.ticket(created.ticketId))!.externalRefs).toBeUndefined();

    // The admin creates the group; `omnigate dlq --replay` sends the parked events again.
    zammad.groups.push({ id: 3, name: 'Нет такой группы' });
    const lines: string[] = [];
    const r = await deadLetters(loadNatsSection(undefined, { OMNIGATE_NATS__URL: nats.url }), { source: 'helpdesk.zammad', limit: 1000, replay: true, out: (l) => lines.push(l) });
    expect(r.failed).toBe(0);
    expect(r.replayed).toBeGreaterThanOrEqual(1);
    const zt = await zammadTicketOf(created.ticketId);
    expect(zammad.ticketArticles(zt.id).map((a) => a.body)).toEqual(['В какую группу?']);
    await until('linked after the replay', async () => (await gw.ticket(created.ticketId))?.externalRefs?.length);
  });
  // docs/api.md lists these; test/api/metrics-move.test.ts runs no helpdesk and leaves their proof here.
  it('a second installation on the same Zammad makes its own tickets, and a renamed helpdesk id does not send old answers again', async () => {
    // Installation A (its own NATS data): a ticket with an agent's answer, delivered once.
    const natsA = await startNats();
    const natsB = await startNats();
    try {
      const a = await gateway('300ms', {}, { nats: natsA });
      const first = await openTicket(a, 7101, 'Клиент А: где заказ?');
      zammad.agentArticle(first.zt.id, { body: 'Ответ клиенту А: код возврата 4711', contentType: 'text/plain' });
      await api.waitForCall((c) => c.method === 'sendMessage' && String(c.params.chat_id) === '7101' && String(c.params.text).includes('4711'), 30_000);
      await a.stop();
      // Installation B (a reinstall on fresh NATS data): its tickets are numbered from the start
      // again, and the same ticket id must not take A's Zammad ticket for its own.
      const b = await gateway('300ms', {}, { nats: natsB });
      const second = await openTicket(b, 7102, 'Клиент Б: вопрос по счёту');
      expect(second.ticketId).toBe(first.ticketId);
      expect(second.zt.id).not.toBe(first.zt.id);
      expect(zammad.ticketArticles(first.zt.id).map((x) => x.body)).not.toContain('Клиент Б: вопрос по счёту');
      await b.stop();
      // A again, with its helpdesk renamed in the config: no mapping under the new id, so the
      // existing Zammad ticket is found and linked; what it held is history, not answers.
      const renamed = await gateway('300ms', {}, { nats: natsA, id: 'support' });
      api.push(message(7101, { text: 'Клиент А: спасибо!' }));
      await until('the new message in A\'s Zammad ticket', () => zammad.ticketArticles(first.zt.id).some((x) => x.body === 'Клиент А: спасибо!'));
      await new Promise((r) => setTimeout(r, 2_000)); // several polls
      expect(sendsTo(7101, '4711')).toHaveLength(1);
      expect(sendsTo(7102, '4711')).toHaveLength(0);
      await renamed.stop();
    } finally {
      await natsA.stop();
      await natsB.stop();
    }
  }, 120_000);

  it('writes a held-back first message when it is replayed after a later message opened the ticket', async () => {
    const gw = await gateway('0s', { retryFor: '2s' });
    zammad.down();
    api.push(message(7202, { text: 'Сообщение 1' }));
    const created = await gw.waitForEvent((e) => e.type === 'ticket.created' && e.conversation?.id === '7202', 20_000);
    // Both announcements of message 1 (ticket.created and ticket.message) parked, this ticket's only.
    const parked = async () => {
      const lines: string[] = [];
      await deadLetters(loadNatsSection(undefined, { OMNIGATE_NATS__URL: nats.url }), { source: 'helpdesk.zammad', limit: 1000, replay: false, out: (l) => lines.push(l) });
      return lines.filter((l) => l.includes(` of ${created.ticketId}:`));
    };
    await until('both announcements of message 1 parked', async () => (await parked()).length === 2, 30_000);
    zammad.up();
    api.push(message(7202, { text: 'Сообщение 2' }));
    const zt = await zammadTicketOf(created.ticketId, gw);
    await until('message 2 in Zammad', () => zammad.ticketArticles(zt.id).some((x) => x.body === 'Сообщение 2'));
    const r = await deadLetters(loadNatsSection(undefined, { OMNIGATE_NATS__URL: nats.url }), { source: 'helpdesk.zammad', limit: 1000, replay: true, out: () => {} });
    expect(r.failed).toBe(0);
    const bodies = zammad.ticketArticles(zt.id).map((x) => x.body);
    expect(bodies.filter((b) => b === 'Сообщение 1')).toHaveLength(1);
    expect(bodies.filter((b) => b === 'Сообщение 2')).toHaveLength(1);
    // Opened from message 2 (a system article says the earlier ones follow), message 1 written by its replay.
    expect(zammad.ticketArticles(zt.id)[0]!.body).toMatch(/первые сообщения не попали/);
    expect(gw.logs.some((l) => l.includes('first message written after the ticket was opened from a later event'))).toBe(true);
  }, 120_000);

  it('a wrong token keeps the helpdesk auth_failed while events wait (it flipped to disconnected on every retry)', async () => {
    const gw = await gateway('0s', { token: 'wrong-token-0123456789' });
    api.push(message(7301, { text: 'Кто-нибудь видит?' }));
    await gw.waitForEvent((e) => e.type === 'ticket.created' && e.conversation?.id === '7301', 20_000);
    const health = () => gw.gateway.helpdesks!.health().find((h) => h.id === 'zammad');
    await until('auth_failed', () => health()?.state === 'auth_failed');
    const since = health()!.since;
    for (let i = 0; i < 5; i++) {
      await new Promise((r) => setTimeout(r, 300)); // several retries (backoff 100–400 ms), polls too
      // `since` is when the outage began (an alert's "for how long"), not the last retry
      expect(health()).toMatchObject({ state: 'auth_failed', since });
    }
    // one warning when the state changed, not one per retry and poll
    expect(gw.logs.filter((l) => l.includes('helpdesk state changed') && l.includes('auth_failed'))).toHaveLength(1);
    // and Prometheus can alert on it
    const scraped = await (await fetch(`${gw.httpUrl}/metrics`)).text();
    expect(scraped).toContain('omnigate_helpdesk_state{helpdesk="zammad",state="auth_failed"} 1');
    expect(scraped).toContain('omnigate_helpdesk_state{helpdesk="zammad",state="connected"} 0');
  });

  it("a person's erasure deletes their Zammad ticket (parked, naming the permission, while the token may not), and forgets the mapping", async () => {
    const DPO = 'dpo-token-0123456789abcdef-erase';
    const gw = await gateway('0s', {}, {});
    const { ticketId, zt } = await openTicket(gw, 7401, 'Моя карта 4276 1234 5678 9012, помогите');
    await until('the mapping', async () => (await gw.gateway.bus.kv.state.get(`helpdesk.zammad.ticket.${ticketId}`))?.operation === 'PUT');
    await gw.gateway.readModel!.caughtUp();
    const db = await gw.gateway.readModel!.database();
    const [row] = (await db.query<{ contact_id: string }>('SELECT contact_id FROM tickets WHERE id = $1', [ticketId])) as [{ contact_id: string }];
    const erase = () => fetch(`${gw.httpUrl}/v1/contacts/${row.contact_id}/erase`, { method: 'POST', headers: { authorization: `Bearer ${DPO}`, 'content-type': 'application/json' }, body: '{}' });
    // Without the admin permission Zammad refuses (403): parked with a reason an operator can act on.
    expect((await erase()).status).toBe(200);
    const parked = async () => {
      const lines: string[] = [];
      await deadLetters(loadNatsSection(undefined, { OMNIGATE_NATS__URL: nats.url }), { source: 'helpdesk.zammad', limit: 1000, replay: false, out: (l) => lines.push(l) });
      return lines.filter((l) => l.includes(`ticket.erased of ${ticketId}:`));
    };
    const [letter] = await until('the erasure parked', async () => ((await parked()).length ? parked() : undefined));
    expect(letter).toContain('admin');
    expect(zammad.tickets.has(zt.id)).toBe(true);
    // Granted, the dead letter replayed: the ticket and its articles are gone, and so is the mapping.
    zammad.integration.roles.push('Admin');
    try {
      const r = await deadLetters(loadNatsSection(undefined, { OMNIGATE_NATS__URL: nats.url }), { source: 'helpdesk.zammad', limit: 1000, replay: true, out: () => {} });
      expect(r.failed).toBe(0);
      await until('the Zammad ticket deleted', () => !zammad.tickets.has(zt.id));
      expect(zammad.ticketArticles(zt.id)).toEqual([]);
      for (const key of [`helpdesk.zammad.ticket.${ticketId}`, `helpdesk.zammad.external.${zt.id}`]) {
        expect((await gw.gateway.bus.kv.state.get(key))?.operation ?? 'gone').not.toBe('PUT');
      }
    } finally {
      zammad.integration.roles.splice(zammad.integration.roles.indexOf('Admin'), 1);
    }
  }, 120_000);

  it('retention deletes an expired ticket from Zammad the same way; the poller stops asking for it', async () => {
    zammad.integration.roles.push('Admin');
    try {
      const gw = await gateway('200ms');
      const { ticketId, zt } = await openTicket(gw, 7402, 'Старый вопрос');
      const sweeper = new RetentionSweeper(gw.gateway.bus, { ticketsMs: 1, attachmentsMs: 0, sweepIntervalMs: 60_000, leaseTtlMs: 10_000, holder: 't', expiredTickets: async () => [ticketId] }, pino({ level: 'silent' }));
      const message = await gw.waitForEvent((e) => e.type === 'ticket.message' && e.ticketId === ticketId);
      await sweeper.sweep(Date.now());
      await until('the Zammad ticket deleted', () => !zammad.tickets.has(zt.id));
      // An event the router published while the erasure ran (a straggler of the erased ticket)
      // opens no helpdesk ticket again (a review found it would, and nothing would ever delete it).
      const tickets = zammad.tickets.size;
      const straggler = { ...message, id: `${message.id}:straggler` };
      await jetstream(gw.nc).publish('omni.events.ticket.message', JSON.stringify(straggler), { msgID: straggler.id });
      await until('the straggler skipped', () => gw.logs.some((l) => l.includes('event of an erased ticket') && l.includes(ticketId)));
      expect(zammad.tickets.size).toBe(tickets);
      const asked = () => zammad.requests.filter((r) => r.method === 'GET' && r.path === `/api/v1/tickets/${zt.id}`).length;
      // A poll pass already under way when the erasure ran may ask once more (its 404 drops the
      // ticket for good, zammad/intake.ts): after that, nothing more.
      await new Promise((r) => setTimeout(r, 1000));
      const before = asked();
      await new Promise((r) => setTimeout(r, 1000)); // five poll intervals
      expect(asked()).toBe(before);
      expect(gw.logs.filter((l) => l.includes('polling Zammad failed'))).toEqual([]);
    } finally {
      zammad.integration.roles.splice(zammad.integration.roles.indexOf('Admin'), 1);
    }
  }, 60_000);

  it('counted what it did in the helpdesk metrics', async () => {
    const all = await registry.getMetricsAsJSON();
    const total = (name: string, pred: (l: Record<string, unknown>) => boolean = () => true) =>
      all.flatMap((m) => m.values.filter((v) => ((v as { metricName?: string }).metricName ?? m.name) === name && pred(v.labels))).reduce((a, v) => a + v.value, 0);
    expect(total('omnigate_helpdesk_events_total', (l) => l.outcome === 'applied')).toBeGreaterThan(0);
    expect(total('omnigate_helpdesk_events_total', (l) => l.outcome === 'parked')).toBeGreaterThan(0);
    expect(total('omnigate_helpdesk_retries_total')).toBeGreaterThan(0);
    expect(total('omnigate_helpdesk_answers_total', (l) => l.outcome === 'taken')).toBeGreaterThan(0);
    expect(total('omnigate_helpdesk_sync_seconds_count')).toBeGreaterThan(0);
  });
});
