/**
 * A replica killed with kill -9 mid-command leaves its idempotency claim pending, fresh for 30 s
 * (command-idempotency.ts): every retry of that key (a helpdesk retrying on another replica)
 * waits on the claim in some replica's commands loop. A SIGTERM'd replica's stop waits for the
 * commands it is answering; that wait was neither ended by the stop nor bounded by the clock (100
 * polls of two KV round trips each: 7–9 s under load), and three replicas on one NATS, one killed
 * and another stopped 3 s later, hit shutdownTimeout (10 s) with `commands` pending.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startGateway, type TestGateway } from '../helpers/gateway.js';
import { chatMessage, publishEvent } from '../helpers/events.js';
import { hashKey } from '../../src/core/subjects.js';
import { commandClaims, runOnce } from '../../src/router/command-idempotency.js';
import { createLogger } from '../../src/core/logger.js';
import type { Bus } from '../../src/core/bus.js';

let gw: TestGateway;
beforeAll(async () => {
  gw = await startGateway({});
});
afterAll(async () => gw?.stop());

describe('stopping the commands while one waits on a claim another replica left', () => {
  it('answers in_progress at once and the commands stop within a second', async () => {
    const event = chatMessage({ chat: 'claim-at-stop' });
    await publishEvent(gw.nc, event);
    const created = await gw.waitForEvent((e) => e.type === 'ticket.message' && (e.entry as any)?.event?.id === event.id);
    // What a replica killed after claiming the key leaves behind.
    await gw.gateway.bus.kv.dedup.put(`cmd.reply.${hashKey(`${created.ticketId}\u0000killed-mid-command`)}`, JSON.stringify({ pending: true, at: Date.now() }));
    // Counts the command's reads of that claim: it waits on it once it has read it twice.
    const kv = gw.gateway.bus.kv.dedup;
    const get = kv.get.bind(kv);
    let reads = 0;
    kv.get = ((key: string, ...rest: unknown[]) => {
      if (key.startsWith('cmd.reply.')) reads++;
      return (get as (...a: unknown[]) => ReturnType<typeof get>)(key, ...rest);
    }) as typeof kv.get;
    const answer = gw.request('omni.cmd.reply', { ticketId: created.ticketId, text: 'ответ', idempotencyKey: 'killed-mid-command' });
    for (const deadline = Date.now() + 30_000; reads < 2; ) {
      if (Date.now() > deadline) throw new Error('the command never waited on the claim');
      await new Promise((r) => setTimeout(r, 10));
    }
    const started = performance.now();
    await gw.gateway.commands!.stop();
    const stopMs = performance.now() - started;
    expect(await answer).toMatchObject({ ok: false, error: { code: 'in_progress' } });
    // Without the stop ending the wait: ~4.8 s. Wide of both on a loaded machine.
    expect(stopMs).toBeLessThan(3000);
  });
});

describe('the wait for a claim', () => {
  it('is bounded by the clock, not by the number of polls (slow KV answers)', async () => {
    const slow = () => new Promise((r) => setTimeout(r, 100));
    const kv = {
      async create() {
        await slow();
        throw new Error('wrong last sequence');
      },
      async get() {
        await slow();
        return { operation: 'PUT', revision: 1, created: new Date(), json: () => ({ pending: true, at: Date.now() }) };
      },
    };
    const bus = { kv: { dedup: kv } } as unknown as Bus;
    const started = performance.now();
    const r = await runOnce(bus, createLogger({ level: 'silent' }), commandClaims(), 'note', 'k', async () => ({ ok: true, result: {} }));
    const ms = performance.now() - started;
    expect(r).toMatchObject({ ok: false, error: { code: 'in_progress' } });
    // 5 s (CLAIM_WAIT_MS) and one poll; counted in polls it was 100 × 250 ms = 25 s.
    expect(ms).toBeLessThan(15_000);
  }, 40_000);

  it('ends at once when the signal aborts', async () => {
    const kv = {
      create: () => Promise.reject(new Error('wrong last sequence')),
      get: () => Promise.resolve({ operation: 'PUT', revision: 1, created: new Date(), json: () => ({ pending: true, at: Date.now() }) }),
    };
    const bus = { kv: { dedup: kv } } as unknown as Bus;
    const stop = new AbortController();
    setTimeout(() => stop.abort(), 200);
    const started = performance.now();
    const r = await runOnce(bus, createLogger({ level: 'silent' }), commandClaims(), 'note', 'k', async () => ({ ok: true, result: {} }), stop.signal);
    expect(r).toMatchObject({ ok: false, error: { code: 'in_progress' } });
    // Without the signal: the whole 5 s.
    expect(performance.now() - started).toBeLessThan(3000);
  });
});
