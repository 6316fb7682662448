/**
 * Updates that keep failing to be stored: after the poison threshold they are parked with the
 * reason and the offset moves on, whether the unit is one update or an album (several updates
 * stored as one message). telegraf against the stand-in Bot API on 127.0.0.1, a real
 * nats-server and the whole gateway; storing fails because NATS refuses the publish of one
 * chat's events (a permission violation: refused at once, every time).
 */
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { startGateway, type TestGateway } from '../../helpers/gateway.js';
import { startNats, type TestNats } from '../../helpers/nats-server.js';
import { until } from '../../api/support.js';
import { FakeBotApi } from './bot-api.js';
import type { DeadLetter, LogEntry, TicketEvent } from '../../../src/core/schema.js';

const TOKEN = '123456:TEST-token-poison-abcdefgh';
const DLQ = 'omni.dlq.inbound.telegram.bot1';
let nats: TestNats;
let api: FakeBotApi;
const gateways: TestGateway[] = [];
let messageId = 12_000;

async function gateway(): Promise<TestGateway> {
  const gw = await startGateway(
    {
      outbound: { backoffBase: '100ms' },
      connectors: [{
        type: 'telegram', account: 'bot1', token: '${TG_TOKEN}', apiRoot: api.apiRoot, pollTimeoutS: 1, albumWaitMs: 200,
        pacing: { privateChatIntervalMs: 0, groupIntervalMs: 0 },
      }],
    },
    { nats, env: { TG_TOKEN: TOKEN } },
  );
  gateways.push(gw);
  return gw;
}

const chat = (id: number) => ({ id, type: 'private', first_name: 'Ольга' });
const from = (id: number) => ({ id, is_bot: false, first_name: 'Ольга' });
const privateMessage = (chatId: number, text: string) => ({
  message: { message_id: messageId++, date: Math.floor(Date.now() / 1000), chat: chat(chatId), from: from(chatId), text },
});
function albumItem(chatId: number, group: string, fileId: string, caption?: string) {
  api.addFile(fileId, Buffer.from(`${fileId} bytes`));
  return {
    message: {
      message_id: messageId++, date: Math.floor(Date.now() / 1000), chat: chat(chatId), from: from(chatId), media_group_id: group,
      photo: [{ file_id: fileId, width: 800, height: 600, file_size: fileId.length + 6 }],
      ...(caption !== undefined ? { caption } : {}),
    },
  };
}
const inboundOf = (e: TicketEvent) => (e.entry as Extract<LogEntry, { kind: 'inbound' }>)?.event;

/**
 * NATS refuses the publish of every event of `chatId` (as for a subject the gateway's user may
 * not publish to); returns how many such publishes were tried.
 */
function refusePublishesOf(gw: TestGateway, chatId: number): () => number {
  const js = gw.gateway.bus.js;
  const publish = js.publish.bind(js);
  let refused = 0;
  vi.spyOn(js, 'publish').mockImplementation((subject, payload, opts) => {
    if (!opts?.msgID?.startsWith(`telegram:bot1:${chatId}:`)) return publish(subject, payload, opts);
    refused++;
    return Promise.reject(Object.assign(new Error(`Permissions Violation for Publish to "${subject}"`), { name: 'PermissionViolationError' }));
  });
  return () => refused;
}

beforeAll(async () => {
  nats = await startNats();
  api = new FakeBotApi(TOKEN);
  await api.start();
});
afterEach(async () => {
  vi.restoreAllMocks();
  await Promise.all(gateways.splice(0).map((g) => g.stop()));
});
afterAll(async () => {
  await api?.stop();
  await nats?.stop();
});

describe('telegram updates that cannot be stored', () => {
  it('parks an album that keeps failing as one unit after 5 attempts, whole and with the reason, and takes the updates behind it', async () => {
    const gw = await gateway();
    const refused = refusePublishesOf(gw, 6101);
    const polls = api.polls.length;
    const items = [
      api.push(albumItem(6101, 'ALB-POISON', 'poison-1', 'Чеки за май')),
      api.push(albumItem(6101, 'ALB-POISON', 'poison-2')),
      api.push(albumItem(6101, 'ALB-POISON', 'poison-3')),
    ];
    const behind = api.push(privateMessage(6102, 'после альбома'));
    const letter = await gw.waitForStreamMessage<DeadLetter>('OMNI_DLQ', DLQ, (l) => l.reason.includes('ALB-POISON'), 60_000);
    expect(letter.reason).toMatch(new RegExp(`^telegram album 6101:ALB-POISON \\(updates ${items.join(',')}\\) failed 5 times: Permissions Violation for Publish`));
    // Every item of the album is in the letter, so a replay publishes the album as it was sent.
    expect((JSON.parse(letter.payload) as Array<{ update_id: number }>).map((u) => u.update_id)).toEqual(items);
    // One publish per attempt at the album, not one per item: the album is counted as one unit.
    expect(refused()).toBe(5);
    const routed = await gw.waitForEvent((e) => e.type === 'ticket.message' && inboundOf(e)?.conversation.id === '6102', 15_000);
    expect(inboundOf(routed)!.text).toBe('после альбома');
    await until(() => api.offsets.at(-1)! > behind, 'the offset past the parked album and the update behind it', 15_000);
    // While the album was only being stored (or waited out its backoff), Telegram was not asked
    // over and over for the same items: a few polls per second at most.
    expect(api.polls.length - polls).toBeLessThan(100);
  });

  it('still parks a single update that keeps failing after 5 attempts, with the reason, and takes the updates behind it', async () => {
    const gw = await gateway();
    const refused = refusePublishesOf(gw, 6103);
    const failing = api.push(privateMessage(6103, 'не сохраняется'));
    const behind = api.push(privateMessage(6104, 'следующее'));
    const letter = await gw.waitForStreamMessage<DeadLetter>('OMNI_DLQ', DLQ, (l) => l.reason.startsWith(`telegram update ${failing} `), 60_000);
    expect(letter.reason).toMatch(new RegExp(`^telegram update ${failing} failed 5 times: Permissions Violation for Publish`));
    expect(JSON.parse(letter.payload)).toMatchObject({ update_id: failing, message: { text: 'не сохраняется' } });
    expect(refused()).toBe(5);
    await gw.waitForEvent((e) => e.type === 'ticket.message' && inboundOf(e)?.conversation.id === '6104', 15_000);
    await until(() => api.offsets.at(-1)! > behind, 'the offset past the parked update and the one behind it', 15_000);
  });
});
