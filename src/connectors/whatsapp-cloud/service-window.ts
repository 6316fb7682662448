/**
 * WhatsApp's customer-service window: free-form replies only within serviceWindowHours of the
 * customer's latest message. Intake keeps that time per customer in the account state; a send
 * checks it before calling Graph, so a reply Meta would refuse fails at once with the reason.
 */
import { PermanentDeliveryError } from '../../core/errors.js';
import type { AccountState } from '../contract.js';

const lastInboundKey = (waId: string) => `wac-last-${waId}`;

/** The window runs from the customer's latest message: keep the newest time. */
export async function touchWindow(state: AccountState, waId: string, atMs: number): Promise<void> {
  const key = lastInboundKey(waId);
  for (let i = 0; i < 5; i++) {
    const cur = await state.get(key);
    if (cur && Number(cur.value) >= atMs) return;
    try {
      await state.update(key, String(atMs), cur?.revision ?? 0);
      return;
    } catch {
      /* another replica wrote first: read again */
    }
  }
}

export async function assertInWindow(state: AccountState, to: string, serviceWindowHours: number): Promise<void> {
  const entry = await state.get(lastInboundKey(to));
  const last = entry ? Number(entry.value) : undefined;
  const windowMs = serviceWindowHours * 3_600_000;
  if (last === undefined || Date.now() - last > windowMs) {
    const since = last === undefined ? 'no message from this customer on record' : `the customer's last message was at ${new Date(last).toISOString()}`;
    throw new PermanentDeliveryError(
      `outside the ${serviceWindowHours}-hour customer-service window (${since}); WhatsApp only allows approved template messages now`,
      'outside_24h_window',
    );
  }
}
