/**
 * Wrong API tokens are throttled per client address (api.authThrottle), through the real HTTP
 * server: requests come from distinct loopback addresses (127.0.0.x, all local on Linux) so one
 * address's failures can be seen not to touch another's.
 */
import { request } from 'node:http';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { AuthThrottle, clientKey } from '../../src/api/auth-throttle.js';
import { clientAddress, setTrustedProxies } from '../../src/api/client-address.js';
import { isIpOrRange } from '../../src/core/ip-range.js';
import { GatewayConfig } from '../../src/core/config-schema.js';
import { createLogger } from '../../src/core/logger.js';
import { sleep } from '../../src/core/sleep.js';
import { parsePrometheus } from './prometheus.js';
import { ADMIN, READER, SITE_SECRET, startApiHarness, type ApiHarness } from './support.js';

const WRONG = 'wrong-token-0123456789abcdef';
const FAILURES = 3;
const WINDOW_MS = 2000;
let h: ApiHarness;

beforeAll(async () => {
  h = await startApiHarness({
    api: {
      tokens: [{ name: 'helpdesk', token: ADMIN }, { name: 'dashboards', token: READER, readOnly: true }],
      authThrottle: { failures: FAILURES, window: `${WINDOW_MS}ms` },
    },
  });
});
afterAll(async () => h?.stop());

type Answer = { status: number; retryAfter?: string; body: any };

/** One HTTP request to the gateway from `from` (a loopback address); the answer's body parsed when JSON. */
function send(from: string, method: string, path: string, headers: Record<string, string>, body?: string): Promise<Answer> {
  const url = new URL(path, h.gw.httpUrl);
  return new Promise((resolve, reject) => {
    const req = request({ host: url.hostname, port: url.port, path: url.pathname, method, localAddress: from, headers }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString('utf8');
        resolve({ status: res.statusCode!, retryAfter: res.headers['retry-after'], body: text.startsWith('{') ? JSON.parse(text) : text });
      });
    });
    req.on('error', reject);
    req.end(body);
  });
}

/** One request from `from`; token null: no Authorization header. */
function call(from: string, path: string, token: string | null, method = 'GET'): Promise<Answer> {
  return send(from, method, path, token === null ? {} : { authorization: `Bearer ${token}` });
}

/** A web-form post (the webhook channel) from `from`; `secret` null: no Authorization header. */
function post(from: string, messageId: string, secret: string | null, headers: Record<string, string> = {}): Promise<Answer> {
  const body = JSON.stringify({ messageId, sender: { id: `${messageId}@example.ru`, name: 'Ирина' }, text: 'Не приходит код подтверждения' });
  return send(from, 'POST', '/connectors/webhook/site/messages', { 'content-type': 'application/json', ...(secret === null ? {} : { authorization: `Bearer ${secret}` }), ...headers }, body);
}

async function failureCounts(): Promise<Record<string, number>> {
  const text = await (await fetch(`${h.gw.httpUrl}/metrics`)).text();
  const family = parsePrometheus(text).get('omnigate_api_auth_failures_total');
  return Object.fromEntries((family?.samples ?? []).map((s) => [s.labels.outcome!, s.value]));
}

describe('failed-authentication throttle', () => {
  it('refuses an address with 429 and Retry-After after too many wrong tokens, even with a valid one, until the window passes; other addresses are untouched', async () => {
    const before = await failureCounts();
    expect(before).toEqual({ refused: expect.any(Number), throttled: expect.any(Number) });
    for (let i = 0; i < FAILURES; i++) expect((await call('127.0.0.2', '/v1/tickets', WRONG)).status).toBe(401);

    const refused = await call('127.0.0.2', '/v1/tickets', ADMIN);
    expect(refused.status).toBe(429);
    expect(Number(refused.retryAfter)).toBeGreaterThanOrEqual(1);
    expect(Number(refused.retryAfter)).toBeLessThanOrEqual(WINDOW_MS / 1000);
    expect(refused.body.error).toMatchObject({ code: 'too_many_auth_failures', message: expect.stringContaining('too many wrong tokens') });
    // Every token route of the server: the console's session, the admin-only erasure.
    expect((await call('127.0.0.2', '/v1/session', ADMIN)).status).toBe(429);
    expect((await call('127.0.0.2', '/v1/contacts/c_1/erase', ADMIN, 'POST')).status).toBe(429);

    // Another address: its own count; its successful sign-in does not free the first one.
    expect((await call('127.0.0.3', '/v1/tickets', WRONG)).status).toBe(401);
    expect((await call('127.0.0.3', '/v1/session', READER)).status).toBe(200);
    expect((await call('127.0.0.2', '/v1/tickets', ADMIN)).status).toBe(429);

    const after = await failureCounts();
    expect(after.refused! - before.refused!).toBe(FAILURES + 1);
    expect(after.throttled! - before.throttled!).toBe(4);

    // Warned once for the address, and no token in any log line.
    const logs = h.gw.logs.join('');
    expect(logs.split('authentication throttled: too many wrong').length - 1).toBe(1);
    expect(logs).toContain('"client":"127.0.0.2"');
    for (const token of [ADMIN, READER, WRONG]) expect(logs).not.toContain(token);

    await sleep(WINDOW_MS + 100);
    expect((await call('127.0.0.2', '/v1/tickets', ADMIN)).status).toBe(200);
    // A fresh window: as many tries as before.
    for (let i = 0; i < FAILURES; i++) expect((await call('127.0.0.2', '/v1/tickets', WRONG)).status).toBe(401);
    expect((await call('127.0.0.2', '/v1/tickets', WRONG)).status).toBe(429);
  }, 30_000);

  it('throttles the web-form channel\'s own secret with the same counts: 429 and Retry-After even with the right secret, other addresses untouched', async () => {
    const WRONG_SECRET = 'wrong-site-secret-0123456789';
    const before = await failureCounts();
    for (let i = 0; i < FAILURES; i++) expect((await post('127.0.0.5', `guess-${i}`, WRONG_SECRET)).status).toBe(401);

    const refused = await post('127.0.0.5', 'right-after-guesses', SITE_SECRET);
    expect(refused.status).toBe(429);
    expect(Number(refused.retryAfter)).toBeGreaterThanOrEqual(1);
    expect(Number(refused.retryAfter)).toBeLessThanOrEqual(WINDOW_MS / 1000);
    // The channel route's own (flat) error shape, naming the setting.
    expect(refused.body).toMatchObject({ error: 'too_many_auth_failures', message: expect.stringContaining('api.authThrottle') });
    // One count per address: the guesser's API calls are refused too.
    expect((await call('127.0.0.5', '/v1/tickets', ADMIN)).status).toBe(429);
    // Another address posts as usual.
    expect((await post('127.0.0.6', 'other-address', SITE_SECRET)).status).toBe(202);

    const after = await failureCounts();
    expect(after.refused! - before.refused!).toBe(FAILURES);
    expect(after.throttled! - before.throttled!).toBe(2);
    const logs = h.gw.logs.join('');
    expect(logs).toContain('"client":"127.0.0.5"');
    for (const secret of [SITE_SECRET, WRONG_SECRET]) expect(logs).not.toContain(secret);

    // A post without any credential is not a guess.
    for (let i = 0; i < FAILURES * 2; i++) expect((await post('127.0.0.7', `bare-${i}`, null)).status).toBe(401);
    expect((await post('127.0.0.7', 'bare-then-right', SITE_SECRET)).status).toBe(202);

    await sleep(WINDOW_MS + 100);
    expect((await post('127.0.0.5', 'after-the-window', SITE_SECRET)).status).toBe(202);
  }, 30_000);

  it('counts web-form posts through a trusted proxy by the client in X-Forwarded-For', async () => {
    setTrustedProxies(['127.0.0.8']);
    try {
      const via = (client: string) => ({ 'x-forwarded-for': client });
      for (let i = 0; i < FAILURES; i++) expect((await post('127.0.0.8', `proxied-guess-${i}`, 'wrong-site-secret-0123456789', via('203.0.113.50'))).status).toBe(401);
      expect((await post('127.0.0.8', 'proxied-right', SITE_SECRET, via('203.0.113.50'))).status).toBe(429);
      // The proxy's other clients are not locked out with the guesser.
      expect((await post('127.0.0.8', 'proxied-other', SITE_SECRET, via('203.0.113.51'))).status).toBe(202);
    } finally {
      setTrustedProxies([]);
    }
  }, 30_000);

  it('does not count requests without any token (a browser opening the console, a probe)', async () => {
    for (let i = 0; i < FAILURES * 3; i++) expect((await call('127.0.0.4', '/v1/session', null)).status).toBe(401);
    expect((await call('127.0.0.4', '/v1/session', ADMIN)).status).toBe(200);
  });
});

describe('the throttle itself', () => {
  const log = createLogger({ level: 'silent' });

  it('keeps at most trackedAddresses addresses, forgetting the oldest, however many addresses try', () => {
    let now = 0;
    const t = new AuthThrottle({ failures: 2, windowMs: 60_000, trackedAddresses: 100 }, log, () => now);
    for (let i = 0; i < 5000; i++) t.failed(`10.0.${i >> 8}.${i & 255}`);
    expect(t.size).toBe(100);
    // The newest are remembered, the oldest forgotten.
    t.failed('10.0.19.135');
    expect(t.retryAfterMs('10.0.19.135')).toBe(60_000);
    t.failed('10.0.0.0');
    expect(t.retryAfterMs('10.0.0.0')).toBe(0);
    // Expired windows are let go as new addresses come.
    now = 120_000;
    t.failed('192.0.2.1');
    expect(t.size).toBe(1);
  });

  it('counts IPv6 by its /64 and IPv4-mapped IPv6 as IPv4', () => {
    expect(clientKey('::ffff:203.0.113.7')).toBe('203.0.113.7');
    expect(clientKey('2001:db8:1:2:aaaa::1')).toBe('2001:db8:1:2::/64');
    expect(clientKey('2001:db8:1:2:bbbb:cccc:dddd:eeee')).toBe('2001:db8:1:2::/64');
    expect(clientKey('2001:db8::5')).toBe('2001:db8:0:0::/64');
    expect(clientKey('::1')).toBe('0:0:0:0::/64');
    expect(clientKey('fe80::1%eth0')).toBe('fe80:0:0:0::/64');
    expect(clientKey('127.0.0.1')).toBe('127.0.0.1');
  });

  it('is configured under api.authThrottle with defaults, refusals naming the field', () => {
    const defaults = GatewayConfig.parse({}).api.authThrottle;
    expect(defaults).toEqual({ failures: 20, window: 60_000, trackedAddresses: 10_000 });
    const bad = GatewayConfig.safeParse({ api: { authThrottle: { failures: 0 } } });
    expect(bad.success).toBe(false);
    expect(bad.error!.issues[0]!.path).toEqual(['api', 'authThrottle', 'failures']);
  });
});

describe('the client behind a trusted proxy', () => {
  const req = (peer: string, xff?: string) => ({ socket: { remoteAddress: peer }, headers: xff === undefined ? {} : { 'x-forwarded-for': xff } });
  afterEach(() => setTrustedProxies([]));

  it('is read from X-Forwarded-For only when the peer is one of api.trustedProxies, nearest untrusted hop first', () => {
    // Without the setting the header is anyone's word: the peer counts.
    expect(clientAddress(req('10.0.0.5', '203.0.113.7'))).toBe('10.0.0.5');
    setTrustedProxies(['10.0.0.0/8', '::1']);
    expect(clientAddress(req('10.0.0.5', '203.0.113.7'))).toBe('203.0.113.7');
    expect(clientAddress(req('::ffff:10.0.0.5', '198.51.100.1, 203.0.113.7, 10.1.2.3'))).toBe('203.0.113.7');
    // A peer that is not a proxy cannot choose its address by the header.
    expect(clientAddress(req('198.51.100.9', '203.0.113.7'))).toBe('198.51.100.9');
    // Garbage in the chain: counted as the proxy, not as a fresh address per request.
    expect(clientAddress(req('10.0.0.5', 'x-not-an-ip'))).toBe('10.0.0.5');
    expect(clientAddress(req('10.0.0.5'))).toBe('10.0.0.5');
  });

  it('is configured as addresses or CIDR ranges, a wrong entry named', () => {
    expect(isIpOrRange('10.0.0.0/8')).toBe(true);
    expect(isIpOrRange('fd00::/8')).toBe(true);
    expect(isIpOrRange('192.168.1.10')).toBe(true);
    for (const bad of ['10.0.0.0/33', 'ingress.local', '10.0.0.0/8/1', '']) expect(isIpOrRange(bad)).toBe(false);
  });
});
