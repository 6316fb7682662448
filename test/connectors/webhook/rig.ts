/** The webhook connector on a recording context: its routes, letters and publishes, no gateway. */
import { WebhookConnector } from '../../../src/connectors/webhook/connector.js';
import type { RawRequest, RawResponse } from '../../../src/core/http.js';
import type { ConnectorContext } from '../../../src/connectors/contract.js';

export const WEBHOOK_SECRET = 'site-secret-0123456789';

export function webhookRig(o: { callbackUrl?: string; timeoutMs?: number } = {}) {
  const routes = new Map<string, (req: RawRequest) => Promise<RawResponse>>();
  const letters: string[] = [];
  const published: unknown[] = [];
  const ctx = {
    channel: 'webhook',
    account: 'site',
    http: { route: (_m: string, path: string, handler: (req: RawRequest) => Promise<RawResponse>) => routes.set(path, handler) },
    setState: () => undefined,
    deadLetter: async (reason: string) => void letters.push(reason),
    publish: async (input: unknown) => (published.push(input), { duplicate: false }),
    media: { put: async (_b: Buffer, meta: { name: string }) => ({ name: meta.name, mimeType: 'text/plain', size: 1, status: 'stored' }) },
  } as unknown as ConnectorContext;
  const c = new WebhookConnector({ secret: WEBHOOK_SECRET, callbackUrl: o.callbackUrl, timeoutMs: o.timeoutMs ?? 5_000, perConversationIntervalMs: 0, senderIds: 'authenticated' }, ctx);
  /** POSTs `body` (bytes as given) to the messages route with the secret. */
  const post = (body: Buffer, headers: Record<string, string> = {}) =>
    routes.get('/connectors/webhook/site/messages')!({
      method: 'POST', path: '/connectors/webhook/site/messages', query: {}, params: {}, rawBody: body,
      headers: { authorization: `Bearer ${WEBHOOK_SECRET}`, 'content-type': 'application/json', ...headers },
    });
  return { c, post, letters, published };
}
