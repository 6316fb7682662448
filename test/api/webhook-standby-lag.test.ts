/**
 * omnigate_consumer_lag of a leased webhook durable on a standby (an outside trial on a NATS
 * cluster: standbys showed 109–202 while 187–437 events waited). The durable is one for the
 * cluster, so the standby reports what the holder reports; a standby that cannot read it now
 * reports NaN, not its last reading (which `max by (consumer)` took for the truth). Two
 * dispatchers on one real nats-server; the receiver refuses, so the backlog grows.
 */
import { jetstreamManager } from '@nats-io/jetstream';
import { connect } from '@nats-io/transport-node';
import { describe, expect, it } from 'vitest';
import { Bus } from '../../src/core/bus.js';
import { createLogger } from '../../src/core/logger.js';
import { Consumers, Streams } from '../../src/core/subjects.js';
import { Supervisor } from '../../src/core/supervisor.js';
import { WebhookDispatcher, type WebhookTarget } from '../../src/api/webhooks.js';
import { until } from '../helpers/until.js';
import { webhookRig } from './webhook-rig.js';

const TTL = 3_000;
const log = createLogger({ level: 'silent' });
// The receiver refuses every event: the backlog only grows.
const rig = webhookRig((req, res) => {
  req.resume();
  req.on('end', () => res.writeHead(500).end());
}, TTL, log);

async function replica(holder: string): Promise<{ bus: Bus; dispatcher: WebhookDispatcher }> {
  const bus = await rig.bus();
  const target: WebhookTarget = {
    name: 'crm', url: `http://127.0.0.1:${rig.port}/hook`, secret: 'standby-lag-secret-0123456', events: ['*'],
    timeout: 5_000, retryFor: 600_000, backoffBase: 50, backoffMax: 200, redeliverAfter: 3_000,
  };
  const dispatcher = await rig.start(new WebhookDispatcher(bus, target, log, { holder, ttlMs: TTL }, new Supervisor(log)));
  return { bus, dispatcher };
}

async function publish(bus: Bus, from: number, count: number): Promise<void> {
  for (let i = from; i < from + count; i++) {
    await bus.js.publish('omni.events.ticket.message', JSON.stringify({ type: 'ticket.message', ticketId: `T-${i % 150}` }));
  }
}

/** What a fresh client reads of the durable: the truth the trial compared with. */
async function truth(): Promise<number> {
  const nc = await connect({ servers: rig.nats.url });
  try {
    const info = await (await jetstreamManager(nc)).consumers.info(Streams.events, Consumers.webhooks('crm'));
    return info.num_pending + info.num_ack_pending;
  } finally {
    await nc.close();
  }
}

describe('a webhook standby\'s consumer lag', () => {
  it('is the holder\'s number while it can read the durable, and NaN (not its last reading) while it cannot', async () => {
    const a = await replica('replica-a-lag');
    await until(() => a.dispatcher.dispatching, 'replica A delivering');
    const b = await replica('replica-b-lag');
    await publish(a.bus, 0, 200);
    // Some held by A's lanes (ack pending), the rest not yet pulled: both count.
    await until(async () => (await truth()) === 200, 'the backlog at 200');
    expect(b.dispatcher.dispatching).toBe(false);
    expect(await a.dispatcher.lag()).toBe(200);
    expect(await b.dispatcher.lag()).toBe(200);

    // B's connection stops getting answers about the durable (its server's view stalled).
    const consumers = b.bus.jsm.consumers;
    const info = consumers.info.bind(consumers);
    consumers.info = (() => Promise.reject(new Error('JetStream system temporarily unavailable'))) as typeof consumers.info;
    await publish(a.bus, 200, 150);
    await until(async () => (await truth()) === 350, 'the backlog at 350');
    expect(await a.dispatcher.lag()).toBe(350);
    expect(await b.dispatcher.lag()).toBeNaN();

    consumers.info = info;
    expect(await b.dispatcher.lag()).toBe(350);
  }, 90_000);
});
