/**
 * When a loop counts as stalled (stall-clock.ts), and what readiness and /metrics make of it
 * (probes.ts, omnigate_loop_stalled): work waiting with no progress for the threshold; never for
 * want of traffic; not after a run restart; again ready once the work moves.
 */
import { describe, expect, it } from 'vitest';
import { StallClock } from '../../src/core/stall-clock.js';
import { Supervisor } from '../../src/core/supervisor.js';
import { registry } from '../../src/core/metrics.js';
import { sleep } from '../../src/core/sleep.js';
import { readiness } from '../../src/probes.js';

function clock(afterMs = 1_000) {
  let t = 10_000;
  const c = new StallClock(afterMs, () => t);
  return { c, at: (ms: number) => (t = 10_000 + ms) };
}

describe('StallClock', () => {
  it('is never stalled without work waiting, however long since the last progress', () => {
    const { c, at } = clock();
    c.progress();
    at(3_600_000);
    expect(c.stalledSince()).toBeUndefined();
  });

  it('held work and no progress for the threshold: stalled since the work began waiting; progress clears it', () => {
    const { c, at } = clock();
    c.hold(2);
    at(999);
    expect(c.stalledSince()).toBeUndefined();
    at(1_000);
    expect(c.stalledSince()).toBe(10_000);
    c.progress(); // one of them moved: the rest waits anew from here
    c.hold(-1);
    at(1_500);
    expect(c.stalledSince()).toBeUndefined();
    at(2_000);
    expect(c.stalledSince()).toBe(11_000);
    c.hold(-1); // settled: nothing waits
    expect(c.stalledSince()).toBeUndefined();
  });

  it('a steady flow that keeps moving is not stalled although something is always held', () => {
    const { c, at } = clock();
    c.hold(1);
    for (let ms = 0; ms <= 10_000; ms += 500) {
      at(ms);
      c.hold(1);
      c.progress();
      c.hold(-1);
      expect(c.stalledSince()).toBeUndefined();
    }
  });

  it('failures that go on without a success are a stall; failures that stop (no traffic) are not', () => {
    const { c, at } = clock();
    c.failed();
    at(600);
    c.failed();
    at(1_200);
    c.failed();
    expect(c.stalledSince()).toBe(10_000);
    at(2_199);
    expect(c.stalledSince()).toBe(10_000);
    at(2_200); // no failure for the threshold: nobody is waiting any more
    expect(c.stalledSince()).toBeUndefined();
    c.failed();
    at(2_300);
    c.progress();
    at(5_000);
    expect(c.stalledSince()).toBeUndefined();
  });

  it('a new run drops what the last one held', () => {
    const { c, at } = clock();
    c.hold(3);
    c.restart();
    at(5_000);
    expect(c.stalledSince()).toBeUndefined();
  });
});

describe('a supervised loop that stalls', () => {
  it('shows stalledSince, makes /readyz 503 with a public reason, sets omnigate_loop_stalled, and is ready again once it moves', async () => {
    const sup = new Supervisor(undefined, { stallAfterMs: 100 });
    let release!: () => void;
    const loop = sup.run('router.partition.7', async ({ signal, hold, progress }) => {
      hold(1);
      await new Promise<void>((r) => (release = r));
      progress();
      hold(-1);
      await new Promise((r) => signal.addEventListener('abort', r, { once: true }));
    });
    const idle = sup.run('commands.note', async ({ signal }) => {
      await new Promise((r) => signal.addEventListener('abort', r, { once: true }));
    }, { essential: true });
    try {
      await sleep(150);
      expect(loop.status.stalledSince).toBeDefined();
      expect(idle.status.stalledSince).toBeUndefined();
      const r = await readiness({ supervisor: sup, connectors: () => [] });
      expect(r.ready).toBe(false);
      expect(r.reasons).toContainEqual(expect.stringMatching(/^loop router\.partition\.7 stalled: work waiting and no progress/));
      expect((r.reasons ?? []).filter((x) => x.includes('commands.note'))).toEqual([]);
      expect(r.checks.stalled).toEqual([{ loop: 'router.partition.7', since: loop.status.stalledSince }]);
      expect(await registry.getSingleMetricAsString('omnigate_loop_stalled')).toMatch(/omnigate_loop_stalled\{loop="router\.partition\.7"\} 1/);
      release();
      await sleep(10);
      expect(loop.status.stalledSince).toBeUndefined();
      const again = await readiness({ supervisor: sup, connectors: () => [] });
      expect((again.reasons ?? []).filter((x) => x.includes('stalled'))).toEqual([]);
      expect(await registry.getSingleMetricAsString('omnigate_loop_stalled')).toMatch(/omnigate_loop_stalled\{loop="router\.partition\.7"\} 0/);
    } finally {
      await sup.stop();
    }
    // A loop stopped (a partition handed back) leaves no series behind.
    expect(await registry.getSingleMetricAsString('omnigate_loop_stalled')).not.toContain('router.partition.7');
  });
});
