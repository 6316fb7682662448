/**
 * `omnigate dlq --replay` of WhatsApp Web dead letters, end to end at the socket seam: a parked
 * message (a proto WebMessageInfo as JSON) goes back through the connector's own intake
 * (normalisation with the loop guard, media through Baileys' decryption, publish) on the gateway
 * holding the session. Still invalid → the letter stays with the reason; good → a ticket, and a
 * second replay is a duplicate; a letter that is not JSON, our own message, a letter for another
 * number and a session that is not open are refused. Same fake socket, media server and real
 * nats-server as the other WhatsApp Web tests.
 */
import { createHash } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startGateway, type TestGateway } from '../../helpers/gateway.js';
import { startNats, type TestNats } from '../../helpers/nats-server.js';
import { deadLetters } from '../../../src/dlq.js';
import { loadNatsSection } from '../../../src/core/config.js';
import { setSocketFactory } from '../../../src/connectors/whatsapp/socket.js';
import { DisconnectReason, proto } from '../../../src/connectors/whatsapp/baileys.js';
import type { DeadLetter } from '../../../src/core/schema.js';
import { MediaServer, SocketPool, type FakeSocket } from './fake-socket.js';
import * as h from './harness.js';
import { ME, inboundOf, msg } from './harness.js';

let nats: TestNats;
let media: MediaServer;
let pool: SocketPool;
let gw: TestGateway;
let sock: FakeSocket;

const messageEvent = (pid: string) => gw.waitForEvent((e) => e.type === 'ticket.message' && inboundOf(e)?.platform.messageId === pid);
/** A message as Baileys hands it over, stored the way the connector parks it (its JSON). */
const parked = (m: Record<string, unknown>) => proto.WebMessageInfo.fromObject(m).toJSON();

async function park(reason: string, payload: unknown, meta?: Record<string, string>) {
  await gw.gateway.bus.deadLetters.park({ source: 'connector', scope: 'whatsapp.wa1', subject: 'omni.in.whatsapp.wa1', code: 'invalid_payload', reason, payload, meta });
}

async function replay(since: string): Promise<string[]> {
  const lines: string[] = [];
  await deadLetters(loadNatsSection(undefined, { OMNIGATE_NATS__URL: gw.nats.url }), { source: 'inbound.whatsapp.wa1', since, limit: 100, replay: true, out: (l) => lines.push(l) });
  return lines;
}
const lineOf = (lines: string[], marker: string) => {
  const found = lines.filter((l) => l.includes(marker));
  expect(found, `one line for ${marker} in:\n${lines.join('\n')}`).toHaveLength(1);
  return found[0]!;
};
async function nothingPublishedFor(chat: string) {
  await expect(gw.waitForStreamMessage('OMNI_IN', 'omni.in.whatsapp.wa1', (m: any) => m.conversation?.id === chat, 1500)).rejects.toThrow();
}

beforeAll(async () => {
  nats = await startNats();
  media = new MediaServer();
  await media.start();
  pool = new SocketPool(media);
  setSocketFactory(pool.factory);
  gw = await startGateway(h.waConfig(), { nats });
  const s1 = await pool.nth(1);
  s1.ev.emit('creds.update', { me: { id: ME, lid: '99887766:7@lid', name: 'Поддержка' }, registered: true });
  s1.close(DisconnectReason.restartRequired, 'restart required');
  sock = await h.openSocket(gw, pool, 2);
});
afterAll(async () => {
  await gw?.stop();
  setSocketFactory(undefined);
  await media?.stop();
  await nats?.stop();
});

describe('whatsapp (Baileys) dead-letter replay', () => {
  it('a message the live intake parked (the event schema refused its id) stays invalid at replay, the reason told', async () => {
    const since = new Date().toISOString();
    const chat = '79161110001@s.whatsapp.net';
    sock.emitMessages([msg(chat, { conversation: 'битый id' }, { id: 'BAD\u0001ID' })]);
    const letter = await gw.waitForStreamMessage<DeadLetter>('OMNI_DLQ', 'omni.dlq.inbound.whatsapp.wa1', (l) => l.at >= since);
    expect(letter.meta).toEqual({ me: '79990000001@s.whatsapp.net' });
    const line = lineOf(await replay(since), 'BAD');
    expect(line).toMatch(/\tinvalid: /);
    await nothingPublishedFor(chat);
  });

  it('a good parked message (text, and a document through Baileys decryption) opens a ticket; a second replay is a duplicate', async () => {
    const since = new Date().toISOString();
    const chat = '79161110002@s.whatsapp.net';
    await park('wa-old-text', parked(msg(chat, { conversation: 'не дошло до NATS' }, { id: 'RP1', pushName: 'Инна' })), { me: ME });
    const pdf = Buffer.concat([Buffer.from('%PDF-1.4\n'), Buffer.alloc(20_000, 0x42)]);
    const doc = await media.prepare({ document: pdf, mimetype: 'application/pdf', fileName: 'Договор.pdf', caption: 'договор' });
    await park('wa-old-doc', parked(msg(chat, doc.toJSON(), { id: 'RP2' })));
    const lines = await replay(since);
    expect(lineOf(lines, 'wa-old-text')).toMatch(/\twa-old-text\treplayed$/);
    expect(lineOf(lines, 'wa-old-doc')).toMatch(/\twa-old-doc\treplayed$/);
    const text = inboundOf(await messageEvent(`${chat}:RP1`))!;
    expect(text).toMatchObject({ text: 'не дошло до NATS', sender: { id: chat, displayName: 'Инна' } });
    const att = inboundOf(await messageEvent(`${chat}:RP2`))!.attachments[0]!;
    expect(att).toMatchObject({ status: 'stored', name: 'Договор.pdf', size: pdf.length });
    expect(att.sha256).toBe(createHash('sha256').update(pdf).digest('hex'));

    expect(lineOf(await replay(since), 'wa-old-text')).toMatch(/\treplayed: already taken before \(a duplicate, or done already\): nothing new written$/);
  });

  it('refuses what cannot be replayed, saying why: not JSON, our own message, a letter for another number', async () => {
    const since = new Date().toISOString();
    const chat = '79161110003@s.whatsapp.net';
    await park('wa-not-json', Buffer.from('{"key": сломано'));
    await park('wa-own', parked(msg(chat, { conversation: 'наш ответ' }, { id: 'RP3', fromMe: true })), { me: ME });
    await park('wa-other-number', parked(msg(chat, { conversation: 'на старый номер' }, { id: 'RP4' })), { me: '79990000002@s.whatsapp.net' });
    const lines = await replay(since);
    expect(lineOf(lines, 'wa-not-json')).toMatch(/\trefused: the letter holds no WhatsApp message \(not JSON\)$/);
    expect(lineOf(lines, 'wa-own')).toMatch(/\trefused: skipped: our own message \(loop guard\)$/);
    expect(lineOf(lines, 'wa-other-number')).toMatch(/\trefused: the message was sent to WhatsApp number 79990000002, and whatsapp account wa1 is now linked to 79990000001$/);
    await nothingPublishedFor(chat);
  });

  it('a session that is not open refuses the replay; the letter replays once it is connected again', async () => {
    const chat = '79161110004@s.whatsapp.net';
    const since = new Date().toISOString();
    sock.close(DisconnectReason.connectionClosed, 'connection closed');
    const next = await pool.nth(3);
    await park('wa-offline', parked(msg(chat, { conversation: 'пока сессия закрыта' }, { id: 'RP5' })), { me: ME });
    expect(lineOf(await replay(since), 'wa-offline')).toMatch(/\trefused: not connected to WhatsApp yet \(session disconnected/);
    await nothingPublishedFor(chat);

    const opened = new Date().toISOString();
    next.ev.emit('connection.update', { connection: 'open' });
    await h.waitState(gw, opened, (e) => e.state === 'connected');
    expect(lineOf(await replay(since), 'wa-offline')).toMatch(/\treplayed$/);
    await messageEvent(`${chat}:RP5`);
  });
});
