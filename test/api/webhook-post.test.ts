/**
 * postEvent on its own: the last lease check runs when the request is about to be written, and a
 * "no" there sends nothing at all (not even headers); answers, timeouts and Retry-After as before.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createServer, type Server } from 'node:http';
import { postEvent } from '../../src/api/webhook-post.js';

let server: Server;
let url = '';
const seen: Array<{ token: string; delivery: string }> = [];
let answer: (res: import('node:http').ServerResponse) => void = (res) => res.writeHead(200).end('ok');
let connections = 0;

beforeAll(async () => {
  server = createServer((req, res) => {
    req.resume();
    req.on('end', () => {
      seen.push({ token: String(req.headers['x-omnigate-lease-token']), delivery: String(req.headers['x-omnigate-delivery']) });
      answer(res);
    });
  });
  server.on('connection', () => connections++);
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  url = `http://127.0.0.1:${(server.address() as { port: number }).port}/hook`;
});

afterAll(async () => {
  server.closeAllConnections();
  await new Promise((r) => server.close(r));
});

const target = () => ({ name: 'hook', url, secret: 'post-secret-0123456789', timeout: 1000 });
const body = new TextEncoder().encode('{"type":"ticket.message","ticketId":"T-1"}');

describe('postEvent', () => {
  it('posts with the lease token, over a kept-alive connection', async () => {
    const before = seen.length;
    const cut = new AbortController().signal;
    expect(await postEvent(target(), body, { type: 'ticket.message', seq: 7, token: 42 }, cut, () => true)).toEqual({ ok: true });
    expect(await postEvent(target(), body, { type: 'ticket.message', seq: 8, token: 42 }, cut, () => true)).toEqual({ ok: true });
    expect(seen.slice(before)).toEqual([{ token: '42', delivery: 'hook-7' }, { token: '42', delivery: 'hook-8' }]);
    expect(connections).toBe(1);
  });

  it('sends nothing when the lease is no longer valid at the moment of writing, on a new or a pooled connection', async () => {
    const before = seen.length;
    let checks = 0;
    const cut = new AbortController().signal;
    // Two at once: one takes the pooled connection, the other opens a new one and waits for it.
    const outcomes = await Promise.all([9, 10].map((seq) => postEvent(target(), body, { type: 'ticket.message', seq, token: 42 }, cut, () => (checks++, false))));
    expect(outcomes).toEqual(Array(2).fill({ ok: false, problem: 'not sent: the lease is no longer valid' }));
    expect(checks).toBe(2);
    expect(connections).toBe(2);
    await new Promise((r) => setTimeout(r, 200));
    expect(seen.length).toBe(before);
  });

  it('reports a refusal with its Retry-After, and a receiver that does not answer in time', async () => {
    const cut = new AbortController().signal;
    answer = (res) => res.writeHead(409, { 'retry-after': '2' }).end('stale lease token');
    expect(await postEvent(target(), body, { type: 'ticket.message', seq: 10, token: 1 }, cut)).toEqual({ ok: false, problem: 'receiver answered 409', retryAfterMs: 2000 });
    answer = () => undefined; // never answers
    const slow = await postEvent({ ...target(), timeout: 300 }, body, { type: 'ticket.message', seq: 11, token: 1 }, cut);
    expect(slow).toEqual({ ok: false, problem: 'receiver unreachable: no answer within 300 ms' });
    answer = (res) => res.writeHead(200).end('ok');
  });

  it('a redirect is a permanent failure, named by scheme://host:port only (a path or query may hold a secret)', async () => {
    const cut = new AbortController().signal;
    for (const status of [301, 302, 307, 308]) {
      answer = (res) => res.writeHead(status, { location: 'https://crm:pa55@hooks.example.ru:8443/t/s3cr3t-path?token=s3cr3t-query' }).end();
      const outcome = await postEvent(target(), body, { type: 'ticket.message', seq: 20, token: 1 }, cut);
      expect(outcome).toEqual({
        ok: false, permanent: `http_${status}`,
        problem: `receiver answered ${status}, a redirect to https://hooks.example.ru:8443 (path, query and credentials not shown): not followed (it would drop the body or send it to another address); set the URL to the final address (webhooks[].url)`,
      });
    }
    // On the same host: only whether it is the trailing slash.
    answer = (res) => res.writeHead(308, { location: '/hook/' }).end();
    expect(await postEvent(target(), body, { type: 'ticket.message', seq: 21, token: 1 }, cut)).toMatchObject({ permanent: 'http_308', problem: expect.stringContaining('a redirect to the same path with its trailing slash added or taken off') });
    answer = (res) => res.writeHead(302, { location: '/other/s3cr3t' }).end();
    const other = await postEvent(target(), body, { type: 'ticket.message', seq: 22, token: 1 }, cut);
    expect(other).toMatchObject({ permanent: 'http_302', problem: expect.stringContaining('another path on the same host (not shown') });
    expect(JSON.stringify(other)).not.toContain('s3cr3t');
    answer = (res) => res.writeHead(200).end('ok');
  });
});
