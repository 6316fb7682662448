/**
 * The NATS command subjects from the bus side (omni.cmd.reply|note|status, request/reply):
 * the same validation as REST (same codes, same field names), one idempotency shared with REST
 * (a key used over HTTP replays on the bus and the other way round), replies reaching the channel.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { post, startApiHarness, until, type ApiHarness } from './support.js';

let h: ApiHarness;

beforeAll(async () => {
  h = await startApiHarness();
});
afterAll(async () => h?.stop());

const bus = <T = any>(name: 'reply' | 'note' | 'status', body: unknown) => h.gw.request<T>(`omni.cmd.${name}`, body);

describe('omni.cmd.* from the bus', () => {
  it('replies, notes and changes status; the reply reaches the channel', async () => {
    const id = await h.openTicket('bus-1');
    const reply = await bus('reply', { ticketId: id, text: 'Ответ из CRM', author: { id: 'crm-bot' } });
    expect(reply).toEqual({ ok: true, result: { ticketId: id, outboundId: expect.any(String), status: 'pending' } });
    await until(() => h.sent.some((s) => s.ticketId === id && s.text === 'Ответ из CRM'), 'the reply at the channel');
    expect(await bus('note', { ticketId: id, text: 'из CRM' })).toMatchObject({ ok: true, result: { ticketId: id, noteId: expect.any(String) } });
    expect(await bus('status', { ticketId: id, status: 'resolved' })).toEqual({ ok: true, result: { ticketId: id, from: 'pending', status: 'resolved' } });
    const kinds = (await h.api(`/v1/tickets/${id}`)).body.log.map((e: { kind: string }) => e.kind);
    expect(kinds).toEqual(expect.arrayContaining(['inbound', 'outbound', 'note', 'status']));
  });

  it('validates exactly as REST does: same code, same field', async () => {
    const id = await h.openTicket('bus-2');
    const cases: Array<['reply' | 'note' | 'status', Record<string, unknown>, string]> = [
      ['reply', { text: '' }, 'replies'],
      ['reply', { text: 'x', author: { name: 'без id' } }, 'replies'],
      ['note', {}, 'notes'],
      ['status', { status: 'done' }, 'status'],
    ];
    for (const [name, body, route] of cases) {
      const overBus = await bus(name, { ...body, ticketId: id });
      const overHttp = await h.api(`/v1/tickets/${id}/${route}`, post(body));
      expect(overBus.ok).toBe(false);
      expect(overHttp.status).toBe(400);
      expect(overHttp.body.error).toEqual(overBus.error);
    }
    const missing = await bus('note', { ticketId: 'T-424242', text: 'x' });
    expect(missing.error).toEqual((await h.api('/v1/tickets/T-424242/notes', post({ text: 'x' }))).body.error);
    expect(missing.error.code).toBe('ticket_not_found');
    expect((await bus('reply', { text: 'x' })).error).toMatchObject({ code: 'invalid_request', field: 'ticketId' });
    const notJson = (await h.gw.nc.request('omni.cmd.reply', '{oops', { timeout: 5000 })).json<any>();
    expect(notJson.error.code).toBe('invalid_json');
    // The same JSON edge as HTTP: a key given twice was taken as its last value over the bus.
    const twice = `{"ticketId":"${id}","text":"a","text":"b"}`;
    const twiceOverBus = (await h.gw.nc.request('omni.cmd.reply', twice, { timeout: 5000 })).json<any>();
    const twiceOverHttp = await h.api(`/v1/tickets/${id}/replies`, { method: 'POST', body: '{"text":"a","text":"b"}', headers: { 'content-type': 'application/json' } });
    expect(twiceOverBus.error).toEqual({ code: 'invalid_request', field: 'text', message: expect.stringContaining('appears twice') });
    expect(twiceOverHttp.body.error).toEqual(twiceOverBus.error);
    expect(h.sent.filter((s) => s.ticketId === id)).toHaveLength(0);
  });

  it('shares idempotency with REST in both directions', async () => {
    const id = await h.openTicket('bus-3');
    const http = await h.api(`/v1/tickets/${id}/replies`, post({ text: 'Один раз' }, { 'idempotency-key': 'shared-1' }));
    const replayOnBus = await bus('reply', { ticketId: id, text: 'Один раз', idempotencyKey: 'shared-1' });
    expect(replayOnBus).toEqual({ ok: true, result: http.body, replayed: true });

    const onBus = await bus('note', { ticketId: id, text: 'заметка', idempotencyKey: 'shared-2' });
    const replayOverHttp = await h.api(`/v1/tickets/${id}/notes`, post({ text: 'заметка' }, { 'idempotency-key': 'shared-2' }));
    expect(replayOverHttp.body).toEqual(onBus.result);
    expect(replayOverHttp.headers.get('idempotent-replayed')).toBe('true');

    await until(() => h.sent.some((s) => s.ticketId === id), 'the reply at the channel');
    const log = (await h.api(`/v1/tickets/${id}`)).body.log as Array<{ kind: string }>;
    expect(log.filter((e) => e.kind === 'outbound')).toHaveLength(1);
    expect(log.filter((e) => e.kind === 'note')).toHaveLength(1);
    expect(h.sent.filter((s) => s.ticketId === id)).toHaveLength(1);
  });
});
