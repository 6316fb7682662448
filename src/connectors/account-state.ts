/**
 * Durable per-account state for connectors (checkpoints, offsets, auth) in the omni_state bucket,
 * under `<channel>.<account>.`. `fencedBy(lease)` gives the lease holder's view: its writes are
 * refused once the lease is not valid (see Fence in contract.ts).
 */
import type { Bus } from '../core/bus.js';
import { kvSafe } from '../core/subjects.js';
import { StaleLeaseError, type AccountState, type Fence } from './contract.js';

export function accountState(bus: Bus, statePrefix: string): AccountState {
  const kv = bus.kv.state;
  const full = (key: string) => statePrefix + kvSafe(key);
  const state: AccountState = {
    async get(key) {
      const e = await kv.get(full(key));
      return e && e.operation === 'PUT' ? { value: e.string(), revision: e.revision } : null;
    },
    put: (key, value) => kv.put(full(key), value),
    // Behind the compare-and-set guard where the server needs one (Bus.guardedUpdate).
    update: (key, value, revision) => (revision === 0 ? kv.create(full(key), value) : bus.guardedUpdate('state', full(key), value, revision)),
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
    fencedBy: (fence) => fenced(state, fence),
  };
  return state;
}

function fenced(state: AccountState, fence: Fence): AccountState {
  const check = (what: string, key: string) => {
    if (!fence.valid()) throw new StaleLeaseError(fence, `${what} of ${key}`);
  };
  return {
    get: (key) => state.get(key),
    keys: (prefix) => state.keys(prefix),
    async put(key, value) {
      check('write', key);
      return state.put(key, value);
    },
    async update(key, value, revision) {
      check('write', key);
      return state.update(key, value, revision);
    },
    async delete(key) {
      check('delete', key);
      return state.delete(key);
    },
    fencedBy: (other) => fenced(state, other),
  };
}
