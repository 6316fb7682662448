/**
 * The supervisor: a loop that throws or ends is restarted with a jittered, growing delay; its
 * state and last error are visible; repeated failures without progress end in `failed`; progress
 * resets the count; stop ends it for good. No NATS needed: the loops here are plain functions.
 */
import { describe, expect, it } from 'vitest';
import { Supervisor, jitter } from '../../src/core/supervisor.js';
import { registry } from '../../src/core/metrics.js';
import { sleep } from '../../src/core/sleep.js';
import { liveness } from '../../src/probes.js';

async function until(cond: () => boolean, what: string, ms = 10_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(10);
  }
}

describe('supervisor', () => {
  it('restarts a loop that throws, shows the last error, and ends in failed after failAfter tries without progress', async () => {
    const sup = new Supervisor(undefined, { baseMs: 5, maxMs: 20, failAfter: 3 });
    let runs = 0;
    const loop = sup.run('test.throws', async () => {
      runs++;
      throw new Error(`boom ${runs}`);
    });
    await until(() => loop.status.state === 'failed', 'failed');
    expect(runs).toBeGreaterThanOrEqual(3);
    expect(loop.status).toMatchObject({ name: 'test.throws', lastError: expect.stringMatching(/^boom \d+$/), essential: false });
    expect(loop.status.restarts).toBeGreaterThanOrEqual(3);
    // Still retried while failed: a cause that goes away heals it.
    const before = runs;
    await until(() => runs > before, 'another try while failed');
    const text = await registry.metrics();
    expect(text).toMatch(/omnigate_loop_state\{loop="test.throws",state="failed"\} 1/);
    expect(text).toMatch(/omnigate_loop_restarts_total\{loop="test.throws"\} [3-9]|omnigate_loop_restarts_total\{loop="test.throws"\} \d\d/);
    await sup.stop();
    expect(sup.statuses()).toEqual([]);
    const after = runs;
    await sleep(60);
    expect(runs).toBe(after); // stopped for good
  });

  it('a failed loop fails liveness only when a restart could cure it (not the read model when its database is away)', async () => {
    const sup = new Supervisor(undefined, { baseMs: 5, maxMs: 20, failAfter: 2 });
    const connected = { connected: true } as never;
    const database = sup.run('test.database', async () => {
      throw new Error('connect ECONNREFUSED 127.0.0.1:5432');
    }, { restartCures: false });
    await until(() => database.status.state === 'failed', 'failed');
    expect(liveness({ supervisor: sup, bus: connected } as never).ready).toBe(true);
    const wedged = sup.run('test.wedged', async () => {
      throw new Error('stuck');
    });
    await until(() => wedged.status.state === 'failed', 'failed');
    const live = liveness({ supervisor: sup, bus: connected } as never);
    expect(live.ready).toBe(false);
    expect((live.checks.failedLoops as Array<{ name: string }>).map((l) => l.name)).toEqual(['test.wedged']);
    await sup.stop();
  });

  it('a loop failed by NATS or the database being away does not fail liveness, whatever loop it is (the evictor failed /healthz for a database outage)', async () => {
    const sup = new Supervisor(undefined, { baseMs: 5, maxMs: 20, failAfter: 2 });
    // NATS came back a moment ago: its failures are still put down to the outage.
    const connected = { connected: true, connectedSinceMs: Date.now() } as never;
    const failing = [
      Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:5432'), { code: 'ECONNREFUSED' }),
      Object.assign(new Error('terminating connection due to administrator command'), { code: '57P01' }),
      new Error('Connection terminated unexpectedly'),
      Object.assign(new Error('timeout'), { name: 'TimeoutError' }),
    ];
    const loops = failing.map((err, i) => sup.run(`test.dependency${i}`, async () => {
      throw err;
    }));
    await until(() => loops.every((l) => l.status.state === 'failed'), 'failed');
    expect(loops.map((l) => l.status.dependencyDown)).toEqual(['database', 'database', 'database', 'nats']);
    expect(liveness({ supervisor: sup, bus: connected } as never)).toEqual({ ready: true, checks: {}, reasons: [] });
    // Connected for minutes and still timing out: a wedged client, which a restart cures; the database's are still excused.
    const longUp = liveness({ supervisor: sup, bus: { connected: true, connectedSinceMs: Date.now() - 120_000 } } as never);
    expect(longUp.ready).toBe(false);
    expect((longUp.checks.failedLoops as Array<{ name: string }>).map((l) => l.name)).toEqual(['test.dependency3']);
    // A SQL error in the query itself is the loop's own: counted.
    const own = sup.run('test.own', async () => {
      throw Object.assign(new Error('column "x" does not exist'), { code: '42703' });
    });
    await until(() => own.status.state === 'failed', 'failed');
    expect(own.status.dependencyDown).toBeUndefined();
    expect(liveness({ supervisor: sup, bus: connected } as never).ready).toBe(false);
    await sup.stop();
  });

  it('a loop that ends by itself is restarted; progress keeps it from climbing to failed', async () => {
    const sup = new Supervisor(undefined, { baseMs: 5, maxMs: 10, failAfter: 2 });
    let runs = 0;
    const loop = sup.run('test.ends', async ({ progress }) => {
      runs++;
      progress();
    });
    await until(() => runs >= 6, 'six runs');
    expect(loop.status.state).not.toBe('failed');
    expect(loop.status.lastError).toMatch(/ended although nothing stopped it/);
    expect(loop.status.lastProgressAt).toBeDefined();
    await sup.stop();
  });

  it('stop aborts a running body and waits for it; no restart follows', async () => {
    const sup = new Supervisor(undefined, { baseMs: 5 });
    let runs = 0;
    let cleanedUp = false;
    const loop = sup.run('test.waits', async ({ signal }) => {
      runs++;
      await sleep(60_000, signal);
      cleanedUp = true;
    }, { essential: true });
    await until(() => runs === 1, 'first run');
    expect(sup.statuses()).toEqual([expect.objectContaining({ name: 'test.waits', state: 'running', essential: true, restarts: 0 })]);
    await loop.stop();
    expect(cleanedUp).toBe(true);
    expect(runs).toBe(1);
  });

  it('jitter stays within [ms/2, ms]', () => {
    expect(jitter(1000, () => 0)).toBe(500);
    expect(jitter(1000, () => 0.999999)).toBe(1000);
  });
});
