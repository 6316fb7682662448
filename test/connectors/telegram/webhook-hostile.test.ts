/**
 * Hostile bodies on the Telegram webhook, through the gateway's HTTP server: what holds the
 * secret token but cannot be an update is parked and answered 200 (Telegram redelivers a non-2xx
 * update for hours and holds back the updates behind it), and the gateway stays ready.
 * telegraf's real client against the stand-in Bot API on 127.0.0.1, a real nats-server.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startGateway, type TestGateway } from '../../helpers/gateway.js';
import { FakeBotApi } from './bot-api.js';
import type { ConversationStateEvent, DeadLetter } from '../../../src/core/schema.js';

const TOKEN = '123456:TEST-token-hostile-abcdefgh';
const SECRET = 'webhook-secret-hostile-0123456789';
const DLQ = 'omni.dlq.inbound.telegram.wh';
let api: FakeBotApi;
let gw: TestGateway;

beforeAll(async () => {
  api = new FakeBotApi(TOKEN);
  await api.start();
  gw = await startGateway(
    { connectors: [{ type: 'telegram', account: 'wh', token: '${TG_TOKEN}', apiRoot: api.apiRoot, mode: 'webhook', webhook: { secretToken: SECRET } }] },
    { env: { TG_TOKEN: TOKEN } },
  );
  await api.waitForCall((c) => c.method === 'getMe');
}, 60_000);
afterAll(async () => {
  await gw?.stop();
  await api?.stop();
});

/** Posts `body` with the secret; waits out the 503 the webhook answers until getMe has answered. */
async function post(body: string): Promise<number> {
  for (let i = 0; ; i++) {
    const res = await fetch(`${gw.httpUrl}/connectors/telegram/wh/webhook`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'x-telegram-bot-api-secret-token': SECRET },
      body,
    });
    await res.body?.cancel();
    if (res.status !== 503 || i >= 50) return res.status;
    await new Promise((r) => setTimeout(r, 100));
  }
}

describe('telegram webhook: hostile bodies', () => {
  it('a body nested 10,000 levels deep is parked naming the depth and answered 200, not 500 (stack overflow while parking)', async () => {
    expect(await post('{"update_id":1,"message":' + '['.repeat(10_000) + ']'.repeat(10_000) + '}')).toBe(200);
    const letter = await gw.waitForStreamMessage<DeadLetter>('OMNI_DLQ', DLQ, (l) => /nested 10001 levels/.test(l.reason), 15_000);
    expect(letter.reason).toMatch(/^telegram webhook body refused: JSON nested 10001 levels deep; at most 32 allowed/);
    expect((await fetch(`${gw.httpUrl}/readyz`)).status).toBe(200);
  });

  it('a my_chat_member whose chat.id is not a safe integer is parked naming the field, not announced as conversation "1e+21"', async () => {
    const member = (id: number, updateId: number) => JSON.stringify({
      update_id: updateId,
      my_chat_member: { chat: { id, type: 'private', first_name: 'Ольга' }, from: { id: 5, is_bot: false, first_name: 'Ольга' }, date: Math.floor(Date.now() / 1000), old_chat_member: { status: 'member' }, new_chat_member: { status: 'kicked' } },
    });
    expect(await post(member(1e21, 2))).toBe(200);
    expect(await post(member(1.5, 3))).toBe(200);
    for (const [id, shown] of [[2, '1e+21'], [3, '1.5']] as const) {
      const letter = await gw.waitForStreamMessage<DeadLetter>('OMNI_DLQ', DLQ, (l) => l.reason.startsWith(`telegram update ${id}:`), 15_000);
      expect(letter.reason).toBe(`telegram update ${id}: my_chat_member.chat.id: ${shown} is not a whole number Telegram could have sent (ids have at most 52 bits)`);
    }
    // A real one after them is still recorded and announced: the refusals stopped nothing.
    expect(await post(member(6010, 4))).toBe(200);
    const state = await gw.waitForStreamMessage<ConversationStateEvent>('OMNI_EVENTS', 'omni.events.conversation.telegram.wh', (e) => e.conversation.id === '6010', 15_000);
    expect(state.state).toBe('blocked');
    const announced = await gw.waitForStreamMessage<ConversationStateEvent>('OMNI_EVENTS', 'omni.events.conversation.telegram.wh', () => true, 5_000);
    expect(announced.conversation.id).toBe('6010'); // the first and only announcement
  });
});
