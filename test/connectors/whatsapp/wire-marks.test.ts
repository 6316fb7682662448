/**
 * WhatsApp Web marks the wire (contract.ts `marksWire`): a reply waiting in the connector's pacer
 * is `claimed`, not in flight, so a gateway killed meanwhile has it sent after the restart
 * (test/connectors/runtime/wire-marks*.test.ts show the restart) instead of reported
 * `outcome_unknown`. Before, the whole of send() counted as "maybe sent".
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startGateway, type TestGateway } from '../../helpers/gateway.js';
import type { TestNats } from '../../helpers/nats-server.js';
import { until } from '../../helpers/until.js';
import { kvSafe } from '../../../src/core/subjects.js';
import type { SocketPool } from './fake-socket.js';
import * as h from './harness.js';
import { ME, inboundOf, msg } from './harness.js';

let rig: h.WaRig;
let nats: TestNats;
let pool: SocketPool;
let gw: TestGateway;

const PACING_MS = 4_000;

beforeAll(async () => {
  rig = await h.startWaRig();
  ({ nats, pool } = rig);
  gw = await startGateway(h.waConfig({ pacing: { privateChatIntervalMs: PACING_MS, groupIntervalMs: 0, perSecond: 0 } }), { nats });
});
afterAll(async () => {
  await gw?.stop();
  await rig?.stop();
});

describe('whatsapp (Baileys) wire marks', () => {
  it('a reply waiting in the pacer is claimed; it is in flight only from its sendMessage, and sent once', async () => {
    const s1 = await pool.nth(1);
    s1.ev.emit('creds.update', { me: { id: ME, name: 'Поддержка' }, registered: true });
    const s = await h.openSocket(gw, pool, 1);
    expect(s).toBe(s1);
    const chat = '79161239999@s.whatsapp.net';
    s.emitMessages([msg(chat, { conversation: 'Где мой заказ?' }, { id: 'WIRE1' })]);
    const created = await gw.waitForEvent((e) => e.type === 'ticket.message' && inboundOf(e)?.platform.messageId === `${chat}:WIRE1`);

    const first = await gw.request('omni.cmd.reply', { ticketId: created.ticketId, text: 'Первый ответ' });
    await s.waitForSend((c) => c.jid === chat);
    const second = await gw.request('omni.cmd.reply', { ticketId: created.ticketId, text: 'Второй ответ' });
    const id = (second.result as { outboundId: string }).outboundId;
    expect((first.result as { outboundId: string }).outboundId).not.toBe(id);
    const marker = async () => (await gw.gateway.bus.kv.dedup.get(`out.${kvSafe(id)}`))?.json<{ s: string; attempts: number }>();
    await until(async () => (await marker()) !== undefined, 'the second reply taken up');
    // The chat's pacing holds it: WhatsApp has nothing of it yet, and the marker says so.
    expect(s.sent.filter((c) => c.jid === chat)).toHaveLength(1);
    expect((await marker())?.s).toBe('claimed');

    await until(async () => (await marker())?.s === 'sent', 'the second reply sent after its pacing', 20_000);
    expect(await marker()).toMatchObject({ s: 'sent', attempts: 1 });
    expect(s.sent.filter((c) => c.jid === chat).map((c) => c.content)).toEqual([{ text: 'Первый ответ' }, { text: 'Второй ответ' }]);
  });
});
