/**
 * The /v1 ticket routes over real HTTP against a real nats-server, the webhook connector as the
 * channel: each route's success and error cases, idempotent replay, the log with every kind of
 * entry, list filters and cursor paging, and the OpenAPI document.
 */
import { readFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openApiDocument } from '../../src/api/openapi.js';
import { post, startApiHarness, until, type ApiHarness } from './support.js';

let h: ApiHarness;

beforeAll(async () => {
  h = await startApiHarness();
});
afterAll(async () => h?.stop());

describe('GET /v1/tickets/:id', () => {
  it('returns the ticket with its whole log: in, out, delivery, note, status', async () => {
    const id = await h.openTicket('log-1');
    await h.api(`/v1/tickets/${id}/replies`, post({ text: 'Здравствуйте, Ирина!' }));
    await h.gw.waitForEvent((e) => e.type === 'ticket.delivery' && e.ticketId === id);
    await h.api(`/v1/tickets/${id}/notes`, post({ text: 'Перезвонить после 15:00 МСК' }));
    await h.api(`/v1/tickets/${id}/status`, post({ status: 'resolved' }));

    const got = await h.api(`/v1/tickets/${id}`);
    expect(got.status).toBe(200);
    expect(got.body.ticket).toMatchObject({ id, status: 'resolved', channel: 'webhook', account: 'site' });
    const log = got.body.log as Array<Record<string, any>>;
    expect(log.map((e) => e.kind)).toEqual(['inbound', 'outbound', 'delivery', 'note', 'status']);
    expect(log[0]).toMatchObject({ seq: expect.any(Number), match: { rule: 'new-ticket' }, event: { text: 'Касса не печатает чек' } });
    expect(log[2]!.status).toMatchObject({ status: 'sent' });
    expect(log[4]).toMatchObject({ from: 'pending', to: 'resolved' });
    expect(log.map((e) => e.seq)).toEqual([...log.map((e) => e.seq)].sort((a, b) => a - b));
  });

  it('404s an unknown id with a stable code', async () => {
    const missing = await h.api('/v1/tickets/T-999999');
    expect(missing.status).toBe(404);
    expect(missing.body.error).toEqual({ code: 'ticket_not_found', message: 'no ticket with id T-999999', field: 'id' });
  });
});

describe('POST /v1/tickets/:id/replies', () => {
  it('sends through the channel, replays an Idempotency-Key with the first result', async () => {
    const id = await h.openTicket('reply-1');
    const first = await h.api(`/v1/tickets/${id}/replies`, post({ text: 'Здравствуйте!', author: { id: 'agent-5', name: 'Мария' } }, { 'idempotency-key': 'hd-1' }));
    expect(first.status).toBe(202);
    expect(first.body).toMatchObject({ ticketId: id, outboundId: expect.any(String), status: 'pending' });
    expect(first.headers.get('idempotent-replayed')).toBe('false');
    const again = await h.api(`/v1/tickets/${id}/replies`, post({ text: 'Здравствуйте! (повтор)' }, { 'idempotency-key': 'hd-1' }));
    expect(again.status).toBe(202);
    expect(again.body).toEqual(first.body);
    expect(again.headers.get('idempotent-replayed')).toBe('true');

    await until(() => h.sent.some((s) => s.text === 'Здравствуйте!'), 'the reply at the callback');
    const log = (await h.api(`/v1/tickets/${id}`)).body.log as Array<Record<string, any>>;
    expect(log.filter((e) => e.kind === 'outbound')).toHaveLength(1);
    expect(log.find((e) => e.kind === 'outbound')!.message.author).toEqual({ id: 'agent-5', name: 'Мария' });
    expect(h.sent.filter((s) => s.ticketId === id)).toHaveLength(1);
  });

  it('names the invalid field, refuses non-JSON and non-objects, 404s unknown tickets', async () => {
    const id = await h.openTicket('reply-bad');
    const empty = await h.api(`/v1/tickets/${id}/replies`, post({ text: '' }));
    expect(empty.status).toBe(400);
    expect(empty.body.error).toMatchObject({ code: 'invalid_request', field: 'text' });
    expect((await h.api(`/v1/tickets/${id}/replies`, post({ html: '<b>x</b>' }))).body.error.field).toBe('text');
    expect((await h.api(`/v1/tickets/${id}/replies`, post({ text: 'x', author: { name: 'без id' } }))).body.error.field).toBe('author.id');
    expect((await h.api(`/v1/tickets/${id}/replies`, post({ text: 'x', attachments: [{ name: 'a.txt' }] }))).body.error.field).toMatch(/^attachments\.0/);
    const notJson = await h.api(`/v1/tickets/${id}/replies`, { method: 'POST', body: '{not json' });
    expect(notJson.status).toBe(400);
    expect(notJson.body.error.code).toBe('invalid_json');
    expect((await h.api(`/v1/tickets/${id}/replies`, post(['text']))).body.error).toMatchObject({ code: 'invalid_request', field: 'body' });
    const longKey = await h.api(`/v1/tickets/${id}/replies`, post({ text: 'x' }, { 'idempotency-key': 'k'.repeat(201) }));
    expect(longKey.body.error).toMatchObject({ code: 'invalid_request', field: 'Idempotency-Key' });
    const unknown = await h.api('/v1/tickets/T-424242/replies', post({ text: 'x' }));
    expect(unknown.status).toBe(404);
    expect(unknown.body.error.code).toBe('ticket_not_found');
    expect(h.sent.filter((s) => s.ticketId === id)).toHaveLength(0);
  });
});

describe('POST /v1/tickets/:id/notes and /status', () => {
  it('adds a note once per key and names invalid fields', async () => {
    const id = await h.openTicket('note-1');
    const first = await h.api(`/v1/tickets/${id}/notes`, post({ text: 'Клиент VIP' }, { 'idempotency-key': 'n-1' }));
    expect(first.status).toBe(201);
    expect(first.body).toEqual({ ticketId: id, noteId: expect.stringMatching(/^note:/) });
    const again = await h.api(`/v1/tickets/${id}/notes`, post({ text: 'Клиент VIP' }, { 'idempotency-key': 'n-1' }));
    expect(again.body).toEqual(first.body);
    expect(again.headers.get('idempotent-replayed')).toBe('true');
    expect((await h.api(`/v1/tickets/${id}`)).body.log.filter((e: { kind: string }) => e.kind === 'note')).toHaveLength(1);

    expect((await h.api(`/v1/tickets/${id}/notes`, post({}))).body.error).toMatchObject({ code: 'invalid_request', field: 'text' });
    expect((await h.api('/v1/tickets/T-424242/notes', post({ text: 'x' }))).status).toBe(404);
  });

  it('changes status, reports from/to, replays, refuses unknown statuses', async () => {
    const id = await h.openTicket('status-1');
    const changed = await h.api(`/v1/tickets/${id}/status`, post({ status: 'closed', author: { id: 'agent-5' } }, { 'idempotency-key': 's-1' }));
    expect(changed.status).toBe(200);
    expect(changed.body).toEqual({ ticketId: id, from: 'new', status: 'closed' });
    await h.api(`/v1/tickets/${id}/status`, post({ status: 'open' }));
    const replay = await h.api(`/v1/tickets/${id}/status`, post({ status: 'closed' }, { 'idempotency-key': 's-1' }));
    expect(replay.body).toEqual(changed.body);
    expect((await h.gw.ticket(id))!.status).toBe('open'); // the replay changed nothing

    const bad = await h.api(`/v1/tickets/${id}/status`, post({ status: 'done' }));
    expect(bad.status).toBe(400);
    expect(bad.body.error).toMatchObject({ code: 'invalid_request', field: 'status' });
    expect((await h.api('/v1/tickets/T-424242/status', post({ status: 'open' }))).body.error.code).toBe('ticket_not_found');
  });
});

describe('GET /v1/tickets', () => {
  it('filters by status, channel, account, contact and updatedSince, and pages with a cursor', async () => {
    const ids: string[] = [];
    for (let i = 0; i < 5; i++) ids.push(await h.openTicket(`list-${i}`, `list-${i}@example.ru`));
    await new Promise((r) => setTimeout(r, 5)); // updatedSince is inclusive: step past the last ticket's millisecond
    const closedAt = new Date().toISOString();
    await h.api(`/v1/tickets/${ids[0]}/status`, post({ status: 'closed' }));

    const closed = await h.api('/v1/tickets?status=closed');
    expect(closed.status).toBe(200);
    expect(closed.body.tickets.map((t: { id: string }) => t.id)).toContain(ids[0]); // read-your-writes
    expect(closed.body.tickets.every((t: { status: string }) => t.status === 'closed')).toBe(true);
    expect((await h.api('/v1/tickets?contact=LIST-3@example.ru')).body.tickets.map((t: { id: string }) => t.id)).toEqual([ids[3]]);
    const since = (await h.api(`/v1/tickets?updatedSince=${encodeURIComponent(closedAt)}`)).body.tickets.map((t: { id: string }) => t.id);
    expect(since).toContain(ids[0]);
    for (const id of ids.slice(1)) expect(since).not.toContain(id);
    expect((await h.api('/v1/tickets?account=site&channel=webhook')).body.tickets.length).toBeGreaterThanOrEqual(5);
    expect((await h.api('/v1/tickets?account=nope')).body).toEqual({ tickets: [], nextCursor: null });

    const seen: string[] = [];
    let cursor: string | null = null;
    let pages = 0;
    do {
      const page: { body: { tickets: Array<{ id: string; updatedAt: string }>; nextCursor: string | null } } = await h.api(`/v1/tickets?channel=webhook&limit=2${cursor ? `&cursor=${cursor}` : ''}`);
      expect(page.body.tickets.length).toBeLessThanOrEqual(2);
      seen.push(...page.body.tickets.map((t) => t.id));
      cursor = page.body.nextCursor;
      pages++;
    } while (cursor);
    expect(pages).toBeGreaterThanOrEqual(3);
    expect(new Set(seen).size).toBe(seen.length);
    // A cursor made by hand is refused, not a 500 from SQL (a NUL in the id, a time PostgreSQL does not read).
    const forged = (value: unknown) => Buffer.from(JSON.stringify(value)).toString('base64url');
    for (const bad of [forged(['2026-12-07T02:03:27.476Z', 'T-1311\u0000']), forged(['1', 'x']), forged(['2026-12-07', 'T-1']), forged(['2026-02-30T00:00:00Z', 'T-1']), forged(['2026-12-07T24:00:00Z', 'T-1']), 'not-base64!', forged({ a: 1 })]) {
      const refused = await h.api(`/v1/tickets?cursor=${bad}`);
      expect(refused.status, bad).toBe(400);
      expect(refused.body.error).toMatchObject({ field: 'cursor', message: 'cursor is not one this API issued' });
    }
    for (const id of ids) expect(seen).toContain(id);
    expect(seen[0]).toBe(ids[0]); // most recently updated first
  });

  it('order=created pages every ticket once while tickets change (order=updated moves a changed one past the pages read)', async () => {
    // An outside trial paged 296 tickets under load and got 294: newest change first, a ticket
    // changed meanwhile jumped to the front, past the pages already read.
    const all = (await h.api('/v1/tickets?channel=webhook&order=created&limit=500')).body.tickets.map((t: { id: string }) => t.id) as string[];
    expect(all.length).toBeGreaterThanOrEqual(5);
    const seen: string[] = [];
    let cursor: string | null = null;
    let changed = false;
    do {
      const page: { body: { tickets: Array<{ id: string }>; nextCursor: string | null } } = await h.api(`/v1/tickets?channel=webhook&order=created&limit=2${cursor ? `&cursor=${cursor}` : ''}`);
      seen.push(...page.body.tickets.map((t) => t.id));
      cursor = page.body.nextCursor;
      if (!changed && cursor) {
        // The newest-created ticket changes after the first page: it stays in its place.
        expect((await h.api(`/v1/tickets/${all[all.length - 1]}/notes`, post({ text: 'Изменён во время выгрузки' }))).status).toBe(201);
        changed = true;
      }
    } while (cursor);
    expect(seen).toEqual(all);
    // A cursor is for the order it was issued for.
    const created = (await h.api('/v1/tickets?channel=webhook&order=created&limit=1')).body.nextCursor as string;
    expect((await h.api(`/v1/tickets?channel=webhook&cursor=${created}`)).body.error).toMatchObject({ field: 'cursor', message: expect.stringContaining('order=created') });
    expect((await h.api('/v1/tickets?order=newest')).body.error.field).toBe('order');
  });

  it('names the invalid query parameter', async () => {
    expect((await h.api('/v1/tickets?limit=0')).body.error).toMatchObject({ code: 'invalid_request', field: 'limit' });
    expect((await h.api('/v1/tickets?limit=501')).body.error.field).toBe('limit');
    // Number() spellings no client means: refused, not read as 16, 10 and 5.
    for (const limit of ['0x10', '1e1', '+5', '5.0', ' 5']) expect((await h.api(`/v1/tickets?limit=${encodeURIComponent(limit)}`)).body.error).toMatchObject({ field: 'limit', message: expect.stringContaining('written in digits') });
    expect((await h.api('/v1/tickets?limit=7')).status).toBe(200);
    expect((await h.api('/v1/tickets?status=done')).body.error.field).toBe('status');
    expect((await h.api('/v1/tickets?updatedSince=yesterday')).body.error.field).toBe('updatedSince');
    // A bare date says what is missing; a channel that cannot match says so instead of an empty list.
    expect((await h.api('/v1/tickets?updatedSince=2026-12-06')).body.error).toMatchObject({ field: 'updatedSince', message: expect.stringContaining('with its offset, e.g. 2026-12-06T00:00:00+03:00') });
    for (const channel of ['Webhook', 'telegram,email']) {
      expect((await h.api(`/v1/tickets?channel=${encodeURIComponent(channel)}`)).body.error, channel).toMatchObject({ field: 'channel', message: expect.stringContaining('in lower case') });
    }
    expect((await h.api('/v1/tickets?cursor=garbage')).body.error.field).toBe('cursor');
    // A typo must not silently widen the list: unknown parameters are refused by name.
    expect((await h.api('/v1/tickets?chanel=telegram')).body.error).toMatchObject({ code: 'invalid_request', field: 'chanel', message: 'unknown query parameter "chanel"' });
  });
});

describe('routing and the OpenAPI document', () => {
  it('answers unknown routes with the JSON error shape', async () => {
    const res = await h.api('/v1/nothing-here');
    expect(res.status).toBe(404);
    expect(res.body.error).toEqual({ code: 'not_found', message: 'no route GET /v1/nothing-here' });
  });

  it('serves the OpenAPI document, identical to docs/openapi.json, describing every route', async () => {
    const served = await h.api('/v1/openapi.json');
    expect(served.status).toBe(200);
    expect(served.body.openapi).toBe('3.1.0');
    const file = JSON.parse(readFileSync(new URL('../../docs/openapi.json', import.meta.url), 'utf8'));
    expect(file).toEqual(openApiDocument());
    expect(served.body).toEqual(file);
    for (const path of ['/v1/tickets', '/v1/tickets/{id}', '/v1/tickets/{id}/replies', '/v1/tickets/{id}/notes', '/v1/tickets/{id}/status', '/v1/attachments', '/v1/attachments/{objectKey}']) {
      expect(Object.keys(served.body.paths)).toContain(path);
    }
    // Every documented operation is a real route.
    for (const [path, ops] of Object.entries(served.body.paths as Record<string, object>)) {
      const url = path.replace('{objectKey}', '*').replace(/\{(\w+)\}/g, ':$1');
      for (const method of Object.keys(ops)) expect(h.gw.gateway.http.app.hasRoute({ method: method.toUpperCase() as 'GET', url }), `${method} ${path}`).toBe(true);
    }
    expect(served.body.components.schemas.Error.properties.error.properties.code.enum).toEqual(
      expect.arrayContaining(['invalid_request', 'invalid_json', 'unauthorized', 'forbidden', 'not_found', 'ticket_not_found', 'payload_too_large', 'unavailable']),
    );
  });
});
