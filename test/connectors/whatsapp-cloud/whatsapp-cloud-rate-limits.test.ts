/**
 * Meta's throughput limits through the real gateway and the Graph stand-in. An outside trial saw
 * nine 130429s end a reply as `retries_exhausted after 8 attempts` (each 429 counted as a failed
 * attempt: with Meta's real answers, ~80 s of throttling failed a reply for good), and the state
 * stay `rate_limited` for minutes without traffic. Waits are tiny here (`pacing.*WaitMs`, no
 * Retry-After, as Meta sends none); the tests assert order and outcomes, not durations.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startGateway, type TestGateway } from '../../helpers/gateway.js';
import { startNats, type TestNats } from '../../helpers/nats-server.js';
import { progressHeld } from '../../helpers/send-progress.js';
import { until } from '../../helpers/until.js';
import type { ConnectorStateEvent, DeliveryStatus, InboundMessage, LogEntry, TicketEvent } from '../../../src/core/schema.js';
import { FakeGraphApi, newWamid, signWebhook, webhookBody, type GraphCall } from './graph-api.js';

const PHONE_ID = '106540352242923';
const ACCESS_TOKEN = 'EAAG-test-access-token-rate-limits';
const APP_SECRET = 'app-secret-0123456789abcdef';
const STATES = 'omni.events.connector.whatsapp.limits';

let nats: TestNats;
let graph: FakeGraphApi;
let gw: TestGateway;
let webhookUrl: string;

const inboundOf = (e: TicketEvent) => (e.entry as Extract<LogEntry, { kind: 'inbound' }> | undefined)?.event as InboundMessage | undefined;
const deliveryOf = (e: TicketEvent) => (e.entry as Extract<LogEntry, { kind: 'delivery' }> | undefined)?.status;
const messagesTo = (to: string) => (c: GraphCall) => c.method === 'POST' && c.path.endsWith('/messages') && c.json?.to === to;
const throttled = (code: number) => ({ status: code === 131056 ? 400 : 429, error: { message: `(#${code}) rate limit hit`, type: 'OAuthException', code }, retryAfter: null });

/** A customer writes; the ticket id. */
async function customerWrites(from: string): Promise<string> {
  const id = newWamid();
  const body = webhookBody(PHONE_ID, {
    contacts: [{ profile: { name: 'Мария Иванова' }, wa_id: from }],
    messages: [{ from, id, timestamp: String(Math.floor(Date.now() / 1000)), type: 'text', text: { body: 'Здравствуйте' } }],
  });
  const res = await fetch(webhookUrl, { method: 'POST', headers: { 'content-type': 'application/json', 'x-hub-signature-256': signWebhook(APP_SECRET, body) }, body });
  expect(res.status).toBe(200);
  return (await gw.waitForEvent((e) => e.type === 'ticket.message' && inboundOf(e)?.platform.messageId === id)).ticketId;
}

async function reply(ticketId: string, text: string): Promise<string> {
  return (await gw.request('omni.cmd.reply', { ticketId, text })).result.outboundId as string;
}

async function outcomeOf(outboundId: string): Promise<DeliveryStatus> {
  return deliveryOf(await gw.waitForEvent((e) => e.type === 'ticket.delivery' && deliveryOf(e)?.outboundId === outboundId))!;
}

/** A gateway with the Cloud API account `limits` against a fresh stand-in; `outbound` and `pacing` on top of tiny waits. */
async function startLimitsGateway(o: { outbound?: Record<string, unknown>; pacing?: Record<string, unknown> } = {}): Promise<void> {
  nats = await startNats();
  graph = new FakeGraphApi(ACCESS_TOKEN, PHONE_ID);
  await graph.start();
  gw = await startGateway(
    {
      outbound: { backoffBase: '100ms', maxAttempts: 8, ...o.outbound },
      connectors: [{
        type: 'whatsapp-cloud', account: 'limits', phoneNumberId: PHONE_ID, accessToken: '${WA_TOKEN}', appSecret: '${WA_APP_SECRET}',
        verifyToken: 'verify-me-please', graphApiUrl: graph.base,
        pacing: { perChatIntervalMs: 0, perSecond: 0, rateLimitWaitMs: 50, pairRateLimitWaitMs: 100, rateLimitBudgetMs: 120_000, rateLimitQuietMs: 200, ...o.pacing },
      }],
    },
    { nats, env: { WA_TOKEN: ACCESS_TOKEN, WA_APP_SECRET: APP_SECRET } },
  );
  webhookUrl = `${gw.httpUrl}/connectors/whatsapp-cloud/limits/webhook`;
  await gw.waitForStreamMessage<ConnectorStateEvent>('OMNI_EVENTS', STATES, (e) => e.state === 'connected');
}

async function stopLimitsGateway(): Promise<void> {
  await gw?.stop();
  await graph?.stop();
  await nats?.stop();
}

describe('whatsapp-cloud rate limits', () => {
  beforeAll(() => startLimitsGateway());
  afterAll(() => stopLimitsGateway());

  // First in the file: no other test has limited the number yet, so no `rate_limited` is expected at all.
  it('131056 (pair rate limit) for one customer holds only that customer: another customer\'s reply goes meanwhile; neither loses an attempt', async () => {
    const held = '79160000101';
    const other = '79160000102';
    const [heldTicket, otherTicket] = [await customerWrites(held), await customerWrites(other)];
    // The held customer is refused until the other customer's reply has reached Graph.
    graph.failMessagesTo = (to) => (to === held && !graph.calls.some(messagesTo(other)) ? throttled(131056) : undefined);
    try {
      const heldReply = await reply(heldTicket, 'Ответ первому');
      await graph.waitForCall(messagesTo(held)); // refused at least once: that customer is held now
      const otherReply = await reply(otherTicket, 'Ответ второму');
      const otherOutcome = await outcomeOf(otherReply);
      const heldOutcome = await outcomeOf(heldReply);
      expect(otherOutcome).toMatchObject({ status: 'sent', attempts: 1 });
      expect(heldOutcome).toMatchObject({ status: 'sent', attempts: 1 });
      const calls = graph.calls.filter((c) => messagesTo(held)(c) || messagesTo(other)(c)).map((c) => (c.json.to === held ? 'held' : 'other'));
      expect(calls.indexOf('other')).toBeGreaterThan(0);
      expect(calls.lastIndexOf('held')).toBeGreaterThan(calls.indexOf('other'));
      expect(calls.filter((c) => c === 'other')).toHaveLength(1);
    } finally {
      graph.failMessagesTo = undefined;
    }
    // One customer's limit is not the number's: the connector state did not turn rate_limited.
    await expect(gw.waitForStreamMessage<ConnectorStateEvent>('OMNI_EVENTS', STATES, (e) => e.state === 'rate_limited', 500)).rejects.toThrow();
  });

  it('nine 130429s without Retry-After, then Graph takes the reply: delivered in one attempt; rate_limited, then connected', async () => {
    const from = '79160000103';
    const ticketId = await customerWrites(from);
    const before = Date.now();
    for (let i = 0; i < 9; i++) graph.failMessages.push(throttled(130429));
    const outboundId = await reply(ticketId, 'Ответ после девяти отказов');
    const outcome = await outcomeOf(outboundId);
    expect(outcome).toMatchObject({ status: 'sent', attempts: 1 }); // was: failed, retries_exhausted after 8 attempts
    expect(graph.calls.filter(messagesTo(from))).toHaveLength(10);
    const limited = await gw.waitForStreamMessage<ConnectorStateEvent>('OMNI_EVENTS', STATES, (e) => e.state === 'rate_limited' && Date.parse(e.at) >= before);
    expect(limited.detail).toMatch(/130429/);
    await gw.waitForStreamMessage<ConnectorStateEvent>('OMNI_EVENTS', STATES, (e) => e.state === 'connected' && Date.parse(e.at) >= Date.parse(limited.at));
  });

  it('the state returns to connected once the wait has passed, with no successful send since the rate limit', async () => {
    const from = '79160000104';
    const ticketId = await customerWrites(from);
    const before = Date.now();
    // Throttled, then refused for good: nothing is ever sent, which used to be the only way out of rate_limited.
    graph.failMessages.push(throttled(80007), { status: 400, error: { message: 'Message undeliverable', code: 131026 } });
    const outcome = await outcomeOf(await reply(ticketId, 'Ответ, который не дойдёт'));
    expect(outcome).toMatchObject({ status: 'failed', attempts: 1 });
    expect(outcome.reason).toMatch(/^undeliverable: /);
    const limited = await gw.waitForStreamMessage<ConnectorStateEvent>('OMNI_EVENTS', STATES, (e) => e.state === 'rate_limited' && Date.parse(e.at) >= before);
    const connected = await gw.waitForStreamMessage<ConnectorStateEvent>('OMNI_EVENTS', STATES, (e) => e.state === 'connected' && Date.parse(e.at) >= Date.parse(limited.at));
    expect(connected.state).toBe('connected');
    expect(graph.calls.filter(messagesTo(from))).toHaveLength(2);
  });
});

describe('whatsapp-cloud rate limits past the wait budget', () => {
  beforeAll(() => startLimitsGateway({ outbound: { maxAttempts: 3, backoffMax: '200ms' }, pacing: { rateLimitBudgetMs: 0 } }));
  afterAll(() => stopLimitsGateway());

  it('a limit that does not lift is not waited for ever: past the budget each one is an attempt, and the reply ends failed with the reason', async () => {
    const from = '79160000105';
    const ticketId = await customerWrites(from);
    for (let i = 0; i < 3; i++) graph.failMessages.push(throttled(130429));
    const outcome = await outcomeOf(await reply(ticketId, 'Ответ, который упрётся в лимит'));
    expect(outcome).toMatchObject({ status: 'failed', attempts: 3 });
    expect(outcome.reason).toMatch(/^retries_exhausted after 3 attempts: rate limited beyond the reply's wait budget/);
    expect(graph.calls.filter(messagesTo(from))).toHaveLength(3);
    // Settled after its outcome is published: wait a moment. Was 1 for good: the entry of a reply
    // whose last attempt failed transiently stayed in the sender for the life of the process.
    await until(() => progressHeld(gw) === 0, "the sender's progress of the failed reply to go", 5_000);
  });
});
