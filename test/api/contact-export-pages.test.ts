/**
 * The export's byte bound, without a gateway: a page ends once its logs pass the budget (always
 * with at least one ticket, however long its log), and nextCursor continues after the last ticket
 * served, not after the last one the read model returned.
 */
import Fastify from 'fastify';
import { describe, expect, it } from 'vitest';
import { registerExportApi, withExpired } from '../../src/api/export-route.js';
import { LogEntry } from '../../src/core/schema.js';
import { emailMessage } from '../helpers/events.js';
import { TokenAuth } from '../../src/api/auth.js';
import type { ExportApiDeps } from '../../src/api/export-route.js';

const TOKEN = 'dpo-token-0123456789abcdef';

function fakeDeps(logChars: number) {
  const published: unknown[] = [];
  const asked: unknown[] = [];
  const tickets = ['T-1', 'T-2', 'T-3'].map((id, i) => ({ id, createdAt: `2026-12-0${i + 1}T10:00:00.000Z` }));
  const deps = {
    auth: new TokenAuth([{ name: 'dpo', token: TOKEN, readOnly: false, admin: true }]),
    bus: { publishJson: async (subject: string, event: unknown) => void published.push({ subject, event }) },
    log: { info: () => undefined },
    store: { readLog: async () => [{ seq: 1, entry: { kind: 'note', at: '2026-12-01T10:00:00.000Z', id: 'n', text: 'Щ'.repeat(logChars), author: { id: 'a' } } }] },
    readModel: {
      caughtUp: async () => undefined,
      exportPage: async (_id: string, o: { limit: number; after?: { createdAt: string; id: string } }) => {
        asked.push(o.after);
        const rest = o.after ? tickets.filter((t) => t.createdAt > o.after!.createdAt) : tickets;
        return {
          contact: { id: 'c_1', requested: 'c_1', identities: [], merged: [], tickets: 3, createdAt: '2026-12-01T00:00:00.000Z' },
          ticketsTotal: 3,
          tickets: rest.slice(0, o.limit),
          attachments: new Map(),
          more: rest.length > o.limit,
          otherTickets: o.after ? null : [],
        };
      },
    },
  } as unknown as ExportApiDeps;
  return { deps, published, asked };
}

describe('export pages by size', () => {
  it('ends a page once its logs pass the budget and continues after the last ticket served', async () => {
    const { deps, published, asked } = fakeDeps(600);
    const app = Fastify();
    registerExportApi(app, deps, { maxPageBytes: 1000 });
    const get = async (url: string) => (await app.inject({ method: 'GET', url, headers: { authorization: `Bearer ${TOKEN}` } })).json();
    // Each ticket's log is over 1,000 bytes: one ticket per page, however many `limit` allows.
    const first = await get('/v1/contacts/c_1/export?limit=3');
    expect(first.tickets.map((t: any) => t.ticket.id)).toEqual(['T-1']);
    expect(first.nextCursor).toEqual(expect.any(String));
    const second = await get(`/v1/contacts/c_1/export?limit=3&cursor=${first.nextCursor}`);
    expect(asked[1]).toEqual({ createdAt: '2026-12-01T10:00:00.000Z', id: 'T-1' });
    expect(second.tickets.map((t: any) => t.ticket.id)).toEqual(['T-2']);
    const third = await get(`/v1/contacts/c_1/export?limit=3&cursor=${second.nextCursor}`);
    expect(third.tickets.map((t: any) => t.ticket.id)).toEqual(['T-3']);
    expect(third.nextCursor).toBeNull();
    expect(published.map((p: any) => [p.subject, p.event.exported.tickets, p.event.continued])).toEqual([
      ['omni.events.audit.export', 1, false], ['omni.events.audit.export', 1, true], ['omni.events.audit.export', 1, true],
    ]);
    await app.close();
  });

  it('serves every ticket in one page when they fit', async () => {
    const { deps } = fakeDeps(10);
    const app = Fastify();
    registerExportApi(app, deps, { maxPageBytes: 100_000 });
    const page = (await app.inject({ method: 'GET', url: '/v1/contacts/c_1/export', headers: { authorization: `Bearer ${TOKEN}` } })).json();
    expect(page.tickets.map((t: any) => t.ticket.id)).toEqual(['T-1', 'T-2', 'T-3']);
    expect(page.nextCursor).toBeNull();
    await app.close();
  });
});

describe('the files of an export', () => {
  it('read expired where retention deleted them, as on GET /v1/tickets/{id} (SQL keeps saying stored)', () => {
    const at = '2026-12-01T10:00:00.000Z';
    const mail = LogEntry.parse({ kind: 'inbound', at, event: emailMessage({ messageId: '<e1@bk.ru>', from: 'olga@bk.ru' }), match: { rule: 'new-ticket', value: 'x' } });
    const file = { ref: 'r1', objectKey: 'k1', name: 'Акт.pdf', mimeType: 'application/pdf', size: 10, status: 'expired' };
    const marked = { ...mail, seq: 7, event: { ...(mail as Extract<LogEntry, { kind: 'inbound' }>).event, attachments: [file] } } as unknown as LogEntry & { seq: number };
    const sql = [
      { messageSeq: 7, position: 0, name: 'Акт.pdf', mimeType: 'application/pdf', size: 10, status: 'stored', download: '/v1/attachments/r1' },
      { messageSeq: 9, position: 0, name: 'Счёт.pdf', mimeType: 'application/pdf', size: 10, status: 'stored', download: '/v1/attachments/r2' },
    ];
    expect(withExpired(sql, [marked]).map((f) => f.status)).toEqual(['expired', 'stored']);
  });
});
