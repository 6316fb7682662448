/**
 * The API's access log (152-FZ: who read which person's data, asked by an outside trial's lawyer):
 * one "api access" line per /v1 request naming the token, the route, the ticket or contact id and
 * the status; never the query string or the body, which carry addresses and words.
 */
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { TokenAuth } from '../../src/api/auth.js';
import { READER, post, startApiHarness, type ApiHarness } from './support.js';

let h: ApiHarness;

beforeAll(async () => {
  h = await startApiHarness();
});
afterAll(async () => h?.stop());

const accessLines = () =>
  h.gw.logs
    .map((l) => JSON.parse(l) as Record<string, any>)
    .filter((l) => l.msg === 'api access');

describe('api access log', () => {
  it('names the token, route, ids and status of every /v1 request, and nothing from its query or body', async () => {
    const ticketId = await h.openTicket('acc-1', 'ivan.petrov@mail.ru');
    expect((await h.api(`/v1/tickets/${ticketId}`, { token: READER })).status).toBe(200);
    expect((await h.api('/v1/tickets?contact=ivan.petrov@mail.ru')).status).toBe(200);
    expect((await h.api('/v1/search?q=%D0%BA%D0%B0%D1%81%D1%81%D0%B0', { token: READER })).status).toBe(200);
    expect((await h.api(`/v1/tickets/${ticketId}/notes`, post({ text: 'Иван просил перезвонить' }))).status).toBe(201);
    expect((await h.api(`/v1/tickets/${ticketId}`, { token: 'not-a-token-at-all-0000' })).status).toBe(401);
    const lines = accessLines();
    const read = lines.find((l) => l.route === '/v1/tickets/:id' && l.status === 200)!;
    expect(read).toMatchObject({ tokenName: 'dashboards', method: 'GET', params: { id: ticketId }, component: 'api-access' });
    expect(read.client).toBeTruthy();
    expect(lines.find((l) => l.route === '/v1/tickets' && l.method === 'GET')).toMatchObject({ tokenName: 'helpdesk', status: 200 });
    expect(lines.find((l) => l.route === '/v1/search')).toMatchObject({ tokenName: 'dashboards', status: 200 });
    expect(lines.find((l) => l.route === '/v1/tickets/:id/notes')).toMatchObject({ tokenName: 'helpdesk', method: 'POST', status: 201, params: { id: ticketId } });
    expect(lines.find((l) => l.status === 401)).toMatchObject({ tokenName: null, route: '/v1/tickets/:id' });
    const text = JSON.stringify(lines);
    expect(text).not.toContain('ivan.petrov');
    expect(text).not.toContain('касса');
    expect(text).not.toContain('перезвонить');
    expect(text).not.toContain('not-a-token');
  });

  it("finds a request's token once: the access log reuses what the route's auth step found", async () => {
    const ticketId = await h.openTicket('acc-2', 'olga@bk.ru');
    const identify = vi.spyOn(TokenAuth.prototype, 'identify');
    try {
      // A read, a write refused to a read-only token (403: the token was found), a console route.
      for (const [path, init, status] of [
        [`/v1/tickets/${ticketId}`, { token: READER }, 200],
        [`/v1/tickets/${ticketId}/notes`, { ...post({ text: 'Перезвонить' }), token: READER }, 403],
        ['/v1/session', { token: READER }, 200],
      ] as const) {
        identify.mockClear();
        const before = accessLines().length;
        expect((await h.api(path, init)).status, path).toBe(status);
        const line = await waitFor(() => accessLines()[before]);
        expect(line, path).toMatchObject({ tokenName: 'dashboards', status });
        // Every configured token compared once per request (it was twice: the guard, then the log).
        expect(identify.mock.calls.length, path).toBe(1);
      }
    } finally {
      identify.mockRestore();
    }
  });
});

/** The access line is written as the response ends, maybe just after the client has it. */
async function waitFor<T>(probe: () => T | undefined): Promise<T> {
  for (let i = 0; i < 100; i++) {
    const v = probe();
    if (v !== undefined) return v;
    await new Promise((r) => setTimeout(r, 20));
  }
  throw new Error('no access line');
}
