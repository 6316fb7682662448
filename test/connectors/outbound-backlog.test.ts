/**
 * Replies queued for a connector this gateway no longer runs (removed from the config): an outside
 * ops trial saw six replies wait with nothing saying so. Now a warning at start names the queue,
 * and every outbound queue's backlog is `omnigate_consumer_lag{consumer="out-<channel>-<account>"}`.
 * When the connector comes back, they go out (the trial: all six, on their original keys).
 */
import { afterAll, describe, expect, it } from 'vitest';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { startGateway, type TestGateway } from '../helpers/gateway.js';
import { startNats, type TestNats } from '../helpers/nats-server.js';
import { chatMessage, publishEvent } from '../helpers/events.js';
import { metrics } from '../../src/core/metrics.js';

let nats: TestNats;
const gateways: TestGateway[] = [];
let receiver: Server | undefined;
afterAll(async () => {
  for (const g of gateways) await g.stop().catch(() => undefined);
  receiver?.close();
  await nats?.stop();
});

describe('replies waiting for a connector that is not configured', () => {
  it('are named at start and counted as lag, and go out when the connector is back', async () => {
    nats = await startNats();
    const site = { type: 'webhook', account: 'shop', secret: 'shop-secret-0123456789', callbackUrl: 'http://127.0.0.1:59/unreachable' };
    const api = { tokens: [{ name: 'helpdesk', token: 'helpdesk-token-0123456789' }] };
    const first = await startGateway({ api, connectors: [site], outbound: { backoffBase: '60s', backoffMax: '60s' } }, { nats });
    gateways.push(first);
    const customer = chatMessage({ channel: 'webhook', account: 'shop', chat: 'stranded-1' });
    await publishEvent(first.nc, customer);
    const opened = await first.waitForEvent((e) => e.type === 'ticket.created' && e.conversation?.id === 'stranded-1');
    const reply = await fetch(`${first.httpUrl}/v1/tickets/${opened.ticketId}/replies`, { method: 'POST', headers: { authorization: 'Bearer helpdesk-token-0123456789', 'content-type': 'application/json' }, body: JSON.stringify({ text: 'Ответ, который ждёт' }) });
    expect(reply.status).toBe(202);
    await first.stop();
    gateways.pop();

    // Restarted without the connector.
    const second = await startGateway({ api, connectors: [] }, { nats });
    gateways.push(second);
    const warned = second.logs.map((l) => JSON.parse(l) as { msg: string; consumer?: string; waiting?: number }).find((l) => l.msg.startsWith('replies are waiting for a connector this gateway does not run'));
    expect(warned).toMatchObject({ consumer: 'out-webhook-shop', waiting: 1 });
    await second.gateway.sampleNow();
    const lag = (await metrics.consumerLag.get()).values.find((v) => v.labels.consumer === 'out-webhook-shop');
    expect(lag?.value).toBe(1);
    await second.stop();
    gateways.pop();

    // Back, with a callback that answers: the reply goes out.
    const got: string[] = [];
    receiver = createServer((req, res) => {
      let body = '';
      req.on('data', (c: Buffer) => (body += c.toString()));
      req.on('end', () => {
        got.push(body);
        res.writeHead(200, { 'content-type': 'application/json' }).end('{}');
      });
    });
    await new Promise<void>((r) => receiver!.listen(0, '127.0.0.1', r));
    const back = await startGateway({ api, connectors: [{ ...site, callbackUrl: `http://127.0.0.1:${(receiver.address() as AddressInfo).port}/cb` }] }, { nats });
    gateways.push(back);
    await back.waitForEvent((e) => e.type === 'ticket.delivery' && e.ticketId === opened.ticketId, 60_000);
    expect(got.some((b) => b.includes('Ответ, который ждёт'))).toBe(true);
  }, 180_000);
});
