/**
 * /metrics as a scraper sees it: the whole exposition parsed by a strict Prometheus text-format
 * parser, the conventional names with their labels, and values that follow what happened
 * (events in and out, delivery failures by reason, webhook retries, consumer lag, tickets by status).
 */
import { createServer, type Server } from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parsePrometheus, type Family } from './prometheus.js';
import { post, startApiHarness, until, type ApiHarness } from './support.js';

let h: ApiHarness;
let receiver: Server;
let refuseNext = 1;

beforeAll(async () => {
  // A helpdesk webhook that refuses its first delivery: one retry to count.
  receiver = createServer((req, res) => {
    req.resume();
    req.on('end', () => res.writeHead(refuseNext-- > 0 ? 503 : 204).end());
  });
  await new Promise<void>((r) => receiver.listen(0, '127.0.0.1', r));
  const port = (receiver.address() as { port: number }).port;
  h = await startApiHarness({ webhooks: [{ name: 'crm', url: `http://127.0.0.1:${port}/hook`, secret: 'crm-secret-0123456789', backoffBase: '20ms', backoffMax: '50ms' }] });
});
afterAll(async () => {
  await h?.stop();
  receiver?.close();
});

async function scrape(): Promise<Map<string, Family>> {
  const res = await fetch(`${h.gw.httpUrl}/metrics`);
  expect(res.headers.get('content-type')).toMatch(/^text\/plain; version=0\.0\.4/);
  return parsePrometheus(await res.text());
}
/** The value of one series: `name` is the sample name (e.g. a histogram's _count), its family found by prefix. */
const value = (f: Map<string, Family>, name: string, labels: Record<string, string>) =>
  [...f.entries()]
    .filter(([family]) => name.startsWith(family))
    .flatMap(([, fam]) => fam.samples)
    .find((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v))?.value;

describe('the strict parser', () => {
  it('rejects malformed expositions', () => {
    const ok = '# TYPE a_total counter\na_total{x="1"} 2\n';
    expect(parsePrometheus(ok).get('a_total')!.samples[0]).toEqual({ name: 'a_total', labels: { x: '1' }, value: 2 });
    for (const bad of [
      'a_total 1\n', // no TYPE
      '# TYPE a gauge\na{x="1} 2\n', // unterminated label
      '# TYPE a gauge\na 1,5\n', // bad value
      '# TYPE a gauge\na 1\na 2\n', // series twice
      '# TYPE a gauge\n# TYPE a gauge\n', // typed twice
      '# TYPE h histogram\nh_bucket{le="1"} 2\nh_bucket{le="+Inf"} 1\nh_count 1\n', // not cumulative
      '# TYPE h histogram\nh_bucket{le="1"} 1\nh_count 1\n', // no +Inf
      '# TYPE a gauge\na 1', // no final newline
    ]) expect(() => parsePrometheus(bad), bad).toThrow();
  });
});

describe('/metrics', () => {
  it('parses whole, with conventional names, and follows what happened', async () => {
    const ids = [await h.openTicket('m-1'), await h.openTicket('m-2'), await h.openTicket('m-3')];
    await h.api(`/v1/tickets/${ids[0]}/replies`, post({ text: 'Готово' }));
    h.callbackStatus = (reply) => (reply.text === 'отказ' ? 400 : 200);
    await h.api(`/v1/tickets/${ids[1]}/replies`, post({ text: 'отказ' }));
    await h.api(`/v1/tickets/${ids[2]}/status`, post({ status: 'closed' }));
    await h.gw.waitForEvent((e) => e.type === 'ticket.delivery' && e.ticketId === ids[1] && (e.entry as any).status.status === 'failed');
    await h.gw.waitForEvent((e) => e.type === 'ticket.delivery' && e.ticketId === ids[0]);

    let m = await scrape();
    await until(async () => {
      m = await scrape();
      return value(m, 'omnigate_tickets', { status: 'closed' }) === 1 && (value(m, 'omnigate_webhook_retries_total', { webhook: 'crm' }) ?? 0) >= 1;
    }, 'the tickets gauge and the webhook retry', 90_000); // status counts come from the read model, recounted at most every 15 s, after PGlite opened
    await h.gw.gateway.sampleNow();
    m = await scrape();

    for (const [name, f] of m) {
      expect(f.help, `${name} has HELP`).toBeTruthy();
      if (name.startsWith('omnigate_') && f.type === 'counter') expect(name).toMatch(/_total$/);
      if (f.type === 'histogram' && name.startsWith('omnigate_')) expect(name).toMatch(/_seconds$/);
    }
    expect(m.get('omnigate_events_in_total')!.type).toBe('counter');
    expect(value(m, 'omnigate_events_in_total', { channel: 'webhook', account: 'site' })).toBe(3);
    expect(value(m, 'omnigate_events_out_total', { channel: 'webhook', account: 'site' })).toBe(1);
    expect(value(m, 'omnigate_delivery_failures_total', { channel: 'webhook', account: 'site', reason: 'http_400' })).toBe(1);
    expect(m.get('omnigate_routing_latency_seconds')!.type).toBe('histogram');
    expect(value(m, 'omnigate_routing_latency_seconds_count', { channel: 'webhook' })).toBe(3);
    // The refused reply ('отказ') failed for good: that ticket is back to open, not pending.
    expect(value(m, 'omnigate_tickets', { status: 'pending' })).toBe(1);
    expect(value(m, 'omnigate_tickets', { status: 'open' })).toBe(1);
    expect(value(m, 'omnigate_tickets', { status: 'closed' })).toBe(1);
    expect(value(m, 'omnigate_tickets', { status: 'new' })).toBe(0);
    expect(m.get('omnigate_consumer_lag')!.type).toBe('gauge');
    expect(value(m, 'omnigate_consumer_lag', { consumer: 'router' })).toBe(0);
    expect(value(m, 'omnigate_consumer_lag', { consumer: 'webhook:crm' })).toBeGreaterThanOrEqual(0);
    expect(value(m, 'omnigate_webhook_retries_total', { webhook: 'crm' })).toBeGreaterThanOrEqual(1);
    expect(value(m, 'omnigate_connector_up', { channel: 'webhook', account: 'site' })).toBe(1);
    expect(value(m, 'omnigate_connector_state', { channel: 'webhook', account: 'site', state: 'connected' })).toBe(1);
    expect(value(m, 'omnigate_connector_state', { channel: 'webhook', account: 'site', state: 'auth_failed' })).toBe(0);
    expect(m.get('process_cpu_seconds_total')!.type).toBe('counter');
    expect(m.get('nodejs_heap_size_used_bytes')!.type).toBe('gauge');
  });
});
