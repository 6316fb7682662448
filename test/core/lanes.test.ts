/**
 * CoalescingLanes: what queues up under a key is handed over together, in order, per runner.
 * KeyedLanes (the same with batches of one): one task per key at a time, keys concurrent.
 */
import { describe, expect, it } from 'vitest';
import { CoalescingLanes, KeyedLanes } from '../../src/core/lanes.js';

function gate() {
  let open!: () => void;
  const opened = new Promise<void>((r) => (open = r));
  return { open, opened };
}

describe('CoalescingLanes', () => {
  it('starts the first item at once and hands what queued behind it over together, in order', async () => {
    const lanes = new CoalescingLanes<number>(16);
    const batches: number[][] = [];
    const first = gate();
    const runner = async (items: number[]) => {
      batches.push(items);
      if (items[0] === 0) await first.opened;
    };
    const done = [0, 1, 2, 3].map((n) => lanes.run('a', n, runner));
    expect(batches).toEqual([[0]]); // started synchronously, the rest wait
    first.open();
    await Promise.all(done);
    expect(batches).toEqual([[0], [1, 2, 3]]);
    expect(lanes.active).toBe(0);
  });

  it('bounds a batch, keeps keys apart, and batches only items of the same runner', async () => {
    const lanes = new CoalescingLanes<string>(2);
    const seen: string[][] = [];
    const held = gate();
    const r1 = async (items: string[]) => {
      seen.push(items);
      if (items[0] === 'a0') await held.opened;
    };
    const r2 = async (items: string[]) => {
      seen.push(items.map((i) => `r2:${i}`));
    };
    const all = [lanes.run('a', 'a0', r1), lanes.run('a', 'a1', r1), lanes.run('a', 'a2', r1), lanes.run('a', 'a3', r1), lanes.run('a', 'a4', r2), lanes.run('a', 'a5', r1), lanes.run('b', 'b0', r1)];
    expect(seen).toEqual([['a0'], ['b0']]); // another key is not held up
    held.open();
    await Promise.all(all);
    expect(seen).toEqual([['a0'], ['b0'], ['a1', 'a2'], ['a3'], ['r2:a4'], ['a5']]);
  });

  it('settles every item of a failed batch with its error; the lane goes on', async () => {
    const lanes = new CoalescingLanes<number>(16);
    const held = gate();
    const runner = async (items: number[]) => {
      if (items[0] === 0) await held.opened;
      if (items.includes(2)) throw new Error('batch failed');
    };
    const results = [0, 1, 2, 3].map((n) => lanes.run('k', n, runner).then(() => 'ok', (e: Error) => e.message));
    held.open();
    expect(await Promise.all(results)).toEqual(['ok', 'batch failed', 'batch failed', 'batch failed']);
    expect(await lanes.run('k', 9, runner).then(() => 'ok')).toBe('ok');
    await lanes.idle();
    expect(lanes.active).toBe(0);
  });
});

describe('KeyedLanes', () => {
  it('runs one task per key at a time in arrival order, keys concurrently; a failure is its caller\'s and the lane goes on', async () => {
    const lanes = new KeyedLanes();
    const log: string[] = [];
    const a0 = gate();
    const done = [
      lanes.run('a', async () => {
        log.push('a0 start');
        await a0.opened;
        log.push('a0 end');
      }),
      lanes.run('a', async () => {
        log.push('a1');
        throw new Error('a1 failed');
      }),
      lanes.run('a', async () => {
        log.push('a2');
      }),
      lanes.run('b', async () => {
        log.push('b0');
      }),
    ];
    await done[3];
    expect(log).toEqual(['a0 start', 'b0']); // b did not wait for a
    a0.open();
    const settled = await Promise.allSettled(done);
    expect(settled.map((r) => r.status)).toEqual(['fulfilled', 'rejected', 'fulfilled', 'fulfilled']);
    expect(log).toEqual(['a0 start', 'b0', 'a0 end', 'a1', 'a2']);
    await lanes.idle();
    expect(lanes.active).toBe(0);
  });
});
