/**
 * The helpdesk surface over real HTTP against a real nats-server: every route's success and
 * error cases, auth, idempotent replay, OpenAPI, metrics parsed as Prometheus text.
 */
import { readFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startGateway, type TestGateway } from '../helpers/gateway.js';
import { openApiDocument } from '../../src/api/openapi.js';
import { parsePrometheus } from './prometheus.js';

const ADMIN = 'admin-token-0123456789abcdef';
const READER = 'reader-token-0123456789abcdef';
const SECRET = 'site-secret-0123456789';
let gw: TestGateway;

async function api(path: string, init: RequestInit & { token?: string | null } = {}) {
  const token = init.token === undefined ? ADMIN : init.token;
  const res = await fetch(`${gw.httpUrl}${path}`, {
    ...init,
    headers: { ...(token ? { authorization: `Bearer ${token}` } : {}), ...(init.body && typeof init.body === 'string' ? { 'content-type': 'application/json' } : {}), ...(init.headers as object) },
  });
  const text = await res.text();
  let body: any = text;
  try {
    body = JSON.parse(text);
  } catch {
    /* not JSON */
  }
  return { status: res.status, body, headers: res.headers };
}

async function openTicket(messageId: string, sender = 'client@example.ru', text = 'Касса не печатает чек'): Promise<string> {
  const res = await fetch(`${gw.httpUrl}/connectors/webhook/site/messages`, {
    method: 'POST',
    headers: { authorization: `Bearer ${SECRET}` },
    body: JSON.stringify({ messageId, sender: { id: sender, name: 'Ирина', email: sender }, text }),
  });
  expect(res.status).toBe(202);
  const e = await gw.waitForEvent((ev) => ev.type === 'ticket.message' && (ev.entry as any)?.event?.id === `webhook:site:${messageId}`);
  return e.ticketId;
}

beforeAll(async () => {
  gw = await startGateway({
    api: { tokens: [{ name: 'helpdesk', token: ADMIN }, { name: 'dashboards', token: READER, readOnly: true }] },
    connectors: [{ type: 'webhook', account: 'site', secret: SECRET }],
  });
});
afterAll(async () => gw?.stop());

describe('auth', () => {
  it('lets health through and refuses everything else without a valid token', async () => {
    expect((await api('/healthz', { token: null })).status).toBe(200);
    const none = await api('/v1/tickets', { token: null });
    expect(none.status).toBe(401);
    expect(none.body.error.code).toBe('unauthorized');
    expect((await api('/v1/tickets', { token: 'wrong-token-0123456789abcdef' })).status).toBe(401);
    expect((await api('/v1/tickets', { token: READER })).status).toBe(200);
    const ro = await api('/v1/tickets/T-1/notes', { token: READER, method: 'POST', body: JSON.stringify({ text: 'x' }) });
    expect(ro.status).toBe(403);
    expect(ro.body.error).toEqual({ code: 'forbidden', message: 'token "dashboards" is read-only' });
    expect(gw.logs.join('')).not.toContain(ADMIN);
  });
});

describe('tickets', () => {
  it('gets a ticket with its log, and 404s unknown ids', async () => {
    const id = await openTicket('get-1');
    const got = await api(`/v1/tickets/${id}`);
    expect(got.status).toBe(200);
    expect(got.body.ticket).toMatchObject({ id, status: 'new', channel: 'webhook', account: 'site' });
    expect(got.body.log[0]).toMatchObject({ kind: 'inbound', match: { rule: 'new-ticket' } });
    const missing = await api('/v1/tickets/T-999999');
    expect(missing.status).toBe(404);
    expect(missing.body.error).toEqual({ code: 'ticket_not_found', message: 'no ticket with id T-999999' });
  });

  it('replies, notes and changes status; replays an idempotency key; names invalid fields', async () => {
    const id = await openTicket('flow-1');
    const first = await api(`/v1/tickets/${id}/replies`, { method: 'POST', headers: { 'idempotency-key': 'hd-1' }, body: JSON.stringify({ text: 'Здравствуйте, Ирина!', author: { id: 'agent-5', name: 'Мария' } }) });
    expect(first.status).toBe(202);
    expect(first.body).toMatchObject({ ticketId: id, status: 'pending' });
    const again = await api(`/v1/tickets/${id}/replies`, { method: 'POST', headers: { 'idempotency-key': 'hd-1' }, body: JSON.stringify({ text: 'Здравствуйте, Ирина!' }) });
    expect(again.status).toBe(202);
    expect(again.body).toEqual(first.body);
    expect(again.headers.get('idempotent-replayed')).toBe('true');

    expect((await api(`/v1/tickets/${id}/notes`, { method: 'POST', body: JSON.stringify({ text: 'Перезвонить после 15:00 МСК' }) })).status).toBe(201);
    const status = await api(`/v1/tickets/${id}/status`, { method: 'POST', body: JSON.stringify({ status: 'resolved' }) });
    expect(status.body).toEqual({ ticketId: id, from: 'pending', status: 'resolved' });

    const bad = await api(`/v1/tickets/${id}/status`, { method: 'POST', body: JSON.stringify({ status: 'done' }) });
    expect(bad.status).toBe(400);
    expect(bad.body.error.code).toBe('invalid_request');
    expect(bad.body.error.field).toBe('status');
    const empty = await api(`/v1/tickets/${id}/replies`, { method: 'POST', body: JSON.stringify({ text: '' }) });
    expect(empty.body.error.field).toBe('text');
    expect((await api(`/v1/tickets/${id}/replies`, { method: 'POST', body: '{not json' })).body.error.code).toBe('invalid_json');
    expect((await api('/v1/tickets/T-424242/replies', { method: 'POST', body: JSON.stringify({ text: 'x' }) })).status).toBe(404);

    const log = (await api(`/v1/tickets/${id}`)).body.log.map((e: { kind: string }) => e.kind);
    expect(log.filter((k: string) => k === 'outbound')).toHaveLength(1);
    expect(log).toEqual(expect.arrayContaining(['inbound', 'outbound', 'note', 'status']));
  });

  it('lists with filters and cursor paging', async () => {
    const ids = [];
    for (let i = 0; i < 5; i++) ids.push(await openTicket(`list-${i}`, `list-${i}@example.ru`));
    await api(`/v1/tickets/${ids[0]}/status`, { method: 'POST', body: JSON.stringify({ status: 'closed' }) });
    const closed = await api('/v1/tickets?status=closed');
    expect(closed.body.tickets.map((t: { id: string }) => t.id)).toContain(ids[0]);
    expect(closed.body.tickets.every((t: { status: string }) => t.status === 'closed')).toBe(true);
    const byContact = await api('/v1/tickets?contact=LIST-3@example.ru');
    expect(byContact.body.tickets.map((t: { id: string }) => t.id)).toEqual([ids[3]]);

    const seen: string[] = [];
    let cursor: string | null = null;
    do {
      const page: { body: { tickets: Array<{ id: string }>; nextCursor: string | null } } = await api(`/v1/tickets?channel=webhook&limit=2${cursor ? `&cursor=${cursor}` : ''}`);
      expect(page.body.tickets.length).toBeLessThanOrEqual(2);
      seen.push(...page.body.tickets.map((t) => t.id));
      cursor = page.body.nextCursor;
    } while (cursor);
    expect(new Set(seen).size).toBe(seen.length);
    for (const id of ids) expect(seen).toContain(id);
    expect((await api('/v1/tickets?limit=0')).body.error.field).toBe('limit');
    expect((await api('/v1/tickets?cursor=garbage')).body.error.field).toBe('cursor');
  });

  it('uploads an attachment, sends it with a reply, and serves it back byte for byte', async () => {
    const id = await openTicket('att-1');
    const bytes = Buffer.from('%PDF-1.4 счёт №17\n'.repeat(1000));
    const up = await fetch(`${gw.httpUrl}/v1/attachments?name=${encodeURIComponent('счёт.pdf')}`, { method: 'POST', headers: { authorization: `Bearer ${ADMIN}`, 'content-type': 'application/pdf' }, body: bytes });
    expect(up.status).toBe(201);
    const ref = (await up.json()) as { objectKey: string; name: string; size: number };
    expect(ref).toMatchObject({ name: 'счёт.pdf', size: bytes.length });
    const reply = await api(`/v1/tickets/${id}/replies`, { method: 'POST', body: JSON.stringify({ text: 'Счёт во вложении', attachments: [ref, { name: 'note.txt', contentBase64: Buffer.from('привет').toString('base64') }] }) });
    expect(reply.status).toBe(202);
    const got = await fetch(`${gw.httpUrl}/v1/attachments/${ref.objectKey}`, { headers: { authorization: `Bearer ${ADMIN}` } });
    expect(Buffer.compare(Buffer.from(await got.arrayBuffer()), bytes)).toBe(0);
    expect((await api('/v1/attachments/sha256/0000')).status).toBe(404);
    const missing = await api(`/v1/tickets/${id}/replies`, { method: 'POST', body: JSON.stringify({ text: 'x', attachments: [{ ...ref, objectKey: `sha256/${'0'.repeat(64)}` }] }) });
    expect(missing.body.error.field).toBe('attachments.0.objectKey');
  });
});

describe('openapi and metrics', () => {
  it('serves the OpenAPI document, identical to docs/openapi.json', async () => {
    const served = await api('/v1/openapi.json');
    expect(served.status).toBe(200);
    expect(served.body.openapi).toBe('3.1.0');
    expect(Object.keys(served.body.paths)).toEqual(expect.arrayContaining(['/v1/tickets', '/v1/tickets/{id}/replies']));
    const file = JSON.parse(readFileSync(new URL('../../docs/openapi.json', import.meta.url), 'utf8'));
    expect(file).toEqual(openApiDocument());
  });

  it('exposes Prometheus metrics that parse, with the conventional names', async () => {
    await openTicket('metrics-1');
    await gw.gateway.sampleNow();
    const res = await fetch(`${gw.httpUrl}/metrics`);
    expect(res.headers.get('content-type')).toMatch(/^text\/plain; version=0\.0\.4/);
    const families = parsePrometheus(await res.text());
    expect(families.get('omnigate_events_in_total')!.type).toBe('counter');
    expect(families.get('omnigate_events_in_total')!.samples.some((s) => s.labels.channel === 'webhook' && s.value >= 1)).toBe(true);
    expect(families.get('omnigate_routing_latency_seconds')!.type).toBe('histogram');
    expect(families.get('omnigate_consumer_lag')!.samples[0]!.labels.consumer).toBe('router');
    expect(families.get('omnigate_tickets')!.samples.find((s) => s.labels.status === 'new')!.value).toBeGreaterThan(0);
    for (const name of ['omnigate_events_out_total', 'omnigate_delivery_failures_total', 'omnigate_webhook_retries_total', 'omnigate_connector_up']) {
      expect(families.has(name), name).toBe(true);
    }
  });
});
