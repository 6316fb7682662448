/**
 * The account-wide "halted" marker: after connectionReplaced or forbidden no gateway process may
 * connect the account again on its own, or two Web sessions knock each other off for ever. The
 * process that halted keeps the session lease; the marker outlives it, and is respected by every
 * process started before it was written. A process started later (an operator restart) clears it.
 */
import type { AccountState } from '../contract.js';

const HALT_KEY = 'wa-halted';

export interface HaltState {
  state: 'stalled' | 'auth_failed';
  reason: string;
  /** Epoch ms when the halt was recorded. */
  at: number;
}

export async function readHalt(store: AccountState): Promise<HaltState | null> {
  const entry = await store.get(HALT_KEY);
  if (!entry) return null;
  try {
    const h = JSON.parse(entry.value) as HaltState;
    return typeof h.at === 'number' && typeof h.reason === 'string' ? h : null;
  } catch {
    return null; // an unreadable marker must not keep the account down
  }
}

export async function writeHalt(store: AccountState, h: HaltState): Promise<void> {
  await store.put(HALT_KEY, JSON.stringify(h));
}

export async function clearHalt(store: AccountState): Promise<void> {
  await store.delete(HALT_KEY);
}
