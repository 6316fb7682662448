/**
 * A webhook receiver that answers a redirect: the event is parked at once (it was retried until
 * retryFor, 24 h by default, though every retry is answered alike), with the code and a reason
 * that names the other host by scheme://host:port only, and the ticket's next event goes out.
 */
import { createServer, type Server } from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startGateway, type TestGateway } from '../helpers/gateway.js';
import { chatMessage, publishEvent } from '../helpers/events.js';
import { until } from './support.js';

const REDIRECTS = [301, 302, 307, 308];
let gw: TestGateway;
let receiver: Server;
/** Every POST the receiver got, in order. */
const posts: Array<{ type: string; ticketId: string; status: number }> = [];
/** The redirect each ticket's ticket.created is answered with, by order of arrival. */
const redirectOf = new Map<string, number>();

beforeAll(async () => {
  receiver = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const event = JSON.parse(Buffer.concat(chunks).toString('utf8')) as { type: string; ticketId: string };
      if (event.type === 'ticket.created' && !redirectOf.has(event.ticketId)) redirectOf.set(event.ticketId, REDIRECTS[redirectOf.size % REDIRECTS.length]!);
      const status = event.type === 'ticket.created' ? redirectOf.get(event.ticketId)! : 204;
      posts.push({ type: event.type, ticketId: event.ticketId, status });
      if (status === 204) return void res.writeHead(204).end();
      res.writeHead(status, { location: 'https://moved.example.ru:8443/hooks/s3cr3t-path?token=s3cr3t-query' }).end();
    });
  });
  await new Promise<void>((r) => receiver.listen(0, '127.0.0.1', r));
  const port = (receiver.address() as { port: number }).port;
  gw = await startGateway({
    webhooks: [{
      name: 'moved', url: `http://127.0.0.1:${port}/hook`, secret: 'moved-secret-0123456789', events: ['ticket.created', 'ticket.message'],
      // A budget far beyond the test: a letter within seconds is one parked at once.
      retryFor: '1h', backoffBase: '50ms', backoffMax: '200ms',
    }],
  });
});
afterAll(async () => {
  await gw?.stop();
  receiver?.close();
});

describe('a webhook receiver answering a redirect', () => {
  it('parks the event at once, naming the host only, and delivers the ticket\'s next event', async () => {
    const chats = REDIRECTS.map((s) => `moved-${s}`);
    for (const chat of chats) await publishEvent(gw.nc, chatMessage({ chat, id: `${chat}-0` }));
    await until(() => posts.filter((p) => p.type === 'ticket.message').length >= chats.length, 'every ticket\'s message after its parked ticket.created', 20_000);

    for (const status of REDIRECTS) {
      const letter = await gw.waitForStreamMessage('OMNI_DLQ', 'omni.dlq.webhook.moved', (l: any) => l.code === `http_${status}`, 10_000);
      expect(letter.reason).toBe(`not retried: receiver answered ${status}, a redirect to https://moved.example.ru:8443 (path, query and credentials not shown): not followed (it would drop the body or send it to another address); set the URL to the final address (webhooks[].url)`);
      expect(JSON.parse(letter.payload).type).toBe('ticket.created');
      expect(letter.meta).toMatchObject({ type: 'ticket.created' });
    }
    // Once each: no retry of an answer that cannot change.
    await new Promise((r) => setTimeout(r, 1_000));
    expect(posts.filter((p) => p.type === 'ticket.created').map((p) => p.status).sort()).toEqual(REDIRECTS);
    // The created event came first and its redirect did not hold the ticket's lane.
    for (const ticketId of redirectOf.keys()) expect(posts.filter((p) => p.ticketId === ticketId).map((p) => p.type)).toEqual(['ticket.created', 'ticket.message']);
    expect(gw.logs.join('\n')).not.toContain('s3cr3t');
  });
});
