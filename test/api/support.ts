/**
 * Shared set-up for the API tests: a whole gateway on a throwaway nats-server with the webhook
 * connector as the channel, a callback stand-in that receives the replies it sends, and small
 * HTTP helpers.
 */
import { createServer, type Server } from 'node:http';
import { expect } from 'vitest';
import { startGateway, type TestGateway } from '../helpers/gateway.js';
import type { TestNats } from '../helpers/nats-server.js';

export const ADMIN = 'admin-token-0123456789abcdef';
export const READER = 'reader-token-0123456789abcdef';
export const SITE_SECRET = 'site-secret-0123456789';

export interface ApiHarness {
  gw: TestGateway;
  /** What the webhook connector POSTed to its callback: the replies as the channel saw them. */
  sent: Array<Record<string, any>>;
  /** The HTTP status the channel's callback answers a reply with (default 200). */
  callbackStatus: (reply: Record<string, any>) => number;
  api(path: string, init?: RequestInit & { token?: string | null }): Promise<{ status: number; body: any; headers: Headers }>;
  /** Opens (or continues) a ticket through the webhook channel; returns its id. One chat per sender (default: one per messageId); a sender with an @ is also its email. */
  openTicket(messageId: string, sender?: string, text?: string, attachments?: unknown[]): Promise<string>;
  stop(): Promise<void>;
}

/** `moreConnectors` run beside the webhook channel (whose callback is the harness's stand-in). */
export async function startApiHarness(
  extra: Record<string, unknown> = {},
  opts: { moreConnectors?: Array<Record<string, unknown>>; nats?: TestNats; env?: Record<string, string> } = {},
): Promise<ApiHarness> {
  const sent: Array<Record<string, any>> = [];
  const harness = { callbackStatus: (_reply: Record<string, any>) => 200 };
  const callback: Server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const reply = JSON.parse(Buffer.concat(chunks).toString('utf8'));
      const status = harness.callbackStatus(reply);
      if (status === 200) sent.push(reply);
      res.writeHead(status, { 'content-type': 'application/json' }).end(status === 200 ? '{}' : '{"error":"refused"}');
    });
  });
  await new Promise<void>((r) => callback.listen(0, '127.0.0.1', r));
  const port = (callback.address() as { port: number }).port;
  const gw = await startGateway({
    api: { tokens: [{ name: 'helpdesk', token: ADMIN }, { name: 'dashboards', token: READER, readOnly: true }] },
    connectors: [{ type: 'webhook', account: 'site', secret: SITE_SECRET, callbackUrl: `http://127.0.0.1:${port}/cb` }, ...(opts.moreConnectors ?? [])],
    ...extra,
  }, { nats: opts.nats, env: opts.env });

  const api: ApiHarness['api'] = async (path, init = {}) => {
    const token = init.token === undefined ? ADMIN : init.token;
    const jsonBody = typeof init.body === 'string';
    const res = await fetch(`${gw.httpUrl}${path}`, {
      ...init,
      headers: { ...(token ? { authorization: `Bearer ${token}` } : {}), ...(jsonBody ? { 'content-type': 'application/json' } : {}), ...(init.headers as object) },
    });
    const text = await res.text();
    let body: any = text;
    try {
      body = JSON.parse(text);
    } catch {
      /* not JSON */
    }
    return { status: res.status, body, headers: res.headers };
  };

  const openTicket: ApiHarness['openTicket'] = async (messageId, sender = `${messageId}@example.ru`, text = 'Касса не печатает чек', attachments) => {
    const res = await fetch(`${gw.httpUrl}/connectors/webhook/site/messages`, {
      method: 'POST',
      headers: { authorization: `Bearer ${SITE_SECRET}` },
      body: JSON.stringify({ messageId, sender: { id: sender, name: 'Ирина', email: sender.includes('@') ? sender : undefined }, text, ...(attachments ? { attachments } : {}) }),
    });
    expect(res.status).toBe(202);
    const e = await gw.waitForEvent((ev) => ev.type === 'ticket.message' && (ev.entry as any)?.event?.id === `webhook:site:${messageId}`);
    return e.ticketId;
  };

  return Object.assign(harness, {
    gw,
    sent,
    api,
    openTicket,
    async stop() {
      await gw?.stop();
      callback.close();
    },
  });
}

/** A JSON POST body. */
export function post(body: unknown, headers: Record<string, string> = {}, token?: string | null): RequestInit & { token?: string | null } {
  return { method: 'POST', body: JSON.stringify(body), headers, ...(token !== undefined ? { token } : {}) };
}

export { until } from '../helpers/until.js';
