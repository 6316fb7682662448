/**
 * Slack, the edges: edits and deletions, url_verification, file limits and transient download
 * failures, a retry arriving while the first delivery is still in flight, a thread reply arriving
 * while its first post is, Web API calls that never answer, a refused token, Socket Mode surviving
 * a failed reconnect and a flapping connection, per-channel pacing and a retried send that must not
 * post its text twice. Same stand-in and real gateway as slack.test.ts; the Socket Mode loop tests
 * get a stand-in of their own, as its backoff carries over from one reconnect to the next.
 */
import { createHash, createHmac } from 'node:crypto';
import { createServer } from 'node:http';
import { Objm } from '@nats-io/obj';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startGateway, type TestGateway } from '../../helpers/gateway.js';
import { FakeSlack } from './slack-api.js';
import type { DeadLetter, LogEntry, TicketEvent } from '../../../src/core/schema.js';

const BOT = 'xoxb-2-edge-bot-token';
const REFUSED = 'xoxb-3-revoked-token';
const APP = 'xapp-2-edge-app-token';
const SIGNING = 'slack-signing-secret-edges-0123456789';
let slack: FakeSlack;
let loop: FakeSlack;
let gw: TestGateway;
let seq = 100;

type Inbound = Extract<LogEntry, { kind: 'inbound' }>['event'];
const inboundOf = (e: TicketEvent) => (e.entry as Extract<LogEntry, { kind: 'inbound' }> | undefined)?.event as Inbound | undefined;
const ts = () => `1765000${String(seq++).padStart(3, '0')}.000200`;
const envelope = (event: Record<string, unknown>, eventId = `EvE${seq++}`) => ({ type: 'event_callback', team_id: 'T1', api_app_id: 'A1', event_id: eventId, event_time: 1765000000, event });

async function postEvent(body: unknown, opts: { retry?: number } = {}) {
  const raw = JSON.stringify(body);
  const t = Math.floor(Date.now() / 1000);
  const sig = `v0=${createHmac('sha256', SIGNING).update(`v0:${t}:${raw}`).digest('hex')}`;
  return fetch(`${gw.httpUrl}/connectors/slack/edge_events/events`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', 'x-slack-signature': sig, 'x-slack-request-timestamp': String(t), ...(opts.retry ? { 'x-slack-retry-num': String(opts.retry), 'x-slack-retry-reason': 'http_timeout' } : {}) },
    body: raw,
  });
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const sha256 = (b: Buffer) => createHash('sha256').update(b).digest('hex');

const inboundTexts = async (ticketId: string) =>
  (await gw.gateway.router!.store.readLog(ticketId)).filter((l) => l.entry.kind === 'inbound').map((l) => (l.entry as Extract<LogEntry, { kind: 'inbound' }>).event.text);

beforeAll(async () => {
  slack = new FakeSlack(BOT);
  slack.refusedTokens.add(REFUSED);
  await slack.start();
  loop = new FakeSlack(BOT);
  loop.hangNext('apps.connections.open');
  loop.closeAfterHello = 1;
  await loop.start();
  gw = await startGateway(
    {
      outbound: { backoffBase: '100ms' },
      connectors: [
        { type: 'slack', account: 'edge_events', mode: 'events', botToken: '${BOT}', signingSecret: '${SIGNING}', apiUrl: slack.apiUrl, perChannelIntervalMs: 0, maxFileBytes: 100_000, apiTimeoutMs: 2000 },
        { type: 'slack', account: 'edge_socket', mode: 'socket', botToken: '${BOT}', appToken: '${APP}', apiUrl: slack.apiUrl, channels: ['CHELP'], perChannelIntervalMs: 500 },
        { type: 'slack', account: 'edge_refused', mode: 'events', botToken: '${REFUSED}', signingSecret: '${SIGNING}', apiUrl: slack.apiUrl },
        { type: 'slack', account: 'edge_loop', mode: 'socket', botToken: '${BOT}', appToken: '${APP}', apiUrl: loop.apiUrl, channels: ['CLOOP'], perChannelIntervalMs: 0, apiTimeoutMs: 2000 },
      ],
    },
    { env: { BOT, APP, SIGNING, REFUSED } },
  );
  for (let i = 0; i < 100 && slack.connections === 0; i++) await new Promise((r) => setTimeout(r, 50));
});
afterAll(async () => {
  await gw?.stop();
  await slack?.stop();
  await loop?.stop();
});

describe('slack connector edges', () => {
  it('answers url_verification with the challenge', async () => {
    const res = await postEvent({ type: 'url_verification', token: 'legacy', challenge: 'вызов-3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P' });
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual({ challenge: 'вызов-3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P' });
  });

  it('edits and deletions land on the same ticket; unfurls and foreign edits do not', async () => {
    const original = ts();
    await postEvent(envelope({ type: 'message', channel: 'D500', channel_type: 'im', user: 'U50', text: 'счёт 1042 не пришёл', ts: original }));
    const created = await gw.waitForEvent((e) => e.type === 'ticket.message' && inboundOf(e)?.conversation.id === 'D500');
    // An unfurl: message_changed without `edited` and with the same text.
    await postEvent(envelope({ type: 'message', subtype: 'message_changed', channel: 'D500', channel_type: 'im', ts: ts(), hidden: true,
      message: { type: 'message', user: 'U50', text: 'счёт 1042 не пришёл', ts: original, attachments: [{ title: 'unfurl' }] },
      previous_message: { type: 'message', user: 'U50', text: 'счёт 1042 не пришёл', ts: original } }));
    // An edit in a channel we do not watch, of a message nobody addressed to us.
    await postEvent(envelope({ type: 'message', subtype: 'message_changed', channel: 'COTHER', channel_type: 'channel', ts: ts(), hidden: true,
      message: { type: 'message', user: 'U51', text: 'обед в 14', ts: '1765000000.000001', edited: { user: 'U51', ts: ts() } },
      previous_message: { type: 'message', user: 'U51', text: 'обед в 13', ts: '1765000000.000001' } }));
    const editTs = ts();
    expect((await postEvent(envelope({ type: 'message', subtype: 'message_changed', channel: 'D500', channel_type: 'im', ts: editTs, hidden: true,
      message: { type: 'message', user: 'U50', text: 'счёт 1043 не пришёл', ts: original, edited: { user: 'U50', ts: editTs } },
      previous_message: { type: 'message', user: 'U50', text: 'счёт 1042 не пришёл', ts: original } }))).status).toBe(200);
    const edited = await gw.waitForEvent((e) => e.type === 'ticket.edited' && e.ticketId === created.ticketId);
    expect((edited.entry as Extract<LogEntry, { kind: 'edited' }>).event).toMatchObject({ text: 'счёт 1043 не пришёл', targetPlatformMessageId: `D500:${original}` });
    await postEvent(envelope({ type: 'message', subtype: 'message_deleted', channel: 'D500', channel_type: 'im', ts: ts(), hidden: true, deleted_ts: original,
      previous_message: { type: 'message', user: 'U50', text: 'счёт 1043 не пришёл', ts: original } }));
    await gw.waitForEvent((e) => e.type === 'ticket.deleted' && e.ticketId === created.ticketId);
    const kinds = (await gw.gateway.router!.store.readLog(created.ticketId)).map((l) => l.entry.kind);
    expect(kinds.filter((k) => k === 'edited')).toHaveLength(1);
    expect(kinds.filter((k) => k === 'deleted')).toHaveLength(1);
    const tickets = await gw.gateway.router!.store.list();
    expect(tickets.some((t) => JSON.stringify(t).includes('COTHER'))).toBe(false);
  });

  it('records files over the limit (declared or streamed) and a sign-in page as not fetched, and keeps the message', async () => {
    slack.files.set('FBIG', Buffer.alloc(200_000, 1));
    slack.signInPageFiles.add('FNOSCOPE');
    slack.files.set('FCHUNK', Buffer.alloc(150_000, 2));
    slack.chunkedFiles.add('FCHUNK');
    await postEvent(envelope({ type: 'message', subtype: 'file_share', channel: 'D600', channel_type: 'im', user: 'U60', text: 'два файла', ts: ts(), files: [
      { id: 'FBIG', name: 'дамп.zip', mimetype: 'application/zip', size: 200_000, url_private_download: `http://127.0.0.1:${slack.port}/files/FBIG` },
      { id: 'FNOSCOPE', name: 'акт.pdf', mimetype: 'application/pdf', size: 1000, url_private_download: `http://127.0.0.1:${slack.port}/files/FNOSCOPE` },
      { id: 'FCHUNK', name: 'без-размера.bin', url_private: `http://127.0.0.1:${slack.port}/files/FCHUNK` },
    ] }));
    const created = await gw.waitForEvent((e) => e.type === 'ticket.message' && inboundOf(e)?.conversation.id === 'D600');
    const [big, noScope, undeclared] = inboundOf(created)!.attachments;
    expect(big).toMatchObject({ name: 'дамп.zip', status: 'failed', size: 200_000 });
    expect(big!.error).toMatch(/limit is 100000/);
    expect(noScope).toMatchObject({ name: 'акт.pdf', status: 'failed' });
    expect(noScope!.error).toMatch(/files:read/);
    expect(undeclared).toMatchObject({ name: 'без-размера.bin', status: 'failed' });
    expect(undeclared!.error).toMatch(/100000/); // no size anywhere: refused while streaming
    expect(slack.downloads.get('FBIG')).toBeUndefined(); // refused from the declared size, never fetched
  });

  it('an event of the wrong shape is parked at once naming the field and answered 200; the next good one goes through', async () => {
    const cases: Array<{ channel: string; event: Record<string, unknown>; field: string; retry?: number }> = [
      { channel: 'D1001', event: { ts: 'abc' }, field: 'event.ts' },
      { channel: 'D1002', event: { ts: '99999999999999.0001' }, field: 'event.ts', retry: 3 },
      { channel: 'D1003', event: { text: 12345 }, field: 'event.text' },
      { channel: 'D1004', event: { text: {} }, field: 'event.text', retry: 3 },
      { channel: 'D1005', event: { subtype: 'file_share', files: [null] }, field: 'event.files.0' },
    ];
    for (const c of cases) {
      const eventId = `EvBad-${c.channel}`;
      const body = envelope({ type: 'message', channel: c.channel, channel_type: 'im', user: 'U100', text: 'кривое событие', ts: ts(), ...c.event }, eventId);
      // Refused for good on the first delivery (a retry cannot help), on the last one alike.
      const res = await postEvent(body, { retry: c.retry });
      expect(res.status, `${c.field} ${JSON.stringify(c.event)}`).toBe(200);
      const letter = await gw.waitForStreamMessage<DeadLetter>('OMNI_DLQ', 'omni.dlq.inbound.slack.edge_events', (l) => l.reason.includes(eventId));
      expect(letter.reason).toContain(`slack event ${eventId}: ${c.field}: `);
      expect(JSON.parse(letter.payload)).toEqual(body);
      // Slack's retry of the same event is answered at once, not parked again or failed.
      expect((await postEvent(body, { retry: 1 })).status).toBe(200);
    }
    await postEvent(envelope({ type: 'message', channel: 'D1006', channel_type: 'im', user: 'U100', text: 'теперь ровное', ts: ts() }));
    await gw.waitForEvent((e) => e.type === 'ticket.message' && inboundOf(e)?.conversation.id === 'D1006');
    expect((await gw.gateway.router!.store.list()).some((t) => /D100[1-5]/.test(JSON.stringify(t)))).toBe(false);
  });

  it('Socket Mode parks an event of the wrong shape naming the field and acknowledges it', async () => {
    const body = envelope({ type: 'message', channel: 'CHELP', channel_type: 'channel', user: 'U101', text: { blocks: [] }, ts: ts() }, 'EvBadSocket1');
    const envelopeId = slack.pushSocketEvent(body);
    const letter = await gw.waitForStreamMessage<DeadLetter>('OMNI_DLQ', 'omni.dlq.inbound.slack.edge_socket', (l) => l.reason.includes('EvBadSocket1'));
    expect(letter.reason).toMatch(/^slack event EvBadSocket1: event\.text: /);
    for (let i = 0; i < 100 && !slack.acked.has(envelopeId); i++) await sleep(50);
    expect(slack.acked.has(envelopeId)).toBe(true);
  });

  it('sends the bot token only to Slack\'s file host: a file elsewhere is recorded as not fetched, the message goes through', async () => {
    const seen: Array<string | undefined> = [];
    const foreign = createServer((req, res) => {
      seen.push(req.headers.authorization);
      res.writeHead(200, { 'content-type': 'application/octet-stream' }).end('чужой файл');
    });
    await new Promise<void>((r) => foreign.listen(0, '127.0.0.1', r));
    const port = (foreign.address() as { port: number }).port;
    try {
      const bytes = Buffer.from('настоящий файл со Slack');
      slack.files.set('FHOME', bytes);
      await postEvent(envelope({ type: 'message', subtype: 'file_share', channel: 'D1010', channel_type: 'im', user: 'U102', text: 'файл не со Slack', ts: ts(), files: [
        { id: 'FAWAY', name: 'чужой.bin', mimetype: 'application/octet-stream', size: 10, url_private_download: `http://127.0.0.1:${port}/f` },
        { id: 'FHOME', name: 'свой.txt', mimetype: 'text/plain', size: bytes.length, url_private_download: `http://127.0.0.1:${slack.port}/files/FHOME` },
      ] }));
      const created = await gw.waitForEvent((e) => e.type === 'ticket.message' && inboundOf(e)?.conversation.id === 'D1010');
      expect(seen).toEqual([]); // not fetched at all, so the token went nowhere else
      const [away, home] = inboundOf(created)!.attachments;
      expect(away).toMatchObject({ name: 'чужой.bin', status: 'failed' });
      expect(away!.error).toContain(`http://127.0.0.1:${port} is not Slack's file host`);
      expect(home).toMatchObject({ name: 'свой.txt', status: 'stored', sha256: sha256(bytes) });
      // Plain HTTP to files.slack.com, a look-alike host and no URL at all: refused without a request.
      await postEvent(envelope({ type: 'message', subtype: 'file_share', channel: 'D1011', channel_type: 'im', user: 'U102', text: 'ещё адреса', ts: ts(), files: [
        { id: 'FPLAIN', name: 'открытый.bin', url_private: 'http://files.slack.com/files-pri/T1-FPLAIN/x.bin' },
        { id: 'FLOOK', name: 'похожий.bin', url_private_download: 'https://files.slack.com.example.net/files-pri/T1-FLOOK/x.bin' },
        { id: 'FNOURL', name: 'не-адрес.bin', url_private_download: 'не адрес' },
      ] }));
      const more = await gw.waitForEvent((e) => e.type === 'ticket.message' && inboundOf(e)?.conversation.id === 'D1011');
      const [plain, lookalike, notUrl] = inboundOf(more)!.attachments;
      expect(plain).toMatchObject({ name: 'открытый.bin', status: 'failed' });
      expect(plain!.error).toContain("http://files.slack.com is not Slack's file host");
      expect(lookalike).toMatchObject({ name: 'похожий.bin', status: 'failed' });
      expect(lookalike!.error).toContain("https://files.slack.com.example.net is not Slack's file host");
      expect(notUrl).toMatchObject({ name: 'не-адрес.bin', status: 'failed' });
      expect(notUrl!.error).toMatch(/not a URL/);
    } finally {
      await new Promise((r) => foreign.close(r));
    }
  });

  it('a retry that arrives while the first delivery is still in flight joins it: one download, one message', async () => {
    const bytes = Buffer.from('Отчёт об ошибке\n'.repeat(100));
    slack.files.set('FSLOW', bytes);
    let release!: () => void;
    slack.downloadGate = new Promise((r) => (release = r));
    const arrived = slack.nextDownload();
    const body = envelope({ type: 'message', subtype: 'file_share', channel: 'D700', channel_type: 'im', user: 'U70', text: 'медленный файл', ts: ts(),
      files: [{ id: 'FSLOW', name: 'log.txt', mimetype: 'text/plain', size: bytes.length, url_private_download: `http://127.0.0.1:${slack.port}/files/FSLOW` }] }, 'EvSlow1');
    const first = postEvent(body);
    await arrived; // the first delivery is now waiting on the download, unacknowledged
    const retry = postEvent(body, { retry: 1 });
    release();
    slack.downloadGate = undefined;
    expect((await first).status).toBe(200);
    expect((await retry).status).toBe(200);
    expect((await postEvent(body, { retry: 2 })).status).toBe(200);
    const created = await gw.waitForEvent((e) => e.type === 'ticket.message' && inboundOf(e)?.conversation.id === 'D700');
    expect(slack.downloads.get('FSLOW')).toBe(1);
    expect(inboundOf(created)!.attachments[0]).toMatchObject({ status: 'stored', size: bytes.length });
    await postEvent(envelope({ type: 'message', channel: 'D700', channel_type: 'im', user: 'U70', text: 'ещё', ts: ts() }));
    await gw.waitForEvent((e) => e.type === 'ticket.message' && inboundOf(e)?.text === 'ещё');
    expect(await inboundTexts(created.ticketId)).toEqual(['медленный файл', 'ещё']);
  });

  it('a file Slack cannot serve right now leaves the event unacknowledged; the retry stores the same bytes', async () => {
    const bytes = Buffer.from('Выписка за ноябрь: 1 042,00 ₽\n'.repeat(200));
    slack.files.set('FFLAKY', bytes);
    slack.downloadFailures.set('FFLAKY', [503]);
    const files = [
      { id: 'FFLAKY', name: 'выписка.txt', mimetype: 'text/plain', size: bytes.length, url_private_download: `http://127.0.0.1:${slack.port}/files/FFLAKY` },
      { id: 'FGONE', name: 'удалён.pdf', mimetype: 'application/pdf', size: 10, url_private_download: `http://127.0.0.1:${slack.port}/files/FGONE` },
    ];
    const body = envelope({ type: 'message', subtype: 'file_share', channel: 'D800', channel_type: 'im', user: 'U81', text: 'выписка', ts: ts(), files }, 'EvFlaky1');
    expect((await postEvent(body)).status).toBe(500);
    expect((await gw.gateway.router!.store.list()).some((t) => JSON.stringify(t).includes('D800'))).toBe(false);
    expect((await postEvent(body, { retry: 1 })).status).toBe(200);
    const created = await gw.waitForEvent((e) => e.type === 'ticket.message' && inboundOf(e)?.conversation.id === 'D800');
    const [stored, gone] = inboundOf(created)!.attachments;
    expect(stored).toMatchObject({ name: 'выписка.txt', status: 'stored', size: bytes.length, sha256: sha256(bytes) });
    const media = await new Objm(gw.nc).open('omni_media');
    expect(Buffer.from((await media.getBlob(stored!.objectKey!))!).equals(bytes)).toBe(true);
    // 404 from files.slack.com will not heal: recorded, not retried.
    expect(gone).toMatchObject({ name: 'удалён.pdf', status: 'failed' });
    expect(gone!.error).toMatch(/404/);
    expect(slack.downloads.get('FFLAKY')).toBe(2);
    expect(await inboundTexts(created.ticketId)).toEqual(['выписка']);

    // Slack's last delivery (x-slack-retry-num 3): the message goes through, the file is recorded as not fetched.
    slack.files.set('FDOWN', bytes);
    slack.downloadFailures.set('FDOWN', [502]);
    const last = envelope({ type: 'message', subtype: 'file_share', channel: 'D801', channel_type: 'im', user: 'U81', text: 'последняя попытка', ts: ts(),
      files: [{ id: 'FDOWN', name: 'a.txt', mimetype: 'text/plain', size: bytes.length, url_private_download: `http://127.0.0.1:${slack.port}/files/FDOWN` }] });
    expect((await postEvent(last, { retry: 3 })).status).toBe(200);
    const kept = await gw.waitForEvent((e) => e.type === 'ticket.message' && inboundOf(e)?.conversation.id === 'D801');
    expect(inboundOf(kept)!.attachments[0]).toMatchObject({ name: 'a.txt', status: 'failed' });
    expect(inboundOf(kept)!.attachments[0]!.error).toMatch(/502/);
  });

  it('a thread reply that arrives while the first post is still fetching its file continues that thread, published after it', async () => {
    const bytes = Buffer.from('скриншот ошибки'.repeat(50));
    slack.files.set('FHOLD', bytes);
    let release!: () => void;
    slack.downloadGate = new Promise((r) => (release = r));
    const arrived = slack.nextDownload();
    const top = ts();
    const first = postEvent(envelope({ type: 'message', subtype: 'file_share', channel: 'COPS', channel_type: 'channel', user: 'U75', text: '<@UBOT> вот скрин', ts: top,
      files: [{ id: 'FHOLD', name: 'screen.png', mimetype: 'image/png', size: bytes.length, url_private_download: `http://127.0.0.1:${slack.port}/files/FHOLD` }] }));
    await arrived; // the mention is held on its download, not published yet
    slack.downloadGate = undefined;
    // A colleague's reply: their users.info call shows it was taken as part of the thread.
    const second = postEvent(envelope({ type: 'message', channel: 'COPS', channel_type: 'channel', user: 'U76', text: 'и ещё деталь', ts: ts(), thread_ts: top }));
    await slack.waitForCall((c) => c.method === 'users.info' && c.params.user === 'U76');
    // It waits for the first post to be published (publish-order.ts): released, both go through.
    release();
    expect((await first).status).toBe(200);
    expect((await second).status).toBe(200);
    const reply = await gw.waitForEvent((e) => e.type === 'ticket.message' && inboundOf(e)?.text === 'и ещё деталь');
    const opened = await gw.waitForEvent((e) => e.type === 'ticket.message' && inboundOf(e)?.text === '@omnigate вот скрин');
    expect(opened.ticketId).toBe(reply.ticketId);
    expect(inboundOf(reply)!.conversation).toEqual({ id: 'COPS', threadId: top, kind: 'channel' });
    expect(await inboundTexts(reply.ticketId)).toEqual(['@omnigate вот скрин', 'и ещё деталь']);
  });

  it('a users.info that never answers times out (apiTimeoutMs): the event and Slack\'s retry become one ticket', async () => {
    slack.hangNext('users.info');
    const body = envelope({ type: 'message', channel: 'D900', channel_type: 'im', user: 'U95', text: 'завис users.info', ts: ts() }, 'EvHang1');
    const first = postEvent(body);
    await slack.waitForCall((c) => c.method === 'users.info' && c.params.user === 'U95');
    const retry = postEvent(body, { retry: 1 }); // joins the attempt stuck on users.info
    expect((await first).status).toBe(200);
    expect((await retry).status).toBe(200);
    const created = await gw.waitForEvent((e) => e.type === 'ticket.message' && inboundOf(e)?.conversation.id === 'D900');
    expect(inboundOf(created)!.sender).toMatchObject({ id: 'U95', handles: { slack: 'U95' } });
    expect(inboundOf(created)!.sender!.displayName).toBeUndefined();
    expect(await inboundTexts(created.ticketId)).toEqual(['завис users.info']);
  });

  it('a chat.postMessage that never answers times out and the send is retried', async () => {
    await postEvent(envelope({ type: 'message', channel: 'D901', channel_type: 'im', user: 'U96', text: 'жду ответа', ts: ts() }));
    const created = await gw.waitForEvent((e) => e.type === 'ticket.message' && inboundOf(e)?.conversation.id === 'D901');
    slack.hangNext('chat.postMessage');
    await gw.request('omni.cmd.reply', { ticketId: created.ticketId, text: 'ответ после зависания' });
    const sent = await gw.waitForEvent((e) => e.type === 'ticket.delivery' && e.ticketId === created.ticketId && (e.entry as Extract<LogEntry, { kind: 'delivery' }>).status.status === 'sent', 15_000);
    expect((sent.entry as Extract<LogEntry, { kind: 'delivery' }>).status.attempts).toBe(2);
    const tries = slack.calls.filter((c) => c.method === 'chat.postMessage' && c.params.channel === 'D901');
    expect(tries).toHaveLength(2);
    expect(tries[1]!.at - tries[0]!.at).toBeGreaterThanOrEqual(1000); // 2 s; stand-in stamps can be late under load
  });

  it('reports auth_failed when auth.test refuses the token', async () => {
    const state = await gw.waitForStreamMessage<{ state: string; detail?: string }>('OMNI_EVENTS', 'omni.events.connector.slack.edge_refused', (m) => m.state === 'auth_failed');
    expect(state.detail).toMatch(/invalid_auth/);
    expect(gw.gateway.connectors.health().find((h) => h.account === 'edge_refused')).toMatchObject({ state: 'auth_failed' });
    expect(JSON.stringify(state)).not.toContain(REFUSED);
  });

  it('Socket Mode reconnects even when apps.connections.open fails once after a disconnect frame', async () => {
    const before = slack.connections;
    slack.failNext('apps.connections.open', { status: 503, body: { ok: false, error: 'service_unavailable' } });
    slack.disconnect();
    const top = ts();
    const envelopeId = slack.pushSocketEvent(envelope({ type: 'message', channel: 'CHELP', channel_type: 'channel', user: 'U80', text: 'после сбоя', ts: top }));
    const routed = await gw.waitForEvent((e) => e.type === 'ticket.message' && inboundOf(e)?.conversation.threadId === top, 20_000);
    expect(slack.connections).toBeGreaterThan(before);
    expect(slack.calls.filter((c) => c.method === 'apps.connections.open').length).toBeGreaterThanOrEqual(3);
    for (let i = 0; i < 100 && !slack.acked.has(envelopeId); i++) await new Promise((r) => setTimeout(r, 50));
    expect(slack.acked.has(envelopeId)).toBe(true);
    expect(await inboundTexts(routed.ticketId)).toEqual(['после сбоя']);
  });

  it('does not repost the text when a retried send failed on its upload', async () => {
    const bytes = Buffer.from('%PDF-1.4 акт сверки за ноябрь');
    slack.files.set('FACT', bytes);
    const top = ts();
    slack.pushSocketEvent(envelope({ type: 'message', subtype: 'file_share', channel: 'CHELP', channel_type: 'channel', user: 'U90', text: 'нужен акт сверки', ts: top,
      files: [{ id: 'FACT', name: 'акт.pdf', mimetype: 'application/pdf', size: bytes.length, url_private_download: `http://127.0.0.1:${slack.port}/files/FACT` }] }));
    const created = await gw.waitForEvent((e) => e.type === 'ticket.message' && inboundOf(e)?.conversation.threadId === top);
    slack.failNext('files.getUploadURLExternal', { status: 500, body: { ok: false, error: 'internal_error' } });
    await gw.request('omni.cmd.reply', { ticketId: created.ticketId, text: 'Высылаю акт', attachments: inboundOf(created)!.attachments });
    const sent = await gw.waitForEvent((e) => e.type === 'ticket.delivery' && e.ticketId === created.ticketId && (e.entry as Extract<LogEntry, { kind: 'delivery' }>).status.status === 'sent');
    expect((sent.entry as Extract<LogEntry, { kind: 'delivery' }>).status.attempts).toBe(2);
    expect(slack.calls.filter((c) => c.method === 'chat.postMessage' && c.params.thread_ts === top).map((c) => c.params.text)).toEqual(['Высылаю акт']);
    await slack.waitForCall((c) => c.method === 'files.completeUploadExternal' && c.params.thread_ts === top);
    expect([...slack.uploads.values()].some((u) => Buffer.compare(u, bytes) === 0)).toBe(true);
  });

  it('paces posts to one channel (perChannelIntervalMs)', async () => {
    const top = ts();
    slack.pushSocketEvent(envelope({ type: 'message', channel: 'CHELP', channel_type: 'channel', user: 'U91', text: 'два ответа подряд', ts: top }));
    const created = await gw.waitForEvent((e) => e.type === 'ticket.message' && inboundOf(e)?.conversation.threadId === top);
    await gw.request('omni.cmd.reply', { ticketId: created.ticketId, text: 'первый' });
    await gw.request('omni.cmd.reply', { ticketId: created.ticketId, text: 'второй' });
    const second = await slack.waitForCall((c) => c.method === 'chat.postMessage' && c.params.text === 'второй');
    const first = await slack.waitForCall((c) => c.method === 'chat.postMessage' && c.params.text === 'первый');
    expect(second.at - first.at).toBeGreaterThanOrEqual(250); // 500 ms apart; stand-in stamps can be late under load
  });

  // The loop stand-in's first apps.connections.open never answers and its first connection is
  // closed right after hello: by the time these run, the account has been through both.
  it('Socket Mode gets past an apps.connections.open that never answers (apiTimeoutMs)', async () => {
    for (let i = 0; i < 200 && loop.connections < 2; i++) await sleep(50);
    const opens = loop.calls.filter((c) => c.method === 'apps.connections.open');
    expect(opens).toHaveLength(3);
    // The timeout (2 s), then 1 s of backoff. Only the 2 s are asserted: the stand-in stamps a
    // request when its (the test process's) event loop gets to it, late on a loaded machine,
    // which shortens the gap; a retry without the timeout would come at once.
    expect(opens[1]!.at - opens[0]!.at).toBeGreaterThanOrEqual(2000);
    const top = ts();
    loop.pushSocketEvent(envelope({ type: 'message', channel: 'CLOOP', channel_type: 'channel', user: 'U85', text: 'после зависшего открытия', ts: top }));
    await gw.waitForEvent((e) => e.type === 'ticket.message' && inboundOf(e)?.conversation.threadId === top);
  });

  it('a Socket Mode connection closed right after hello is reopened only after a backoff', async () => {
    for (let i = 0; i < 200 && loop.connections < 2; i++) await sleep(50);
    expect(loop.connections).toBe(2);
    const [flapped, next] = loop.connectedAt;
    expect(next! - flapped!).toBeGreaterThanOrEqual(1000); // second failure in a row: 2 s (stamped late under load; at once without a backoff)
    const top = ts();
    const envelopeId = loop.pushSocketEvent(envelope({ type: 'message', channel: 'CLOOP', channel_type: 'channel', user: 'U86', text: 'после мигания', ts: top }));
    await gw.waitForEvent((e) => e.type === 'ticket.message' && inboundOf(e)?.conversation.threadId === top);
    for (let i = 0; i < 100 && !loop.acked.has(envelopeId); i++) await sleep(50);
    expect(loop.acked.has(envelopeId)).toBe(true);
  });
});
