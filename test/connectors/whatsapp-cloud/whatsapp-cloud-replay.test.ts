/**
 * `omnigate dlq --replay` of WhatsApp Cloud dead letters, end to end: letters on
 * omni.dlq.inbound.whatsapp.<account> go back through the connector's own intake (the walk of
 * what was parked, the message check, normalisation, media from Graph, publish) on the running
 * gateway, without a signature check. Only what was parked is replayed: one message of a body
 * whose other message was stored live, a change, a whole body. Still invalid → the letter stays
 * with the field named; good → a ticket, and a second replay is a duplicate; a body that was not
 * JSON, a status, a contact, a letter of another phone number id and an account Graph refuses are
 * refused. Same stand-in Graph API and real nats-server as the other WhatsApp Cloud tests.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startGateway, type TestGateway } from '../../helpers/gateway.js';
import { deadLetters } from '../../../src/dlq.js';
import { loadNatsSection } from '../../../src/core/config.js';
import type { DeadLetter, InboundMessage, LogEntry, TicketEvent } from '../../../src/core/schema.js';
import { FakeGraphApi, newWamid, signWebhook, webhookBody } from './graph-api.js';

const PHONE_ID = '106540352242922';
const OTHER_PHONE_ID = '109999999999999';
const ACCESS_TOKEN = 'EAAG-replay-access-token-0123456789';
const REFUSED_TOKEN = 'EAAG-replay-revoked-token-0123456789';
const APP_SECRET = 'app-secret-replay-0123456789abcdef';
let graph: FakeGraphApi;
let gw: TestGateway;

const inboundOf = (e: TicketEvent) => (e.entry as Extract<LogEntry, { kind: 'inbound' }> | undefined)?.event as InboundMessage | undefined;
const messageEvent = (wamid: string) => gw.waitForEvent((e) => e.type === 'ticket.message' && inboundOf(e)?.platform.messageId === wamid);
const now = () => String(Math.floor(Date.now() / 1000));
const text = (from: string, body: string, o: { id?: string; timestamp?: unknown } = {}) => ({ from, id: o.id ?? newWamid(), timestamp: o.timestamp ?? now(), type: 'text', text: { body } });

async function post(body: string): Promise<Response> {
  return fetch(`${gw.httpUrl}/connectors/whatsapp-cloud/shop/webhook`, { method: 'POST', headers: { 'content-type': 'application/json', 'x-hub-signature-256': signWebhook(APP_SECRET, body) }, body });
}

/** A letter as an older version (or a refusal since fixed) left it. */
async function park(account: string, reason: string, payload: unknown, meta?: Record<string, string>) {
  await gw.gateway.bus.deadLetters.park({ source: 'connector', scope: `whatsapp.${account}`, subject: `omni.in.whatsapp.${account}`, code: 'invalid_payload', reason, payload, meta });
}

/** `omnigate dlq --source inbound.whatsapp.<account> --since <since> --replay`: one line per letter. */
async function replay(account: string, since: string): Promise<string[]> {
  const lines: string[] = [];
  await deadLetters(loadNatsSection(undefined, { OMNIGATE_NATS__URL: gw.nats.url }), { source: `inbound.whatsapp.${account}`, since, limit: 100, replay: true, out: (l) => lines.push(l) });
  return lines;
}
const lineOf = (lines: string[], marker: string) => {
  const found = lines.filter((l) => l.includes(marker));
  expect(found, `one line for ${marker} in:\n${lines.join('\n')}`).toHaveLength(1);
  return found[0]!;
};

/** Nothing on omni.in for this customer within a short wait. */
async function nothingPublishedFor(from: string) {
  await expect(gw.waitForStreamMessage('OMNI_IN', 'omni.in.whatsapp.>', (m: any) => m.sender?.handles?.wa_id === from, 1500)).rejects.toThrow();
}

beforeAll(async () => {
  graph = new FakeGraphApi(ACCESS_TOKEN, PHONE_ID);
  await graph.start();
  const account = (name: string, token: string, phoneNumberId: string) => ({
    type: 'whatsapp-cloud', account: name, phoneNumberId, accessToken: token, appSecret: '${WA_APP_SECRET}', verifyToken: 'verify-me-please',
    graphApiUrl: graph.base, pacing: { perChatIntervalMs: 0, perSecond: 0 },
  });
  gw = await startGateway(
    { connectors: [account('shop', '${WA_TOKEN}', PHONE_ID), account('revoked', '${WA_REFUSED}', '105555555555555')] },
    { env: { WA_TOKEN: ACCESS_TOKEN, WA_REFUSED: REFUSED_TOKEN, WA_APP_SECRET: APP_SECRET } },
  );
  await graph.waitForCall((c) => c.method === 'GET' && c.path.endsWith(`/${PHONE_ID}`) && c.auth === `Bearer ${ACCESS_TOKEN}`);
});
afterAll(async () => {
  await gw?.stop();
  await graph?.stop();
});

describe('whatsapp-cloud dead-letter replay', () => {
  it('replays only the message of a body that was parked: still invalid → the field named and the letter stays; the stored one is not touched', async () => {
    const since = new Date().toISOString();
    const good = newWamid();
    const bad = newWamid();
    const res = await post(webhookBody(PHONE_ID, { messages: [text('79160000101', 'нормальное', { id: good }), text('79160000102', 'кривое время', { id: bad, timestamp: 'вчера' })] }));
    expect(res.status).toBe(200);
    await messageEvent(good);
    const letter = await gw.waitForStreamMessage<DeadLetter>('OMNI_DLQ', 'omni.dlq.inbound.whatsapp.shop', (l) => l.reason.includes(bad));
    expect(letter.meta).toMatchObject({ kind: 'message', phoneNumberId: PHONE_ID });
    expect(JSON.parse(letter.payload).id).toBe(bad);

    const line = lineOf(await replay('shop', since), bad);
    expect(line).toMatch(/\tinvalid: whatsapp-cloud message wamid\.[^:]+: message\.timestamp: expected a time in whole seconds/);
    await nothingPublishedFor('79160000102');
    // The letter stays: a second replay says the same.
    expect(lineOf(await replay('shop', since), bad)).toMatch(/\tinvalid: /);
  });

  it('a good message parked as by an older version opens a ticket with the parked profile name; a second replay is a duplicate', async () => {
    const since = new Date().toISOString();
    const wamid = newWamid();
    await park('shop', 'wac-old-message', text('79160000111', 'после исправления', { id: wamid }), { kind: 'message', phoneNumberId: PHONE_ID, profileName: 'Ольга' });
    const noMeta = newWamid();
    await park('shop', 'wac-no-meta', text('79160000112', 'письмо без meta', { id: noMeta }));
    const lines = await replay('shop', since);
    expect(lineOf(lines, 'wac-old-message')).toMatch(/\twac-old-message\treplayed$/);
    expect(lineOf(lines, 'wac-no-meta')).toMatch(/\twac-no-meta\treplayed$/);
    const created = inboundOf(await messageEvent(wamid))!;
    expect(created.text).toBe('после исправления');
    expect(created.sender).toMatchObject({ id: '79160000111@s.whatsapp.net', displayName: 'Ольга', handles: { wa_id: '79160000111' } });
    expect(created.replyWindowEndsAt).toBeDefined();
    expect(inboundOf(await messageEvent(noMeta))!.text).toBe('письмо без meta');

    expect(lineOf(await replay('shop', since), 'wac-old-message')).toMatch(/\treplayed: already taken before \(a duplicate, or done already\): nothing new written$/);
  });

  it('a change and a whole body go through the walk: their messages (with media from Graph) published, statuses passed over', async () => {
    const since = new Date().toISOString();
    const inChange = newWamid();
    await park('shop', 'wac-change', {
      field: 'messages',
      value: { messaging_product: 'whatsapp', metadata: { phone_number_id: PHONE_ID }, contacts: [{ wa_id: '79160000121', profile: { name: 'Пётр' } }], messages: [text('79160000121', 'из изменения', { id: inChange })] },
    }, { kind: 'change', phoneNumberId: PHONE_ID });
    graph.addMedia('MEDIA-RP1', Buffer.from('%PDF-1.4 replay'), 'application/pdf');
    const first = newWamid();
    const doc = newWamid();
    const body = webhookBody(PHONE_ID, {
      messages: [text('79160000122', 'первое из тела', { id: first }), { from: '79160000122', id: doc, timestamp: now(), type: 'document', document: { id: 'MEDIA-RP1', mime_type: 'application/pdf', filename: 'акт.pdf' } }],
      statuses: [{ id: 'wamid.UNKNOWN-RP', status: 'delivered', timestamp: now(), recipient_id: '79160000122' }],
    });
    await park('shop', 'wac-body', Buffer.from(body), { kind: 'body', phoneNumberId: PHONE_ID });

    const lines = await replay('shop', since);
    expect(lineOf(lines, 'wac-change')).toMatch(/\treplayed$/);
    expect(lineOf(lines, 'wac-body')).toMatch(/\treplayed$/);
    expect(inboundOf(await messageEvent(inChange))!.sender.displayName).toBe('Пётр');
    expect(inboundOf(await messageEvent(first))!.text).toBe('первое из тела');
    expect(inboundOf(await messageEvent(doc))!.attachments[0]).toMatchObject({ status: 'stored', name: 'акт.pdf', mimeType: 'application/pdf' });
  });

  it('refuses what cannot be replayed, saying why: not JSON, a status, a contact, another phone number id', async () => {
    const since = new Date().toISOString();
    // Signed by Meta yet not JSON: parked whole with its raw bytes.
    expect((await post('{"object":"whatsapp_business_account", сломано')).status).toBe(200);
    await gw.waitForStreamMessage<DeadLetter>('OMNI_DLQ', 'omni.dlq.inbound.whatsapp.shop', (l) => l.at >= since && l.meta?.kind === 'body');
    // A status without its wamid, parked live.
    expect((await post(webhookBody(PHONE_ID, { statuses: [{ status: 'delivered', timestamp: now(), recipient_id: '79160000131' }] }))).status).toBe(200);
    await gw.waitForStreamMessage<DeadLetter>('OMNI_DLQ', 'omni.dlq.inbound.whatsapp.shop', (l) => l.at >= since && l.meta?.kind === 'status');
    await park('shop', 'wac-contact', { wa_id: 79160000132, profile: { name: 'Анна' } });
    await park('shop', 'wac-foreign-meta', text('79160000133', 'для другого номера'), { kind: 'message', phoneNumberId: OTHER_PHONE_ID });
    await park('shop', 'wac-foreign-body', Buffer.from(webhookBody(OTHER_PHONE_ID, { messages: [text('79160000134', 'чужой номер')] })));

    const lines = await replay('shop', since);
    expect(lineOf(lines, 'whatsapp-cloud webhook: ')).toMatch(/\trefused: the letter holds no Meta webhook: the body Meta sent was not JSON/);
    expect(lineOf(lines, 'statuses.0.id')).toMatch(/\trefused: `meta.kind` status: a delivery status is not replayed, only customers' messages are/);
    expect(lineOf(lines, 'wac-contact')).toMatch(/\trefused: no `meta.kind`, by its shape a contact: a contact only gives the profile name/);
    expect(lineOf(lines, 'wac-foreign-meta')).toMatch(new RegExp(`\\trefused: the letter's \\x60meta\\.phoneNumberId\\x60 ${OTHER_PHONE_ID} is not the phone number id of whatsapp-cloud account shop now \\(${PHONE_ID}\\)$`));
    expect(lineOf(lines, 'wac-foreign-body')).toMatch(new RegExp(`\\trefused: the letter's changes are for \\x60value\\.metadata\\.phone_number_id\\x60 ${OTHER_PHONE_ID}, not this account's ${PHONE_ID}$`));
    await nothingPublishedFor('79160000133');
    await nothingPublishedFor('79160000134');
  });

  it('a status parked for a field it lacks or cannot read is refused naming that field, and stays refused on a second replay', async () => {
    const since = new Date().toISOString();
    const statuses = [
      { id: 'wamid.RP-BOGUS', status: 42, timestamp: now(), recipient_id: '79160000151' },
      { id: 'wamid.RP-NOSTATUS', timestamp: now(), recipient_id: '79160000151' },
    ];
    expect((await post(webhookBody(PHONE_ID, { statuses }))).status).toBe(200);
    await gw.waitForStreamMessage<DeadLetter>('OMNI_DLQ', 'omni.dlq.inbound.whatsapp.shop', (l) => l.reason.includes('wamid.RP-NOSTATUS'));
    for (let i = 0; i < 2; i++) {
      const lines = await replay('shop', since);
      expect(lineOf(lines, 'wamid.RP-BOGUS')).toMatch(/\trefused: `meta\.kind` status: a delivery status is not replayed, .*; nor could it be read: status\.status: expected a status such as "delivered"; received 42$/);
      expect(lineOf(lines, 'wamid.RP-NOSTATUS')).toMatch(/\trefused: `meta\.kind` status: .*; nor could it be read: status\.status: expected a status such as "delivered"; received undefined$/);
    }
  });

  it('an account whose token Graph refuses is not connected: the replay is refused instead of recording media as failed', async () => {
    const since = new Date().toISOString();
    await park('revoked', 'wac-not-connected', text('79160000141', 'пока нет связи'), { kind: 'message', phoneNumberId: '105555555555555' });
    expect(lineOf(await replay('revoked', since), 'wac-not-connected')).toMatch(/\trefused: not connected to the Graph API yet \(auth_failed: Graph API rejected the access token/);
    await nothingPublishedFor('79160000141');
  });
});
