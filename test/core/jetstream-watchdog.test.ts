/**
 * The watchdog's decisions, with a clock and a server of our own: a JetStream that stays silent
 * or off while the connection is up is restarted once the window has passed and the disk has room;
 * never while there is no room, never for a moment's silence, never while disconnected.
 */
import { describe, expect, it } from 'vitest';
import { createLogger } from '../../src/core/logger.js';
import { JetStreamWatchdog, type JetStreamHealth } from '../../src/core/jetstream-watchdog.js';

function harness(o: { health: JetStreamHealth[]; free?: number[]; connected?: boolean }) {
  let now = 0;
  const restarts: string[] = [];
  const counted: JetStreamHealth[] = [];
  const health = [...o.health];
  const free = [...(o.free ?? [])];
  const watchdog = new JetStreamWatchdog({
    probe: async () => health.shift() ?? 'ok',
    connected: () => o.connected ?? true,
    freeBytes: async () => free.shift() ?? 1e9,
    restart: async (reason) => {
      restarts.push(reason);
      return true;
    },
    onRestart: (reason) => counted.push(reason),
    log: createLogger({ level: 'silent' }),
    stuckAfterMs: 60_000,
    minFreeBytes: 64e6,
    now: () => now,
  });
  return { watchdog, restarts, counted, advance: (ms: number) => (now += ms) };
}

describe('JetStreamWatchdog', () => {
  it('restarts a JetStream silent for the whole window after the disk ran short, once, and gives the new server a window of its own', async () => {
    // Full at the first look (the write that wedged it), freed by the end of the window.
    const h = harness({ health: ['silent', 'silent', 'silent', 'silent', 'silent'], free: [1e6, 1e9, 1e9, 1e9, 1e9] });
    expect(await h.watchdog.check()).toBe('waiting');
    h.advance(30_000);
    expect(await h.watchdog.check()).toBe('waiting');
    h.advance(30_000);
    expect(await h.watchdog.check()).toBe('restarted');
    expect(h.restarts).toEqual(['JetStream does not answer for 60 s']);
    expect(h.counted).toEqual(['silent']);
    h.advance(5_000);
    expect(await h.watchdog.check()).toBe('waiting');
    expect(h.restarts).toHaveLength(1);
  });

  it('leaves a silent JetStream alone while its volume never ran short: an overloaded server, not the full-disk wedge', async () => {
    const h = harness({ health: ['silent', 'silent', 'silent'], free: [1e9, 1e9, 1e9] });
    await h.watchdog.check();
    h.advance(60_000);
    expect(await h.watchdog.check()).toBe('busy');
    h.advance(60_000);
    expect(await h.watchdog.check()).toBe('busy');
    expect(h.restarts).toEqual([]);
  });

  it('a silence that ends inside the window starts the count again', async () => {
    const h = harness({ health: ['silent', 'ok', 'off', 'off'] });
    await h.watchdog.check();
    h.advance(50_000);
    expect(await h.watchdog.check()).toBe('ok');
    h.advance(20_000);
    expect(await h.watchdog.check()).toBe('waiting');
    h.advance(59_000);
    expect(await h.watchdog.check()).toBe('waiting');
    expect(h.restarts).toEqual([]);
  });

  it('waits for room on the disk: a restart onto a full volume would wedge again at the first write', async () => {
    const h = harness({ health: ['off', 'off', 'off', 'off'], free: [1e6, 1e6, 10e6, 100e6] });
    await h.watchdog.check();
    h.advance(60_000);
    expect(await h.watchdog.check()).toBe('disk full');
    h.advance(5_000);
    expect(await h.watchdog.check()).toBe('disk full');
    h.advance(5_000);
    expect(await h.watchdog.check()).toBe('restarted');
    expect(h.restarts).toEqual(['JetStream answers that it is off for 70 s']);
    expect(h.counted).toEqual(['off']);
  });

  it('leaves a disconnected client alone: the server exiting is the embedded server\'s own restart', async () => {
    const h = harness({ health: ['silent'], connected: false });
    expect(await h.watchdog.check()).toBe('disconnected');
    h.advance(120_000);
    expect(await h.watchdog.check()).toBe('disconnected');
    expect(h.restarts).toEqual([]);
  });
});
