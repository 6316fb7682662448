/**
 * Fencing of connector-session effects: the lease holder's view of the account state refuses
 * writes once its lease ran out by the clock (a pause longer than the TTL), before anything is
 * sent, while reads go on; a holder that takes the lease again writes again. Real nats-server and
 * real leases; the pause is a monotonic clock moved forward (the SIGSTOP test of the same rule is
 * test/api/webhook-fencing.test.ts).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Bus } from '../../../src/core/bus.js';
import { createLogger } from '../../../src/core/logger.js';
import { acquireLease } from '../../../src/core/lease.js';
import { accountState } from '../../../src/connectors/account-state.js';
import { StaleLeaseError } from '../../../src/connectors/contract.js';
import { startNats, type TestNats } from '../../helpers/nats-server.js';

let nats: TestNats;
let bus: Bus;
const log = createLogger({ level: 'silent' });

beforeAll(async () => {
  nats = await startNats();
  bus = await Bus.connect({ url: nats.url, replicas: 1, duplicateWindowMs: 120_000, retentionMs: 86_400_000, dedupTtlMs: 86_400_000, leaseTtlMs: 3000 }, log);
  await bus.provision();
});
afterAll(async () => {
  await bus?.close();
  await nats?.stop();
});

describe('fenced account state', () => {
  it('refuses checkpoint writes of a holder whose lease ran out by the clock; reads pass; the next holder writes', async () => {
    let clock = 0;
    const paused = await acquireLease(bus.kv.leases, 'telegram.bot.polling', { ttlMs: 3000, holder: 'paused', now: () => clock });
    const state = accountState(bus, 'telegram.bot.');
    const mine = state.fencedBy(paused);
    await mine.put('offset', '{"offset":10}');
    const stored = await mine.get('offset');
    expect(stored?.value).toBe('{"offset":10}');
    await mine.update('offset', '{"offset":11}', stored!.revision);

    // Frozen past the TTL: the lease is not valid any more, whatever its timers have not run yet.
    clock += 3000;
    expect(paused.valid()).toBe(false);
    await expect(mine.put('offset', '{"offset":5}')).rejects.toBeInstanceOf(StaleLeaseError);
    await expect(mine.update('offset', '{"offset":5}', 0)).rejects.toThrow(/lease telegram\.bot\.polling \(fence \d+\) is no longer held/);
    await expect(mine.delete('offset')).rejects.toBeInstanceOf(StaleLeaseError);
    expect((await mine.get('offset'))?.value).toBe('{"offset":11}');
    expect(await mine.keys()).toEqual(['offset']);

    // The next holder (after the key expired) has a higher token and writes.
    await paused.release();
    const next = await acquireLease(bus.kv.leases, 'telegram.bot.polling', { ttlMs: 3000, holder: 'next' });
    expect(next.token).toBeGreaterThan(paused.token);
    await state.fencedBy(next).put('offset', '{"offset":12}');
    expect((await state.get('offset'))?.value).toBe('{"offset":12}');
    await expect(mine.put('offset', '{"offset":6}')).rejects.toBeInstanceOf(StaleLeaseError);
    expect((await state.get('offset'))?.value).toBe('{"offset":12}');
    await next.release();
  });
});
