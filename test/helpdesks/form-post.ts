/** What the helpdesk host tests share: Ольга writing through the web form, and a poll for a condition. */
import { expect } from 'vitest';
import type { TestGateway } from '../helpers/gateway.js';

/** Polls `probe` every 200 ms until it gives a truthy value, or fails naming `what`. */
export async function until<T>(what: string, probe: () => T | undefined | null | false | Promise<T | undefined | null | false>, timeoutMs = 60_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await probe();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

/** A message from Ольга in conversation conv-1 of the `form` web-form account. */
export async function postForm(gw: TestGateway, secret: string, messageId: string, text: string): Promise<void> {
  const r = await fetch(`${gw.httpUrl}/connectors/webhook/form/messages`, {
    method: 'POST',
    headers: { authorization: `Bearer ${secret}` },
    body: JSON.stringify({ messageId, conversationId: 'conv-1', sender: { id: 'cust-1', name: 'Ольга', email: 'olga@example.ru' }, text }),
  });
  expect(r.status).toBe(202);
}
