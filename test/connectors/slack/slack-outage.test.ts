/**
 * Slack with NATS away: refusing an event of the wrong shape is final only once its dead letter is
 * stored, and a good event is acknowledged only once it is in JetStream. While the server is down
 * neither gets a 200, so Slack keeps both; once it is back, the retries land. Its own nats-server,
 * stopped and started again on the same port and store, and the same stand-in Slack as the others.
 */
import { createHmac } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startGateway, type TestGateway } from '../../helpers/gateway.js';
import { startNats, type TestNats } from '../../helpers/nats-server.js';
import { FakeSlack } from './slack-api.js';
import type { DeadLetter, LogEntry, TicketEvent } from '../../../src/core/schema.js';

const BOT = 'xoxb-4-outage-bot-token';
const SIGNING = 'slack-signing-secret-outage-0123456789';
let slack: FakeSlack;
let nats: TestNats;
let gw: TestGateway;
let seq = 100;

type Inbound = Extract<LogEntry, { kind: 'inbound' }>['event'];
const inboundOf = (e: TicketEvent) => (e.entry as Extract<LogEntry, { kind: 'inbound' }> | undefined)?.event as Inbound | undefined;
const ts = () => `1766000${String(seq++).padStart(3, '0')}.000300`;
const envelope = (event: Record<string, unknown>, eventId: string) => ({ type: 'event_callback', team_id: 'T1', api_app_id: 'A1', event_id: eventId, event_time: 1766000000, event });

async function postEvent(body: unknown, opts: { retry?: number } = {}) {
  const raw = JSON.stringify(body);
  const t = Math.floor(Date.now() / 1000);
  const sig = `v0=${createHmac('sha256', SIGNING).update(`v0:${t}:${raw}`).digest('hex')}`;
  return fetch(`${gw.httpUrl}/connectors/slack/out_events/events`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', 'x-slack-signature': sig, 'x-slack-request-timestamp': String(t), ...(opts.retry ? { 'x-slack-retry-num': String(opts.retry), 'x-slack-retry-reason': 'http_error' } : {}) },
    body: raw,
  });
}

beforeAll(async () => {
  slack = new FakeSlack(BOT);
  await slack.start();
  nats = await startNats();
  gw = await startGateway(
    { connectors: [{ type: 'slack', account: 'out_events', mode: 'events', botToken: '${BOT}', signingSecret: '${SIGNING}', apiUrl: slack.apiUrl, perChannelIntervalMs: 0 }] },
    { nats, env: { BOT, SIGNING } },
  );
});
afterAll(async () => {
  await gw?.stop();
  await nats?.stop();
  await slack?.stop();
});

describe('slack connector with NATS away', () => {
  it('neither parks nor stores without NATS: no 200 until the letter or the event is in JetStream', async () => {
    // Connected (auth.test answered) and storing before the server goes away.
    expect((await postEvent(envelope({ type: 'message', channel: 'D2000', channel_type: 'im', user: 'U200', text: 'до сбоя', ts: ts() }, 'EvOutBefore'))).status).toBe(200);
    await gw.waitForEvent((e) => e.type === 'ticket.message' && inboundOf(e)?.conversation.id === 'D2000');

    await nats.kill();
    const bad = envelope({ type: 'message', channel: 'D2001', channel_type: 'im', user: 'U200', text: 12345, ts: ts() }, 'EvOutBad');
    // The refusal is right, but its letter cannot be stored: Slack must try again.
    expect((await postEvent(bad)).status).toBe(500);
    const good = envelope({ type: 'message', channel: 'D2002', channel_type: 'im', user: 'U200', text: 'во время сбоя', ts: ts() }, 'EvOutGood');
    const pending = postEvent(good).then((r) => r.status);
    expect(await Promise.race([pending, new Promise((r) => setTimeout(() => r('still waiting'), 3000))])).toBe('still waiting');

    await nats.restart();
    expect(await pending).toBe(200);
    await gw.waitForEvent((e) => e.type === 'ticket.message' && inboundOf(e)?.conversation.id === 'D2002');
    expect((await postEvent(bad, { retry: 1 })).status).toBe(200);
    const letter = await gw.waitForStreamMessage<DeadLetter>('OMNI_DLQ', 'omni.dlq.inbound.slack.out_events', (l) => l.reason.includes('EvOutBad'));
    expect(letter.reason).toMatch(/^slack event EvOutBad: event\.text: /);
  });
});
