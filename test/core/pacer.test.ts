/**
 * The pacer every connector sends through. It scheduled slots by the wall clock: after a step
 * back (NTP, a VM restored, `date -s`), the next slot of every chat lay as far in the future as
 * the step, and an outside ops trial saw every reply stop for the 3 hours it stepped, with every
 * probe green. Slots are now on the monotonic clock; the wall clock can do what it likes.
 */
import { afterEach, describe, expect, it, vi } from 'vitest';
import { MAX_DEFER_MS, Pacer } from '../../src/core/pacer.js';
import { sleep } from '../../src/core/sleep.js';

afterEach(() => vi.restoreAllMocks());

describe('Pacer', () => {
  it('spaces sends per chat and overall, and a wall clock stepped back 3 hours delays nothing', async () => {
    const pacer = new Pacer(50, 1000);
    const t0 = performance.now();
    await pacer.wait('chat-1');
    await pacer.wait('chat-1'); // ~50 ms after the first
    expect(performance.now() - t0).toBeGreaterThanOrEqual(45);
    const real = Date.now();
    vi.spyOn(Date, 'now').mockReturnValue(real - 3 * 3_600_000);
    const before = performance.now();
    await Promise.race([
      Promise.all([pacer.wait('chat-1'), pacer.wait('chat-2'), pacer.wait('chat-3')]),
      sleep(10_000).then(() => {
        throw new Error('a send waited for the wall clock to catch up');
      }),
    ]);
    expect(performance.now() - before).toBeLessThan(10_000);
  });

  it('waits what the platform asked (defer), and a retry_after longer than a timer holds still waits, not 1 ms', async () => {
    const pacer = new Pacer(0, 0);
    pacer.defer('chat-1', 120);
    const t0 = performance.now();
    await pacer.wait('chat-1');
    expect(performance.now() - t0).toBeGreaterThanOrEqual(110);
    const overflow = new Pacer(0, 0);
    overflow.defer('chat-2', 3_000_000_000); // 35 days: past a Node timer's 24.8-day limit
    const waited = await Promise.race([overflow.wait('chat-2').then(() => 'returned'), sleep(300).then(() => 'still waiting')]);
    expect(waited).toBe('still waiting');
  });
  it("holds a chat's sends for at most an hour, whatever wait the platform asked for", async () => {
    const pacer = new Pacer(0, 0);
    pacer.defer('chat-9', 99_999_000); // Retry-After: 99999
    const start = performance.now();
    vi.spyOn(performance, 'now').mockReturnValue(start + MAX_DEFER_MS + 1);
    await Promise.race([
      pacer.wait('chat-9'),
      sleep(2_000).then(() => {
        throw new Error('the send still waited past the cap');
      }),
    ]);
    expect(MAX_DEFER_MS).toBe(3_600_000);
  });
  it("one chat held back by the platform does not hold the others, and a stop ends its wait", async () => {
    const pacer = new Pacer(0, 30);
    pacer.defer('flooded', 3_000);
    const stop = new AbortController();
    const held = pacer.wait('flooded', undefined, stop.signal);
    const before = performance.now();
    await pacer.wait('other');
    expect(performance.now() - before).toBeLessThan(1_000); // waited 3,033 ms behind the flooded chat
    stop.abort();
    await expect(held).rejects.toThrow(/goes back to the queue/);
  });
  it('a hold on the whole account (deferAll) holds every chat, and a hold set while a send waits is waited out too', async () => {
    const pacer = new Pacer(0, 0);
    const stop = new AbortController();
    pacer.deferAll(60_000);
    const order: string[] = [];
    const a = pacer.wait('chat-a', undefined, stop.signal).then(() => order.push('a'), () => order.push('a stopped'));
    const b = pacer.wait('chat-b', undefined, stop.signal).then(() => order.push('b'), () => order.push('b stopped'));
    await sleep(50);
    expect(order).toEqual([]); // neither chat was let through
    stop.abort();
    await Promise.all([a, b]);
    expect(order.sort()).toEqual(['a stopped', 'b stopped']);

    const again = new Pacer(0, 0);
    again.defer('chat-c', 30);
    const end = new AbortController();
    const c = again.wait('chat-c', undefined, end.signal).then(() => 'sent', () => 'stopped');
    again.deferAll(60_000); // while chat-c waits out its own hold
    expect(await Promise.race([c, sleep(300).then(() => 'still held')])).toBe('still held');
    end.abort();
    expect(await c).toBe('stopped');
  });
});
