/**
 * Every metric docs/api.md lists is made to move by something that really happens, seen through
 * /metrics as a scraper sees it: counters and histograms grow, gauges get a new value. And the
 * table is complete: an omnigate_ metric the process exposes but the docs do not list fails here.
 * Dead letters are counted for every source (router, connector, outbound, webhook, loop guard),
 * duplicates and loop-guard drops with their channel, wherever they are dropped.
 *
 * The gauges are sampled as soon as the gateway starts, so a gauge "moves" only when its value
 * really changes: a Telegram connector stands by for a lease another replica holds and takes over
 * when that replica lets go (up, state, standby expiry); an SLA breach is escalated to the lead's
 * chat (escalations); an SLA pass fails (lifecycle errors); another replica takes the SLA lease
 * (a loop restart); a second connector host, with a required connector and its outbound loop
 * under the gateway's supervisor, starts after the first scrape (required, loop state).
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
import { Kvm } from '@nats-io/kv';
import { connect } from '@nats-io/transport-node';
import { StorageType } from '@nats-io/jetstream';
import { FakeBotApi } from '../connectors/telegram/bot-api.js';
import { startNats, type TestNats } from '../helpers/nats-server.js';
import { sampleConnectors } from '../../src/probes.js';

const TG_TOKEN = '123456:MOVE-token-abcdefghijklmnop';

const documented = [...readFileSync(new URL('../../docs/api.md', import.meta.url), 'utf8').matchAll(/^\| `(omnigate_[a-z_]+)` \|/gm)].map((m) => m[1]!);
/** Documented metrics whose cause this gateway does not run (no helpdesk, no projection lag): proven where it runs. */
const PROVEN_ELSEWHERE: Record<string, string> = {
  omnigate_helpdesk_events_total: 'test/helpdesks/zammad.test.ts',
  omnigate_helpdesk_retries_total: 'test/helpdesks/zammad.test.ts',
  omnigate_helpdesk_answers_total: 'test/helpdesks/zammad.test.ts',
  omnigate_helpdesk_sync_seconds: 'test/helpdesks/zammad.test.ts',
  omnigate_helpdesk_state: 'test/helpdesks/zammad.test.ts',
  omnigate_read_model_lag: 'test/read-model/crash.test.ts',
  // Needs a loop with work waiting that cannot move (a bucket without quorum): a cluster of its own.
  omnigate_loop_stalled: 'test/cluster/stalled-routing.test.ts, test/core/stall-clock.test.ts',
  // Needs a publish on a subject no router reads, and a sweep.
  omnigate_inbound_strays_total: 'test/router/strays.test.ts',
  // Needs messages of one conversation queued behind a routing in progress: held there deterministically.
  omnigate_coalesced_messages_total: 'test/router/coalescing.test.ts',
  // Needs a stdout nobody reads and 16 MB of log lines: a child process of its own.
  omnigate_log_lines_dropped_total: 'test/core/logger-stdout.test.ts',
  // Needs the embedded server and a volume that fills up: a tmpfs of its own.
  omnigate_embedded_nats_restarts_total: 'test/core/embedded-disk-full.test.ts',
  // Needs one client address past api.authThrottle (20 wrong tokens by default), which would 429 the rest of this file's API calls.
  omnigate_api_auth_failures_total: 'test/api/auth-throttle.test.ts',
};

let h: ApiHarness;
const servers: Server[] = [];
const hanging: ServerResponse[] = [];
let start: Map<string, Family>;
let nats: TestNats;
let botApi: FakeBotApi;
/** The other replica that holds the Telegram polling lease until the test lets it go. */
let otherReplica: { release(): Promise<void> } | undefined;

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
  nats = await startNats();
  botApi = new FakeBotApi(TG_TOKEN);
  await botApi.start();
  // Another replica polls the bot: it holds the lease (renewed, as a live holder does) when this gateway starts.
  otherReplica = await holdLease('telegram.shared.polling');
  h = await startApiHarness({
    webhooks: [
      { name: 'crm', url: refusing, secret: 'crm-secret-0123456789', backoffBase: '20ms', backoffMax: '50ms', retryFor: '500ms' },
      { name: 'slow', url: slow, secret: 'slow-secret-0123456789', timeout: '60s' },
    ],
    // Breaches are escalated to the lead's chat on the webhook channel (delivered to the harness's callback).
    router: { sla: { enabled: true, firstResponse: '1s', noAnswer: '1s', businessHours: null, checkInterval: '200ms', escalate: { channel: 'webhook', account: 'site', conversationId: 'lead-chat' } } },
    // Small enough that a flood of bad bodies on one account goes over it.
    deadLetters: { perMinute: 1, burst: 3 },
  }, { nats, env: { TG_TOKEN }, moreConnectors: [{ type: 'telegram', account: 'shared', token: '${TG_TOKEN}', apiRoot: botApi.apiRoot, pollTimeoutS: 1 }] });
  // The first scrape sees the Telegram connector standing by (its gauges say so), not yet starting.
  await until(async () => {
    await h.gw.gateway.sampleNow();
    const m = await scrape();
    return total(m.get('omnigate_connector_state'), { channel: 'telegram', account: 'shared', state: 'standby' }) === 1 && total(m.get('omnigate_connector_standby_until_timestamp_seconds'), { channel: 'telegram' }) > 0;
  }, 'the Telegram connector standing by', 30_000);
  start = await scrape();
});
afterAll(async () => {
  for (const r of hanging) r.writeHead(204).end();
  await otherReplica?.release();
  await h?.stop();
  for (const s of servers) s.close();
  await botApi?.stop();
  await nats?.stop();
});

/**
 * A lease as another replica holds it: created in the gateway's lease bucket (same settings as
 * it provisions: history 1, the 3 s TTL the test gateway runs with) and renewed until released.
 */
async function holdLease(key: string): Promise<{ release(): Promise<void> }> {
  const nc = await connect({ servers: nats.url });
  const kv = await new Kvm(nc).create('omni_leases', { replicas: 1, storage: StorageType.File, history: 1, ttl: 3000 });
  await kv.put(key, 'other-replica-1234');
  let renewing = Promise.resolve();
  let renewFailed: unknown;
  const timer = setInterval(() => {
    renewing = renewing.then(() => kv.put(key, 'other-replica-1234')).then(() => undefined, (err: unknown) => void (renewFailed ??= err));
  }, 500);
  let released = false;
  return {
    async release() {
      if (released) return;
      released = true;
      clearInterval(timer);
      await renewing;
      await kv.delete(key);
      await nc.drain();
      // A renewal that failed would have let the lease lapse: the scenario would not be the one described.
      if (renewFailed) throw renewFailed;
    },
  };
}

describe('every documented metric', () => {
  it('moves when what it counts happens', async () => {
    const gw = h.gw;
    let m = start;
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
    // A second host in this process, its outbound loop under the gateway's supervisor; its gauges
    // are sampled the way the gateway samples its own host.
    const host = new ConnectorHost({
      bus: gw.gateway.bus, log: (gw.gateway as any).deps.log, http: gw.gateway.http, mediaMaxBytes: 1024, leaseTtlMs: 3000, supervisor: gw.gateway.loops,
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
    await host.start([{ factory: echo, account: 'one', options: {}, required: true }]);
    sampleConnectors(host.health());

    // One SLA pass fails (the loop goes on); a breach is escalated to the lead and delivered.
    const timers = (gw.gateway.sla as any).sla as { scan: (...a: unknown[]) => Promise<number> };
    const scan = timers.scan.bind(timers);
    let scanFailed = false;
    timers.scan = async (...args) => {
      if (!scanFailed) {
        scanFailed = true;
        throw new Error('injected: tickets not listed');
      }
      return scan(...args);
    };
    await until(async () => {
      m = await scrape();
      return total(m.get('omnigate_lifecycle_errors_total'), { loop: 'sla' }) >= 1 && total(m.get('omnigate_escalations_total'), { outcome: 'delivered' }) >= 1;
    }, 'a failed SLA pass and an escalation delivered', 30_000);
    timers.scan = scan;
    expect(h.sent.some((r) => JSON.stringify(r).includes('lead-chat'))).toBe(true);

    // Another replica takes the SLA lease: this one's lifecycle loop loses its term and restarts.
    const stolen = await holdLease('router.sla');
    await until(async () => {
      m = await scrape();
      return total(m.get('omnigate_loop_restarts_total'), { loop: 'router.lifecycle' }) >= 1;
    }, 'the lifecycle loop restarting after its lease was taken', 30_000);
    await stolen.release();

    // The replica polling Telegram lets go: this one takes over from standby.
    await otherReplica!.release();
    // A channel post is no conversation: the connector skips it and counts why.
    botApi.push({ channel_post: { message_id: 1, date: Math.floor(Date.now() / 1000), chat: { id: -1001, type: 'channel', title: 'Новости' }, text: 'Анонс' } });

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

    await until(async () => {
      await gw.gateway.sampleNow();
      m = await scrape();
      return (
        total(m.get('omnigate_webhook_parked_total')) >= 1 &&
        total(m.get('omnigate_sla_breaches_total')) >= 1 &&
        total(m.get('omnigate_consumer_lag'), { consumer: 'webhook:slow' }) >= 1 &&
        total(m.get('omnigate_dead_letters_total'), { source: 'loop-guard' }) >= 1 &&
        total(m.get('omnigate_duplicate_events_total'), { channel: 'webhook' }) >= 2 &&
        total(m.get('omnigate_connector_up'), { channel: 'telegram', account: 'shared' }) === 1 &&
        total(m.get('omnigate_skipped_updates_total'), { channel: 'telegram' }) >= 1
      );
    }, 'the webhook park, an SLA breach, the slow webhook in flight, the loop guard, both duplicates, the Telegram takeover and a skipped channel post', 30_000);
    await host.stop();

    // The standby replica took over: up, connected, no standby expiry.
    const tg = { channel: 'telegram', account: 'shared' };
    expect(total(start.get('omnigate_connector_up'), tg)).toBe(0);
    expect(total(m.get('omnigate_connector_state'), { ...tg, state: 'connected' })).toBe(1);
    expect(total(m.get('omnigate_connector_standby_until_timestamp_seconds'), tg)).toBe(0);
    expect(total(m.get('omnigate_connector_required'), { channel: 'echo', account: 'one' })).toBe(1);

    // Each documented metric moved.
    const still: string[] = [];
    for (const name of documented) {
      const before = series(start.get(name));
      const after = series(m.get(name));
      const moved = [...after].some(([k, v]) => before.get(k) !== v && (before.has(k) || v !== 0 || m.get(name)!.type === 'gauge'));
      if (!moved) still.push(name);
    }
    expect(still.filter((n) => !PROVEN_ELSEWHERE[n]), 'documented metrics that did not move').toEqual([]);

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
