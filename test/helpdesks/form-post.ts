/**
 * What the helpdesk host tests share: Ольга writing through the web form, a gateway that syncs
 * her tickets to a Zammad stand-in, and a poll for a condition.
 */
import { expect } from 'vitest';
import type { TestGateway } from '../helpers/gateway.js';

/** Polls `probe` every `everyMs` until it gives a truthy value (returned), or fails naming `what`. */
export async function until<T>(what: string, probe: () => T | undefined | null | false | Promise<T | undefined | null | false>, timeoutMs = 60_000, everyMs = 200): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await probe();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, everyMs));
  }
}

/**
 * A gateway's config with the `form` web-form account synced to the Zammad stand-in at
 * `zammadUrl`: no polling, fast retries, and redeliverAfter 10 min, so an event waits for a
 * rewind, never for redelivery. The secrets come from ZAMMAD_TOKEN and FORM_SECRET in its env.
 */
export function zammadFormConfig(zammadUrl: string, extra: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    router: { autoAcknowledge: { enabled: false } },
    connectors: [{ type: 'webhook', account: 'form', secret: '${FORM_SECRET}' }],
    helpdesks: [{ type: 'zammad', id: 'zammad', url: zammadUrl, token: '${ZAMMAD_TOKEN}', group: 'Users', poll: { interval: 0 }, backoffBase: '100ms', backoffMax: '400ms', redeliverAfter: '10m' }],
    ...extra,
  };
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
