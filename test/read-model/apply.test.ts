/**
 * The read model's SQL on both engines (PGlite and the machine's PostgreSQL, a throwaway database):
 * log entries applied directly — contacts linked only by what a platform proves, merges, due-work
 * queries, Russian and English search.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { InboundMessage, LogEntry } from '../../src/core/schema.js';
import { applyEntry } from '../../src/read-model/apply.js';
import { mergeContacts } from '../../src/read-model/contacts.js';
import type { Database } from '../../src/read-model/database.js';
import { migrate } from '../../src/read-model/migrations.js';
import { dueTickets, getContact, listTickets, search } from '../../src/read-model/queries.js';
import { openTestDatabase } from '../helpers/sql.js';

const T0 = Date.parse('2026-11-02T09:00:00.000Z');
const at = (min: number) => new Date(T0 + min * 60_000).toISOString();

function inbound(o: { id: string; channel: string; account?: string; sender: InboundMessage['sender']; text: string; min: number; parts?: InboundMessage['parts']; rule?: 'new-ticket' | 'open-conversation' }): LogEntry {
  const event: InboundMessage = {
    v: 1, type: 'message.inbound', id: o.id, channel: o.channel, account: o.account ?? 'main',
    conversation: { id: `chat-${o.sender.id}`, kind: 'private' }, receivedAt: at(o.min), sender: o.sender,
    text: o.text, format: 'plain', attachments: [], parts: o.parts ?? [], platform: { messageId: o.id },
  };
  return { kind: 'inbound', at: at(o.min), event, match: { rule: o.rule ?? 'new-ticket', value: event.conversation.id } };
}

describe.each(['pglite', 'postgres'] as const)('read model SQL on %s', (engine) => {
  let db: Database;
  let cleanup: () => Promise<void>;
  let seq = 0;
  const apply = (ticketId: string, e: LogEntry) => db.transaction((tx) => applyEntry(tx, ++seq, ticketId, e));

  beforeAll(async () => {
    ({ db, cleanup } = await openTestDatabase(engine));
    await migrate(db);
    expect((await migrate(db)).applied).toEqual([]); // a second start: nothing left to do
  }, 120_000);
  afterAll(async () => {
    await db?.close();
    await cleanup?.();
  });

  it('links a Telegram user to a WhatsApp phone only through a contact card of their own phone', async () => {
    await apply('T-1', inbound({ id: 'wa:1', channel: 'whatsapp', sender: { id: '79161234567@s.whatsapp.net', displayName: 'Ольга', handles: { phone: '+79161234567' } }, text: 'Здравствуйте, я оплатила заказ', min: 0 }));
    // Same name, different platform, no proof: a separate contact.
    await apply('T-2', inbound({ id: 'tg:1', channel: 'telegram', sender: { id: '5551', displayName: 'Ольга', handles: {} }, text: 'Добрый день', min: 1 }));
    // Someone else's card (userId is not the sender): proves nothing about the sender.
    await apply('T-2', inbound({ id: 'tg:2', channel: 'telegram', sender: { id: '5551', displayName: 'Ольга', handles: {} }, text: '', min: 2, rule: 'open-conversation', parts: [{ type: 'contact', name: 'Мама', phone: '+7 916 123-45-67', userId: '999' }] }));
    const wa = (await listTickets(db, { limit: 10, contact: '+79161234567' })).tickets;
    const tg = (await listTickets(db, { limit: 10, contact: '5551' })).tickets;
    expect(wa.map((t) => t.id)).toEqual(['T-1']);
    expect(tg.map((t) => t.id)).toEqual(['T-2']);
    expect(wa[0]!.contactId).not.toBe(tg[0]!.contactId);

    // The sender's own card: Telegram vouches for the phone, so the two are one person.
    await apply('T-2', inbound({ id: 'tg:3', channel: 'telegram', sender: { id: '5551', displayName: 'Ольга', handles: {} }, text: '', min: 3, rule: 'open-conversation', parts: [{ type: 'contact', name: 'Ольга', phone: '+7 916 123-45-67', userId: '5551' }] }));
    const both = (await listTickets(db, { limit: 10, contact: '+79161234567' })).tickets;
    expect(both.map((t) => t.id).sort()).toEqual(['T-1', 'T-2']);
    const contact = await getContact(db, tg[0]!.contactId!);
    expect(contact!.id).toBe(wa[0]!.contactId); // the older contact stays
    // The phone was already proven by WhatsApp (first proof kept); the Telegram user joined it.
    expect(contact!.identities.map((i) => `${i.kind}:${i.value}:${i.proof}`).sort()).toEqual(['phone:+79161234567:sender', 'telegram_user:5551:sender']);
  });

  it('merges by a person\'s decision, kept in contact_merges', async () => {
    await apply('T-3', inbound({ id: 'em:1', channel: 'email', sender: { id: 'olga@example.ru', handles: { email: 'olga@example.ru' } }, text: 'Чек не пришёл', min: 5 }));
    const email = (await listTickets(db, { limit: 10, contact: 'OLGA@example.ru' })).tickets[0]!;
    const phone = (await listTickets(db, { limit: 10, contact: '+79161234567' })).tickets[0]!;
    await db.transaction((tx) => mergeContacts(tx, email.contactId!, phone.contactId!, at(6), 'agent-7'));
    expect((await listTickets(db, { limit: 10, contact: phone.contactId! })).tickets.map((t) => t.id).sort()).toEqual(['T-1', 'T-2', 'T-3']);
    expect((await getContact(db, email.contactId!))!.id).toBe(phone.contactId);
    expect(await db.query('SELECT from_id, into_id, by FROM contact_merges')).toEqual([{ from_id: email.contactId, into_id: phone.contactId, by: 'agent-7' }]);
  });

  it('finds «оплатил» for «оплата» and "payments" for "payment", with highlighted snippets', async () => {
    await apply('T-4', inbound({ id: 'wh:1', channel: 'webhook', sender: { id: 'ivan', handles: {} }, text: 'Я оплатил заказ вчера, где чек?', min: 7 }));
    await apply('T-5', inbound({ id: 'wh:2', channel: 'webhook', sender: { id: 'john', handles: {} }, text: 'Two payments were taken from my card', min: 8 }));
    const ru = await search(db, 'оплата', { limit: 10 });
    expect(ru.map((h) => h.ticket.id).sort()).toEqual(['T-1', 'T-4']); // «оплатила» too
    expect(ru.find((h) => h.ticket.id === 'T-4')!.snippet).toContain('<b>оплатил</b>');
    const en = await search(db, 'payment', { limit: 10 });
    expect(en.map((h) => h.ticket.id)).toEqual(['T-5']);
    expect(en[0]!.snippet).toContain('<b>payments</b>');
    expect(await search(db, 'несуществующееслово', { limit: 10 })).toEqual([]);
  });

  it('answers due work from indexes: unanswered past the limit, closed and not yet asked', async () => {
    const now = T0 + 60 * 60_000;
    const sla = await dueTickets(db, 'sla', { now, firstResponseMs: 30 * 60_000, noAnswerMs: 30 * 60_000 });
    expect(sla.sort()).toEqual(['T-1', 'T-2', 'T-3', 'T-4', 'T-5']);
    // An agent's reply sent: T-1 leaves the first-response candidates.
    await apply('T-1', { kind: 'outbound', at: at(10), message: { v: 1, type: 'message.outbound', id: 'out-1', ticketId: 'T-1', channel: 'whatsapp', account: 'main', conversation: { id: 'c', kind: 'private' }, text: 'Проверим', attachments: [], author: { id: 'agent' }, createdAt: at(10), automated: false, purpose: 'agent_reply' } });
    await apply('T-1', { kind: 'delivery', at: at(10), status: { v: 1, type: 'delivery.status', outboundId: 'out-1', ticketId: 'T-1', channel: 'whatsapp', account: 'main', status: 'sent', attempts: 1, at: at(10) } });
    await apply('T-4', { kind: 'status', at: at(11), from: 'new', to: 'closed', author: { id: 'agent' } });
    expect((await dueTickets(db, 'sla', { now, firstResponseMs: 30 * 60_000, noAnswerMs: 30 * 60_000 })).sort()).toEqual(['T-2', 'T-3', 'T-5']);
    // T-4 was closed without an answer that reached the customer: not asked to rate one.
    expect(await dueTickets(db, 'csat', { now, csatDelayMs: 10 * 60_000 })).toEqual([]);
    await apply('T-1', { kind: 'status', at: at(12), from: 'pending', to: 'closed', author: { id: 'agent' } });
    expect(await dueTickets(db, 'csat', { now, csatDelayMs: 10 * 60_000 })).toEqual(['T-1']);
    expect(await dueTickets(db, 'csat', { now: T0 + 15 * 60_000, csatDelayMs: 10 * 60_000 })).toEqual([]);
    // Past the rating window after the delay: too late to ask (and never a candidate for ever).
    expect(await dueTickets(db, 'csat', { now: T0 + 8 * 86_400_000, csatDelayMs: 10 * 60_000, csatWindowMs: 7 * 86_400_000 })).toEqual([]);
    const [t1] = await db.query<{ first_response_at: string; answered: number }>(`SELECT first_response_at, (SELECT count(*)::int FROM messages WHERE ticket_id = 'T-1' AND answered_at IS NOT NULL) AS answered FROM tickets WHERE id = 'T-1'`);
    expect(t1).toEqual({ first_response_at: at(10), answered: 1 });
    // The same entry again (a log with a duplicate beyond the dedup window) changes nothing.
    await db.transaction((tx) => applyEntry(tx, ++seq, 'T-1', { kind: 'outbound', at: at(10), message: { v: 1, type: 'message.outbound', id: 'out-1', ticketId: 'T-1', channel: 'whatsapp', account: 'main', conversation: { id: 'c', kind: 'private' }, text: 'Проверим', attachments: [], author: { id: 'agent' }, createdAt: at(10), automated: false, purpose: 'agent_reply' } }));
    expect(await db.query(`SELECT count(*)::int AS n FROM messages WHERE ticket_id = 'T-1' AND direction = 'outbound'`)).toEqual([{ n: 1 }]);
  });

  it('escapes a customer\'s markup in snippets: only the match marks are HTML', async () => {
    await apply('T-6', inbound({ id: 'wh:3', channel: 'webhook', sender: { id: 'eve', handles: {} }, text: 'возврат <img src=x onerror=alert(1)> средств & "кавычки" там', min: 9 }));
    const [hit] = await search(db, 'возвраты', { limit: 10 });
    expect(hit!.snippet).toContain('<b>возврат</b> &lt;img src=x onerror=alert(1)&gt; средств &amp; &quot;кавычки&quot;');
  });

  it('a customer\'s own U+0001/U+0002 (our match marks) do not become <b> in a snippet', async () => {
    await apply('T-7', inbound({ id: 'wh:4', channel: 'webhook', sender: { id: 'mallory', handles: {} }, text: 'quokka \u0001<injected\u0002 end', min: 10 }));
    const [hit] = await search(db, 'quokka', { limit: 10 });
    expect(hit!.snippet).toMatch(/^<b>quokka<\/b> {2}&lt;injected/);
    expect(hit!.snippet.match(/<\/?b>/g)).toEqual(['<b>', '</b>']);
  });

  it('ranks the newest messages first and widens to the whole history while fewer than limit tickets match', async () => {
    // Two mentions 100,000 log sequences apart (more than SEARCH_RECENT): the newest window holds only the newer.
    const old = ++seq;
    await db.transaction((tx) => applyEntry(tx, old, 'T-20', inbound({ id: 'wh:old', channel: 'webhook', sender: { id: 'old', handles: {} }, text: 'Гарантийный талон потерялся, талон талон', min: 20 })));
    seq += 100_000;
    await db.transaction((tx) => applyEntry(tx, seq, 'T-21', inbound({ id: 'wh:new', channel: 'webhook', sender: { id: 'new', handles: {} }, text: 'Где гарантийный талон?', min: 21 })));
    // limit 1: the newest window has a hit, so the older (better ranked, three mentions) one is not read.
    expect((await search(db, 'талон', { limit: 1 })).map((h) => h.ticket.id)).toEqual(['T-21']);
    // limit 10: the window has fewer, so search widens to everything and ranks both.
    expect((await search(db, 'талон', { limit: 10 })).map((h) => h.ticket.id)).toEqual(['T-20', 'T-21']);
    expect((await search(db, 'талон', { limit: 10, channel: 'telegram' }))).toEqual([]);
  });

  it('names migrations a newer version recorded (a downgrade), which this one does not keep up', async () => {
    await db.query(`INSERT INTO schema_migrations (id, name) VALUES (999, 'from a newer omnigate')`);
    try {
      expect(await migrate(db)).toEqual({ applied: [], newer: [{ id: 999, name: 'from a newer omnigate' }] });
    } finally {
      await db.query('DELETE FROM schema_migrations WHERE id = 999');
    }
  });

  it('finds a thread by a later mail\'s own subject, and says which mail', async () => {
    const mail = (id: string, subject: string, text: string, min: number, rule: 'new-ticket' | 'open-conversation') => {
      const e = inbound({ id, channel: 'email', sender: { id: 'buh@romashka.ru', handles: { email: 'buh@romashka.ru' } }, text, min, rule });
      if (e.kind === 'inbound') e.event.email = { messageId: `<${id}@romashka.ru>`, from: 'buh@romashka.ru', to: ['support@shop.ru'], cc: [], subject, references: [] };
      return e;
    };
    await apply('T-40', mail('m1', 'Счёт 4512', 'Пришлите счёт', 30, 'new-ticket'));
    const later = seq + 1;
    await apply('T-40', mail('m2', 'Акт сверки за ноябрь', 'И ещё вопрос', 31, 'open-conversation'));
    const [hit] = await search(db, 'сверка', { limit: 10 });
    expect(hit!.ticket.id).toBe('T-40');
    expect(hit!.match).toEqual({ in: 'subject', seq: later, direction: 'inbound', at: at(31) });
    expect(hit!.snippet).toContain('<b>сверки</b>');
    // The first mail's subject is the ticket's, found as before.
    expect((await search(db, 'счёт 4512', { limit: 10 })).map((h) => [h.ticket.id, h.match.in])).toEqual([['T-40', 'subject']]);
  });

  it('a reply that fails after it was sent answers nothing: first response, last reply and answered messages come from the other replies; every outcome moves updatedAt', async () => {
    const reply = (id: string, min: number): LogEntry => ({ kind: 'outbound', at: at(min), message: { v: 1, type: 'message.outbound', id, ticketId: 'T-30', channel: 'whatsapp', account: 'main', conversation: { id: 'c', kind: 'private' }, text: 'Ответ', attachments: [], author: { id: 'agent' }, createdAt: at(min), automated: false, purpose: 'agent_reply' } });
    const outcome = (id: string, status: 'sent' | 'failed' | 'delivered', min: number): LogEntry => ({ kind: 'delivery', at: at(min), status: { v: 1, type: 'delivery.status', outboundId: id, ticketId: 'T-30', channel: 'whatsapp', account: 'main', status, attempts: 1, at: at(min), ...(status === 'failed' ? { reason: 'undeliverable: 131026' } : {}) } });
    const view = async () => (await listTickets(db, { limit: 50 })).tickets.find((t) => t.id === 'T-30')!;
    const answered = async () => db.query<{ id: string; answered_at: string | null }>(`SELECT id, answered_at FROM messages WHERE ticket_id = 'T-30' AND direction = 'inbound' ORDER BY at`);
    await apply('T-30', inbound({ id: 'wa:30', channel: 'whatsapp', sender: { id: '79000000030@s.whatsapp.net', handles: {} }, text: 'Где заказ?', min: 100 }));
    await apply('T-30', reply('r-1', 101));
    // Queued is not answered: the list shows no last reply before the channel says it was sent.
    expect((await view()).lastOutboundAt).toBeUndefined();
    await apply('T-30', outcome('r-1', 'sent', 102));
    await apply('T-30', inbound({ id: 'wa:31', channel: 'whatsapp', sender: { id: '79000000030@s.whatsapp.net', handles: {} }, text: 'Спасибо, а чек?', min: 103, rule: 'open-conversation' }));
    await apply('T-30', reply('r-2', 104));
    await apply('T-30', outcome('r-2', 'sent', 105));
    expect(await view()).toMatchObject({ firstResponseAt: at(102), lastOutboundAt: at(105) });
    expect(await answered()).toEqual([{ id: 'wa:30', answered_at: at(102) }, { id: 'wa:31', answered_at: at(105) }]);
    // The second reply fails after it was sent (a late failed status): the customer's second message is unanswered again.
    await apply('T-30', outcome('r-2', 'failed', 110));
    expect(await view()).toMatchObject({ firstResponseAt: at(102), lastOutboundAt: at(102), updatedAt: at(110) });
    expect(await answered()).toEqual([{ id: 'wa:30', answered_at: at(102) }, { id: 'wa:31', answered_at: null }]);
    // The first one fails too: no first response at all.
    await apply('T-30', outcome('r-1', 'failed', 111));
    const t = await view();
    expect(t.firstResponseAt).toBeUndefined();
    expect(t.lastOutboundAt).toBeUndefined();
    expect(await answered()).toEqual([{ id: 'wa:30', answered_at: null }, { id: 'wa:31', answered_at: null }]);
    // A delivered receipt moves updatedAt too (a helpdesk polling with updatedSince sees it).
    await apply('T-30', reply('r-3', 112));
    await apply('T-30', outcome('r-3', 'sent', 113));
    await apply('T-30', outcome('r-3', 'delivered', 120));
    expect(await view()).toMatchObject({ firstResponseAt: at(113), lastOutboundAt: at(113), updatedAt: at(120) });
    // Closed while the last reply had failed: not a candidate for a rating request until one goes through.
    await apply('T-30', reply('r-4', 121));
    await apply('T-30', outcome('r-4', 'failed', 122));
    await apply('T-30', { kind: 'status', at: at(123), from: 'open', to: 'closed', author: { id: 'agent' } });
    expect(await dueTickets(db, 'csat', { now: T0 + 200 * 60_000, csatDelayMs: 10 * 60_000 })).not.toContain('T-30');
    await apply('T-30', reply('r-5', 124));
    await apply('T-30', outcome('r-5', 'sent', 125));
    expect(await dueTickets(db, 'csat', { now: T0 + 200 * 60_000, csatDelayMs: 10 * 60_000 })).toContain('T-30');
  });

  it('takes an erased address out of the contact of a ticket a reply opened, when its redaction names the reply\'s first To', async () => {
    const mail = (id: string, min: number, to: string[]): LogEntry => ({ kind: 'outbound', at: at(min), message: {
      v: 1, type: 'message.outbound', id, ticketId: 'T-90', channel: 'email', account: 'support', conversation: { id: 'ivan.petrov@mail.ru', kind: 'email' }, text: 'Счёт во вложении',
      attachments: [], email: { to, cc: [], subject: 'Счёт', references: [] }, author: { id: 'agent' }, createdAt: at(min), automated: false, purpose: 'agent_reply' } });
    await apply('T-90', mail('o-40', 300, ['ivan.petrov@mail.ru', 'buh@romashka.ru']));
    const opener = seq;
    await apply('T-90', mail('o-41', 301, ['ivan.petrov@mail.ru']));
    const contact = async () => JSON.stringify(await db.query(`SELECT contact, conversation FROM tickets WHERE id = 'T-90'`));
    expect(await contact()).toContain('ivan.petrov@mail.ru');
    // A redaction of the later reply's To says nothing of the contact; the opener's does.
    await apply('T-90', { kind: 'redaction', at: at(302), seq: opener + 1, fields: [{ field: 'to', index: 0 }], erasureId: 'e-90' });
    expect(await contact()).toContain('ivan.petrov@mail.ru');
    await apply('T-90', { kind: 'redaction', at: at(302), seq: opener, fields: [{ field: 'to', index: 0 }], erasureId: 'e-90' });
    expect(await contact()).not.toContain('ivan.petrov@mail.ru');
    expect(await db.query(`SELECT contact->>'id' AS id, conversation->>'kind' AS kind FROM tickets WHERE id = 'T-90'`)).toEqual([{ id: '', kind: 'email' }]);
  });
});
