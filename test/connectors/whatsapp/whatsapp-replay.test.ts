/**
 * `omnigate dlq --replay` of WhatsApp Web dead letters, end to end at the socket seam: a parked
 * message (a proto WebMessageInfo as JSON) goes back through the connector's own intake
 * (normalisation with the loop guard, media through Baileys' decryption, publish) on the gateway
 * holding the session. Still invalid → the letter stays with the reason; good → a ticket, and a
 * second replay is a duplicate; a media key survives the letter, parked by this version (proto
 * JSON, base64) or an older one (a plain Buffer as {type: 'Buffer', data}); a letter that is not JSON, our own message, a letter for another
 * number and a session that is not open are refused. Same fake socket, media server and real
 * nats-server as the other WhatsApp Web tests.
 */
import { createHash } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startGateway, type TestGateway } from '../../helpers/gateway.js';
import type { TestNats } from '../../helpers/nats-server.js';
import { deadLetters } from '../../../src/dlq.js';
import { loadNatsSection } from '../../../src/core/config.js';
import { DisconnectReason, proto } from '../../../src/connectors/whatsapp/baileys.js';
import type { DeadLetter } from '../../../src/core/schema.js';
import { MediaServer, SocketPool, type FakeSocket } from './fake-socket.js';
import * as h from './harness.js';
import { ME, inboundOf, msg } from './harness.js';

let rig: h.WaRig;
let nats: TestNats;
let media: MediaServer;
let pool: SocketPool;
let gw: TestGateway;
let sock: FakeSocket;

const messageEvent = (pid: string) => gw.waitForEvent((e) => e.type === 'ticket.message' && inboundOf(e)?.platform.messageId === pid);
/** A message as Baileys hands it over, stored the way the connector parks it (its proto JSON). */
const parked = (m: Record<string, unknown>) => proto.WebMessageInfo.fromObject(m).toJSON();
/** A message with a media key, its bytes in plain Buffers (not in a proto instance). */
async function plainDocument(name: string) {
  const pdf = Buffer.concat([Buffer.from(`%PDF-1.4\n${name}\n`), Buffer.alloc(20_000, 0x43)]);
  const doc = proto.Message.toObject(await media.prepare({ document: pdf, mimetype: 'application/pdf', fileName: name }));
  const mediaKey = Buffer.from(doc.documentMessage!.mediaKey!);
  expect(Buffer.isBuffer(doc.documentMessage!.mediaKey)).toBe(true);
  return { pdf, doc, mediaKey };
}
const sha256 = (b: Buffer) => createHash('sha256').update(b).digest('hex');

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
  rig = await h.startWaRig();
  ({ nats, media, pool } = rig);
  gw = await startGateway(h.waConfig(), { nats });
  const s1 = await pool.nth(1);
  s1.ev.emit('creds.update', { me: { id: ME, lid: '99887766:7@lid', name: 'Поддержка' }, registered: true });
  s1.close(DisconnectReason.restartRequired, 'restart required');
  sock = await h.openSocket(gw, pool, 2);
});
afterAll(async () => {
  await gw?.stop();
  await rig?.stop();
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

  it('a message whose timestamp no time can hold is parked naming messageTimestamp, and a replay says the same each time', async () => {
    const since = new Date().toISOString();
    const chat = '79161110002@s.whatsapp.net';
    // Straight onto the event buffer: a proto instance would wrap the number into a 64-bit Long.
    sock.ev.emit('messages.upsert', { messages: [{ ...msg(chat, { conversation: 'время из будущего' }, { id: 'RPTIME1' }), messageTimestamp: 1e20 }], type: 'notify' } as never);
    const letter = await gw.waitForStreamMessage<DeadLetter>('OMNI_DLQ', 'omni.dlq.inbound.whatsapp.wa1', (l) => l.at >= since && l.reason.includes('RPTIME1'));
    expect(letter.reason).toMatch(/^whatsapp message RPTIME1: messageTimestamp: 100000000000000000000 is not a time WhatsApp could have sent/);
    // The letter holds the protobuf JSON form, in which the time is held to 64 bits.
    for (let i = 0; i < 2; i++) expect(lineOf(await replay(since), 'RPTIME1')).toMatch(/\tinvalid: messageTimestamp: \d+ is not a time WhatsApp could have sent/);
    await nothingPublishedFor(chat);
  });

  it('the live intake parks the proto JSON (a media key in a plain Buffer as base64), and that letter replays with the key intact', async () => {
    const since = new Date().toISOString();
    const chat = '79161110005@s.whatsapp.net';
    const { pdf, doc, mediaKey } = await plainDocument('Счёт.pdf');
    // Straight onto the event buffer: emitMessages would make proto instances of it.
    sock.ev.emit('messages.upsert', { messages: [msg(chat, doc as Record<string, unknown>, { id: 'BAD\u0002DOC' })], type: 'notify' } as never);
    const letter = await gw.waitForStreamMessage<DeadLetter>('OMNI_DLQ', 'omni.dlq.inbound.whatsapp.wa1', (l) => l.at >= since && l.reason.includes('BAD\u0002DOC'));
    expect(letter.payloadEncoding).toBe('utf8');
    const stored = JSON.parse(letter.payload) as { key: { id: string }; message: { documentMessage: { mediaKey: unknown } } };
    expect(stored.message.documentMessage.mediaKey).toBe(mediaKey.toString('base64'));
    // The same letter with an id the event schema takes.
    stored.key.id = 'RP7';
    await park('wa-live-doc', stored, letter.meta);
    expect(lineOf(await replay(since), 'wa-live-doc')).toMatch(/\twa-live-doc\treplayed$/);
    const att = inboundOf(await messageEvent(`${chat}:RP7`))!.attachments[0]!;
    expect(att).toMatchObject({ status: 'stored', name: 'Счёт.pdf', size: pdf.length, sha256: sha256(pdf) });
  });

  it('a good parked message (text, and a document through Baileys decryption) opens a ticket; a second replay is a duplicate', async () => {
    const since = new Date().toISOString();
    const chat = '79161110002@s.whatsapp.net';
    await park('wa-old-text', parked(msg(chat, { conversation: 'не дошло до NATS' }, { id: 'RP1', pushName: 'Инна' })), { me: ME });
    const pdf = Buffer.concat([Buffer.from('%PDF-1.4\n'), Buffer.alloc(20_000, 0x42)]);
    const doc = await media.prepare({ document: pdf, mimetype: 'application/pdf', fileName: 'Договор.pdf', caption: 'договор' });
    await park('wa-new-doc', parked(msg(chat, doc.toJSON(), { id: 'RP2' })));
    // As versions before the proto JSON parked a message whose media key sat in a plain Buffer:
    // JSON.stringify's {type: 'Buffer', data: [...]}, which fromObject alone would drop.
    const old = await plainDocument('Акт.pdf');
    const oldForm = JSON.parse(JSON.stringify(msg(chat, old.doc as Record<string, unknown>, { id: 'RP6' }))) as { message: { documentMessage: { mediaKey: unknown } } };
    expect(oldForm.message.documentMessage.mediaKey).toEqual({ type: 'Buffer', data: [...old.mediaKey] });
    await park('wa-old-doc', oldForm);
    const lines = await replay(since);
    expect(lineOf(lines, 'wa-old-text')).toMatch(/\twa-old-text\treplayed$/);
    expect(lineOf(lines, 'wa-new-doc')).toMatch(/\twa-new-doc\treplayed$/);
    expect(lineOf(lines, 'wa-old-doc')).toMatch(/\twa-old-doc\treplayed$/);
    const text = inboundOf(await messageEvent(`${chat}:RP1`))!;
    expect(text).toMatchObject({ text: 'не дошло до NATS', sender: { id: chat, displayName: 'Инна' } });
    const att = inboundOf(await messageEvent(`${chat}:RP2`))!.attachments[0]!;
    expect(att).toMatchObject({ status: 'stored', name: 'Договор.pdf', size: pdf.length });
    expect(att.sha256).toBe(sha256(pdf));
    const oldAtt = inboundOf(await messageEvent(`${chat}:RP6`))!.attachments[0]!;
    expect(oldAtt).toMatchObject({ status: 'stored', name: 'Акт.pdf', size: old.pdf.length, sha256: sha256(old.pdf) });

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
    expect(lineOf(lines, 'wa-other-number')).toMatch(/\trefused: the letter's `meta\.me` 79990000002 \(the number the message was sent to\) is not the number whatsapp account wa1 is linked to now \(79990000001\)$/);
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
