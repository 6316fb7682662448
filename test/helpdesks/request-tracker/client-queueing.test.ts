/**
 * After an outage the helpdesk host's 16 lanes all write to RT at once. RT serves two requests
 * at a time (Debian's rt-server, Starlet with 2 workers) and queues the rest, so a call's
 * `requestTimeout` was mostly spent queued behind the adapter's own other calls: measured on real
 * RT 5 here, 16 concurrent corresponds had a median latency of 37 s (18 of 32 over the 30 s
 * default) where 2 at a time took 3.4 s each, for the same throughput. Timed-out calls were
 * often done by RT anyway, and their retries cost more calls. A stand-in with RT's two workers
 * shows the client keeps its calls within `maxConcurrent` and none times out.
 */
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { RtClient } from '../../../src/helpdesks/request-tracker/client.js';

const WORKERS = 2;
const SERVICE_MS = 150;
let server: Server;
let url: string;
let busy = 0;
let mostBusy = 0;
let queued: Array<() => void> = [];

beforeAll(async () => {
  server = createServer((req, res) => {
    // RT's workers: two requests served at a time, the rest wait their turn (the listen backlog).
    const serve = () => {
      busy++;
      mostBusy = Math.max(mostBusy, busy);
      setTimeout(() => {
        busy--;
        queued.shift()?.();
        res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ id: 7, Subject: 's', Status: 'open', Queue: { id: 'General' }, CustomFields: [] }));
      }, SERVICE_MS);
    };
    req.resume();
    if (busy < WORKERS) serve();
    else queued.push(serve);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});
afterAll(async () => {
  server.closeAllConnections();
  await new Promise((r) => server.close(r));
});

describe('RtClient under load', () => {
  it("keeps at most maxConcurrent calls in RT's queue: 16 at once all answered within a timeout RT's service time fits", async () => {
    busy = 0;
    mostBusy = 0;
    queued = [];
    // 16 × 150 ms through 2 workers is 1.2 s; queued in RT, the last calls would wait past 1 s.
    const client = new RtClient({ url, token: 't', timeoutMs: 1000, maxConcurrent: WORKERS });
    const outcomes = await Promise.allSettled(Array.from({ length: 16 }, () => client.getTicket(7)));
    expect(outcomes.filter((o) => o.status === 'rejected').map((o) => String((o as PromiseRejectedResult).reason))).toEqual([]);
    expect(mostBusy).toBeLessThanOrEqual(WORKERS);
  });

  it('defaults to 4 calls at once', async () => {
    let inFlight = 0;
    let most = 0;
    const counting = createServer((req, res) => {
      inFlight++;
      most = Math.max(most, inFlight);
      req.resume();
      setTimeout(() => {
        inFlight--;
        res.writeHead(200, { 'content-type': 'application/json' }).end('{"id":1}');
      }, 50);
    });
    await new Promise<void>((r) => counting.listen(0, '127.0.0.1', r));
    const client = new RtClient({ url: `http://127.0.0.1:${(counting.address() as AddressInfo).port}`, token: 't' });
    await Promise.all(Array.from({ length: 12 }, () => client.getTicket(1)));
    counting.closeAllConnections();
    await new Promise((r) => counting.close(r));
    expect(most).toBe(4);
  });
});
