/**
 * Webhooks out, checked by an independent receiver: the HMAC is recomputed here with node:crypto,
 * a receiver that is down gets everything once it is back, in order per ticket, and what exceeds
 * the retry budget is parked with the reason.
 */
import { createHmac, timingSafeEqual } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startGateway, type TestGateway } from '../helpers/gateway.js';
import { chatMessage, publishEvent } from '../helpers/events.js';

const WEBHOOK_SECRET = 'helpdesk-webhook-secret-42';
let gw: TestGateway;
let receiver: Server;
let port = 0;
let up = false;
const received: Array<{ type: string; ticketId: string; id: string; eventHeader: string }> = [];
const refused: string[] = [];

/** What a helpdesk would write: a few lines of HMAC check. */
function verifies(rawBody: Buffer, header: string): boolean {
  const parts = Object.fromEntries(header.split(',').map((kv) => kv.split('=')));
  const expected = createHmac('sha256', WEBHOOK_SECRET).update(`${parts.t}.${rawBody.toString('utf8')}`).digest();
  const given = Buffer.from(parts.v1 ?? '', 'hex');
  return given.length === expected.length && timingSafeEqual(given, expected) && Math.abs(Date.now() / 1000 - Number(parts.t)) < 300;
}

beforeAll(async () => {
  receiver = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const raw = Buffer.concat(chunks);
      const event = JSON.parse(raw.toString('utf8'));
      if (!up) {
        refused.push(event.id);
        return void res.writeHead(503).end('down for maintenance');
      }
      if (!verifies(raw, String(req.headers['x-omnigate-signature']))) return void res.writeHead(401).end();
      received.push({ type: event.type, ticketId: event.ticketId, id: event.id, eventHeader: String(req.headers['x-omnigate-event']) });
      res.writeHead(204).end();
    });
  });
  await new Promise<void>((r) => receiver.listen(0, '127.0.0.1', r));
  port = (receiver.address() as { port: number }).port;
  gw = await startGateway({
    webhooks: [
      { name: 'helpdesk', url: `http://127.0.0.1:${port}/hook`, secret: WEBHOOK_SECRET, backoffBase: '100ms', backoffMax: '300ms', retryFor: '10m' },
      { name: 'gone', url: 'http://127.0.0.1:9/nothing-listens-here', secret: 'another-secret-0123456', events: ['ticket.created'], backoffBase: '50ms', backoffMax: '100ms', retryFor: '1s' },
    ],
  });
});
afterAll(async () => {
  await gw?.stop();
  receiver?.close();
});

describe('webhooks', () => {
  it('delivers signed events; a receiver that was down gets everything, in order per ticket', async () => {
    up = false;
    const chats = ['wh-a', 'wh-b', 'wh-c'];
    const ids: string[] = [];
    for (let round = 0; round < 3; round++) {
      for (const chat of chats) {
        const e = chatMessage({ chat, id: `${chat}-${round}` });
        ids.push(e.id);
        await publishEvent(gw.nc, e);
      }
    }
    await gw.waitForEvent((e) => e.type === 'ticket.message' && (e.entry as any)?.event?.id === 'webhook:site:wh-c-2');
    while (refused.length < 3) await new Promise((r) => setTimeout(r, 50)); // it is retrying against a closed door
    up = true;
    const deadline = Date.now() + 20_000;
    while (received.filter((r) => r.type === 'ticket.message').length < 9 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));

    const messages = received.filter((r) => r.type === 'ticket.message');
    expect(messages.map((m) => m.id.replace('ticket.message:', '')).sort()).toEqual(ids.sort());
    for (const chat of chats) {
      const order = messages.filter((m) => m.id.includes(`:${chat}-`)).map((m) => m.id.slice(-1));
      expect(order).toEqual(['0', '1', '2']);
      const perTicket = received.filter((r) => r.ticketId === messages.find((m) => m.id.includes(`:${chat}-`))!.ticketId);
      expect(perTicket[0]!.type).toBe('ticket.created'); // created is announced before its first message
    }
    expect(received.every((r) => r.eventHeader === r.type)).toBe(true);
    expect(new Set(received.map((r) => r.id)).size).toBe(received.length); // nothing twice
  });

  it('parks deliveries past the retry budget with the reason', async () => {
    const letter = await gw.waitForStreamMessage('OMNI_DLQ', 'omni.dlq.webhook.gone', undefined, 15_000);
    expect(letter.reason).toMatch(/retry budget exhausted after \d+ attempts: receiver unreachable/);
    expect(JSON.parse(letter.payload).type).toBe('ticket.created');
  });
});
