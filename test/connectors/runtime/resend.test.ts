/**
 * A reply whose send was in flight when a gateway died: its marker says `in-flight` and the
 * message comes back. A channel whose receiver deduplicates by our Idempotency-Key (the webhook
 * channel) sends it again; any other reports `outcome_unknown` and never calls the platform.
 * The crash is reproduced exactly as it leaves the bus: the in-flight marker written, the
 * outbound message in the stream, unacknowledged.
 */
import { createServer } from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startGateway, type TestGateway } from '../../helpers/gateway.js';
import { OutboundRunner } from '../../../src/connectors/outbound-runner.js';
import type { Connector } from '../../../src/connectors/contract.js';
import { createLogger } from '../../../src/core/logger.js';
import { DeliveryStatus, OutboundMessage } from '../../../src/core/schema.js';
import { Subjects, kvSafe } from '../../../src/core/subjects.js';
import { holderOf } from '../../../src/core/holder.js';

const SECRET = 'resend-secret-0123456789';
let gw: TestGateway;
const callbacks: Array<{ key: string; text: string }> = [];
/** x-omnigate-attempt / x-omnigate-replica of each callback, in the same order. */
const attemptHeaders: Array<{ attempt?: string; replica?: string }> = [];
const callback = createServer((req, res) => {
  let body = '';
  req.on('data', (d) => (body += d));
  req.on('end', () => {
    callbacks.push({ key: String(req.headers['idempotency-key']), text: JSON.parse(body).text });
    attemptHeaders.push({ attempt: req.headers['x-omnigate-attempt'] as string, replica: req.headers['x-omnigate-replica'] as string });
    res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ id: `cb-${callbacks.length}` }));
  });
});

beforeAll(async () => {
  await new Promise<void>((r) => callback.listen(0, '127.0.0.1', r));
  const port = (callback.address() as { port: number }).port;
  gw = await startGateway({ connectors: [{ type: 'webhook', account: 'site', secret: SECRET, callbackUrl: `http://127.0.0.1:${port}/cb` }] });
});
afterAll(async () => {
  await gw?.stop();
  callback.close();
});

function outbound(channel: string, account: string, id: string, text: string) {
  return OutboundMessage.parse({
    v: 1, type: 'message.outbound', id, ticketId: 'T-900', channel, account,
    conversation: { id: 'c-1', kind: 'private' }, text, author: { id: 'agent-1', name: 'Оператор' }, createdAt: new Date().toISOString(),
  });
}

/** What a gateway killed in the middle of the platform call leaves behind. */
async function crashedMidSend(msg: OutboundMessage): Promise<void> {
  await gw.gateway.bus.kv.dedup.put(`out.${kvSafe(msg.id)}`, JSON.stringify({ s: 'in-flight', attempts: 1 }));
  await gw.gateway.bus.publishJson(Subjects.outbound(msg.channel, msg.account), msg, msg.id);
}

const statusOf = (channel: string, account: string, id: string) =>
  gw.waitForStreamMessage<DeliveryStatus>('OMNI_STATUS', Subjects.status(channel, account), (s) => s.outboundId === id, 20_000);

describe('resend after a crash mid-send', () => {
  it('the webhook channel (receiver dedupes by Idempotency-Key) sends the in-flight reply again', async () => {
    const msg = outbound('webhook', 'site', 'crash-resend-1', 'Ваш заказ отправлен');
    await crashedMidSend(msg);
    const status = await statusOf('webhook', 'site', msg.id);
    expect(status).toMatchObject({ status: 'sent', attempts: 2 });
    expect(callbacks.filter((c) => c.key === msg.id)).toEqual([{ key: msg.id, text: 'Ваш заказ отправлен' }]);
    // The repeat says what it is: the second attempt, and which gateway instance made it.
    expect(attemptHeaders[callbacks.findIndex((c) => c.key === msg.id)]).toEqual({ attempt: '2', replica: holderOf(gw.gateway.instance, 'connectors') });
    // The marker is written after the status is stored (outbound-runner.ts finish): it may lag the status seen here.
    await expect.poll(async () => (await gw.gateway.bus.kv.dedup.get(`out.${kvSafe(msg.id)}`))?.json(), { timeout: 10_000 }).toMatchObject({ s: 'sent', attempts: 2 });
  });

  it('a channel that cannot dedupe reports outcome_unknown and never calls the platform', async () => {
    const sent: string[] = [];
    const chat: Connector = {
      start: async () => {},
      stop: async () => {},
      health: () => ({ state: 'connected', since: new Date().toISOString() }),
      send: async (m) => {
        sent.push(m.id);
        return { platformMessageId: `p-${m.id}` };
      },
    };
    const runner = new OutboundRunner(gw.gateway.bus, 'fakechat', 'main', chat, createLogger({ level: 'silent' }), {
      maxAttempts: 3, backoffBaseMs: 50, backoffMaxMs: 200, ackWaitMs: 30_000, concurrency: 4,
    });
    await runner.start();
    try {
      const msg = outbound('fakechat', 'main', 'crash-unknown-1', 'Ответ');
      await crashedMidSend(msg);
      const status = await statusOf('fakechat', 'main', msg.id);
      expect(status.status).toBe('failed');
      expect(status.reason).toMatch(/^outcome_unknown/);
      // A fresh message on the same runner is sent: only the in-flight one was withheld.
      const fresh = outbound('fakechat', 'main', 'fresh-1', 'Ещё ответ');
      await gw.gateway.bus.publishJson(Subjects.outbound('fakechat', 'main'), fresh, fresh.id);
      expect(await statusOf('fakechat', 'main', fresh.id)).toMatchObject({ status: 'sent', attempts: 1 });
      expect(sent).toEqual(['fresh-1']);
    } finally {
      await runner.stop();
    }
  });
});
