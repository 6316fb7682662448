/**
 * The API from SQL, end to end on both engines: tickets opened through a real channel (the webhook
 * connector), then listed, searched (Cyrillic stemming), looked up as contacts and merged over
 * HTTP — and every list agrees with the ticket log.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SITE_SECRET, post, startApiHarness, type ApiHarness } from '../api/support.js';
import { chatMessage, publishEvent } from '../helpers/events.js';
import { rmSync } from 'node:fs';
import { jetstream } from '@nats-io/jetstream';
import { metrics } from '../../src/core/metrics.js';
import { Subjects } from '../../src/core/subjects.js';
import { pgliteDir, postgresDatabase, type TestPostgres } from '../helpers/sql.js';

/** Log entries the projection skipped as not understood, in this process so far. */
const skipped = async () => (await metrics.readModelApplied.get()).values.find((v) => v.labels.outcome === 'invalid')?.value ?? 0;

describe.each(['pglite', 'postgres'] as const)('the API from the read model on %s', (engine) => {
  let h: ApiHarness;
  let pg: TestPostgres | undefined;
  let dir: string | undefined;

  beforeAll(async () => {
    if (engine === 'postgres') pg = await postgresDatabase();
    else dir = await pgliteDir();
    h = await startApiHarness({ database: pg ? { url: pg.url, user: pg.user } : { dataDir: dir } });
  }, 120_000);
  afterAll(async () => {
    await h?.stop();
    await pg?.drop();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('lists, searches and finds contacts as the log says', async () => {
    const paid = await h.openTicket('rm-paid', 'ivan@example.ru', 'Я оплатил заказ, а чек не пришёл');
    const receipt = await h.openTicket('rm-receipt', 'olga@example.ru', 'Where is my receipt? Two payments were taken');
    const printer = await h.openTicket('rm-printer', 'petr@example.ru', 'Касса не печатает');
    expect((await h.api(`/v1/tickets/${printer}/status`, post({ status: 'closed' }))).status).toBe(200);

    const hits = (await h.api(`/v1/search?q=${encodeURIComponent('оплата')}`)).body.results;
    expect(hits.map((r: { ticket: { id: string } }) => r.ticket.id)).toEqual([paid]);
    expect(hits[0].snippet).toContain('<b>оплатил</b>');
    expect((await h.api('/v1/search?q=payment')).body.results.map((r: { ticket: { id: string } }) => r.ticket.id)).toEqual([receipt]);
    expect((await h.api('/v1/search?q=')).body.error.field).toBe('q');

    // Every listed ticket as its log says: status and message count.
    const listed = (await h.api('/v1/tickets?limit=500')).body.tickets as Array<{ id: string; status: string; messageCount: number; contactId: string }>;
    for (const t of listed) {
      const { log } = (await h.api(`/v1/tickets/${t.id}`)).body as { log: Array<{ kind: string; to?: string }> };
      const statuses = log.filter((e) => e.kind === 'status');
      expect(t.status).toBe(statuses.length ? statuses[statuses.length - 1]!.to : 'new');
      expect(t.messageCount).toBe(log.filter((e) => e.kind === 'inbound').length);
    }
    expect((await h.api('/v1/tickets?status=closed')).body.tickets.map((t: { id: string }) => t.id)).toEqual([printer]);

    // Contacts: the webhook's sender id is what the channel proves; the email it claims is not an identity.
    const ivan = (await h.api('/v1/contacts?handle=ivan@example.ru')).body.contacts;
    expect(ivan).toHaveLength(1);
    expect(ivan[0].identities).toEqual([expect.objectContaining({ kind: 'external', value: 'ivan@example.ru', proof: 'sender' })]);
    expect((await h.api('/v1/contacts?email=ivan@example.ru')).body.contacts).toEqual([]);
    expect((await h.api('/v1/contacts')).body.error.field).toBe('phone');

    const olga = (await h.api('/v1/contacts?handle=olga@example.ru')).body.contacts[0];
    const merged = await h.api(`/v1/contacts/${ivan[0].id}/merge`, post({ contactId: olga.id, author: { id: 'agent-7' } }));
    expect(merged.status).toBe(200);
    expect(merged.body.contact).toMatchObject({ id: ivan[0].id, merged: [olga.id], tickets: 2 });
    expect((await h.api(`/v1/contacts/${olga.id}`)).body).toMatchObject({ mergedInto: ivan[0].id, contact: { id: ivan[0].id } });
    const theirs = (await h.api(`/v1/tickets?contact=${ivan[0].id}`)).body.tickets.map((t: { id: string }) => t.id).sort();
    expect(theirs).toEqual([paid, receipt].sort());
    expect((await h.api(`/v1/contacts/${ivan[0].id}/merge`, post({ contactId: olga.id }))).body.error).toMatchObject({ code: 'invalid_request', field: 'contactId', message: `${olga.id} is already part of ${ivan[0].id}` });
    // The other way round: Olga (merged into Ivan) given Ivan. It said "Ivan is already part of Ivan".
    expect((await h.api(`/v1/contacts/${olga.id}/merge`, post({ contactId: ivan[0].id }))).body.error).toMatchObject({ code: 'invalid_request', field: 'contactId', message: `${olga.id} is already part of ${ivan[0].id}` });
    expect((await h.api(`/v1/contacts/${ivan[0].id}/merge`, post({ contactId: ivan[0].id }))).body.error).toMatchObject({ code: 'invalid_request', field: 'contactId', message: `${ivan[0].id} cannot be merged into itself` });
    expect((await h.api('/v1/contacts/c_nobody/merge', post({ contactId: olga.id }))).status).toBe(404);
    // A misspelt key is refused naming it, before anything is merged (a merge is permanent).
    const typo = await h.api(`/v1/contacts/${ivan[0].id}/merge`, post({ contactId: olga.id, contactld: 1 }));
    expect(typo.status).toBe(400);
    expect(typo.body.error).toMatchObject({ code: 'invalid_request', field: 'contactld', message: expect.stringContaining('did you mean "contactId"?') });
    expect((await h.api('/v1/contacts/c_nobody')).status).toBe(404);

    const ready = (await h.api('/readyz')).body;
    expect(ready.readModel).toMatchObject({ applying: true, lag: 0, database: expect.stringContaining(engine) });
  });

  it('finds a web-form ticket by the phone in any of the ways it is written (outside trial)', async () => {
    const webForm = async (messageId: string, phone: string) => {
      const res = await fetch(`${h.gw.httpUrl}/connectors/webhook/site/messages`, {
        method: 'POST',
        headers: { authorization: `Bearer ${SITE_SECRET}` },
        body: JSON.stringify({ messageId, sender: { id: `${messageId}@bk.ru`, name: 'Сидоров', email: `${messageId}@bk.ru`, phone }, text: 'Перезвоните, пожалуйста' }),
      });
      expect(res.status).toBe(202);
      return (await h.gw.waitForEvent((ev) => ev.type === 'ticket.message' && (ev.entry as any)?.event?.id === `webhook:site:${messageId}`)).ticketId;
    };
    const found = async (contact: string) => ((await h.api(`/v1/tickets?limit=500&contact=${encodeURIComponent(contact)}`)).body.tickets as Array<{ id: string }>).map((t) => t.id).sort();
    const sidorov = await webForm('sidorov', '8 (903) 111-22-33');
    const spaced = await webForm('spaced', '+7 916 123-45-67');
    const national = await webForm('national', '905 222-33-44');
    for (const typed of ['+7 903 111-22-33', '+79031112233', '8 (903) 111-22-33', '8-903-111-22-33', '79031112233', '9031112233', '８ ９０３ １１１ ２２ ３３', '+7 903 111-22-33 доб. 12']) {
      expect(await found(typed), typed).toEqual([sidorov]);
    }
    for (const typed of ['+79161234567', '89161234567', '8 916 123 45 67']) expect(await found(typed), typed).toEqual([spaced]);
    // Typed without 8 or +7 on the form: found by the +7 number, as ten digits are looked up both ways.
    for (const typed of ['+7 905 222-33-44', '89052223344', '9052223344']) expect(await found(typed), typed).toEqual([national]);
    // Not another number that merely shares digits, nor the same digits written as another country's.
    expect(await found('+7 903 111-22-34')).toEqual([]);
    expect(await found('+9031112233')).toEqual([]);
    expect(await found('+1 903 111 22 33')).toEqual([]);

    // The same number proven on WhatsApp (another contact): both the web-form ticket and the chat are found.
    const chat = chatMessage({ channel: 'whatsapp', account: 'shop', chat: '79031112233@s.whatsapp.net', from: '79031112233@s.whatsapp.net' });
    chat.sender.handles = { phone: '+79031112233' };
    await publishEvent(h.gw.nc, chat);
    const { ticketId: whatsapp } = await h.gw.waitForEvent((ev) => ev.type === 'ticket.created' && ev.conversation?.id === '79031112233@s.whatsapp.net');
    for (let i = 0; i < 50 && (await found('8 903 111 22 33')).length < 2; i++) await new Promise((r) => setTimeout(r, 100));
    for (const typed of ['8 (903) 111-22-33', '+79031112233', '9031112233']) expect(await found(typed), typed).toEqual([sidorov, whatsapp].sort());
    expect((await h.api(`/v1/contacts?phone=${encodeURIComponent('8-903-111-22-33')}`)).body.contacts).toEqual([expect.objectContaining({ identities: [expect.objectContaining({ kind: 'phone', value: '+79031112233' })] })]);
  });

  it('lists the reply window and a failed reply as the ticket shows them, until a replay of the reply goes out; filters by failed replies', async () => {
    // As the WhatsApp Cloud connector publishes a customer's message: the window ends 24 hours on.
    const windowEnds = new Date(Date.now() + 24 * 3_600_000).toISOString();
    const first = chatMessage({ chat: 'window-chat', from: 'window-customer', text: 'Посылка не пришла' });
    first.replyWindowEndsAt = windowEnds;
    await publishEvent(h.gw.nc, first);
    const { ticketId } = await h.gw.waitForEvent((ev) => ev.type === 'ticket.created' && ev.conversation?.id === 'window-chat');
    const listed = async (query = '') => ((await h.api(`/v1/tickets?limit=500${query}`)).body.tickets as Array<Record<string, unknown>>).find((t) => t.id === ticketId);
    expect(await listed()).toMatchObject({ replyWindowEndsAt: windowEnds });
    expect(await listed()).not.toHaveProperty('failedReplies');

    // The channel refuses the reply for good: failed, back to open, and listed as such.
    h.callbackStatus = (r) => (r.text === 'Посылка в пути' ? 400 : 200);
    const sent = await h.api(`/v1/tickets/${ticketId}/replies`, post({ text: 'Посылка в пути' }));
    expect(sent.status).toBe(202);
    await h.gw.waitForEvent((ev) => ev.type === 'ticket.delivery_failed' && ev.ticketId === ticketId);
    const failed = await listed();
    expect(failed).toMatchObject({ status: 'open', failedReplies: [{ outboundId: sent.body.outboundId, reason: expect.stringMatching(/^http_400/) }] });
    // The same list as GET /v1/tickets/{id} (the KV record) shows.
    expect(failed!.failedReplies).toEqual((await h.api(`/v1/tickets/${ticketId}`)).body.ticket.failedReplies);
    expect(await listed('&failedReplies=true')).toBeDefined();
    expect(await listed('&failedReplies=false')).toBeUndefined();
    expect(((await h.api('/v1/tickets?failedReplies=true&limit=500')).body.tickets as Array<{ failedReplies?: unknown[] }>).every((t) => t.failedReplies?.length)).toBe(true);
    for (const bad of ['yes', '1', 'True', '']) {
      const refused = await h.api(`/v1/tickets?failedReplies=${bad}`);
      expect(refused.status, bad).toBe(400);
      expect(refused.body.error, bad).toMatchObject({ code: 'invalid_request', field: 'failedReplies', message: expect.stringContaining('true (tickets with at least one failed reply) or false') });
    }

    // Replayed from the dead letters once the channel takes it: sent, and off the list.
    h.callbackStatus = () => 200;
    const replayed = await h.api(`/v1/dead-letters/replay?source=outbound&ticket=${encodeURIComponent(ticketId)}`, { method: 'POST' });
    expect(replayed.status).toBe(200);
    await h.gw.waitForEvent((ev) => ev.type === 'ticket.delivery' && ev.ticketId === ticketId && (ev.entry as { status?: { status?: string } })?.status?.status === 'sent');
    await expect.poll(async () => (await listed()) ?? {}, { timeout: 30_000 }).not.toHaveProperty('failedReplies');
    expect((await h.api(`/v1/tickets/${ticketId}`)).body.ticket.failedReplies).toBeUndefined();
    expect(await listed('&failedReplies=true')).toBeUndefined();
    expect(await listed()).toMatchObject({ replyWindowEndsAt: windowEnds });
  });

  it('a NUL in a logged message (from a platform or an outside publisher) is stored as U+FFFD and the projection goes on; the API refuses one', async () => {
    // Past the edges (they refuse it): an event published on omni.in, as a connector or an outside publisher would.
    const e = chatMessage({ chat: 'nul-chat', from: 'nul-sender', text: 'а\u0000б' });
    e.sender.displayName = 'Иван\u0000';
    await publishEvent(h.gw.nc, e);
    const opened = await h.gw.waitForEvent((ev) => ev.type === 'ticket.created' && ev.conversation?.id === 'nul-chat');
    // Half of a surrogate pair in the sender's id (jsonb refuses its escape): the entry, and the
    // conversation's later ones, were skipped for good; now stored with U+FFFD in its place.
    const lone = chatMessage({ chat: 'lone-chat', from: 'a\ud800b', text: 'первое' });
    await publishEvent(h.gw.nc, lone);
    const loneTicket = (await h.gw.waitForEvent((ev) => ev.type === 'ticket.created' && ev.conversation?.id === 'lone-chat')).ticketId;
    await publishEvent(h.gw.nc, chatMessage({ chat: 'lone-chat', from: 'a\ud800b', text: 'второе сообщение про половинку' }));
    await expect.poll(async () => (await h.api(`/v1/search?q=${encodeURIComponent('половинку')}`)).body.results?.map((r: { ticket: { id: string } }) => r.ticket.id), { timeout: 30_000 }).toEqual([loneTicket]);
    const after = await h.openTicket('after-nul', 'after@example.ru', 'Следующее сообщение');
    // Before: "invalid byte sequence for encoding UTF8: 0x00" failed this batch on every try, for good.
    await expect.poll(async () => (await h.api('/v1/tickets?limit=500')).body.tickets.map((t: { id: string }) => t.id), { timeout: 30_000 }).toEqual(expect.arrayContaining([opened.ticketId, after]));
    const hit = (await h.api(`/v1/search?q=${encodeURIComponent('а')}`)).body;
    expect(hit.error).toBeUndefined();
    expect((await h.api('/healthz', { token: null })).status).toBe(200);
    expect((await h.api('/readyz')).body.readModel).toMatchObject({ lag: 0 });
    // Anything else SQL refuses for what one entry holds (a value no column takes; here made so
    // by the test for one marked text) is skipped alone, logged and counted; the rest is applied.
    const db = await h.gw.gateway.readModel!.database();
    const transaction = db.transaction.bind(db);
    db.transaction = ((work: Parameters<typeof db.transaction>[0]) =>
      transaction((tx) => work({ ...tx, query: (sql: string, params?: unknown[]) => (JSON.stringify(params ?? []).includes('ОТКАЗ-SQL') ? Promise.reject(Object.assign(new Error('value too long for type character varying'), { code: '22001' })) : tx.query(sql, params)) } as typeof tx))) as typeof db.transaction;
    try {
      const refused = await h.openTicket('refused-by-sql', 'refused@example.ru', 'ОТКАЗ-SQL');
      const later = await h.openTicket('after-refused', 'later@example.ru', 'И ещё одно');
      await expect.poll(async () => (await h.api('/v1/tickets?limit=500')).body.tickets.map((t: { id: string }) => t.id), { timeout: 30_000 }).toEqual(expect.arrayContaining([later]));
      expect((await h.api('/v1/tickets?limit=500')).body.tickets.map((t: { id: string }) => t.id)).not.toContain(refused);
      expect((await h.api('/healthz', { token: null })).status).toBe(200);
    } finally {
      Reflect.deleteProperty(db, 'transaction');
    }
    // The edges refuse it, naming the field: a query, a path, a JSON body.
    expect((await h.api('/v1/search?q=a%00b')).body.error).toMatchObject({ code: 'invalid_request', field: 'q' });
    expect((await h.api('/v1/contacts/c_%00')).body.error).toMatchObject({ code: 'invalid_request', field: 'id' });
    expect((await h.api(`/v1/tickets/${after}/notes`, post({ text: 'a\u0000b' }))).body.error).toMatchObject({ code: 'invalid_request', field: 'text' });
  });

  it('log entries are taken as written when the schema would return them unchanged, judged by zod otherwise: a stray key is stripped, a non-entry skipped and counted, and named by the ticket\'s API view', async () => {
    const ticketId = await h.openTicket('as-written', 'as-written@example.ru', 'Первое сообщение');
    const db = await h.gw.gateway.readModel!.database();
    const invalidBefore = await skipped();
    const js = jetstream(h.gw.nc);
    const logged = (data: unknown) => js.publish(Subjects.ticketLog(ticketId), typeof data === 'string' ? data : JSON.stringify(data));
    const at = new Date().toISOString();
    // What the router and the API write: taken as it is (core/schema-as-is.ts).
    await logged({ kind: 'note', at, id: 'note-plain', text: 'Клиент перезвонит после обеда', author: { id: 'agent-1', name: 'Анна' } });
    // A key the schema does not know: zod's output (without it) is what is applied.
    await logged({ kind: 'note', at, id: 'note-extra', text: 'Лишний ключ', author: { id: 'agent-1' }, surplus: { nested: true } });
    // A reply as an older writer logged it, without the keys zod defaults (attachments, automated):
    // vouched for as it is, it would reach SQL with no attachments array and fail its batch for good.
    await logged({
      kind: 'outbound', at, message: {
        v: 1, type: 'message.outbound', id: 'out-defaults', ticketId, channel: 'webhook', account: 'site', conversation: { id: 'as-written@example.ru', kind: 'private' },
        text: 'Ответ без вложений', author: { id: 'agent-1' }, createdAt: at,
      },
    });
    // Not an entry: skipped, logged and counted; the projection goes on.
    await logged('{"kind":"note","at":"not a time"');
    await logged({ kind: 'note', at: 'not a time', id: 'note-bad', text: 'x', author: { id: 'a' } });
    await logged({ kind: 'note', at, id: 'note-after', text: 'После мусора', author: { id: 'agent-2' } });
    await expect.poll(async () => (await db.query<{ id: string }>(`SELECT id FROM messages WHERE ticket_id = $1 AND direction = 'note' ORDER BY seq`, [ticketId])).map((r) => r.id), { timeout: 30_000 })
      .toEqual(['note-plain', 'note-extra', 'note-after']);
    const rows = await db.query<{ id: string; text: string; author_name: string | null }>(`SELECT id, text, author_name FROM messages WHERE ticket_id = $1 AND direction = 'note' ORDER BY seq`, [ticketId]);
    expect(rows[0]).toMatchObject({ text: 'Клиент перезвонит после обеда', author_name: 'Анна' });
    expect(rows[1]).toMatchObject({ text: 'Лишний ключ', author_name: null });
    const [reply] = await db.query<{ text: string }>(`SELECT text FROM messages WHERE ticket_id = $1 AND direction = 'outbound' AND id = 'out-defaults'`, [ticketId]);
    expect(reply).toMatchObject({ text: 'Ответ без вложений' });
    expect((await skipped()) - invalidBefore).toBe(2);
    // The ticket's own view reads past them too, naming them instead of failing the whole read.
    const view = await h.api(`/v1/tickets/${ticketId}`);
    expect(view.status).toBe(200);
    expect(view.body.log.filter((e: { kind: string }) => e.kind === 'note').map((e: { id: string }) => e.id)).toEqual(['note-plain', 'note-extra', 'note-after']);
    expect(view.body.unreadable).toEqual([
      { seq: expect.any(Number), reason: 'not valid JSON' },
      { seq: expect.any(Number), reason: expect.stringContaining('at') },
    ]);
    expect((await h.api(`/v1/tickets/${ticketId}/log`)).body.unreadable).toHaveLength(2);
    expect((await h.api('/readyz')).body.readModel).toMatchObject({ lag: 0 });
  });
});
