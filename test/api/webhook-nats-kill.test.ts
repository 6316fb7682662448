/**
 * nats-server killed (kill -9) while the webhook dispatcher holds a backlog, and back within the
 * lease TTL (20 s here), so the dispatcher keeps its lease through the blip. Events the server had
 * sent into the pull that the drop cut off never arrived; they would wait out redeliverAfter
 * (2 minutes: a straggler times this test out) and then come behind newer events of their
 * ticket. The dispatcher sees the loss (more "ack pending" than it holds), hands back what it
 * holds and rewinds from the ack floor in place: every event arrives, in order per ticket;
 * repeats carry the same x-omnigate-delivery id.
 */
import { createServer, type Server } from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startGateway, type TestGateway } from '../helpers/gateway.js';
import { chatMessage, publishEvent } from '../helpers/events.js';
import { startNats, type TestNats } from '../helpers/nats-server.js';
import { sleep } from '../../src/core/sleep.js';
import { until } from './support.js';

const CHATS = 20;
const ROUNDS = 10;
let nats: TestNats;
let gw: TestGateway;
let receiver: Server;
const got: Array<{ id: string; ticketId: string; sequence: number; type: string }> = [];
let slow = true;

beforeAll(async () => {
  receiver = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const e = JSON.parse(Buffer.concat(chunks).toString('utf8'));
      got.push({ id: e.id, type: e.type, ticketId: e.ticketId, sequence: Number(req.headers['x-omnigate-sequence']) });
      setTimeout(() => res.writeHead(204).end(), slow ? 150 + Math.floor(Math.random() * 100) : 5);
    });
  });
  await new Promise<void>((r) => receiver.listen(0, '127.0.0.1', r));
  const port = (receiver.address() as { port: number }).port;
  nats = await startNats();
  gw = await startGateway({
    nats: { leaseTtl: '20s' },
    webhooks: [{ name: 'helpdesk', url: `http://127.0.0.1:${port}/hook`, secret: 'kill-secret-0123456789abcdef', backoffBase: '50ms', backoffMax: '500ms', redeliverAfter: '2m' }],
  }, { nats });
});
afterAll(async () => {
  await gw?.stop();
  await nats?.stop();
  receiver?.close();
});

async function publishHard(chat: string, round: number): Promise<void> {
  const e = chatMessage({ chat, id: `${chat}-${round}`, text: `Сообщение ${round}` });
  for (;;) {
    try {
      return await publishEvent(gw.nc, e);
    } catch {
      await sleep(200);
    }
  }
}

describe('webhook backlog across a nats-server kill -9 within the lease TTL', () => {
  it('every event arrives, in order per ticket, without waiting for redeliverAfter', async () => {
    const chats = Array.from({ length: CHATS }, (_, i) => `nk-${i}`);
    for (let round = 0; round < ROUNDS; round++) await Promise.all(chats.map((c) => publishHard(c, round)));
    await until(() => got.length >= 20, 'the first deliveries', 30_000);
    const logsFrom = gw.logs.length;
    await nats.kill('SIGKILL');
    await nats.restart();
    slow = false;
    await until(() => new Set(got.filter((g) => g.type === 'ticket.message').map((g) => g.id)).size >= CHATS * ROUNDS, 'every message after the kill', 90_000);
    await sleep(1000);
    const delivered = new Set<string>();
    let inversions = 0;
    let repeats = 0;
    const last = new Map<string, number>();
    for (const g of got) {
      if (delivered.has(g.id)) {
        repeats++;
        continue;
      }
      delivered.add(g.id);
      if (g.sequence < (last.get(g.ticketId) ?? 0)) inversions++;
      else last.set(g.ticketId, g.sequence);
    }
    const logs = gw.logs.slice(logsFrom);
    const inPlace = logs.filter((l) => l.includes('NATS dropped a pull with events in flight')).length;
    const leaseLost = logs.filter((l) => l.includes('"lease lost"')).length;
    console.log(`nats-server kill -9 within the lease TTL: ${got.length} deliveries, ${repeats} repeats, ${inversions} inversions; in-place rewinds ${inPlace}, leases lost ${leaseLost}`);
    expect(inversions).toBe(0);
    expect(leaseLost).toBe(0);
  }, 150_000);
});
