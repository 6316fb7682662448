/**
 * Auth and health: what is open (/healthz, /readyz, /metrics), what needs a token, read-only
 * tokens refused on every write (and nothing happens), connector routes mounted with
 * { auth: true } guarded by the same tokens, and no token or secret in any log line.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { HttpServer } from '../../src/api/server.js';
import { HelpdeskSurface } from '../../src/api/surface.js';
import { createLogger } from '../../src/core/logger.js';
import { ADMIN, READER, SITE_SECRET, post, startApiHarness, type ApiHarness } from './support.js';

let h: ApiHarness;
const WRONG = 'wrong-token-0123456789abcdef';
const WEBHOOK_SECRET = 'webhook-secret-0123456789';
const THROTTLE = { failures: 20, window: 60_000, trackedAddresses: 10_000 };

beforeAll(async () => {
  h = await startApiHarness({ webhooks: [{ name: 'crm', url: 'http://127.0.0.1:2/none', secret: WEBHOOK_SECRET, events: ['ticket.sla'] }] });
});
afterAll(async () => h?.stop());

describe('open endpoints', () => {
  it('serves /healthz, /readyz and /metrics without a token; /readyz with each connector state only to a token', async () => {
    const health = await h.api('/healthz', { token: null });
    expect(health).toMatchObject({ status: 200, body: { status: 'ok' } });
    expect(await h.api('/readyz', { token: null })).toMatchObject({ status: 200, body: { status: 'ready', reasons: [] } });
    const ready = await h.api('/readyz', { token: READER });
    expect(ready.status).toBe(200);
    expect(ready.body).toMatchObject({ status: 'ready', nats: { connected: true }, streams: 'ok' });
    expect(ready.body.connectors).toEqual([expect.objectContaining({ channel: 'webhook', account: 'site', state: 'connected' })]);
    const metrics = await fetch(`${h.gw.httpUrl}/metrics`);
    expect(metrics.status).toBe(200);
  });
});

describe('a locked /metrics', () => {
  it('answers only with a token when api.metricsRequireToken is set; health stays open', async () => {
    const log = createLogger({ level: 'silent' });
    const server = new HttpServer({ host: '127.0.0.1', port: 0, bodyLimit: 1024, metricsRequireToken: true, log, readiness: async () => ({ ready: true, checks: {} }) });
    const surface = new HelpdeskSurface(h.gw.gateway.bus, server, { api: { tokens: [{ name: 'ro', token: READER, readOnly: true }], metricsRequireToken: true, trustedProxies: [], accessLog: true, authThrottle: THROTTLE }, webhooks: [], media: { maxBytes: 1024 } }, null, log, { holder: 'metrics-test', ttlMs: 3000 });
    await surface.start();
    await server.listen();
    try {
      const base = `http://127.0.0.1:${server.port}`;
      expect((await fetch(`${base}/metrics`)).status).toBe(401);
      const scraped = await fetch(`${base}/metrics`, { headers: { authorization: `Bearer ${READER}` } });
      expect(scraped.status).toBe(200);
      expect(await scraped.text()).toContain('omnigate_events_in_total');
      expect((await fetch(`${base}/healthz`)).status).toBe(200);
    } finally {
      await surface.stop();
      await server.close();
    }
  });
});

describe('bearer tokens on /v1', () => {
  it('refuses no token, a malformed header and a wrong token with 401', async () => {
    for (const path of ['/v1/tickets', '/v1/tickets/T-1', '/v1/openapi.json', `/v1/attachments/sha256/${'a'.repeat(64)}`]) {
      const none = await h.api(path, { token: null });
      expect(none.status, path).toBe(401);
      expect(none.body.error.code).toBe('unauthorized');
      expect((await h.api(path, { token: WRONG })).status, path).toBe(401);
      expect((await h.api(path, { token: null, headers: { authorization: `Basic ${ADMIN}` } })).status, path).toBe(401);
    }
    for (const path of ['/v1/tickets/T-1/notes', '/v1/tickets/T-1/replies', '/v1/tickets/T-1/status']) {
      expect((await h.api(path, post({ text: 'x', status: 'closed' }, {}, null))).status, path).toBe(401);
    }
    // Refused before the body is read: a large upload without a token is not buffered first.
    const upload = await h.api('/v1/attachments?name=big.bin', { method: 'POST', body: Buffer.alloc(8 * 1024 * 1024), token: null });
    expect(upload.status).toBe(401);
  });

  it('lets a read-only token read and refuses it on every write, changing nothing', async () => {
    const id = await h.openTicket('ro-1');
    expect((await h.api(`/v1/tickets/${id}`, { token: READER })).status).toBe(200);
    expect((await h.api('/v1/tickets', { token: READER })).status).toBe(200);
    const writes: Array<[string, RequestInit]> = [
      [`/v1/tickets/${id}/replies`, post({ text: 'x' })],
      [`/v1/tickets/${id}/notes`, post({ text: 'x' })],
      [`/v1/tickets/${id}/status`, post({ status: 'closed' })],
      ['/v1/attachments?name=a.txt', { method: 'POST', body: Buffer.from('x') }],
    ];
    for (const [path, init] of writes) {
      const res = await h.api(path, { ...init, token: READER });
      expect(res.status, path).toBe(403);
      expect(res.body.error).toEqual({ code: 'forbidden', message: 'token "dashboards" is read-only' });
    }
    const after = await h.api(`/v1/tickets/${id}`);
    expect(after.body.ticket.status).toBe('new');
    expect(after.body.log.map((e: { kind: string }) => e.kind)).toEqual(['inbound']);
  });

  it('guards connector routes mounted with { auth: true } with the same tokens', async () => {
    const log = createLogger({ level: 'silent' });
    const server = new HttpServer({ host: '127.0.0.1', port: 0, bodyLimit: 1024, log, readiness: async () => ({ ready: true, checks: {} }) });
    server.route('GET', '/connectors/whatsapp/main/qr.png', async () => ({ status: 200, body: 'QR' }), { auth: true });
    server.route('POST', '/connectors/whatsapp/main/logout', async () => ({ status: 200, body: { ok: true } }), { auth: true });
    const surface = new HelpdeskSurface(h.gw.gateway.bus, server, { api: { metricsRequireToken: false, tokens: [{ name: 'ops', token: ADMIN, readOnly: false }, { name: 'ro', token: READER, readOnly: true }], trustedProxies: [], accessLog: true, authThrottle: THROTTLE }, webhooks: [], media: { maxBytes: 1024 } }, null, log, { holder: 'auth-test', ttlMs: 3000 });
    await surface.start();
    await server.listen();
    try {
      const url = `http://127.0.0.1:${server.port}/connectors/whatsapp/main`;
      const call = (path: string, method: string, token?: string) => fetch(`${url}${path}`, { method, headers: token ? { authorization: `Bearer ${token}` } : {} });
      const none = await call('/qr.png', 'GET');
      expect(none.status).toBe(401);
      expect(((await none.json()) as any).error.code).toBe('unauthorized');
      expect((await call('/qr.png', 'GET', WRONG)).status).toBe(401);
      expect(await (await call('/qr.png', 'GET', ADMIN)).text()).toBe('QR');
      expect((await call('/qr.png', 'GET', READER)).status).toBe(200);
      expect((await call('/logout', 'POST', READER)).status).toBe(403);
      expect((await call('/logout', 'POST', ADMIN)).status).toBe(200);
    } finally {
      await surface.stop();
      await server.close();
    }
  });

  it('throttles wrong tokens on connector routes and a locked /metrics too, with Retry-After', async () => {
    const log = createLogger({ level: 'silent' });
    const server = new HttpServer({ host: '127.0.0.1', port: 0, bodyLimit: 1024, metricsRequireToken: true, log, readiness: async () => ({ ready: true, checks: {} }) });
    server.route('GET', '/connectors/whatsapp/main/qr.png', async () => ({ status: 200, body: 'QR' }), { auth: true });
    const surface = new HelpdeskSurface(h.gw.gateway.bus, server, { api: { metricsRequireToken: true, tokens: [{ name: 'ops', token: ADMIN, readOnly: false }], trustedProxies: [], accessLog: true, authThrottle: { failures: 2, window: 60_000, trackedAddresses: 100 } }, webhooks: [], media: { maxBytes: 1024 } }, null, log, { holder: 'throttle-test', ttlMs: 3000 });
    await surface.start();
    await server.listen();
    try {
      const get = (path: string, token: string) => fetch(`http://127.0.0.1:${server.port}${path}`, { headers: { authorization: `Bearer ${token}` } });
      expect((await get('/connectors/whatsapp/main/qr.png', WRONG)).status).toBe(401);
      expect((await get('/metrics', WRONG)).status).toBe(401);
      for (const path of ['/connectors/whatsapp/main/qr.png', '/metrics']) {
        const res = await get(path, ADMIN);
        expect(res.status, path).toBe(429);
        expect(Number(res.headers.get('retry-after')), path).toBeGreaterThan(50);
        expect(((await res.json()) as { error: { code: string } }).error.code, path).toBe('too_many_auth_failures');
      }
    } finally {
      await surface.stop();
      await server.close();
    }
  });

  it('never logs a token or a secret', async () => {
    await h.api('/v1/tickets', { token: WRONG });
    await h.api('/v1/tickets/T-1/notes', post({ text: 'x' }, {}, READER));
    const logs = h.gw.logs.join('');
    expect(logs.length).toBeGreaterThan(0);
    for (const secret of [ADMIN, READER, WRONG, SITE_SECRET, WEBHOOK_SECRET]) expect(logs).not.toContain(secret);
  });
});
