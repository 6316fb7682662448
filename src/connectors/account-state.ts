/**
 * Durable per-account state for connectors (checkpoints, offsets, auth) in the omni_state bucket,
 * under `<channel>.<account>.`.
 */
import type { Bus } from '../core/bus.js';
import { kvSafe } from '../core/subjects.js';
import type { AccountState } from './contract.js';

export function accountState(bus: Bus, statePrefix: string): AccountState {
  const kv = bus.kv.state;
  const full = (key: string) => statePrefix + kvSafe(key);
  return {
    async get(key) {
      const e = await kv.get(full(key));
      return e && e.operation === 'PUT' ? { value: e.string(), revision: e.revision } : null;
    },
    put: (key, value) => kv.put(full(key), value),
    update: (key, value, revision) => (revision === 0 ? kv.create(full(key), value) : kv.update(full(key), value, revision)),
    async delete(key) {
      await kv.delete(full(key));
    },
    async keys(prefix = '') {
      const out: string[] = [];
      for await (const k of await kv.keys(`${statePrefix}>`)) {
        const short = k.slice(statePrefix.length);
        if (short.startsWith(prefix)) out.push(short);
      }
      return out;
    },
  };
}
