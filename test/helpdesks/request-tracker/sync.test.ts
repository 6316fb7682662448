/**
 * Request Tracker end to end: a real RT 5 (Debian's packages, one instance for the file), a real
 * nats-server, the whole gateway with the Telegram connector against the Bot API stand-in, and
 * the request-tracker helpdesk adapter. The test plays the customer (Telegram updates) and the
 * agent (REST2 calls as RT user `agent`); the adapter writes as `root`.
 */
import { createServer, type Server } from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { Kvm } from '@nats-io/kv';
import { startGateway, type TestGateway } from '../../helpers/gateway.js';
import { startNats, type TestNats } from '../../helpers/nats-server.js';
import { spawnGateway, writeConfig, type GatewayProcess } from '../../helpers/process.js';
import { rtCall, rtInstalled, startRt, type TestRt } from '../../helpers/request-tracker.js';
import { FakeBotApi } from '../../connectors/telegram/bot-api.js';
import { RtClient } from '../../../src/helpdesks/request-tracker/client.js';
import type { LogEntry, Ticket } from '../../../src/core/schema.js';
import { Eraser } from '../../../src/core/erasure.js';
import { pino } from 'pino';

const TOKEN = '123456:RT-test-token-abcdefghijklmnop';
const PHOTO = Buffer.concat([Buffer.from('\xff\xd8\xff\xe0JFIF-ish', 'latin1'), Buffer.alloc(20_000, 9)]);
let rt: TestRt;
let nats: TestNats;
let api: FakeBotApi;
let client: RtClient;
let messageId = 1;
const WEBHOOK_SECRET = 'rt-webhook-secret-0123456789';
/** RT's webhook scrip posts here (RT starts before the gateway's port is known); relayed to the gateway. */
let relay: Server;
let relayTarget: string | undefined;
const relayed: number[] = [];

async function waitFor<T>(what: string, fn: () => Promise<T | undefined | null | false>, timeoutMs = 60_000): Promise<T> {
  const started = Date.now();
  const deadline = started + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const v = await fn();
      if (v) {
        if (process.env.RT_TEST_TIMINGS) console.log(`${what}: ${Date.now() - started} ms`);
        return v;
      }
    } catch (err) {
      last = err;
    }
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}${last ? `: ${String(last)}` : ''}`);
    await new Promise((r) => setTimeout(r, 250));
  }
}

function customer(chatId: number, fields: Record<string, unknown> = {}) {
  return {
    message: {
      message_id: messageId++,
      date: Math.floor(Date.now() / 1000),
      chat: { id: chatId, type: 'private', first_name: 'Ольга', last_name: 'Смирнова' },
      from: { id: chatId, is_bot: false, first_name: 'Ольга', last_name: 'Смирнова', username: 'olga_s', language_code: 'ru' },
      text: 'Здравствуйте! Не проходит оплата',
      ...fields,
    },
  };
}

function config(rtUrl: string, extra: Record<string, unknown> = {}) {
  return {
    outbound: { backoffBase: '100ms' },
    connectors: [{ type: 'telegram', account: 'bot1', token: '${TG_TOKEN}', apiRoot: api.apiRoot, pollTimeoutS: 1, pacing: { privateChatIntervalMs: 0, groupIntervalMs: 0 } }],
    helpdesks: [{
      type: 'request-tracker', id: 'rt', url: rtUrl, token: '${RT_TOKEN}', user: 'root', pollInterval: '500ms',
      backoffBase: '200ms', backoffMax: '2s', redeliverAfter: '3s', ...extra,
    }],
  };
}

/** RT tickets whose External ID is this omnigate ticket. */
const rtTicketsOf = (ticketId: string) => client.findTicketsByCustomField('External ID', ticketId);

/** The text parts and file names of an RT ticket's customer-visible transactions (Create, Correspond), in order. */
async function rtMessages(rtId: number): Promise<Array<{ type: string; creator: string; text: string; files: string[] }>> {
  const all = await client.transactionsAfter(0, { types: ['Create', 'Correspond', 'Comment'], limit: 100 });
  const out = [];
  for (const t of all.filter((x) => x.ticketId === rtId)) {
    const parts = await client.transactionParts(t.id);
    out.push({
      type: t.type,
      creator: t.creator,
      text: parts.find((p) => p.contentType === 'text/plain' && p.content !== undefined)?.content ?? '',
      files: parts.filter((p) => p.fileName).map((p) => p.fileName!),
    });
  }
  return out;
}

beforeAll(async () => {
  relay = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      if (!relayTarget) return void res.writeHead(503).end();
      fetch(relayTarget, { method: 'POST', headers: { 'content-type': 'application/json', 'x-rt-signature': String(req.headers['x-rt-signature'] ?? '') }, body: Buffer.concat(chunks) })
        .then((r) => {
          relayed.push(r.status);
          res.writeHead(r.status).end();
        })
        .catch(() => res.writeHead(502).end());
    });
  });
  await new Promise<void>((r) => relay.listen(0, '127.0.0.1', r));
  const webhookUrl = `http://127.0.0.1:${(relay.address() as { port: number }).port}/rt`;
  // Each assigned as it comes up, so afterAll stops it even when the other fails to start.
  await Promise.all([startRt({ webhookUrl, webhookSecret: WEBHOOK_SECRET }).then((r) => (rt = r)), startNats().then((n) => (nats = n))]);
  client = new RtClient({ url: rt.url, token: rt.token });
  api = new FakeBotApi(TOKEN);
  await api.start();
}, 240_000);
afterAll(async () => {
  relay?.closeAllConnections();
  await new Promise((r) => relay?.close(r));
  await api?.stop();
  await nats?.stop();
  await rt?.stop();
});

describe.skipIf(!rtInstalled())('request-tracker helpdesk against a real RT 5', () => {
  let gw: TestGateway;
  let ticketId: string;
  let rtId: number;
  const sent = (chat: number) => api.calls.filter((c) => (c.method === 'sendMessage' || c.method === 'sendPhoto') && String(c.params.chat_id) === String(chat));

  beforeAll(async () => {
    gw = await startGateway(config(rt.url, { webhookSecret: WEBHOOK_SECRET }), { nats, env: { TG_TOKEN: TOKEN, RT_TOKEN: rt.token } });
    relayTarget = `${gw.httpUrl}/helpdesks/rt/webhook`;
  }, 60_000);
  afterAll(async () => {
    relayTarget = undefined;
    await gw?.stop();
  });

  it('a Telegram text with a photo becomes an RT ticket with both, linked both ways; a later message is added to it', async () => {
    api.addFile('photo-1', PHOTO);
    api.push(customer(7001, { text: undefined, caption: 'Оплата не проходит, вот скриншот', photo: [{ file_id: 'photo-1', width: 800, height: 600, file_size: PHOTO.length }] }));
    const created = await gw.waitForEvent((e) => e.type === 'ticket.created' && e.conversation?.id === '7001', 30_000);
    ticketId = created.ticketId;

    rtId = (
      await waitFor('the RT ticket', async () => {
        const ids = await rtTicketsOf(ticketId);
        return ids.length ? ids : null;
      })
    )[0]!;
    const t = await rtCall(rt, 'root', 'GET', `/ticket/${rtId}`);
    expect(t.body.Queue.id).toBe('1'); // General
    expect(t.body.Subject).toContain('Ольга Смирнова');
    expect(t.body.Requestor[0].id).toMatch(/^omnigate\.telegram\.bot1\.7001$/);
    const requestor = await rtCall(rt, 'root', 'GET', `/user/${t.body.Requestor[0].id}`);
    expect(requestor.body).toMatchObject({ RealName: 'Ольга Смирнова', EmailAddress: '' });

    const [first] = await rtMessages(rtId);
    expect(first).toMatchObject({ type: 'Create', creator: 'root', text: 'Оплата не проходит, вот скриншот' });
    expect(first!.files).toHaveLength(1);
    const createTxn = (await client.transactionsAfter(0, { types: ['Create'] })).find((x) => x.ticketId === rtId)!;
    const file = (await client.transactionParts(createTxn.id)).find((p) => p.fileName)!;
    expect(file.contentType).toBe('image/jpeg');
    expect((await client.attachmentBytes(file.id)).equals(PHOTO)).toBe(true);

    const linked = await waitFor('externalRefs on the omnigate ticket', async () => (await gw.ticket(ticketId))?.externalRefs?.[0]);
    expect(linked).toMatchObject({ system: 'rt', externalId: String(rtId), url: `${rt.url}/Ticket/Display.html?id=${rtId}` });

    api.push(customer(7001, { text: 'И ещё: карта Мир' }));
    await waitFor('the second message in RT', async () => (await rtMessages(rtId)).some((m) => m.type === 'Correspond' && m.text === 'И ещё: карта Мир'));
    // RT mailed nobody: the requestor has no address, and RT never wrote to the customer itself
    const messages = await rtMessages(rtId);
    expect(messages.filter((m) => m.text === 'Оплата не проходит, вот скриншот' || m.text === 'И ещё: карта Мир')).toHaveLength(2);
    expect(gw.logs.join('')).not.toContain(rt.token.split('-').at(-1));
  }, 180_000);

  it("an agent's correspondence in RT reaches the Telegram chat once; a comment stays internal (an omnigate note)", async () => {
    const before = sent(7001).length;
    const reply = await rtCall(rt, 'agent', 'POST', `/ticket/${rtId}/correspond`, { Content: 'Добрый день! Проверьте лимиты карты.', ContentType: 'text/plain' });
    expect(reply.status).toBe(201);
    const comment = await rtCall(rt, 'agent', 'POST', `/ticket/${rtId}/comment`, { Content: 'Внутреннее: клиент VIP', ContentType: 'text/plain' });
    expect(comment.status).toBe(201);

    const msg = await api.waitForCall((c) => c.method === 'sendMessage' && String(c.params.chat_id) === '7001' && String(c.params.text).includes('Проверьте лимиты'), 60_000);
    expect(msg.params.text).toContain('Добрый день! Проверьте лимиты карты.');
    const note = await gw.waitForEvent((e) => e.type === 'ticket.note' && e.ticketId === ticketId, 60_000);
    expect((note.entry as Extract<LogEntry, { kind: 'note' }>).text).toBe('Внутреннее: клиент VIP');
    expect((note.entry as Extract<LogEntry, { kind: 'note' }>).author.id).toBe('helpdesk:rt:agent');
    await gw.waitForEvent((e) => e.type === 'ticket.delivery' && e.ticketId === ticketId, 30_000);

    // Several more polls: nothing is taken twice, the comment never reaches the customer, and the
    // agent's answer (now a ticket.reply in omnigate) is not written back to RT.
    await new Promise((r) => setTimeout(r, 3000));
    const toCustomer = sent(7001).slice(before);
    expect(toCustomer).toHaveLength(1);
    expect(toCustomer.some((c) => String(c.params.text).includes('VIP'))).toBe(false);
    const inRt = await rtMessages(rtId);
    expect(inRt.filter((m) => m.text.includes('Проверьте лимиты'))).toHaveLength(1);
    expect(inRt.filter((m) => m.text.includes('VIP'))).toHaveLength(1);
  }, 180_000);

  it('a status change in RT shows on the omnigate ticket, and one in omnigate shows in RT', async () => {
    const put = await rtCall(rt, 'agent', 'PUT', `/ticket/${rtId}`, { Status: 'resolved' });
    expect(put.status).toBe(200);
    await gw.waitForEvent((e) => e.type === 'ticket.status' && e.ticketId === ticketId && e.status === 'resolved', 60_000);
    expect((await gw.ticket(ticketId))?.status).toBe('resolved');

    const r = await gw.request('omni.cmd.status', { ticketId, status: 'pending' });
    expect(r.ok).toBe(true);
    await waitFor('RT status stalled', async () => (await client.getTicket(rtId)).status === 'stalled');
    // our own status write is not taken back as an agent's change
    await new Promise((res) => setTimeout(res, 2000));
    expect((await gw.ticket(ticketId))?.status).toBe('pending');

    // A reply sent through the API makes the ticket pending without a status command: RT follows
    // (it stayed "new" or "open" for good).
    expect((await gw.request('omni.cmd.status', { ticketId, status: 'open' })).ok).toBe(true);
    await waitFor('RT status open', async () => (await client.getTicket(rtId)).status === 'open');
    expect((await gw.request('omni.cmd.reply', { ticketId, text: 'Ответ из API: проверили оплату' })).ok).toBe(true);
    await waitFor('RT status stalled after the reply', async () => (await client.getTicket(rtId)).status === 'stalled');
    // The customer writes back: omnigate's ticket is open again, and RT no longer waits on them.
    api.push(customer(7001, { text: 'Не помогло, оплата снова не прошла' }));
    await gw.waitForEvent((e) => e.type === 'ticket.message' && e.ticketId === ticketId && e.status === 'open', 30_000);
    await waitFor('RT status open after the customer wrote back', async () => (await client.getTicket(rtId)).status === 'open');
  }, 180_000);

  it("RT's signed webhook scrip reaches the gateway (a doorbell for the poller); a forged one is refused", async () => {
    await waitFor('webhooks from RT accepted', async () => relayed.filter((s) => s === 200).length > 0);
    const forged = await fetch(`${gw.httpUrl}/helpdesks/rt/webhook`, { method: 'POST', headers: { 'x-rt-signature': 'sha256=00' }, body: '{}' });
    expect(forged.status).toBe(401);
    expect(relayed.every((s) => s === 200)).toBe(true);
  });

  it('RT down for a while, then back: nothing lost, order kept, a ticket opened meanwhile arrives too', async () => {
    await rt.pause();
    const logsBefore = gw.logs.length;
    const texts = ['первое', 'второе', 'третье', 'четвёртое'];
    for (const text of texts) api.push(customer(7001, { text }));
    api.push(customer(7002, { text: 'Новый клиент, пока RT лежит' }));
    const second = await gw.waitForEvent((e) => e.type === 'ticket.created' && e.conversation?.id === '7002', 30_000);
    await gw.waitForEvent((e) => e.type === 'ticket.message' && e.ticketId === ticketId && (e.entry as Extract<LogEntry, { kind: 'inbound' }>)?.event.text === 'четвёртое', 30_000);
    // the adapter keeps failing against a stopped RT for a few seconds
    await waitFor('a failed attempt', async () => gw.logs.slice(logsBefore).some((l) => l.includes('ECONNREFUSED') || l.includes('fetch failed')), 30_000);
    await new Promise((r) => setTimeout(r, 3000));
    await rt.restart();

    const order = await waitFor('all four messages in RT', async () => {
      const got = (await rtMessages(rtId)).filter((m) => texts.includes(m.text)).map((m) => m.text);
      return got.length >= texts.length ? got : null;
    }, 120_000);
    expect(order).toEqual(texts);
    const [other] = await waitFor('the ticket opened while RT was down', async () => {
      const ids = await rtTicketsOf(second.ticketId);
      return ids.length ? ids : null;
    }, 120_000);
    expect((await rtMessages(other!))[0]).toMatchObject({ type: 'Create', text: 'Новый клиент, пока RT лежит' });
    expect(await rtTicketsOf(second.ticketId)).toHaveLength(1);
  }, 240_000);

  it("an erased omnigate ticket's RT ticket is marked deleted, its subject replaced by the omnigate ticket id; the mapping goes", async () => {
    api.push(customer(7003, { text: 'Мой паспорт 4510 123456, удалите мои данные' }));
    const created = await gw.waitForEvent((e) => e.type === 'ticket.created' && e.conversation?.id === '7003', 30_000);
    const [id] = await waitFor('the RT ticket', async () => {
      const ids = await rtTicketsOf(created.ticketId);
      return ids.length ? ids : null;
    });
    const mapping = `helpdesk.rt.ticket.${created.ticketId}`;
    await waitFor('the mapping', async () => (await gw.gateway.bus.kv.state.get(mapping))?.operation === 'PUT');
    await new Eraser(gw.gateway.bus, pino({ level: 'silent' })).erase({ ticketIds: [created.ticketId], identities: [] }, { reason: 'api', requestedBy: 'dpo' });
    const t = await waitFor('the RT ticket deleted', async () => {
      const now = await client.getTicket(id!);
      return now.status === 'deleted' ? now : null;
    });
    expect(t.subject).toBe(created.ticketId);
    // Out of RT's searches (its queries leave deleted tickets out unless asked).
    expect(await rtTicketsOf(created.ticketId)).toEqual([]);
    await waitFor('the mapping forgotten', async () => (await gw.gateway.bus.kv.state.get(mapping))?.operation !== 'PUT');
    expect((await gw.gateway.bus.kv.state.get(`helpdesk.rt.external.${id}`))?.operation).not.toBe('PUT');
  }, 120_000);
});

describe.skipIf(!rtInstalled())('request-tracker: kill -9 between "RT ticket created" and "mapping recorded"', () => {
  let proxy: Server;
  let child: GatewayProcess | undefined;
  let trap: (() => void) | undefined;

  afterAll(async () => {
    await child?.kill('SIGKILL');
    proxy?.closeAllConnections();
    await new Promise((r) => proxy?.close(r));
  });

  it('makes one RT ticket: the restarted gateway finds it by its External ID', async () => {
    // A pass-through proxy in front of RT that, once armed, kills the gateway the moment RT has
    // answered the ticket create, before the answer reaches it.
    proxy = createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        void (async () => {
          const upstream = await fetch(`${rt.url}${req.url}`, {
            method: req.method,
            headers: Object.fromEntries(Object.entries(req.headers).filter(([k]) => !['host', 'connection', 'content-length'].includes(k)) as Array<[string, string]>),
            body: chunks.length ? Buffer.concat(chunks) : undefined,
          });
          const body = Buffer.from(await upstream.arrayBuffer());
          if (trap && req.method === 'POST' && req.url === '/REST/2.0/ticket' && upstream.status === 201) {
            trap();
            return;
          }
          res.writeHead(upstream.status, Object.fromEntries([...upstream.headers].filter(([k]) => k !== 'content-encoding' && k !== 'transfer-encoding')));
          res.end(body);
        })().catch(() => res.destroy());
      });
    });
    await new Promise<void>((r) => proxy.listen(0, '127.0.0.1', r));
    const proxyUrl = `http://127.0.0.1:${(proxy.address() as { port: number }).port}`;
    const file = writeConfig({
      ...config(proxyUrl),
      nats: { url: nats.url, leaseTtl: '3s' },
      http: { host: '127.0.0.1', port: 0 },
      log: { level: 'debug' },
      shutdownDrain: 0,
    });
    const env = { TG_TOKEN: TOKEN, RT_TOKEN: rt.token };

    let killed!: () => void;
    const killedNow = new Promise<void>((r) => (killed = r));
    child = spawnGateway(file, { entry: 'dist', env });
    const first = child;
    trap = () => {
      first.child.kill('SIGKILL');
      killed();
    };
    await first.started;
    api.push(customer(7101, { text: 'Сообщение перед падением' }));
    await killedNow;
    await first.exited;
    trap = undefined;

    // RT has the ticket; omnigate has no mapping yet. Find it by the omnigate ticket id we stored.
    const [made] = await waitFor('the RT ticket made before the crash', async () => {
      const all = await client.transactionsAfter(0, { types: ['Create'], limit: 100 });
      const last = all.at(-1)!;
      const t = await client.getTicket(last.ticketId);
      const ext = t.customFields['External ID']?.[0];
      return ext ? [ext] : null;
    });
    expect(made).toMatch(/^T-/);
    expect(await rtTicketsOf(made!)).toHaveLength(1);

    child = spawnGateway(file, { entry: 'dist', env });
    await child.started;
    const conn = await connect({ servers: nats.url });
    try {
      const linked = await waitFor('the omnigate ticket linked to the one RT ticket', async () => {
        const ticket = await ticketOf(conn, made!);
        return ticket?.externalRefs?.find((r) => r.system === 'rt');
      }, 90_000);
      const ids = await rtTicketsOf(made!);
      expect(ids).toHaveLength(1);
      expect(linked.externalId).toBe(String(ids[0]));
      expect(child.output()).toContain('RT ticket found by its External ID');
      expect(child.output()).not.toContain(rt.token.split('-').at(-1));
    } finally {
      await conn.close();
    }
  }, 240_000);
});

/** The ticket as stored (KV omni_tickets), read by a plain NATS client: the gateway is another process. */
async function ticketOf(nc: NatsConnection, id: string): Promise<Ticket | null> {
  const kv = await new Kvm(nc).open('omni_tickets');
  const e = await kv.get(id);
  return e && e.operation === 'PUT' ? (e.json() as Ticket) : null;
}
