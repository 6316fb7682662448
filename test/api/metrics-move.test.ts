/**
 * Every metric docs/api.md lists is made to move by something that really happens, seen through
 * /metrics as a scraper sees it: counters and histograms grow, gauges get a new value. And the
 * table is complete: an omnigate_ metric the process exposes but the docs do not list fails here.
 * Dead letters are counted for every source (router, connector, outbound, webhook, loop guard),
 * duplicates and loop-guard drops with their channel, wherever they are dropped.
 */
import { readFileSync } from 'node:fs';
import { createServer, type ServerResponse, type Server } from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ConnectorHost } from '../../src/connectors/host.js';
import type { ConnectorFactory } from '../../src/connectors/contract.js';
import { chatMessage, publishEvent } from '../helpers/events.js';
import { parsePrometheus, type Family } from './prometheus.js';
import { post, SITE_SECRET, startApiHarness, until, type ApiHarness } from './support.js';
import { z } from 'zod';

const documented = [...readFileSync(new URL('../../docs/api.md', import.meta.url), 'utf8').matchAll(/^\| `(omnigate_[a-z_]+)` \|/gm)].map((m) => m[1]!);

let h: ApiHarness;
const servers: Server[] = [];
const hanging: ServerResponse[] = [];
let start: Map<string, Family>;

async function receiver(answer: (res: ServerResponse) => void): Promise<string> {
  const s = createServer((req, res) => {
    req.resume();
    req.on('end', () => answer(res));
  });
  servers.push(s);
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  return `http://127.0.0.1:${(s.address() as { port: number }).port}/hook`;
}

async function scrape(): Promise<Map<string, Family>> {
  const res = await fetch(`${h.gw.httpUrl}/metrics`);
  return parsePrometheus(await res.text());
}

/** Series of one family as `labels → value` (histograms by their _count). */
function series(f: Family | undefined): Map<string, number> {
  const out = new Map<string, number>();
  for (const s of f?.samples ?? []) {
    if (f!.type === 'histogram' && !s.name.endsWith('_count')) continue;
    out.set(JSON.stringify(s.labels), s.value);
  }
  return out;
}
const total = (f: Family | undefined, labels: Record<string, string> = {}) =>
  (f?.samples ?? []).filter((s) => (f!.type !== 'histogram' || s.name.endsWith('_count')) && Object.entries(labels).every(([k, v]) => s.labels[k] === v)).reduce((a, s) => a + s.value, 0);

beforeAll(async () => {
  const refusing = await receiver((res) => res.writeHead(503).end());
  const slow = await receiver((res) => void hanging.push(res)); // answers only at the end: its event stays in flight
  h = await startApiHarness({
    webhooks: [
      { name: 'crm', url: refusing, secret: 'crm-secret-0123456789', backoffBase: '20ms', backoffMax: '50ms', retryFor: '500ms' },
      { name: 'slow', url: slow, secret: 'slow-secret-0123456789', timeout: '60s' },
    ],
    router: { sla: { enabled: true, firstResponse: '1s', noAnswer: '1s', businessHours: null, checkInterval: '200ms' } },
    // Small enough that a flood of bad bodies on one account goes over it.
    deadLetters: { perMinute: 1, burst: 3 },
  });
  start = await scrape();
});
afterAll(async () => {
  for (const r of hanging) r.writeHead(204).end();
  await h?.stop();
  for (const s of servers) s.close();
});

describe('every documented metric', () => {
  it('moves when what it counts happens', async () => {
    const gw = h.gw;
    // Tickets in, a reply out, a reply refused, a status change.
    const a = await h.openTicket('move-1');
    const b = await h.openTicket('move-2');
    await h.api(`/v1/tickets/${a}/replies`, post({ text: 'Готово' }));
    h.callbackStatus = (reply) => (reply.text === 'отказ' ? 400 : 200);
    await h.api(`/v1/tickets/${b}/replies`, post({ text: 'отказ' }));
    await h.api(`/v1/tickets/${b}/status`, post({ status: 'closed' }));
    await gw.waitForEvent((e) => e.type === 'ticket.delivery' && e.ticketId === b && (e.entry as any).status.status === 'failed');
    await gw.waitForEvent((e) => e.type === 'ticket.delivery' && e.ticketId === a && (e.entry as any).status.status === 'sent');

    // The same webhook-channel message twice: the connector publishes a copy JetStream drops.
    const repeat = () => fetch(`${gw.httpUrl}/connectors/webhook/site/messages`, {
      method: 'POST', headers: { authorization: `Bearer ${SITE_SECRET}` },
      body: JSON.stringify({ messageId: 'move-1', sender: { id: 'move-1@example.ru', email: 'move-1@example.ru' }, text: 'Касса не печатает чек' }),
    });
    expect((await repeat()).status).toBe(202);
    // An event whose time the sender stamped, published twice without dedup: the router's marker drops the copy.
    const stamped = chatMessage({ chat: 'move-marker', sentAtBy: 'sender' });
    await publishEvent(gw.nc, stamped, { msgID: false });
    await gw.waitForEvent((e) => e.type === 'ticket.message' && (e.entry as any).event.id === stamped.id);
    await publishEvent(gw.nc, stamped, { msgID: false });

    // Refusals from every source.
    await gw.nc.request('$JS.API.INFO'); // round trip: publishes above are out
    await (await import('@nats-io/jetstream')).jetstream(gw.nc).publish('omni.in.webhook.site', 'not json'); // router
    for (let i = 0; i < 5; i++) {
      // connector: a flood of bad bodies, over the account's limit of 3
      await fetch(`${gw.httpUrl}/connectors/webhook/site/messages`, { method: 'POST', headers: { authorization: `Bearer ${SITE_SECRET}` }, body: `{bad ${i}` });
    }
    await publishEvent(gw.nc, Object.assign(chatMessage({ chat: 'move-auto' }), { automated: 'auto-reply' as const })); // loop guard

    // A connector that drops its own echo and gets a duplicate from JetStream.
    const host = new ConnectorHost({
      bus: gw.gateway.bus, log: (gw.gateway as any).deps.log, http: gw.gateway.http, mediaMaxBytes: 1024, leaseTtlMs: 3000,
      outbound: { maxAttempts: 1, backoffBaseMs: 10, backoffMaxMs: 10, ackWaitMs: 30_000, concurrency: 1 },
    });
    const echo: ConnectorFactory<Record<string, never>> = {
      type: 'echo-test', channel: 'echo', options: z.object({}),
      create: (_o, ctx) => ({
        async start() {
          ctx.dropped('loop_guard', 'our own message');
          const e = { type: 'message.inbound' as const, id: 'echo:one:1', conversation: { id: 'c1', kind: 'private' as const }, sender: { id: 'u1', handles: {} }, text: 'hi', format: 'plain' as const, attachments: [], parts: [], platform: { messageId: '1' } };
          await ctx.publish(e);
          await ctx.publish(e);
          ctx.setState('connected');
        },
        async stop() {},
        health: () => ({ state: 'connected' as const, since: new Date().toISOString() }),
        async send() {
          return { platformMessageId: 'never' };
        },
      }),
    };
    await host.start([{ factory: echo, account: 'one', options: {} }]);
    await host.stop();

    // One routing attempt fails and is retried.
    const store = gw.gateway.router!.store;
    const apply = store.apply.bind(store);
    let failed = false;
    store.apply = (async (...args: Parameters<typeof apply>) => {
      if (!failed) {
        failed = true;
        throw new Error('injected: NATS timeout');
      }
      return apply(...args);
    }) as typeof store.apply;
    const retried = chatMessage({ chat: 'move-retry' });
    await publishEvent(gw.nc, retried);
    await gw.waitForEvent((e) => e.type === 'ticket.message' && (e.entry as any).event.id === retried.id, 20_000);
    store.apply = apply;

    let m = start;
    await until(async () => {
      await gw.gateway.sampleNow();
      m = await scrape();
      return (
        total(m.get('omnigate_webhook_parked_total')) >= 1 &&
        total(m.get('omnigate_sla_breaches_total')) >= 1 &&
        total(m.get('omnigate_consumer_lag'), { consumer: 'webhook:slow' }) >= 1 &&
        total(m.get('omnigate_dead_letters_total'), { source: 'loop-guard' }) >= 1 &&
        total(m.get('omnigate_duplicate_events_total'), { channel: 'webhook' }) >= 2
      );
    }, 'the webhook park, an SLA breach, the slow webhook in flight, the loop guard and both duplicates', 30_000);

    // Each documented metric moved.
    const still: string[] = [];
    for (const name of documented) {
      const before = series(start.get(name));
      const after = series(m.get(name));
      const moved = [...after].some(([k, v]) => before.get(k) !== v && (before.has(k) || v !== 0 || m.get(name)!.type === 'gauge'));
      if (!moved) still.push(name);
    }
    expect(still, 'documented metrics that did not move').toEqual([]);

    // Every source counts its refusals, with a reason; duplicates and loop-guard drops with the channel.
    for (const source of ['router', 'connector', 'outbound', 'webhook', 'loop-guard']) {
      expect(total(m.get('omnigate_dead_letters_total'), { source }), source).toBeGreaterThanOrEqual(1);
    }
    expect(total(m.get('omnigate_dead_letters_total'), { source: 'connector', reason: 'invalid_payload' })).toBe(5);
    expect(total(m.get('omnigate_dead_letters_total'), { source: 'outbound', reason: 'http_400' })).toBe(1);
    expect(total(m.get('omnigate_dead_letters_total'), { source: 'router', reason: 'invalid_json' })).toBe(1);
    expect(total(m.get('omnigate_dead_letters_total'), { source: 'webhook', reason: 'retries_exhausted' })).toBeGreaterThanOrEqual(1);
    expect(total(m.get('omnigate_dead_letters_total'), { source: 'loop-guard', reason: 'auto-reply' })).toBe(1);
    expect(total(m.get('omnigate_dead_letters_suppressed_total'), { source: 'connector' })).toBe(2);
    expect(total(m.get('omnigate_duplicate_events_total'), { channel: 'echo' })).toBe(1);
    expect(total(m.get('omnigate_loop_guard_total'), { channel: 'echo' })).toBe(1);
    expect(total(m.get('omnigate_loop_guard_total'), { channel: 'webhook' })).toBe(1);
    expect(total(m.get('omnigate_dead_letter_bytes'))).toBeGreaterThan(0);
  });

  it('are all the omnigate_ metrics there are', async () => {
    const exposed = [...(await scrape()).keys()].filter((n) => n.startsWith('omnigate_'));
    expect(exposed.filter((n) => !documented.includes(n)), 'exposed but not in docs/api.md').toEqual([]);
    expect(documented.filter((n) => !exposed.includes(n)), 'in docs/api.md but not exposed').toEqual([]);
  });
});
