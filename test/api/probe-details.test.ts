/**
 * What /readyz and /healthz tell a caller without a token (http.probeDetails, outside trial): the
 * status code and short reasons, never a mailbox address, an IMAP login, an upstream host or an
 * error text; a valid token (read-only too) gets the full answer, and a wrong one is counted and
 * throttled as on /v1.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { HttpServer, type Readiness } from '../../src/api/server.js';
import { loadConfig } from '../../src/core/config.js';
import { createLogger } from '../../src/core/logger.js';
import { startGateway, type TestGateway } from '../helpers/gateway.js';
import { startNats, type TestNats } from '../helpers/nats-server.js';
import { freePort } from '../helpers/ports.js';
import { writeConfig } from '../helpers/process.js';
import { until } from '../helpers/until.js';

const OPS = 'ops-token-0123456789abcdef';
const VIEWER = 'viewer-token-0123456789abcdef';
const ADDRESS = 'support-desk@example.ru';
const LOGIN = 'imap-login-petrova';

let nats: TestNats;
let gw: TestGateway;
let closedPort: number;

async function probe(path: '/readyz' | '/healthz', token?: string) {
  const res = await fetch(`${gw.httpUrl}${path}`, { headers: token ? { authorization: `Bearer ${token}` } : {} });
  return { status: res.status, body: (await res.json()) as any };
}

beforeAll(async () => {
  nats = await startNats();
  // Nothing listens there: the mailbox never connects, and its errors name the host and port.
  closedPort = await freePort();
  const server = { host: '127.0.0.1', port: closedPort, secure: false, starttls: false };
  gw = await startGateway(
    {
      http: { probeDetails: 'token' },
      api: { tokens: [{ name: 'ops', token: OPS }, { name: 'viewer', token: VIEWER, readOnly: true }], authThrottle: { failures: 3, window: '1m' } },
      connectors: [{
        type: 'email', account: 'support', required: true, reconnectMaxMs: 300,
        mailboxes: [{ address: ADDRESS, imap: { ...server, user: LOGIN, pass: '${IMAP_PASS}' }, smtp: server }],
      }],
    },
    { nats, env: { IMAP_PASS: 'imap-secret-pw' } },
  );
  await until(async () => (await probe('/readyz', VIEWER)).body.connectors?.some((c: any) => c.channel === 'email' && c.state !== 'connecting' && c.detail), 'the mailbox failing', 30_000);
}, 60_000);
afterAll(async () => {
  await gw?.stop();
  await nats?.stop();
});

/** Whatever in `body` names the mailbox, its login or the upstream it could not reach. */
function leaks(body: unknown): string[] {
  const text = JSON.stringify(body);
  return [ADDRESS, LOGIN, '127.0.0.1', String(closedPort)].filter((s) => text.includes(s));
}

describe('probes without a token', () => {
  it('/readyz answers its status code and the short reasons only, naming no address, login or host', async () => {
    // The full answer has them: what the trial found open to the network.
    const full = await probe('/readyz', VIEWER);
    expect(full.status).toBe(503);
    expect(leaks(full.body).length).toBeGreaterThan(0);

    const bare = await probe('/readyz');
    expect(bare.status).toBe(503);
    expect(Object.keys(bare.body).sort()).toEqual(['reasons', 'status']);
    expect(bare.body.status).toBe('not ready');
    expect(bare.body.reasons).toEqual([expect.stringMatching(/^required connector email\/support \w+$/)]);
    expect(leaks(bare.body)).toEqual([]);
  });

  it('/healthz answers ok without details', async () => {
    const bare = await probe('/healthz');
    expect(bare).toMatchObject({ status: 200, body: { status: 'ok', reasons: [] } });
    expect(Object.keys(bare.body).sort()).toEqual(['reasons', 'status']);
  });

  it('a valid token, read-only too, gets the full answer', async () => {
    for (const token of [OPS, VIEWER]) {
      const r = await probe('/readyz', token);
      expect(r.body).toMatchObject({ status: 'not ready', nats: { connected: true }, streams: 'ok' });
      expect(r.body.connectors).toEqual([expect.objectContaining({ channel: 'email', account: 'support' })]);
      expect(r.body.loops.length).toBeGreaterThan(0);
    }
  });

  it('a wrong token gets the short answer with why, and is counted like one on /v1 (then 429 there)', async () => {
    for (let i = 0; i < 3; i++) {
      const r = await probe('/readyz', 'not-a-token-0123456789');
      expect(r.status).toBe(503); // the probe's own status: a wrong token is no reason for a 401
      expect(r.body).toEqual({ status: 'not ready', reasons: expect.any(Array), details: 'not shown: invalid bearer token' });
    }
    // Past api.authThrottle.failures: even the right token is refused unchecked, on the API and here.
    const api = await fetch(`${gw.httpUrl}/v1/tickets`, { headers: { authorization: `Bearer ${OPS}` } });
    expect(api.status).toBe(429);
    const throttled = await probe('/readyz', OPS);
    expect(Object.keys(throttled.body).sort()).toEqual(['details', 'reasons', 'status']);
    expect(throttled.body.details).toMatch(/too many wrong tokens/);
    // No token at all is not a guess: a probe from the same address still gets its status.
    expect((await probe('/readyz')).status).toBe(503);
  });
});

describe('probe answers of the HTTP server itself', () => {
  const log = createLogger({ level: 'silent' });
  const failing = (): Readiness => ({
    ready: false,
    checks: { failedLoops: [{ name: `connector.email.support.mailbox:${ADDRESS}`, lastError: `connect ECONNREFUSED 127.0.0.1:${closedPort}` }] },
    reasons: ['loop connector.email.support failed'],
  });
  async function serve(probeDetails: 'token' | 'open' | undefined, fn: (base: string, server: HttpServer) => Promise<void>) {
    const server = new HttpServer({ host: '127.0.0.1', port: 0, bodyLimit: 1024, probeDetails, log, readiness: async () => failing(), liveness: failing });
    await server.listen();
    try {
      await fn(`http://127.0.0.1:${server.port}`, server);
    } finally {
      await server.close();
    }
  }

  it('a failing /healthz names the loop by its connector only; http.probeDetails: open keeps the full answer', async () => {
    await serve('token', async (base) => {
      const r = await fetch(`${base}/healthz`);
      expect(r.status).toBe(503);
      const body = await r.json();
      expect(body).toEqual({ status: 'failing', reasons: ['loop connector.email.support failed'] });
    });
    await serve('open', async (base) => {
      const body = (await (await fetch(`${base}/healthz`)).json()) as { failedLoops: Array<{ name: string }> };
      expect(body.failedLoops[0]!.name).toContain(ADDRESS);
      expect((await fetch(`${base}/readyz`)).status).toBe(503);
    });
  });

  it('while draining /readyz says so in its short form', async () => {
    await serve(undefined, async (base, server) => {
      server.beginDrain();
      const r = await fetch(`${base}/readyz`);
      expect(r.status).toBe(503);
      expect(await r.json()).toEqual({ status: 'not ready', reasons: ['shutting down'] });
    });
  });

  it('details need a token unless the config says open', () => {
    expect(loadConfig(undefined, {}).config.http.probeDetails).toBe('token');
    expect(loadConfig(writeConfig({ http: { probeDetails: 'open' } }), {}).config.http.probeDetails).toBe('open');
    expect(() => loadConfig(writeConfig({ http: { probeDetails: 'public' } }), {})).toThrow(/http\.probeDetails/);
  });
});
