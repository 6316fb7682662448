/**
 * `omnigate dlq --replay` of Slack dead letters, end to end: letters on omni.dlq.inbound.slack.<account>
 * go back through the connector's own intake path (shape check, normalisation, thread state,
 * users.info, files, publish) on the running gateway, without a signature. Still invalid → the
 * letter stays with the field named; good → a ticket, and a second replay is a duplicate; the
 * Socket Mode account takes its envelopes, also as a whole Socket Mode frame, and a replayed reply
 * follows a thread the live intake opened; a body that was not JSON, an envelope of another
 * workspace, an event intake skips and an account not connected to Slack are refused; a file the
 * file host fails on at replay publishes nothing and the letter can be replayed again. Same
 * stand-in Slack and real nats-server as the other Slack tests.
 */
import { createHash, createHmac } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startGateway, type TestGateway } from '../../helpers/gateway.js';
import { FakeSlack } from './slack-api.js';
import { deadLetters } from '../../../src/dlq.js';
import { loadNatsSection } from '../../../src/core/config.js';
import type { DeadLetter, LogEntry, TicketEvent } from '../../../src/core/schema.js';

const BOT = 'xoxb-5-replay-bot-token';
const REFUSED = 'xoxb-6-replay-revoked-token';
const APP = 'xapp-5-replay-app-token';
const SIGNING = 'slack-signing-secret-replay-0123456789';
let slack: FakeSlack;
let gw: TestGateway;
let seq = 100;

type Inbound = Extract<LogEntry, { kind: 'inbound' }>['event'];
const inboundOf = (e: TicketEvent) => (e.entry as Extract<LogEntry, { kind: 'inbound' }> | undefined)?.event as Inbound | undefined;
const ts = () => `1767000${String(seq++).padStart(3, '0')}.000500`;
const envelope = (event: Record<string, unknown>, eventId = `EvR${seq++}`, team = 'T1') => ({ type: 'event_callback', team_id: team, api_app_id: 'A1', event_id: eventId, event_time: 1767000000, event });
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function postRaw(raw: Buffer) {
  const t = Math.floor(Date.now() / 1000);
  const sig = `v0=${createHmac('sha256', SIGNING).update(`v0:${t}:`).update(raw).digest('hex')}`;
  return fetch(`${gw.httpUrl}/connectors/slack/rp_events/events`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', 'x-slack-signature': sig, 'x-slack-request-timestamp': String(t) },
    body: raw,
  });
}

/** A letter as an older version (or a refusal since fixed) left it: the envelope as parked by ingest(). */
async function park(account: string, reason: string, payload: unknown) {
  await gw.gateway.bus.deadLetters.park({ source: 'connector', scope: `slack.${account}`, subject: `omni.in.slack.${account}`, code: 'invalid_payload', reason, payload });
}

/** `omnigate dlq --source inbound.slack.<account> --since <since> --replay`: one line per letter. */
async function replay(account: string, since: string): Promise<string[]> {
  const lines: string[] = [];
  await deadLetters(loadNatsSection(undefined, { OMNIGATE_NATS__URL: gw.nats.url }), { source: `inbound.slack.${account}`, since, limit: 100, replay: true, out: (l) => lines.push(l) });
  return lines;
}
const lineOf = (lines: string[], marker: string) => {
  const found = lines.filter((l) => l.includes(marker));
  expect(found, `one line for ${marker} in:\n${lines.join('\n')}`).toHaveLength(1);
  return found[0]!;
};

/** Nothing on omni.in for this conversation within a short wait. */
async function nothingPublishedFor(account: string, channel: string) {
  await expect(gw.waitForStreamMessage('OMNI_IN', `omni.in.slack.${account}.>`, (m: any) => m.conversation?.id === channel, 1500)).rejects.toThrow();
}

beforeAll(async () => {
  slack = new FakeSlack(BOT);
  slack.refusedTokens.add(REFUSED);
  await slack.start();
  gw = await startGateway(
    {
      connectors: [
        { type: 'slack', account: 'rp_events', mode: 'events', botToken: '${BOT}', signingSecret: '${SIGNING}', apiUrl: slack.apiUrl, perChannelIntervalMs: 0 },
        { type: 'slack', account: 'rp_socket', mode: 'socket', botToken: '${BOT}', appToken: '${APP}', apiUrl: slack.apiUrl, channels: ['CRSUPPORT'], perChannelIntervalMs: 0 },
        { type: 'slack', account: 'rp_refused', mode: 'events', botToken: '${REFUSED}', signingSecret: '${SIGNING}', apiUrl: slack.apiUrl },
      ],
    },
    { env: { BOT, APP, SIGNING, REFUSED } },
  );
  for (let i = 0; i < 100 && slack.connections === 0; i++) await sleep(50);
});
afterAll(async () => {
  await gw?.stop();
  await slack?.stop();
});

describe('slack dead-letter replay', () => {
  it('a letter the live intake parked for a field of the wrong shape stays invalid, the field named, nothing published', async () => {
    const since = new Date().toISOString();
    const body = envelope({ type: 'message', channel: 'D5001', channel_type: 'im', user: 'U500', text: 'кривое', ts: 'abc' }, 'EvRpBadTs');
    expect((await postRaw(Buffer.from(JSON.stringify(body)))).status).toBe(200);
    await gw.waitForStreamMessage<DeadLetter>('OMNI_DLQ', 'omni.dlq.inbound.slack.rp_events', (l) => l.reason.includes('EvRpBadTs'));
    // Parked once and remembered by the event-id dedup as done: the replay must still run it.
    const line = lineOf(await replay('rp_events', since), 'EvRpBadTs');
    expect(line).toMatch(/\tslack event EvRpBadTs: event\.ts: must be a Slack timestamp[^\t]*\tinvalid: event\.ts: must be a Slack timestamp/);
    await nothingPublishedFor('rp_events', 'D5001');
  });

  it('a good parked envelope opens a ticket through the normal path (sender looked up); a second replay is a duplicate', async () => {
    const since = new Date().toISOString();
    await park('rp_events', 'rp-good-dm', envelope({ type: 'message', channel: 'D5002', channel_type: 'im', user: 'U501', text: 'после &lt;исправления&gt;', ts: ts() }));
    expect(lineOf(await replay('rp_events', since), 'rp-good-dm')).toMatch(/\trp-good-dm\treplayed$/);
    const created = await gw.waitForEvent((e) => e.type === 'ticket.message' && inboundOf(e)?.conversation.id === 'D5002');
    expect(inboundOf(created)!.text).toBe('после <исправления>');
    expect(inboundOf(created)!.sender).toMatchObject({ id: 'U501', displayName: 'Иван', handles: { email: 'ivan@client.ru', slack: 'U501' } });
    expect(slack.calls.some((c) => c.method === 'users.info' && c.params.user === 'U501')).toBe(true);

    expect(lineOf(await replay('rp_events', since), 'rp-good-dm')).toMatch(/\treplayed: already taken before \(a duplicate, or done already\): nothing new written$/);
    await sleep(500);
    const log = await gw.gateway.router!.store.readLog(created.ticketId);
    expect(log.filter((l) => l.entry.kind === 'inbound')).toHaveLength(1);
  });

  it('Socket Mode letters: the envelope, or the whole Socket Mode frame; a replayed reply follows the thread the live intake opened', async () => {
    // Live: a mention outside the support channels opens a thread conversation (kept in KV).
    const top = ts();
    slack.pushSocketEvent(envelope({ type: 'message', channel: 'CRANDOM', channel_type: 'channel', user: 'U510', text: '<@UBOT> не грузится отчёт', ts: top }));
    const opened = await gw.waitForEvent((e) => e.type === 'ticket.message' && inboundOf(e)?.conversation.threadId === top);

    const since = new Date().toISOString();
    // A reply in that thread without a mention: taken only because the thread is known.
    const reply = envelope({ type: 'message', channel: 'CRANDOM', channel_type: 'channel', user: 'U510', text: 'ответ в треде', ts: ts(), thread_ts: top });
    await park('rp_socket', 'rp-socket-frame', { envelope_id: 'a1b2c3', type: 'events_api', payload: reply, accepts_response_payload: false, retry_attempt: 0, retry_reason: '' });
    await park('rp_socket', 'rp-socket-envelope', envelope({ type: 'message', channel: 'CRSUPPORT', channel_type: 'channel', user: 'U511', text: 'в канал поддержки', ts: ts() }));
    const lines = await replay('rp_socket', since);
    expect(lineOf(lines, 'rp-socket-frame')).toMatch(/\treplayed$/);
    expect(lineOf(lines, 'rp-socket-envelope')).toMatch(/\treplayed$/);

    const followed = await gw.waitForEvent((e) => e.type === 'ticket.message' && inboundOf(e)?.text === 'ответ в треде');
    expect(followed.ticketId).toBe(opened.ticketId);
    const channel = await gw.waitForEvent((e) => e.type === 'ticket.message' && inboundOf(e)?.text === 'в канал поддержки');
    expect(inboundOf(channel)!.conversation).toMatchObject({ id: 'CRSUPPORT', kind: 'channel' });
  });

  it('refuses what cannot be replayed, saying why: a body that was not JSON, another workspace, an event intake skips', async () => {
    const since = new Date().toISOString();
    // Signed by Slack yet not JSON: parked with its raw bytes.
    const res = await postRaw(Buffer.from('{"type":"event_callback", сломано'));
    expect(res.status).toBe(400);
    await gw.waitForStreamMessage<DeadLetter>('OMNI_DLQ', 'omni.dlq.inbound.slack.rp_events', (l) => l.reason === 'slack event body refused: body is not valid JSON');
    await park('rp_events', 'rp-foreign', envelope({ type: 'message', channel: 'D5020', channel_type: 'im', user: 'U520', text: 'чужое пространство', ts: ts() }, 'EvRpForeign', 'T9'));
    await park('rp_events', 'rp-own-post', envelope({ type: 'message', channel: 'D5021', channel_type: 'im', user: 'UBOT', text: 'наш ответ', ts: ts() }));
    await park('rp_events', 'rp-reaction', envelope({ type: 'reaction_added', user: 'U520', reaction: 'thumbsup', item: { type: 'message', channel: 'D5022', ts: ts() } }));

    const lines = await replay('rp_events', since);
    expect(lineOf(lines, 'not valid JSON')).toMatch(/\trefused: the letter holds no Slack event: the body Slack sent was not JSON/);
    expect(lineOf(lines, 'rp-foreign')).toMatch(/\trefused: the event's `team_id` T9 is not the workspace of slack account rp_events's token \(auth\.test: team T1\)$/);
    expect(lineOf(lines, 'rp-own-post')).toMatch(/\trefused: skipped: bot or our own message \(loop guard\)$/);
    expect(lineOf(lines, 'rp-reaction')).toMatch(/\trefused: skipped: event type reaction_added$/);
    await nothingPublishedFor('rp_events', 'D5020');
    await nothingPublishedFor('rp_events', 'D5021');
  });

  it('a file the file host fails on at replay: nothing published, the letter replays again later and the file is stored', async () => {
    const bytes = Buffer.from('выгрузка за ноябрь\n'.repeat(300));
    slack.files.set('FRP1', bytes);
    slack.downloadFailures.set('FRP1', [503]);
    const since = new Date().toISOString();
    await park('rp_events', 'rp-file', envelope({
      type: 'message', subtype: 'file_share', channel: 'D5030', channel_type: 'im', user: 'U530', text: 'файл', ts: ts(),
      files: [{ id: 'FRP1', name: 'export.csv', mimetype: 'text/csv', size: bytes.length, url_private_download: `http://127.0.0.1:${slack.port}/files/FRP1` }],
    }));
    expect(lineOf(await replay('rp_events', since), 'rp-file')).toMatch(/\trefused: replay failed: file FRP1 not fetched yet: download answered 503$/);
    await nothingPublishedFor('rp_events', 'D5030');

    expect(lineOf(await replay('rp_events', since), 'rp-file')).toMatch(/\treplayed$/);
    const created = await gw.waitForEvent((e) => e.type === 'ticket.message' && inboundOf(e)?.conversation.id === 'D5030');
    const att = inboundOf(created)!.attachments[0]!;
    expect(att).toMatchObject({ name: 'export.csv' });
    expect(att.sha256).toBe(createHash('sha256').update(bytes).digest('hex'));
    expect(slack.downloads.get('FRP1')).toBe(2);
  });

  it('an account not connected to Slack (auth.test refused) refuses the replay instead of guessing who the bot is', async () => {
    const since = new Date().toISOString();
    await park('rp_refused', 'rp-not-connected', envelope({ type: 'message', channel: 'D5040', channel_type: 'im', user: 'U540', text: 'пока нет связи', ts: ts() }));
    expect(lineOf(await replay('rp_refused', since), 'rp-not-connected')).toMatch(/\trefused: not connected to Slack yet \(auth\.test has not answered/);
    await nothingPublishedFor('rp_refused', 'D5040');
  });
});
