/**
 * The connector host owns connector loops: an intake loop started with ctx.run that throws or
 * ends is noticed (loop metrics, connector state `stalled` then `failed`, published on
 * omni.events.connector.*) and run again with backoff; a connector whose start() fails is
 * created and started again until it starts, its state truthful meanwhile. Real nats-server, the
 * real host and supervisor; the connectors are small plugins written against the contract.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { z } from 'zod';
import { Bus } from '../../../src/core/bus.js';
import { createLogger } from '../../../src/core/logger.js';
import { Supervisor } from '../../../src/core/supervisor.js';
import type { HttpMount } from '../../../src/core/http.js';
import { ConnectorHost } from '../../../src/connectors/host.js';
import type { ConnectorFactory } from '../../../src/connectors/contract.js';
import { sampleConnectors } from '../../../src/probes.js';
import { metrics } from '../../../src/core/metrics.js';
import { startNats, type TestNats } from '../../helpers/nats-server.js';
import { until } from '../../helpers/until.js';

let nats: TestNats;
let bus: Bus;
const log = createLogger({ level: 'silent' });

/** Routes the connectors mount, served by calling the current handler (what the HTTP server does). */
class Routes implements HttpMount {
  readonly handlers = new Map<string, Parameters<HttpMount['route']>[2]>();
  registrations = 0;
  route(method: string, path: string, handler: Parameters<HttpMount['route']>[2]) {
    const key = `${method} ${path}`;
    if (this.handlers.has(key)) throw new Error(`route ${key} registered twice`); // as Fastify refuses it
    this.registrations++;
    this.handlers.set(key, handler);
  }
}


function newHost(supervisor: Supervisor, http: HttpMount = new Routes()) {
  return new ConnectorHost({
    bus, log, http, mediaMaxBytes: 1024, leaseTtlMs: 3000, supervisor,
    outbound: { maxAttempts: 1, backoffBaseMs: 10, backoffMaxMs: 10, ackWaitMs: 30_000, concurrency: 1 },
  });
}

async function watchStates(channel: string): Promise<{ states: string[]; stop(): void }> {
  const states: string[] = [];
  const sub = bus.nc.subscribe(`omni.events.connector.${channel}.>`, { callback: (_e, m) => void states.push((m.json() as { state: string }).state) });
  await bus.nc.flush();
  return { states, stop: () => sub.unsubscribe() };
}

beforeAll(async () => {
  nats = await startNats();
  bus = await Bus.connect({ url: nats.url, replicas: 1, duplicateWindowMs: 120_000, retentionMs: 86_400_000, dedupTtlMs: 86_400_000, leaseTtlMs: 3000 }, log);
  await bus.provision();
});
afterAll(async () => {
  await bus?.close();
  await nats?.stop();
});

describe('connector host supervision', () => {
  it('notices an intake loop that throws or ends, shows it stalled then failed, and runs it again', async () => {
    const supervisor = new Supervisor(log, { baseMs: 20, maxMs: 100, failAfter: 3 });
    const watch = await watchStates('flaky');
    let runs = 0;
    let healthy = false;
    const flaky: ConnectorFactory<Record<string, never>> = {
      type: 'flaky-test', channel: 'flaky', options: z.object({}),
      create: (_o, ctx) => {
        let loop: { stop(): Promise<void> } | undefined;
        return {
          async start() {
            loop = ctx.run('intake', async ({ signal, progress }) => {
              runs++;
              if (!healthy) {
                // Alternately throw and end: both are failures the supervisor must see.
                if (runs % 2) throw new Error(`poll ${runs} failed`);
                return;
              }
              ctx.setState('connected');
              progress();
              await new Promise<void>((r) => signal.addEventListener('abort', () => r(), { once: true }));
            });
          },
          async stop() {
            await loop?.stop();
            ctx.setState('stopped');
          },
          health: () => ({ state: 'connected' as const, since: new Date().toISOString() }),
          async send() {
            return { platformMessageId: 'x' };
          },
        };
      },
    };
    const host = newHost(supervisor);
    await host.start([{ factory: flaky, account: 'a1', options: {} }]);
    await until(() => host.health()[0]!.state === 'failed', 'the connector shown failed');
    const shown = host.health()[0]!;
    expect(shown.detail).toMatch(/loop intake stopped: (poll \d+ failed|the loop ended although nothing stopped it); retrying at /);
    sampleConnectors(host.health());
    const up = (await metrics.connectorUp.get()).values.find((v) => v.labels.channel === 'flaky');
    expect(up?.value).toBe(0);
    const loop = supervisor.statuses().find((l) => l.name === 'connector.flaky.a1.intake')!;
    expect(loop.state).toBe('failed');
    expect(loop.restarts).toBeGreaterThanOrEqual(3);
    const restarts = (await metrics.loopRestarts.get()).values.find((v) => v.labels.loop === 'connector.flaky.a1.intake');
    expect(restarts?.value).toBeGreaterThanOrEqual(3);

    // The cause goes away: the next run reports connected, and that is what probes show again.
    healthy = true;
    await until(() => host.health()[0]!.state === 'connected', 'the connector connected again');
    sampleConnectors(host.health());
    expect((await metrics.connectorUp.get()).values.find((v) => v.labels.channel === 'flaky')?.value).toBe(1);
    await until(() => watch.states.includes('connected'), 'the published state');
    // Every state ops were told, in order: stalled first, failed later, connected last.
    expect(watch.states.indexOf('stalled')).toBeGreaterThanOrEqual(0);
    expect(watch.states.indexOf('failed')).toBeGreaterThan(watch.states.indexOf('stalled'));
    expect(watch.states.lastIndexOf('connected')).toBeGreaterThan(watch.states.lastIndexOf('failed'));

    await host.stop();
    expect(supervisor.statuses().filter((l) => l.name.startsWith('connector.flaky'))).toEqual([]);
    watch.stop();
  });

  it('a loop that ends because its connector is being stopped is not reported stalled (every SIGTERM raised the alert)', async () => {
    const supervisor = new Supervisor(log, { baseMs: 20, maxMs: 100, failAfter: 3 });
    const watch = await watchStates('calm');
    let runs = 0;
    // As the Slack connector in events mode: its intake waits on the connector's context signal,
    // which the host aborts before it calls stop(), the one that stops the loop.
    const calm: ConnectorFactory<Record<string, never>> = {
      type: 'calm-test', channel: 'calm', options: z.object({}),
      create: (_o, ctx) => {
        let loop: { stop(): Promise<void> } | undefined;
        return {
          async start() {
            loop = ctx.run('intake', async ({ signal, progress }) => {
              runs++;
              ctx.setState('connected');
              progress();
              const either = AbortSignal.any([signal, ctx.signal]);
              await new Promise<void>((r) => (either.aborted ? r() : either.addEventListener('abort', () => r(), { once: true })));
            });
          },
          async stop() {
            await new Promise((r) => setTimeout(r, 200)); // a stop that takes a moment: the loop has ended by then
            await loop?.stop();
            ctx.setState('stopped');
          },
          health: () => ({ state: 'connected' as const, since: new Date().toISOString() }),
          async send() {
            return { platformMessageId: 'x' };
          },
        };
      },
    };
    const host = newHost(supervisor);
    await host.start([{ factory: calm, account: 'c1', options: {} }]);
    await until(() => watch.states.includes('connected'), 'the connector connected');
    await host.stop();
    await bus.nc.flush();
    expect(watch.states).not.toContain('stalled');
    expect(runs).toBe(1); // not run again while stopping
    watch.stop();
  });

  it('retries a connector whose start() fails with a fresh instance, reporting it truthfully meanwhile', async () => {
    const supervisor = new Supervisor(log);
    const routes = new Routes();
    const watch = await watchStates('sulky');
    let attempts = 0;
    let instances = 0;
    const stops: number[] = [];
    const sulky: ConnectorFactory<Record<string, never>> = {
      type: 'sulky-test', channel: 'sulky', options: z.object({}),
      create: (_o, ctx) => {
        const me = ++instances;
        return {
          async start() {
            // Mounts its route, then fails (a platform refusing at start) twice.
            ctx.http.route('POST', '/connectors/sulky/a1/in', async () => ({ status: 200, body: `instance ${me}` }));
            if (++attempts <= 2) throw new Error(`platform unreachable (attempt ${attempts})`);
            ctx.setState('connected');
          },
          async stop() {
            stops.push(me);
          },
          health: () => ({ state: 'connected' as const, since: new Date().toISOString() }),
          async send() {
            return { platformMessageId: 'x' };
          },
        };
      },
    };
    const host = newHost(supervisor, routes);
    await host.start([{ factory: sulky, account: 'a1', options: {}, required: true }]);
    // Right after the failed start: stalled, with the reason; the retry loop is not essential.
    const first = host.health()[0]!;
    expect(first.state).toBe('stalled');
    expect(first.detail).toContain('failed to start: platform unreachable (attempt 1)');
    expect(supervisor.statuses().find((l) => l.name === 'connector.sulky.a1.start')?.essential).toBe(false);

    await until(() => host.health()[0]!.state === 'connected', 'the third attempt started', 60_000);
    expect(attempts).toBe(3);
    expect(instances).toBe(3);
    // Each failed instance was stopped (what it left running must not linger).
    expect(stops).toEqual([1, 2]);
    // The route was mounted once and now reaches the instance that started.
    expect(routes.registrations).toBe(1);
    const res = await routes.handlers.get('POST /connectors/sulky/a1/in')!({ method: 'POST', path: '/', headers: {}, query: {}, params: {}, rawBody: Buffer.alloc(0) });
    expect(res.body).toBe('instance 3');
    await until(() => watch.states.includes('connected'), 'the published state');
    expect(watch.states[0]).toBe('stalled');

    await host.stop();
    expect(stops).toEqual([1, 2, 3]);
    expect(supervisor.statuses()).toEqual([]);
    watch.stop();
  });
});
