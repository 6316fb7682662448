/**
 * WhatsApp Web sessions across gateway processes and through failures of our own store: two or
 * three gateways share one nats-server and one account, as replicas do; failures come from the
 * real omni_state stream (unreadable creds, a size limit that refuses writes).
 */
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { Kvm, type KV } from '@nats-io/kv';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { startGateway, type TestGateway } from '../../helpers/gateway.js';
import type { TestNats } from '../../helpers/nats-server.js';
import { until } from '../../api/support.js';
import { SendElsewhereError } from '../../../src/core/errors.js';
import type { OutboundMessage } from '../../../src/core/schema.js';
import type { Connector } from '../../../src/connectors/contract.js';
import { BufferJSON, DisconnectReason, initAuthCreds } from '../../../src/connectors/whatsapp/baileys.js';
import type { SocketPool } from './fake-socket.js';
import { ME, delay, startWaRig, type WaRig, deliveryOf, inboundOf, limitStateValues, msg, openSocket, waConfig, waitState } from './harness.js';

const CREDS = 'whatsapp.wa1.wa-auth-creds';
const HALT = 'whatsapp.wa1.wa-halted';

let rig: WaRig;
let nats: TestNats;
let pool: SocketPool;
let nc: NatsConnection;
let gateways: TestGateway[] = [];

async function gateway(): Promise<TestGateway> {
  const g = await startGateway(waConfig(), { nats });
  gateways.push(g);
  return g;
}

async function stopGateway(g: TestGateway): Promise<void> {
  gateways = gateways.filter((x) => x !== g);
  await g.stop();
}

const state = (): Promise<KV> => new Kvm(nc).open('omni_state');
const stored = async (key: string) => {
  const e = await (await state()).get(key);
  return e && e.operation === 'PUT' ? e.string() : null;
};
const now = () => new Date().toISOString();

beforeAll(async () => {
  rig = await startWaRig();
  ({ nats, pool } = rig);
  nc = await connect({ servers: nats.url });
});
afterEach(async () => {
  await Promise.all(gateways.splice(0).map((g) => g.stop()));
});
afterAll(async () => {
  await nc?.close();
  await rig?.stop();
});

describe('whatsapp (Baileys) sessions across processes and failures', () => {
  it('a standby process hands replies to the one holding the session: each is sent once, on the first attempt', async () => {
    const first = pool.sockets.length + 1;
    const active = await gateway();
    const s = await openSocket(active, pool, first);
    const standby = await gateway();
    // Waiting for the lease the first process holds: `standby`, with its expiry.
    await until(() => standby.gateway.connectors.health()[0]!.state === 'standby', 'standby');
    expect(standby.gateway.connectors.health()[0]!.standbyUntil).toBeDefined();

    const chat = '79161112233@s.whatsapp.net';
    // The standby's own answer, asked directly: it cannot send, the holder can.
    const standbyConnector = (standby.gateway.connectors as unknown as { hosted: Array<{ connector: Connector }> }).hosted[0]!.connector;
    const probe = { id: 'probe-1', conversation: { id: chat, kind: 'private' }, text: 'проверка', attachments: [] } as unknown as OutboundMessage;
    await expect(standbyConnector.send(probe)).rejects.toBeInstanceOf(SendElsewhereError);

    s.emitMessages([msg(chat, { conversation: 'Здравствуйте, вопрос по доставке' }, { id: 'SB1' })]);
    const created = await active.waitForEvent((e) => e.type === 'ticket.message' && inboundOf(e)?.platform.messageId === `${chat}:SB1`);
    const texts = Array.from({ length: 8 }, (_, i) => `Ответ №${i + 1}`);
    const outboundIds: string[] = [];
    for (const text of texts) outboundIds.push((await active.request('omni.cmd.reply', { ticketId: created.ticketId, text })).result.outboundId);
    for (const id of outboundIds) {
      const d = await active.waitForEvent((e) => e.type === 'ticket.delivery' && deliveryOf(e)?.outboundId === id, 20_000);
      expect(deliveryOf(d)).toMatchObject({ status: 'sent', attempts: 1 });
    }
    expect(s.sent.filter((c) => c.jid === chat).map((c) => (c.content as { text: string }).text).sort()).toEqual([...texts].sort());
  });

  it('after connectionReplaced the halted process keeps the lease, a standby taking over stays off, and a restarted process takes the session back', async () => {
    const first = pool.sockets.length + 1; // counted before the gateway starts: its socket may come at once
    const a = await gateway();
    const sA = await openSocket(a, pool, first);
    const b = await gateway(); // started before the halt: it must respect it
    let since = now();
    sA.close(DisconnectReason.connectionReplaced, 'Connection Replaced');
    await waitState(a, since, (e) => e.state === 'stalled');
    const n = pool.sockets.length;
    for (let i = 0; i < 50 && !(await stored(HALT)); i++) await delay(100);
    expect(JSON.parse((await stored(HALT))!)).toMatchObject({ state: 'stalled', reason: expect.stringMatching(/^connection_replaced/) });
    // Lease renewals every second: a released lease would have been taken and connected by now.
    await delay(1500);
    expect(pool.sockets.length).toBe(n);
    expect(b.gateway.connectors.health()[0]).toMatchObject({ state: 'standby' }); // a's halted session keeps the lease

    since = now();
    await stopGateway(a);
    const off = await waitState(b, since, (e) => e.state === 'stalled');
    expect(off.detail).toMatch(/^connection_replaced: .*\(since /);
    await delay(1000);
    expect(pool.sockets.length).toBe(n);

    // The operator's restart: a process started after the halt clears it and connects.
    const c = await gateway();
    await openSocket(c, pool, n + 1);
    expect(await stored(HALT)).toBeNull();
    expect(pool.sockets.length).toBe(n + 1);
  });

  it('an auth load that fails is reported as disconnected and retried; the session comes up once the store answers', async () => {
    const kv = await state();
    await kv.put(CREDS, '{"noiseKey": {"private"'); // cut off mid-write
    const n = pool.sockets.length;
    const since = now();
    const g = await gateway();
    const failed = await waitState(g, since, (e) => e.state === 'disconnected');
    expect(failed.detail).toMatch(/^session error: .*JSON.*; reconnecting in \d+ ms$/);
    expect(pool.sockets.length).toBe(n);

    await kv.put(CREDS, JSON.stringify({ ...initAuthCreds(), me: { id: ME }, registered: true }, BufferJSON.replacer));
    const s = await openSocket(g, pool, n + 1);
    expect(s.config.auth.creds.me?.id).toBe(ME);
  });

  it('stores creds before the next socket starts: a failed save is retried, and the next socket has the new creds', async () => {
    const n = pool.sockets.length;
    const g = await gateway();
    const s = await openSocket(g, pool, n + 1);
    await limitStateValues(g, 256);
    try {
      s.ev.emit('creds.update', { me: { id: ME, name: 'Поддержка магазина' } });
      s.close(DisconnectReason.connectionClosed, 'Connection Closed');
      await delay(700);
      expect(pool.sockets.length).toBe(n + 1);
    } finally {
      await limitStateValues(g, -1);
    }
    const next = await pool.nth(n + 2);
    expect(next.config.auth.creds.me?.name).toBe('Поддержка магазина');
    expect(JSON.parse((await stored(CREDS))!, BufferJSON.reviver).me.name).toBe('Поддержка магазина');
  });
});
