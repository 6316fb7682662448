/**
 * A webhook's lease holder whose consumer loop keeps failing (a trial: after a full NATS cluster
 * restart one gateway's pulls answered "JetStream system temporarily unavailable" for minutes
 * while a fresh client read the durable fine) must give the lease up, not keep it for as long as
 * it lives. Two dispatchers on one real nats-server; replica A's pulls are made to fail from a
 * point on; replica B must take over and deliver the rest: every event once, in order per ticket.
 * While A still holds and fails, its lag reads NaN, not a number it cannot know.
 */
import { describe, expect, it } from 'vitest';
import { Bus } from '../../src/core/bus.js';
import { createLogger } from '../../src/core/logger.js';
import { Supervisor } from '../../src/core/supervisor.js';
import { WebhookDispatcher, type WebhookTarget } from '../../src/api/webhooks.js';
import { until } from '../helpers/until.js';
import { webhookRig } from './webhook-rig.js';

const TTL = 3_000;
const log = createLogger({ level: 'silent' });
const received: Array<{ seq: number; ticketId: string; delivery: string }> = [];
const rig = webhookRig((req, res) => {
  const chunks: Buffer[] = [];
  req.on('data', (c: Buffer) => chunks.push(c));
  req.on('end', () => {
    const event = JSON.parse(Buffer.concat(chunks).toString('utf8')) as { ticketId: string };
    received.push({ seq: Number(req.headers['x-omnigate-sequence']), ticketId: event.ticketId, delivery: String(req.headers['x-omnigate-delivery']) });
    res.writeHead(204).end();
  });
}, TTL, log);

/** A replica: its own connection and dispatcher; `broken` makes its pulls fail as in the trial. */
async function replica(holder: string): Promise<{ bus: Bus; dispatcher: WebhookDispatcher; breakPulls: () => void }> {
  const bus = await rig.bus();
  let broken = false;
  const consumers = bus.js.consumers;
  const get = consumers.get.bind(consumers);
  consumers.get = (async (...args: Parameters<typeof get>) => {
    const c = await get(...args);
    const fetch = c.fetch.bind(c);
    c.fetch = (opts) => (broken ? Promise.reject(new Error('JetStream system temporarily unavailable')) : fetch(opts));
    return c;
  }) as typeof consumers.get;
  const target: WebhookTarget = {
    name: 'helpdesk', url: `http://127.0.0.1:${rig.port}/hook`, secret: 'failing-holder-secret-0123', events: ['*'],
    timeout: 5_000, retryFor: 600_000, backoffBase: 50, backoffMax: 200, redeliverAfter: 3_000,
  };
  // Fast restarts: the supervisor's `failed` state (5 failures in a row) within a couple of seconds.
  const dispatcher = new WebhookDispatcher(bus, target, log, { holder, ttlMs: TTL }, new Supervisor(log, { baseMs: 200, maxMs: 1_000 }));
  await rig.start(dispatcher);
  return { bus, dispatcher, breakPulls: () => (broken = true) };
}

async function publish(bus: Bus, from: number, count: number): Promise<void> {
  for (let i = from; i < from + count; i++) {
    await bus.js.publish('omni.events.ticket.message', JSON.stringify({ type: 'ticket.message', ticketId: `T-${i % 7}`, text: `сообщение ${i}` }));
  }
}

describe('a webhook holder whose consumer keeps failing', () => {
  it('releases the lease: the other replica delivers the rest, once each, in order per ticket; its lag reads NaN meanwhile', async () => {
    const a = await replica('replica-a-webhook');
    await until(() => a.dispatcher.dispatching, 'replica A delivering');
    const b = await replica('replica-b-webhook');
    await publish(a.bus, 0, 60);
    await until(() => received.length >= 60, 'the first 60 events delivered by A');
    expect(b.dispatcher.dispatching).toBe(false);

    a.breakPulls();
    await publish(a.bus, 60, 60);
    let nanSeen = false;
    await until(async () => {
      if (a.dispatcher.dispatching && Number.isNaN(await a.dispatcher.lag())) nanSeen = true;
      return b.dispatcher.dispatching;
    }, 'replica B taking the lease over from the failing replica A');
    expect(nanSeen).toBe(true);
    await until(() => new Set(received.map((r) => r.seq)).size >= 120, 'all 120 events at the receiver');
    await new Promise((r) => setTimeout(r, 1_000)); // a repeat would land now

    expect(a.dispatcher.dispatching).toBe(false);
    const seqs = received.map((r) => r.seq);
    expect(seqs.length).toBe(new Set(seqs).size); // nothing twice
    expect(new Set(received.map((r) => r.delivery)).size).toBe(received.length);
    const byTicket = new Map<string, number[]>();
    for (const r of received) byTicket.set(r.ticketId, [...(byTicket.get(r.ticketId) ?? []), r.seq]);
    for (const [, s] of byTicket) expect(s).toEqual([...s].sort((x, y) => x - y));
    expect(await b.dispatcher.lag()).toBe(0);
  }, 90_000);
});
