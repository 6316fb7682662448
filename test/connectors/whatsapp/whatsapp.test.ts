/**
 * WhatsApp Web (Baileys) end to end at the socket seam: the connector runs inside a real gateway
 * (nats-server, router, outbound runner, HTTP) with a socket whose `ev` is Baileys' own event
 * buffer, fed proto.WebMessageInfo-built events; media goes through Baileys' real encryption
 * against a local media server.
 */
import { createHash } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startGateway, type TestGateway } from '../../helpers/gateway.js';
import { progressHeld } from '../../helpers/send-progress.js';
import { until } from '../../helpers/until.js';
import type { TestNats } from '../../helpers/nats-server.js';
import type { ConnectorStateEvent, LogEntry } from '../../../src/core/schema.js';
import { FakeSocket, MediaServer, SocketPool } from './fake-socket.js';
import * as h from './harness.js';
import { ME, TOKEN, inboundOf, msg } from './harness.js';

import { DisconnectReason, downloadMediaMessage } from '../../../src/connectors/whatsapp/baileys.js';

let rig: h.WaRig;
let nats: TestNats;
let media: MediaServer;
let pool: SocketPool;
let gw: TestGateway;

const config = h.waConfig({ sendTimeoutMs: 1000, mediaDownloadTimeoutMs: 1500 });

const messageEvent = (pid: string) => gw.waitForEvent((e) => e.type === 'ticket.message' && inboundOf(e)?.platform.messageId === pid);
const waitState = (since: string, pred: (e: ConnectorStateEvent) => boolean) => h.waitState(gw, since, pred);
const openSocket = (n: number): Promise<FakeSocket> => h.openSocket(gw, pool, n);
const authKeys = () => h.authKeys(gw);

beforeAll(async () => {
  rig = await h.startWaRig();
  ({ nats, media, pool } = rig);
  gw = await startGateway(config, { nats });
});
afterAll(async () => {
  await gw?.stop();
  await rig?.stop();
});

describe('whatsapp (Baileys) connector', () => {
  it('pairs by QR: pairing_needed, PNG and pairing code behind the API token, then keeps the creds', async () => {
    const s1 = await pool.nth(1);
    expect(s1.config.auth.creds.registered).toBe(false);
    const since = new Date().toISOString();
    s1.ev.emit('connection.update', { connection: 'connecting' });
    s1.ev.emit('connection.update', { qr: '2@omnigate-test-ref,bm9pc2U=,aWRlbnRpdHk=,YWR2' });
    const pairing = await waitState(since, (e) => e.state === 'pairing_needed');
    expect(pairing.detail).toContain('/connectors/whatsapp/wa1/qr.png');

    const url = `${gw.httpUrl}/connectors/whatsapp/wa1`;
    expect((await fetch(`${url}/qr.png`)).status).toBe(401);
    expect((await fetch(`${url}/qr.png`, { headers: { authorization: 'Bearer wrong-token-000000000' } })).status).toBe(401);
    expect((await fetch(`${url}/pairing`)).status).toBe(401);
    const png = await fetch(`${url}/qr.png`, { headers: { authorization: `Bearer ${TOKEN}` } });
    expect(png.status).toBe(200);
    expect(png.headers.get('content-type')).toBe('image/png');
    expect(Buffer.from(await png.arrayBuffer()).subarray(0, 8).toString('hex')).toBe('89504e470d0a1a0a');
    const json = await (await fetch(`${url}/pairing`, { headers: { authorization: `Bearer ${TOKEN}` } })).json();
    expect(json).toMatchObject({ state: 'pairing_needed', qr: '2@omnigate-test-ref,bm9pc2U=,aWRlbnRpdHk=,YWR2', pairingCode: 'OMNI2GAT' });

    // The phone scanned: Baileys stores the identity and asks for a restart (515).
    s1.ev.emit('creds.update', { me: { id: ME, lid: '99887766:7@lid', name: 'Поддержка' }, registered: true });
    s1.close(DisconnectReason.restartRequired, 'restart required');
    const s2 = await openSocket(2);
    expect(s2.config.auth.creds.me?.id).toBe(ME);
    expect((await authKeys()).length).toBeGreaterThan(0);
    expect((await fetch(`${url}/qr.png`, { headers: { authorization: `Bearer ${TOKEN}` } })).status).toBe(404);
  });

  it('turns a notify message into a ticket and replies to the same JID, quoting it', async () => {
    const s = pool.latest!;
    const chat = '79161234567@s.whatsapp.net';
    s.emitMessages([msg(chat, { conversation: 'Здравствуйте! Заказ №4821 не пришёл' }, { id: 'ABC1', pushName: 'Анна' })]);
    const created = await messageEvent(`${chat}:ABC1`);
    const event = inboundOf(created)!;
    expect(event.conversation).toMatchObject({ id: chat, kind: 'private' });
    expect(event.sender).toMatchObject({ id: chat, displayName: 'Анна', handles: { phone: '+79161234567', jid: chat } });
    expect(event.text).toBe('Здравствуйте! Заказ №4821 не пришёл');

    const reply = await gw.request('omni.cmd.reply', { ticketId: created.ticketId, text: 'Добрый день, Анна! Проверяем.' });
    expect(reply.ok).toBe(true);
    const sent = await s.waitForSend((c) => c.jid === chat);
    expect(sent.content).toEqual({ text: 'Добрый день, Анна! Проверяем.' });
    expect(sent.options?.quoted?.key).toMatchObject({ remoteJid: chat, id: 'ABC1', fromMe: false });
    expect(sent.options?.quoted?.message?.conversation).toBe('Здравствуйте! Заказ №4821 не пришёл');
    const delivery = await gw.waitForEvent((e) => e.type === 'ticket.delivery' && e.ticketId === created.ticketId);
    const status = (delivery.entry as Extract<LogEntry, { kind: 'delivery' }>).status;
    expect(status.status).toBe('sent');
    expect(sent.options?.messageId).toMatch(/^3EB0[0-9A-F]{18}$/);
    expect(status.platformMessageId).toBe(`${chat}:${sent.options?.messageId}`);
  });

  it('retries a timed-out send with the same Baileys message id, and getMessage gives Baileys the content for a resend', async () => {
    const s = pool.latest!;
    const chat = '79161230000@s.whatsapp.net';
    s.emitMessages([msg(chat, { conversation: 'Не приходит код' }, { id: 'T1' })]);
    const created = await messageEvent(`${chat}:T1`);
    // The first send reaches WhatsApp but answers after our 1 s timeout.
    s.slowNextSends = { count: 1, ms: 1500 };
    await gw.request('omni.cmd.reply', { ticketId: created.ticketId, text: 'Отправили код ещё раз' });
    const delivery = await gw.waitForEvent((e) => e.type === 'ticket.delivery' && e.ticketId === created.ticketId);
    const status = h.deliveryOf(delivery)!;
    expect(status).toMatchObject({ status: 'sent', attempts: 2 });
    const calls = s.sent.filter((c) => c.jid === chat);
    expect(calls).toHaveLength(2);
    const id = calls[0]!.options?.messageId;
    expect(id).toMatch(/^3EB0[0-9A-F]{18}$/);
    expect(calls[1]!.options?.messageId).toBe(id);
    expect(status.platformMessageId).toBe(`${chat}:${id}`);

    // What Baileys calls when the customer's phone asks for a retry of a message it could not decrypt.
    const again = await s.config.getMessage!({ remoteJid: chat, id, fromMe: true });
    expect(again?.extendedTextMessage?.text).toBe('Отправили код ещё раз');
    expect(await s.config.getMessage!({ remoteJid: chat, id: '3EB0000000000000000000', fromMe: true })).toBeUndefined();
  });

  it('handles each message of a batch on its own: a failed state write costs only the quote, not the next message', async () => {
    const s = pool.latest!;
    const chat = '79161239999@s.whatsapp.net';
    const long = `Подробное описание проблемы: ${'касса не печатает чек. '.repeat(40)}`;
    await h.limitStateValues(gw, 400);
    try {
      s.emitMessages([msg(chat, { conversation: long }, { id: 'B1' }), msg(chat, { conversation: 'и ещё одно' }, { id: 'B2' })]);
      expect(inboundOf(await messageEvent(`${chat}:B1`))!.text).toBe(long);
      expect(inboundOf(await messageEvent(`${chat}:B2`))!.text).toBe('и ещё одно');
    } finally {
      await h.limitStateValues(gw, -1);
    }
    expect(gw.logs.join('')).toContain('could not store the WhatsApp message for quoting');
  });

  it('round-trips media through Baileys encryption: document and image in, image out; oversize recorded as failed', async () => {
    const s = pool.latest!;
    const chat = '79031112233@s.whatsapp.net';
    const pdf = Buffer.concat([Buffer.from('%PDF-1.4\n'), Buffer.alloc(50_000, 0x41)]);
    const doc = await media.prepare({ document: pdf, mimetype: 'application/pdf', fileName: 'Счёт №15.pdf', caption: 'Вот счёт' });
    s.emitMessages([msg(chat, doc.toJSON(), { id: 'DOC1' })]);
    const docEvent = inboundOf(await messageEvent(`${chat}:DOC1`))!;
    expect(docEvent.text).toBe('Вот счёт');
    expect(docEvent.attachments[0]).toMatchObject({ status: 'stored', name: 'Счёт №15.pdf', mimeType: 'application/pdf', kind: 'document', size: pdf.length });
    expect(docEvent.attachments[0]!.sha256).toBe(createHash('sha256').update(pdf).digest('hex'));

    const jpeg = Buffer.concat([Buffer.from([0xff, 0xd8, 0xff, 0xe0]), Buffer.alloc(30_000, 0x33)]);
    const image = await media.prepare({ image: jpeg, mimetype: 'image/jpeg', caption: 'Скриншот ошибки', jpegThumbnail: '' } as never);
    s.emitMessages([msg(chat, image.toJSON(), { id: 'IMG1' })]);
    const imgCreated = await messageEvent(`${chat}:IMG1`);
    const att = inboundOf(imgCreated)!.attachments[0]!;
    expect(att).toMatchObject({ status: 'stored', kind: 'image', mimeType: 'image/jpeg', size: jpeg.length });
    expect(Buffer.compare(Buffer.from((await gw.gateway.bus.media.getBlob(att.objectKey!))!), jpeg)).toBe(0);

    const big = await media.prepare({ document: Buffer.alloc(300_000, 1), mimetype: 'application/zip', fileName: 'logs.zip' });
    s.emitMessages([msg(chat, big.toJSON(), { id: 'BIG1' })]);
    const bigAtt = inboundOf(await messageEvent(`${chat}:BIG1`))!.attachments[0]!;
    expect(bigAtt).toMatchObject({ status: 'failed', name: 'logs.zip', size: 300_000 });
    expect(bigAtt.error).toContain('limit');

    await gw.request('omni.cmd.reply', { ticketId: imgCreated.ticketId, text: 'Вот что мы видим', attachments: [att] });
    const out = await s.waitForSend((c) => c.jid === chat && 'image' in c.content);
    expect(out.prepared?.imageMessage?.url).toContain('/mms/image/');
    const decrypted = await downloadMediaMessage({ key: { remoteJid: chat, id: 'X' }, message: out.prepared! }, 'buffer', {});
    expect(Buffer.compare(decrypted, jpeg)).toBe(0);
  });

  it('records a media download that hangs as a failed attachment after the timeout; the message and the next one go through', async () => {
    const s = pool.latest!;
    const chat = '79031114455@s.whatsapp.net';
    const doc = await media.prepare({ document: Buffer.alloc(20_000, 7), mimetype: 'application/pdf', fileName: 'накладная.pdf', caption: 'Накладная' });
    media.stall(doc.documentMessage!.url!);
    const started = Date.now();
    s.emitMessages([msg(chat, doc.toJSON(), { id: 'HANG1' }), msg(chat, { conversation: 'Получили?' }, { id: 'HANG2' })]);
    const event = inboundOf(await messageEvent(`${chat}:HANG1`))!;
    expect(event.text).toBe('Накладная');
    expect(event.attachments[0]).toMatchObject({ status: 'failed', name: 'накладная.pdf' });
    expect(event.attachments[0]!.error).toContain('timed out after 1500 ms');
    expect(Date.now() - started).toBeLessThan(10_000);
    await messageEvent(`${chat}:HANG2`);
  });

  it('maps @lid senders to their phone JID, and normalizes groups, replies, reactions, locations and contacts', async () => {
    const s = pool.latest!;
    const pn = '79035550001@s.whatsapp.net';
    s.ev.emit('chats.phoneNumberShare', { lid: '5550001@lid', jid: pn });
    s.emitMessages([msg('5550001@lid', { conversation: 'Пишу с нового телефона' }, { id: 'L1' })]);
    const first = await messageEvent(`${pn}:L1`);
    expect(inboundOf(first)!.sender).toMatchObject({ id: pn, handles: { lid: '5550001@lid', phone: '+79035550001' } });
    s.emitMessages([msg(pn, { conversation: 'И ещё вопрос' }, { id: 'L2' })]);
    expect((await messageEvent(`${pn}:L2`)).ticketId).toBe(first.ticketId);

    s.emitMessages([
      msg('5550001@lid', { extendedTextMessage: { text: 'Это про первое сообщение', contextInfo: { stanzaId: 'L1', participant: '5550001@lid', quotedMessage: { conversation: 'Пишу с нового телефона' } } } }, { id: 'L3' }),
      msg(pn, { reactionMessage: { key: { remoteJid: pn, id: 'L1', fromMe: false }, text: '👍' } }, { id: 'L4' }),
      msg(pn, { locationMessage: { degreesLatitude: 55.7558, degreesLongitude: 37.6173, name: 'Склад', address: 'Москва, Тверская 1' } }, { id: 'L5' }),
      msg(pn, { contactMessage: { displayName: 'Иван Петров', vcard: 'BEGIN:VCARD\nVERSION:3.0\nFN:Иван Петров\nTEL;type=CELL;waid=79167654321:+7 916 765-43-21\nEND:VCARD' } }, { id: 'L6' }),
    ]);
    expect(inboundOf(await messageEvent(`${pn}:L3`))!.replyTo).toBe(`${pn}:L1`);
    expect(inboundOf(await messageEvent(`${pn}:L4`))!.parts).toEqual([{ type: 'reaction', emoji: '👍', targetPlatformMessageId: `${pn}:L1` }]);
    expect(inboundOf(await messageEvent(`${pn}:L5`))!.parts).toEqual([{ type: 'location', latitude: 55.7558, longitude: 37.6173, title: 'Склад, Москва, Тверская 1' }]);
    expect(inboundOf(await messageEvent(`${pn}:L6`))!.parts[0]).toMatchObject({ type: 'contact', name: 'Иван Петров', phone: '+79167654321', userId: '79167654321@s.whatsapp.net' });

    const group = '120363012345678901@g.us';
    s.emitMessages([msg(group, { conversation: 'Коллеги, касса опять зависла' }, { id: 'G1', participant: '79160000002@s.whatsapp.net', pushName: 'Ольга' })]);
    const g = inboundOf(await messageEvent(`${group}:G1`))!;
    expect(g.conversation).toMatchObject({ id: group, kind: 'group' });
    expect(g.sender).toMatchObject({ id: '79160000002@s.whatsapp.net', displayName: 'Ольга' });
  });

  it('opens nothing for history appends, our own messages and status broadcasts', async () => {
    const s = pool.latest!;
    const chat = '79260000003@s.whatsapp.net';
    s.emitMessages([msg(chat, { conversation: 'старое сообщение из истории' }, { id: 'H1' })], 'append');
    s.emitMessages([msg(chat, { conversation: 'ответ, отправленный с телефона' }, { id: 'H2', fromMe: true })]);
    s.emitMessages([msg('status@broadcast', { conversation: 'статус' }, { id: 'H3', participant: chat })]);
    s.emitMessages([msg(chat, { conversation: 'новое сообщение' }, { id: 'H4' })]);
    const created = await messageEvent(`${chat}:H4`);
    const ticket = await gw.ticket(created.ticketId);
    expect(ticket?.messageCount).toBe(1);
    expect(created.type).toBe('ticket.message');
  });

  it('backs off longer while the connection keeps failing, and starts again from the minimum once it opened', async () => {
    let n = pool.sockets.length;
    const delays: string[] = [];
    for (let i = 0; i < 3; i++) {
      const since = new Date().toISOString();
      (await pool.nth(n)).close(DisconnectReason.connectionClosed, 'Connection Closed');
      delays.push((await waitState(since, (e) => e.state === 'disconnected')).detail!.match(/reconnecting in (\d+) ms/)![1]!);
      await pool.nth(++n);
    }
    expect(delays).toEqual(['20', '40', '80']);
    await openSocket(n);
    const since = new Date().toISOString();
    pool.latest!.close(DisconnectReason.connectionClosed, 'Connection Closed');
    expect((await waitState(since, (e) => e.state === 'disconnected')).detail).toContain('reconnecting in 20 ms');
    await openSocket(++n);
  });

  it('reconnects on connectionClosed and connectionLost, keeps auth across a gateway restart without a new QR', async () => {
    let n = pool.sockets.length;
    let since = new Date().toISOString();
    pool.latest!.close(DisconnectReason.connectionClosed, 'Connection Closed');
    expect((await waitState(since, (e) => e.state === 'disconnected')).detail).toContain('428');
    await openSocket(++n);
    since = new Date().toISOString();
    pool.latest!.close(DisconnectReason.connectionLost, 'Connection Lost');
    expect((await waitState(since, (e) => e.state === 'disconnected')).detail).toContain('408');
    await openSocket(++n);

    await gw.stop();
    gw = await startGateway(config, { nats });
    const restored = await pool.nth(++n);
    expect(restored.config.auth.creds.registered).toBe(true);
    expect(restored.config.auth.creds.me?.id).toBe(ME);
    await openSocket(n);
    const json = await (await fetch(`${gw.httpUrl}/connectors/whatsapp/wa1/pairing`, { headers: { authorization: `Bearer ${TOKEN}` } })).json();
    expect(json).toMatchObject({ state: 'connected', qr: null, detail: 'session restored from stored auth' });
  });

  it('loggedOut clears the stored auth and asks for a new pairing; connectionReplaced is reported and not fought', async () => {
    let n = pool.sockets.length;
    let since = new Date().toISOString();
    pool.latest!.close(DisconnectReason.loggedOut, 'Intentional Logout');
    const out = await waitState(since, (e) => e.state === 'auth_failed');
    expect(out.detail).toMatch(/^logged_out/);
    const fresh = await pool.nth(++n);
    expect(fresh.config.auth.creds.registered).toBe(false);
    expect(fresh.config.auth.creds.me).toBeUndefined();
    expect(await authKeys()).toEqual([]);
    since = new Date().toISOString();
    fresh.ev.emit('connection.update', { qr: '2@second-pairing,a,b,c' });
    await waitState(since, (e) => e.state === 'pairing_needed');

    fresh.ev.emit('creds.update', { me: { id: ME }, registered: true });
    fresh.close(DisconnectReason.restartRequired);
    await openSocket(++n);
    since = new Date().toISOString();
    pool.latest!.close(DisconnectReason.connectionReplaced, 'Connection Replaced');
    const replaced = await waitState(since, (e) => e.state === 'stalled');
    expect(replaced.detail).toMatch(/^connection_replaced/);
    expect(gw.gateway.connectors.health()[0]).toMatchObject({ state: 'stalled' });
    // The decision not to reconnect is taken before the state event: no socket was created.
    expect(pool.sockets.length).toBe(n);
  });

  it('retries a send that failed on a closed connection and delivers it once', async () => {
    // The session is halted (connectionReplaced) from the previous test: restart the gateway.
    const n = pool.sockets.length;
    await gw.stop();
    gw = await startGateway(config, { nats });
    const s = await openSocket(n + 1);
    const chat = '79110000004@s.whatsapp.net';
    s.emitMessages([msg(chat, { conversation: 'Срочно!' }, { id: 'R1' })]);
    const created = await messageEvent(`${chat}:R1`);
    s.failNextSends = 1;
    await gw.request('omni.cmd.reply', { ticketId: created.ticketId, text: 'Уже исправляем' });
    const delivery = await gw.waitForEvent((e) => e.type === 'ticket.delivery' && e.ticketId === created.ticketId);
    expect((delivery.entry as Extract<LogEntry, { kind: 'delivery' }>).status).toMatchObject({ status: 'sent', attempts: 2 });
    expect(s.sent.filter((c) => c.jid === chat)).toHaveLength(1);
  });

  it('a reply whose sends fail until its retries run out leaves no progress behind in the connector', async () => {
    const n = pool.sockets.length;
    await gw.stop();
    gw = await startGateway({ ...config, outbound: { backoffBase: '100ms', maxAttempts: 2 } }, { nats });
    const s = await openSocket(n + 1);
    const chat = '79110000005@s.whatsapp.net';
    s.emitMessages([msg(chat, { conversation: 'Где мой заказ?' }, { id: 'R2' })]);
    const created = await messageEvent(`${chat}:R2`);
    s.failNextSends = 2;
    await gw.request('omni.cmd.reply', { ticketId: created.ticketId, text: 'Проверяем' });
    const delivery = await gw.waitForEvent((e) => e.type === 'ticket.delivery' && e.ticketId === created.ticketId);
    const status = (delivery.entry as Extract<LogEntry, { kind: 'delivery' }>).status;
    expect(status).toMatchObject({ status: 'failed', attempts: 2 });
    expect(status.reason).toMatch(/^retries_exhausted after 2 attempts/);
    // Settled after its outcome is published: wait a moment. Was 1 for good: the entry of a reply
    // whose last attempt failed stayed in the connector for the life of the process.
    await until(() => progressHeld(gw) === 0, "the connector's progress of the failed reply to go", 5_000);
  });
});
