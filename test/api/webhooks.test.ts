/**
 * Webhooks out, checked by an independent receiver: the HMAC is recomputed here with node:crypto
 * (not with our verify()), a receiver that is down gets everything once it is back, in order per
 * ticket, also across a gateway restart (durable consumer), and what exceeds the retry budget is
 * parked with the reason.
 */
import { createHmac, timingSafeEqual } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startGateway, type TestGateway } from '../helpers/gateway.js';
import { chatMessage, publishEvent } from '../helpers/events.js';
import { startNats, type TestNats } from '../helpers/nats-server.js';
import { until } from './support.js';
import { Eraser } from '../../src/core/erasure.js';
import { TicketErasedEvent } from '../../src/core/schema.js';
import { pino } from 'pino';

const WEBHOOK_SECRET = 'helpdesk-webhook-secret-42';
let nats: TestNats;
let gw: TestGateway;
let receiver: Server;
let port = 0;
let up = false;
interface Received { type: string; ticketId: string; id: string; eventHeader: string; sequence: number; delivery: string }
const received: Received[] = [];
/** The bodies of `ticket.erased` deliveries, whole. */
const erasedBodies: Array<Record<string, unknown>> = [];
const refused: string[] = [];
let badSignatures = 0;

/** What a helpdesk would write: a few lines of HMAC check over the raw bytes. */
function verifies(rawBody: Buffer, header: string): boolean {
  const parts = Object.fromEntries(header.split(',').map((kv) => kv.split('=')));
  const expected = createHmac('sha256', WEBHOOK_SECRET).update(`${parts.t}.`).update(rawBody).digest();
  const given = Buffer.from(parts.v1 ?? '', 'hex');
  return given.length === expected.length && timingSafeEqual(given, expected) && Math.abs(Date.now() / 1000 - Number(parts.t)) < 300;
}

const config = () => ({
  webhooks: [
    { name: 'helpdesk', url: `http://127.0.0.1:${port}/hook`, secret: WEBHOOK_SECRET, backoffBase: '50ms', backoffMax: '200ms', retryFor: '10m', redeliverAfter: '2s' },
    { name: 'gone', url: 'http://127.0.0.1:2/nothing-listens-here', secret: 'another-secret-0123456', events: ['ticket.created'], backoffBase: '50ms', backoffMax: '100ms', retryFor: '1s' },
  ],
});

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
      if (!verifies(raw, String(req.headers['x-omnigate-signature']))) {
        badSignatures++;
        return void res.writeHead(401).end();
      }
      if (event.type === 'ticket.erased') erasedBodies.push(event);
      received.push({
        type: event.type, ticketId: event.ticketId, id: event.id,
        eventHeader: String(req.headers['x-omnigate-event']),
        sequence: Number(req.headers['x-omnigate-sequence']),
        delivery: String(req.headers['x-omnigate-delivery']),
      });
      res.writeHead(204).end();
    });
  });
  await new Promise<void>((r) => receiver.listen(0, '127.0.0.1', r));
  port = (receiver.address() as { port: number }).port;
  nats = await startNats();
  gw = await startGateway(config(), { nats });
});
afterAll(async () => {
  await gw?.stop();
  await nats?.stop();
  receiver?.close();
});

async function publishRounds(chats: string[], rounds: number[]): Promise<string[]> {
  const ids: string[] = [];
  for (const round of rounds) {
    for (const chat of chats) {
      const e = chatMessage({ chat, id: `${chat}-${round}` });
      ids.push(e.id);
      await publishEvent(gw.nc, e);
    }
  }
  return ids;
}

/** The message events of these chats that arrived (first arrival of each), by chat. */
function messagesOf(chats: string[], from = 0): Received[] {
  const seen = new Set<string>();
  return received.slice(from).filter((r) => r.type === 'ticket.message' && chats.some((c) => r.id.includes(`:${c}-`)) && !seen.has(r.id) && seen.add(r.id));
}
const roundOf = (r: Received) => Number(r.id.split('-').pop());

describe('webhooks', () => {
  it('delivers signed events; a receiver that was down gets everything, in order per ticket', async () => {
    up = false;
    const chats = ['wh-a', 'wh-b', 'wh-c'];
    const ids = await publishRounds(chats, [0, 1, 2]);
    await gw.waitForEvent((e) => e.type === 'ticket.message' && (e.entry as any)?.event?.id === 'webhook:site:wh-c-2');
    await until(() => refused.length >= 6, 'retries against the closed door'); // each ticket's head, at least twice
    up = true;
    await until(() => received.filter((r) => r.type === 'ticket.message').length >= 9, 'all 9 messages after the receiver is back', 20_000);

    const messages = messagesOf(chats);
    expect(messages.map((m) => m.id.replace('ticket.message:', '')).sort()).toEqual([...ids].sort());
    for (const chat of chats) {
      const mine = messages.filter((m) => m.id.includes(`:${chat}-`));
      expect(mine.map(roundOf)).toEqual([0, 1, 2]); // in order per ticket
      const perTicket = received.filter((r) => r.ticketId === mine[0]!.ticketId);
      expect(perTicket[0]!.type).toBe('ticket.created'); // created is announced before its first message
      expect(perTicket.map((r) => r.sequence)).toEqual(perTicket.map((r) => r.sequence).sort((a, b) => a - b));
    }
    expect(new Set(received.map((r) => r.id)).size).toBe(received.length); // nothing twice
    expect(badSignatures).toBe(0);
    expect(received.every((r) => r.eventHeader === r.type && r.delivery === `helpdesk-${r.sequence}`)).toBe(true);
  });

  it('loses nothing across a gateway restart while the receiver is down', async () => {
    up = false;
    const chats = ['rs-a', 'rs-b'];
    const before = received.length;
    const ids = await publishRounds(chats, [0, 1]);
    await gw.waitForEvent((e) => e.type === 'ticket.message' && (e.entry as any)?.event?.id === 'webhook:site:rs-b-1');
    const refusedBefore = refused.length;
    await until(() => refused.length >= refusedBefore + 2, 'retries against the closed door');
    await gw.stop(); // the dispatcher hands its unfinished events back to the durable consumer

    gw = await startGateway(config(), { nats });
    ids.push(...(await publishRounds(chats, [2])));
    await gw.waitForEvent((e) => e.type === 'ticket.message' && (e.entry as any)?.event?.id === 'webhook:site:rs-b-2');
    up = true;
    // Events the first gateway had in flight come back after redeliverAfter (2 s here).
    await until(() => messagesOf(chats, before).length >= 6 && received.slice(before).filter((r) => r.type === 'ticket.created').length >= 2, 'everything after restart and recovery', 20_000);

    const messages = messagesOf(chats, before);
    expect(messages.map((m) => m.id.replace('ticket.message:', '')).sort()).toEqual([...ids].sort());
    // Across a restart, at least once: an event in flight may come again, or after a newer one of
    // its ticket; X-Omnigate-Sequence restores the order (docs/api.md).
    for (const chat of chats) {
      const mine = messages.filter((m) => m.id.includes(`:${chat}-`)).sort((a, b) => a.sequence - b.sequence);
      expect(mine.map(roundOf)).toEqual([0, 1, 2]);
    }
    expect(badSignatures).toBe(0);
  });

  it('parks deliveries past the retry budget with the reason', async () => {
    const letter = await gw.waitForStreamMessage('OMNI_DLQ', 'omni.dlq.webhook.gone', undefined, 15_000);
    expect(letter.reason).toMatch(/retry budget exhausted after \d+ attempts?: receiver unreachable/);
    expect(JSON.parse(letter.payload).type).toBe('ticket.created');
  });

  it('a receiver down for longer than redeliverAfter gets every event once, in order per ticket', async () => {
    up = false;
    const chats = ['long-a', 'long-b'];
    const before = received.length;
    const ids = await publishRounds(chats, [0, 1, 2, 3]);
    await gw.waitForEvent((e) => e.type === 'ticket.message' && (e.entry as any)?.event?.id === 'webhook:site:long-b-3');
    // Queued events wait behind each ticket's head for 2.5 × redeliverAfter: they must not come back as copies.
    await new Promise((r) => setTimeout(r, 5_000));
    up = true;
    await until(() => messagesOf(chats, before).length >= 8, 'all 8 messages after the long outage', 20_000);
    await new Promise((r) => setTimeout(r, 2_500)); // a copy would arrive within redeliverAfter
    const mine = received.slice(before).filter((r) => r.type === 'ticket.message' && chats.some((c) => r.id.includes(`:${c}-`)));
    expect(mine.map((m) => m.id.replace('ticket.message:', '')).sort()).toEqual([...ids].sort()); // each once
    for (const chat of chats) expect(mine.filter((m) => m.id.includes(`:${chat}-`)).map(roundOf)).toEqual([0, 1, 2, 3]);
  }, 40_000);

  it("an erased ticket is announced to the receiver as ticket.erased after the ticket's own events, naming no one", async () => {
    up = true;
    const [id] = await publishRounds(['erase-a'], [0]);
    await until(() => received.some((r) => r.id === `ticket.message:${id}`), 'the message delivered', 20_000);
    const ticketId = received.find((r) => r.id === `ticket.message:${id}`)!.ticketId;
    const result = await new Eraser(gw.gateway.bus, pino({ level: 'silent' })).erase({ ticketIds: [ticketId], identities: [] }, { reason: 'retention', requestedBy: 'retention' });
    await until(() => received.some((r) => r.type === 'ticket.erased' && r.ticketId === ticketId), 'ticket.erased delivered', 20_000);
    const perTicket = received.filter((r) => r.ticketId === ticketId);
    expect(perTicket.at(-1)!.type).toBe('ticket.erased');
    expect(perTicket.map((r) => r.sequence)).toEqual(perTicket.map((r) => r.sequence).sort((a, b) => a - b));
    const body = erasedBodies.find((b) => b.ticketId === ticketId)!;
    expect(TicketErasedEvent.strict().parse(body)).toEqual({
      v: 1, type: 'ticket.erased', id: `ticket.erased:${ticketId}:${result.id}`, ticketId, at: expect.any(String), reason: 'retention', erasureId: result.id,
    });
  }, 60_000);

  it('one replica delivers a webhook at a time; another takes over when it stops', async () => {
    up = true;
    const second = await startGateway(config(), { nats });
    const delivering = (g: TestGateway) => g.logs.some((l) => l.includes('delivering this webhook from this process') && l.includes('"webhook":"helpdesk"'));
    try {
      expect(delivering(gw)).toBe(true);
      expect(delivering(second)).toBe(false);
      const before = received.length;
      const ids = await publishRounds(['two-a'], [0, 1, 2]);
      await until(() => messagesOf(['two-a'], before).length >= 3, 'three messages with two replicas up', 20_000);
      // Two routers may announce one chat's messages in either order (README, Scale); the webhook
      // keeps the order of the event stream, which X-Omnigate-Sequence shows.
      const seqs = messagesOf(['two-a'], before).map((m) => m.sequence);
      expect(seqs).toEqual([...seqs].sort((a, b) => a - b));

      await gw.stop(); // releases the lease: the standby takes over
      gw = second;
      await until(() => delivering(second), 'the standby takes the webhook over', 10_000);
      const after = received.length;
      ids.push(...(await publishRounds(['two-a'], [3])));
      await until(() => messagesOf(['two-a'], after).length >= 1, 'delivery from the replica that took over', 20_000).catch((err) => {
        console.log(second.logs.filter((l) => /webhook|lease/.test(l)).join('\n'));
        throw err;
      });
      const all = received.filter((r) => r.type === 'ticket.message' && r.id.includes(':two-a-'));
      expect(all.map((m) => m.id.replace('ticket.message:', '')).sort()).toEqual([...ids].sort()); // each once
      expect(all.map((m) => m.sequence)).toEqual(all.map((m) => m.sequence).sort((a, b) => a - b));
    } finally {
      if (gw !== second) await second.stop();
    }
  }, 180_000);
});
