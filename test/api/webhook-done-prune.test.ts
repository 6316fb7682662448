/**
 * The webhook dispatcher prunes its set of delivered events to the ack floor during its term, not
 * only when the term ends: it kept one entry per event for the whole term, and once the set was
 * full (MAX_SEQS) the term could never hand over again (the 30-minute soak, BENCHMARKS.md). Here
 * every delivery is a prune turn (DoneSet.takePruneTurn), instead of every 10,000.
 */
import { createServer, type Server } from 'node:http';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { startGateway, type TestGateway } from '../helpers/gateway.js';
import { chatMessage, publishEvent } from '../helpers/events.js';
import { startNats, type TestNats } from '../helpers/nats-server.js';
import { until } from './support.js';
import { DoneSet } from '../../src/api/webhook-done.js';

let nats: TestNats;
let gw: TestGateway;
let receiver: Server;
let received = 0;

beforeAll(async () => {
  vi.spyOn(DoneSet.prototype, 'takePruneTurn').mockReturnValue(true);
  receiver = createServer((req, res) => {
    req.on('data', () => {});
    req.on('end', () => {
      received++;
      res.writeHead(204).end();
    });
  });
  await new Promise<void>((r) => receiver.listen(0, '127.0.0.1', r));
  const port = (receiver.address() as { port: number }).port;
  nats = await startNats();
  gw = await startGateway({ webhooks: [{ name: 'pruned', url: `http://127.0.0.1:${port}/hook`, secret: 'prune-secret-0123456789', backoffBase: '50ms', backoffMax: '200ms' }] }, { nats });
});
afterAll(async () => {
  await gw?.stop();
  await nats?.stop();
  receiver?.close();
  vi.restoreAllMocks();
});

/** The set of the gateway's one webhook dispatcher (private: read for the bound). */
function doneSize(): number {
  const surface = (gw.gateway as unknown as { helpdesk: { webhooks: Array<{ done: DoneSet }> } }).helpdesk;
  return surface.webhooks[0]!.done.size;
}

describe('webhook delivered-events set', () => {
  it('is pruned to the ack floor while the term goes on', async () => {
    for (let i = 0; i < 30; i++) await publishEvent(gw.nc, chatMessage({ chat: `prune-${i % 3}`, id: `prune-${i}` }));
    // 3 tickets: 3 ticket.created + 30 ticket.message, at least.
    await until(() => received >= 33, 'the receiver to get every event', 30_000);
    const all = received;
    // One more event: its delivery prunes with a floor that has passed everything before it.
    await publishEvent(gw.nc, chatMessage({ chat: 'prune-0', id: 'prune-last' }));
    await until(() => received > all, 'the last event', 15_000);
    // Was `all` + 1 for good: nothing left the set before the term ended.
    await until(() => doneSize() <= 2, `the set to be pruned (it holds ${doneSize()} of ${received})`, 10_000);
    expect(doneSize()).toBeLessThan(received);
  });
});
