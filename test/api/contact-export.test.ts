/**
 * GET /v1/contacts/{id}/export end to end, on PGlite and on PostgreSQL: a person known by two
 * identities (merged), with Cyrillic messages, a file, an agent's reply, a note and a status
 * change, exported whole for a data-subject access request (152-FZ art. 14); another customer's
 * data is not in it; pages continue by cursor; only admin tokens may export; the export is
 * announced as an audit event that names no one.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AuditExportEvent } from '../../src/core/schema.js';
import { ADMIN, READER, SITE_SECRET, post, startApiHarness, type ApiHarness } from './support.js';
import { postgresDatabase, type TestPostgres } from '../helpers/sql.js';

const DPO = 'dpo-token-0123456789abcdef-export';
const FILE = 'Договор № 17: Ёлкина Дарья Сергеевна';

describe.each([['pglite'], ['postgres']] as const)('contact export on %s', (engine) => {
  let h: ApiHarness;
  let pg: TestPostgres | undefined;
  beforeAll(async () => {
    pg = engine === 'postgres' ? await postgresDatabase() : undefined;
    h = await startApiHarness({
      api: { tokens: [{ name: 'helpdesk', token: ADMIN }, { name: 'dashboards', token: READER, readOnly: true }, { name: 'dpo', token: DPO, admin: true }] },
      ...(pg ? { database: { url: pg.url, user: pg.user } } : {}),
    });
  }, 120_000);
  afterAll(async () => {
    await h?.stop();
    if (pg) await pg.drop().catch(() => undefined);
  });

  const send = async (messageId: string, sender: string, name: string, text: string, attachments?: unknown[]) => {
    const res = await fetch(`${h.gw.httpUrl}/connectors/webhook/site/messages`, {
      method: 'POST',
      headers: { authorization: `Bearer ${SITE_SECRET}` },
      body: JSON.stringify({ messageId, sender: { id: sender, name }, text, ...(attachments ? { attachments } : {}) }),
    });
    expect(res.status).toBe(202);
    return (await h.gw.waitForEvent((ev) => ev.type === 'ticket.message' && (ev.entry as any)?.event?.id === `webhook:site:${messageId}`)).ticketId;
  };

  it('exports a merged person whole, by pages, to admin tokens only, and audits it without naming them', async () => {
    const first = await send('daria-1', 'daria-site', 'Дарья Ёлкина', 'Не пришёл чек за заказ Хризантема', [{ name: 'договор.txt', mimeType: 'text/plain', contentBase64: Buffer.from(FILE).toString('base64') }]);
    expect((await h.api(`/v1/tickets/${first}/replies`, post({ text: 'Дарья, чек отправлен повторно' }))).status).toBe(202);
    expect((await h.api(`/v1/tickets/${first}/notes`, post({ text: 'Проверить кассу №3' }))).status).toBe(201);
    expect((await h.api(`/v1/tickets/${first}/status`, post({ status: 'resolved' }))).status).toBe(200);
    const second = await send('daria-2', 'daria-app', 'Дарья', 'Пишу из приложения: Хризантема снова');
    const other = await send('pavel-1', 'pavel-site', 'Павел Щукин', 'Чужое обращение Зверобой');
    await h.gw.gateway.readModel!.caughtUp(10_000);
    const db = await h.gw.gateway.readModel!.database();
    const contactOf = async (ticketId: string) => ((await db.query<{ contact_id: string }>('SELECT contact_id FROM tickets WHERE id = $1', [ticketId])) as [{ contact_id: string }])[0].contact_id;
    const daria = await contactOf(first);
    const dariaApp = await contactOf(second);
    expect(dariaApp).not.toBe(daria);
    expect((await h.api(`/v1/contacts/${daria}/merge`, post({ contactId: dariaApp }))).status).toBe(200);

    // Only an admin token: a read-only one and an ordinary writing one are 403, none is 401.
    for (const token of [READER, ADMIN]) {
      const refused = await h.api(`/v1/contacts/${daria}/export`, { token });
      expect(refused.status).toBe(403);
      expect(refused.body.error.code).toBe('forbidden');
    }
    expect((await h.api(`/v1/contacts/${daria}/export`, { token: null })).status).toBe(401);
    const unknown = await h.api('/v1/contacts/c_no-such-contact/export', { token: DPO });
    expect(unknown.status).toBe(404);
    expect(unknown.body.error).toMatchObject({ code: 'contact_not_found', field: 'id' });
    expect((await h.api(`/v1/contacts/${daria}/export?limit=0`, { token: DPO })).body.error).toMatchObject({ code: 'invalid_request', field: 'limit' });
    expect((await h.api(`/v1/contacts/${daria}/export?cursor=bm9wZQ`, { token: DPO })).body.error).toMatchObject({ code: 'invalid_request', field: 'cursor' });
    expect((await h.api(`/v1/contacts/${daria}/export?limt=1`, { token: DPO })).status).toBe(400);

    const whole = await h.api(`/v1/contacts/${daria}/export`, { token: DPO });
    expect(whole.status).toBe(200);
    const doc = whole.body;
    expect(doc.contact.id).toBe(daria);
    expect(doc.contact.merged).toEqual([dariaApp]);
    expect(doc.contact.identities.map((i: { value: string }) => i.value).sort()).toEqual(['daria-app', 'daria-site']);
    expect(doc.ticketsTotal).toBe(2);
    expect(doc.nextCursor).toBeNull();
    expect(doc.otherTickets).toEqual([]);
    expect(doc.tickets.map((t: any) => t.ticket.id)).toEqual([first, second]);
    const [one, two] = doc.tickets;
    expect(one.ticket).toMatchObject({ id: first, status: 'resolved', contactId: daria });
    const kinds = one.log.map((e: { kind: string }) => e.kind);
    for (const kind of ['inbound', 'outbound', 'note', 'status']) expect(kinds).toContain(kind);
    const text = JSON.stringify(one.log);
    for (const words of ['Не пришёл чек за заказ Хризантема', 'Дарья, чек отправлен повторно', 'Проверить кассу №3', 'Дарья Ёлкина']) expect(text).toContain(words);
    expect(one.attachments).toEqual([expect.objectContaining({ name: 'договор.txt', mimeType: 'text/plain', size: Buffer.byteLength(FILE), status: 'stored', download: expect.stringMatching(/^\/v1\/attachments\//) })]);
    expect(JSON.stringify(doc)).not.toContain('contentBase64');
    const bytes = await fetch(`${h.gw.httpUrl}${one.attachments[0].download}`, { headers: { authorization: `Bearer ${DPO}` } });
    expect(await bytes.text()).toBe(FILE);
    expect(JSON.stringify(two.log)).toContain('Пишу из приложения');
    // Nothing of the other customer.
    expect(JSON.stringify(doc)).not.toMatch(/Зверобой|Щукин|pavel/);
    expect(doc.tickets.map((t: any) => t.ticket.id)).not.toContain(other);

    // The merged-away id answers with the person it joined.
    expect((await h.api(`/v1/contacts/${dariaApp}/export`, { token: DPO })).body).toMatchObject({ mergedInto: daria, ticketsTotal: 2 });

    // Pages: one ticket each, oldest first, continued by cursor to the end.
    const p1 = (await h.api(`/v1/contacts/${daria}/export?limit=1`, { token: DPO })).body;
    expect(p1.tickets.map((t: any) => t.ticket.id)).toEqual([first]);
    expect(p1.nextCursor).toEqual(expect.any(String));
    const p2 = (await h.api(`/v1/contacts/${daria}/export?limit=1&cursor=${p1.nextCursor}`, { token: DPO })).body;
    expect(p2.tickets.map((t: any) => t.ticket.id)).toEqual([second]);
    expect(p2.nextCursor).toBeNull();
    expect(p2.otherTickets).toBeUndefined();

    // Audited: who asked and how much, never whom.
    const audit = await h.gw.waitForStreamMessage('OMNI_EVENTS', 'omni.events.audit.export', (m: any) => m.id === doc.exportId);
    expect(AuditExportEvent.parse(audit)).toMatchObject({ requestedBy: 'dpo', continued: false, exported: { tickets: 2, attachments: 1, logEntries: one.log.length + two.log.length } });
    expect(JSON.stringify(audit)).not.toMatch(new RegExp([daria, dariaApp, first, second, 'daria', 'Дарья', 'Хризантема', 'договор'].join('|'), 'i'));
    const continued = await h.gw.waitForStreamMessage('OMNI_EVENTS', 'omni.events.audit.export', (m: any) => m.id === p2.exportId);
    expect(continued).toMatchObject({ continued: true, exported: { tickets: 1 } });
  }, 120_000);
});
