/** Fault injection on the router's journal: a stream whose leader is cut off, for a few writes. */
import type { Journal } from '../../src/router/journal.js';

type Method = 'append' | 'emit';

/**
 * Makes the first `times` calls of `journal[method]` that `when` picks reject, as a write to a
 * stream without a leader would; the rest pass through. `failures()` counts the rejections;
 * `restore()` gives the journal its own method back.
 */
export function failWrites<M extends Method>(journal: Journal, method: M, when: (...args: Parameters<Journal[M]>) => boolean, times = 1): { failures: () => number; restore: () => void } {
  const original = journal[method].bind(journal) as (...args: Parameters<Journal[M]>) => ReturnType<Journal[M]>;
  let failures = 0;
  const injected = (...args: Parameters<Journal[M]>) => {
    if (failures < times && when(...args)) {
      failures++;
      return Promise.reject(new Error(`injected: the ${method === 'append' ? 'log' : 'events'} stream has no leader`));
    }
    return original(...args);
  };
  Object.defineProperty(journal, method, { value: injected, configurable: true, writable: true });
  return { failures: () => failures, restore: () => void Reflect.deleteProperty(journal, method) };
}
