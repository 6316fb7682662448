/**
 * Memory of webhook delivery: each POST's abort wiring is undone when the POST ends, so the
 * dispatcher's long-lived term signal holds nothing after hundreds of deliveries (the first
 * version left a dependant signal per POST on it via AbortSignal.any).
 */
import { getEventListeners } from 'node:events';
import { createServer, type Server } from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startGateway, type TestGateway } from '../helpers/gateway.js';
import { chatMessage, publishEvent } from '../helpers/events.js';
import { until } from './support.js';

let gw: TestGateway;
let receiver: Server;
let delivered = 0;

beforeAll(async () => {
  receiver = createServer((req, res) => {
    req.resume();
    req.on('end', () => {
      delivered++;
      res.writeHead(200).end();
    });
  });
  await new Promise<void>((r) => receiver.listen(0, '127.0.0.1', r));
  const port = (receiver.address() as { port: number }).port;
  gw = await startGateway({ webhooks: [{ name: 'signals', url: `http://127.0.0.1:${port}/hook`, secret: 'signals-secret-0123456789', events: ['ticket.message'] }] });
});
afterAll(async () => {
  await gw?.stop();
  receiver?.close();
});

describe('webhook delivery and the term signal', () => {
  it('leaves no listener on the long-lived signal after 200 deliveries', async () => {
    for (let i = 0; i < 200; i++) await publishEvent(gw.nc, chatMessage({ chat: `sig-${i % 20}`, id: `sig-${i}` }));
    await until(() => delivered >= 200, '200 webhook deliveries', 60_000);
    const dispatcher = (gw.gateway as any).helpdesk.webhooks[0];
    expect(dispatcher.dispatching).toBe(true);
    await until(() => getEventListeners(dispatcher.term.signal, 'abort').length === 0, 'the POSTs to release the term signal', 10_000);
  });
});
