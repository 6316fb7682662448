/**
 * A bus as an eraser sees it, with a hook awaited ahead of every stream purge it asks for: how
 * the erasure tests stop or interleave an erasure at its purges through the real bus, without a
 * test-only seam in the production code.
 */
import type { Bus } from '../../src/core/bus.js';

/** A property of `target`, its methods bound to it (the wrappers below hold no state of their own). */
function own<T extends object>(target: T, key: string | symbol): unknown {
  const value: unknown = Reflect.get(target, key, target);
  return typeof value === 'function' ? (value as (...args: unknown[]) => unknown).bind(target) : value;
}

/** `bus` with `before` awaited ahead of every stream purge (a rejection fails the purge, as a crash would end it). */
export function beforePurges(bus: Bus, before: (stream: string) => Promise<void>): Bus {
  const streams = bus.jsm.streams;
  const purge: typeof streams.purge = async (stream, opts) => {
    await before(stream);
    return streams.purge(stream, opts);
  };
  const wrappedStreams = new Proxy(streams, { get: (t, k) => (k === 'purge' ? purge : own(t, k)) });
  const jsm = new Proxy(bus.jsm, { get: (t, k) => (k === 'streams' ? wrappedStreams : own(t, k)) });
  return new Proxy(bus, { get: (t, k) => (k === 'jsm' ? jsm : own(t, k)) });
}
