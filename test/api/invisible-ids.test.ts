/**
 * Ids with invisible characters over the REST API and the webhook channel, end to end: refused
 * 400 naming the field (Idempotency-Key, author.id, conversationId), not stored to show up in log
 * lines and the console as another id. Cleaned names are the unit test's (core/invisible-ids).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SITE_SECRET, post, startApiHarness, type ApiHarness } from './support.js';

let h: ApiHarness;
let ticketId: string;
beforeAll(async () => {
  h = await startApiHarness();
  ticketId = await h.openTicket('invisible-seed', 'olga@example.ru', 'Заказ не пришёл');
}, 60_000);
afterAll(async () => h?.stop());

/** A header as a client sends UTF-8 in it: the bytes, which Node reads back as Latin-1. */
const utf8Header = (s: string) => Buffer.from(s, 'utf8').toString('latin1');

describe('invisible characters in ids over the API', () => {
  it('an Idempotency-Key with U+202E or a zero-width space is refused naming the header; a Cyrillic one is taken', async () => {
    for (const key of ['key\u202e1', 'key\u200b1', 'ключ\u2066']) {
      const res = await h.api(`/v1/tickets/${ticketId}/notes`, post({ text: 'Проверка' }, { 'idempotency-key': utf8Header(key) }));
      expect(res.status, JSON.stringify(key)).toBe(400);
      expect(res.body.error).toMatchObject({ field: 'Idempotency-Key', message: expect.stringContaining('invisible formatting characters') });
    }
    expect((await h.api(`/v1/tickets/${ticketId}/notes`, post({ text: 'Проверка' }, { 'idempotency-key': utf8Header('ключ-1') }))).status).toBe(201);
  });

  it('a note whose author.id holds a direction override is refused naming author.id', async () => {
    const res = await h.api(`/v1/tickets/${ticketId}/notes`, post({ text: 'Проверка', author: { id: 'anna\u202enimda', name: 'Анна' } }));
    expect(res.status).toBe(400);
    expect(res.body.error).toMatchObject({ field: 'author.id' });
  });

  it('the webhook channel refuses a conversationId with an isolate, naming it', async () => {
    const res = await fetch(`${h.gw.httpUrl}/connectors/webhook/site/messages`, {
      method: 'POST',
      headers: { authorization: `Bearer ${SITE_SECRET}`, 'content-type': 'application/json' },
      body: JSON.stringify({ messageId: 'inv-1', conversationId: '\u2067order-42\u2069', sender: { id: 'olga@example.ru' }, text: 'x' }),
    });
    expect(res.status).toBe(400);
    expect(await res.json()).toMatchObject({ error: 'invalid_body', field: 'conversationId' });
  });
});
