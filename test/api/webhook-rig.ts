/**
 * Webhook dispatchers as replicas of one deployment, for the lease tests: a real nats-server, a
 * receiver answering with `handler`, and buses and dispatchers made through the rig are stopped
 * after the file's tests. Its fields are set once the file's beforeAll has run.
 */
import { createServer, type RequestListener, type Server } from 'node:http';
import { afterAll, beforeAll } from 'vitest';
import { Bus } from '../../src/core/bus.js';
import type { Logger } from '../../src/core/logger.js';
import type { WebhookDispatcher } from '../../src/api/webhooks.js';
import { startNats, type TestNats } from '../helpers/nats-server.js';

export interface WebhookRig {
  nats: TestNats;
  /** The receiver's port on 127.0.0.1. */
  port: number;
  /** A provisioned bus of its own, as each replica has. */
  bus(): Promise<Bus>;
  /** Starts `dispatcher` and stops it with the rig. */
  start(dispatcher: WebhookDispatcher): Promise<WebhookDispatcher>;
}

export function webhookRig(handler: RequestListener, leaseTtlMs: number, log: Logger): WebhookRig {
  let receiver: Server | undefined;
  const buses: Bus[] = [];
  const dispatchers: WebhookDispatcher[] = [];
  const rig: WebhookRig = {
    nats: undefined as unknown as TestNats,
    port: 0,
    async bus() {
      const bus = await Bus.connect({ url: rig.nats.url, replicas: 1, duplicateWindowMs: 120_000, retentionMs: 86_400_000, dedupTtlMs: 86_400_000, leaseTtlMs }, log);
      await bus.provision();
      buses.push(bus);
      return bus;
    },
    async start(dispatcher) {
      dispatchers.push(dispatcher);
      await dispatcher.start();
      return dispatcher;
    },
  };
  beforeAll(async () => {
    rig.nats = await startNats();
    const server = (receiver = createServer(handler));
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
    rig.port = (server.address() as { port: number }).port;
  });
  afterAll(async () => {
    await Promise.all(dispatchers.map((d) => d.stop()));
    await Promise.all(buses.map((b) => b.close()));
    await rig.nats?.stop();
    await new Promise((r) => receiver?.close(r));
  });
  return rig;
}
