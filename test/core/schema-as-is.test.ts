/**
 * asIs(schema): a yes only where zod would take the value and give it back unchanged. The router
 * uses it to skip zod's parse for events as connectors publish them; anything it cannot vouch for
 * goes to zod. Checked here against zod itself: on events as published, and on thousands of
 * mutations of them (fields removed, retyped, lengthened, keys added), a yes must always be
 * zod's success with an equal value.
 */
import { describe, expect, it } from 'vitest';
import { z } from 'zod';
import { asIs, safeParser } from '../../src/core/schema-as-is.js';
import { InboundEvent, LogEntry, TicketEvent, type InboundEvent as InboundEventT } from '../../src/core/schema.js';
import { chatMessage, emailMessage } from '../helpers/events.js';

const inboundAsIs = asIs(InboundEvent);

/** As it travels: zod's output (what a connector publishes), through JSON. */
const published = (e: unknown) => JSON.parse(JSON.stringify(InboundEvent.parse(e))) as InboundEventT;

function samples(): InboundEventT[] {
  const chat = chatMessage({ chat: '100500', text: 'Здравствуйте! Не проходит оплата, заказ №48213', threadId: 't-7' });
  const withParts = {
    ...chatMessage({ chat: 'g-1', kind: 'group' }),
    attachments: [{ objectKey: 'sha256/ab', name: 'счёт.pdf', mimeType: 'application/pdf', size: 1024, kind: 'document', status: 'stored' }],
    parts: [{ type: 'location', latitude: 55.75, longitude: 37.62 }, { type: 'reaction', emoji: '👍', targetPlatformMessageId: 'm-1' }],
    replyWindowEndsAt: '2026-12-06T10:00:00+03:00',
    sender: { id: 'u-1', displayName: 'Ольга', handles: { username: 'olga', phone: '+79990001122' }, language: 'ru', isBot: false },
  };
  const mail = emailMessage({ messageId: '<a1@mail.example>', from: 'client@mail.example', references: ['<r0@x>'], cc: ['boss@mail.example'] });
  const edited = { v: 1, type: 'message.edited', id: 'telegram:bot:e-1', channel: 'telegram', account: 'bot', conversation: { id: '42', kind: 'private' }, receivedAt: '2026-12-05T10:00:00.123Z', sender: { id: '42', handles: {} }, targetPlatformMessageId: '7', text: 'исправлено', platform: { messageId: '7', editedAt: '2026-12-05T10:00:00Z' } };
  const deleted = { v: 1, type: 'message.deleted', id: 'slack:ws:d-1', channel: 'slack', account: 'ws', conversation: { id: 'C1', threadId: '1700000000.000100', kind: 'channel' }, receivedAt: '2026-12-05T10:00:00Z', targetPlatformMessageId: '1700000000.000200', platform: { messageId: '1700000000.000200' } };
  return [chat, withParts, mail, edited, deleted].map(published);
}

const logEntryAsIs = asIs(LogEntry);
const ticketEventAsIs = asIs(TicketEvent);

/** Ticket-log entries of every kind, as the router, the outbound path and the API write them (zod's output, through JSON). */
function logSamples(): unknown[] {
  const at = '2026-12-05T10:00:00.000Z';
  const [chat, withParts, mail, edited, deleted] = samples();
  const outbound = {
    v: 1, type: 'message.outbound', id: 'out-1', ticketId: 'T-1', channel: 'email', account: 'support', conversation: { id: 'client@mail.example', kind: 'private' },
    text: 'Добрый день! Чек отправили повторно.', attachments: [{ objectKey: 'sha256/cd', name: 'чек.pdf', mimeType: 'application/pdf', size: 2048 }],
    email: { to: ['client@mail.example'], cc: [], subject: 'Re: Оплата [T-1]', inReplyTo: '<a1@mail.example>', references: ['<a1@mail.example>'] },
    author: { id: 'agent-1', name: 'Анна' }, createdAt: at, automated: false, purpose: 'agent_reply',
  };
  const delivery = { v: 1, type: 'delivery.status', outboundId: 'out-1', ticketId: 'T-1', channel: 'email', account: 'support', status: 'failed', platformMessageId: '<o1@x>', reason: 'bounced: 550 mailbox full', attempts: 3, at };
  const entries = [
    { kind: 'inbound', at, event: chat, match: { rule: 'open-conversation', value: 'telegram:bot:100500' } },
    { kind: 'inbound', at, event: withParts, match: { rule: 'new-ticket', value: 'x' } },
    { kind: 'inbound', at, event: mail, match: { rule: 'email-references', value: '<r0@x>' } },
    { kind: 'edited', at, event: edited, match: { rule: 'edit-target', value: '7' } },
    { kind: 'deleted', at, event: deleted, match: { rule: 'edit-target', value: '1700000000.000200' } },
    { kind: 'outbound', at, message: outbound },
    { kind: 'note', at, id: 'n-1', text: 'Перезвонить после 15:00 МСК', author: { id: 'agent-1' } },
    { kind: 'delivery', at, status: delivery },
    { kind: 'rating', at, rating: 2, low: true, eventId: 'telegram:bot:9' },
    { kind: 'sla', at, breach: 'first_response', since: at, limitMs: 3_600_000, escalatedTo: 'lead' },
    { kind: 'escalation', at, id: 'esc-1', reason: 'rating', target: 'telegram:lead', outcome: 'failed', detail: 'bot was blocked' },
    { kind: 'status', at, from: 'closed', to: 'open', author: { id: 'router' }, reason: 'customer wrote (reopened)' },
    { kind: 'redaction', at, seq: 3, fields: [{ field: 'cc', index: 0 }], erasureId: '0f9c-erasure' },
  ];
  return entries.map((e) => JSON.parse(JSON.stringify(LogEntry.parse(e))));
}

/** Ticket events as the journal publishes them: the head, and the entry announced last. */
function ticketEventSamples(): unknown[] {
  const entries = logSamples() as Array<{ kind: string }>;
  const head = {
    v: 1, ticketId: 'T-100', ticketNumber: 100, channel: 'telegram', account: 'bot', status: 'open', at: '2026-12-05T10:00:01.000Z',
    conversation: { id: '100500', kind: 'private' }, contact: { id: '42', displayName: 'Ольга', handles: { username: 'olga' } },
  };
  const type = (kind: string) => ({ inbound: 'ticket.message', outbound: 'ticket.reply', note: 'ticket.note', status: 'ticket.status', rating: 'ticket.rating', delivery: 'ticket.delivery', sla: 'ticket.sla', edited: 'ticket.edited', deleted: 'ticket.deleted' } as Record<string, string>)[kind] ?? 'ticket.status';
  const events = entries.map((entry, i) => ({ ...head, type: type(entry.kind), id: `${type(entry.kind)}:e-${i}`, entry }));
  events.push({ ...head, type: 'ticket.status', id: 'ticket.status:bare', entry: undefined as never });
  return events.map((e) => JSON.parse(JSON.stringify(TicketEvent.parse(e))));
}

/** A small deterministic generator: the same mutations on every run. */
function random(seed: number) {
  let s = seed;
  return () => {
    s = (s * 1103515245 + 12345) % 2 ** 31;
    return s / 2 ** 31;
  };
}

const ODD_VALUES: unknown[] = [
  '', ' ', 'x'.repeat(70), 'y'.repeat(3000), 'a\nb', 'tab\there', '\u0000', 'Жалоба', 'not-a-date', '2026-13-01T00:00:00Z', '2026-12-05T10:00:00', '2026-12-05T10:00:00+03:00',
  0, -1, 1.5, 2 ** 60, 1e308, null, true, false, [], ['a'], [1], {}, { a: 'b' }, { __proto__: null, x: 1 }, 'message.inbound', 'message.edited', 'private', 'stored', 'plain', 'platform', 1,
  // Valid values of the log entries' and ticket events' own fields, so mutations also produce other valid shapes.
  'inbound', 'outbound', 'note', 'status', 'rating', 'delivery', 'sla', 'open', 'closed', 'pending', 'failed', 'delivered', 'first_response', 'new-ticket', 'ticket.message', 'ticket.status', 3, 5,
];

/** Every path to a value inside `v` (objects and arrays). */
function paths(v: unknown, at: Array<string | number> = []): Array<Array<string | number>> {
  if (v === null || typeof v !== 'object') return [at];
  const own = Array.isArray(v) ? v.map((_, i) => i) : Object.keys(v);
  return [at, ...own.flatMap((k) => paths((v as Record<string | number, unknown>)[k], [...at, k]))];
}

function mutate(e: unknown, next: () => number): unknown {
  const copy = JSON.parse(JSON.stringify(e)) as Record<string, unknown>;
  const all = paths(copy).filter((p) => p.length > 0);
  const path = all[Math.floor(next() * all.length)]!;
  let parent: Record<string | number, unknown> = copy;
  for (const k of path.slice(0, -1)) parent = parent[k] as Record<string | number, unknown>;
  const last = path[path.length - 1]!;
  const what = next();
  if (what < 0.25) {
    if (Array.isArray(parent)) parent.splice(Number(last), 1);
    else delete parent[last];
  } else if (what < 0.4 && !Array.isArray(parent)) {
    parent[`extra${Math.floor(next() * 3)}`] = 'x';
  } else if (what < 0.45 && !Array.isArray(parent)) {
    Object.defineProperty(parent, '__proto__', { value: { polluted: true }, enumerable: true, configurable: true, writable: true });
  } else {
    parent[last] = ODD_VALUES[Math.floor(next() * ODD_VALUES.length)];
  }
  return copy;
}

/**
 * 3,000 mutations of `base` (1–3 each): every yes of `predicate` must be zod's success with a
 * strictly equal value, and nothing zod returns unchanged may be a no.
 */
function expectZodAgrees(schema: z.ZodType, predicate: (v: unknown) => boolean, base: unknown[], seed: number): void {
  const next = random(seed);
  let yes = 0;
  let zodYesOnly = 0;
  for (let i = 0; i < 3000; i++) {
    let v: unknown = base[i % base.length];
    const rounds = 1 + Math.floor(next() * 3);
    for (let r = 0; r < rounds; r++) v = mutate(v, next);
    const zodSays = schema.safeParse(v);
    if (predicate(v)) {
      yes++;
      expect(zodSays.success, JSON.stringify(v)).toBe(true);
      expect(zodSays.data, JSON.stringify(v)).toStrictEqual(v);
    } else if (zodSays.success && JSON.stringify(zodSays.data) === JSON.stringify(v)) {
      zodYesOnly++;
    }
  }
  // The mutations are not all refusals: the yes side is exercised too.
  expect(yes).toBeGreaterThan(100);
  expect(zodYesOnly).toBe(0);
}

describe('asIs', () => {
  it('takes events as connectors publish them, exactly as zod returns them', () => {
    for (const e of samples()) {
      expect(inboundAsIs(e)).toBe(true);
      expect(InboundEvent.parse(e)).toStrictEqual(e);
    }
  });

  it('says yes only where zod succeeds and returns the same value (3,000 mutations of published events)', () => {
    expectZodAgrees(InboundEvent, inboundAsIs, samples(), 20261205);
  });

  it('takes ticket-log entries of every kind as written, and says yes to a mutation only where zod returns it unchanged (3,000 mutations)', () => {
    const base = logSamples();
    for (const e of base) expect(logEntryAsIs(e), JSON.stringify(e)).toBe(true);
    expectZodAgrees(LogEntry, logEntryAsIs, base, 20261206);
  });

  it('takes ticket events as the journal publishes them, and says yes to a mutation only where zod returns it unchanged (3,000 mutations)', () => {
    const base = ticketEventSamples();
    for (const e of base) expect(ticketEventAsIs(e), JSON.stringify(e)).toBe(true);
    expectZodAgrees(TicketEvent, ticketEventAsIs, base, 20261207);
  });

  it('safeParser answers as zod does: the value itself when vouched for, zod\'s result (and refusal) otherwise', () => {
    const parse = safeParser(LogEntry);
    const [inbound] = logSamples();
    const taken = parse(inbound);
    expect(taken.success && taken.data).toBe(inbound); // no copy
    const withExtra = { ...(inbound as object), extra: 1 };
    const stripped = parse(withExtra);
    expect(stripped.success && stripped.data).toStrictEqual(inbound);
    const refused = parse({ kind: 'note', at: 'yesterday' });
    expect(refused.success).toBe(false);
    expect(refused.error?.issues.length).toBeGreaterThan(0);
    // An outbound message with a template: its parameters are a union without a discriminator, which only zod judges.
    const template = { kind: 'outbound', at: '2026-12-05T10:00:00.000Z', message: { ...((logSamples()[5] as { message: object }).message), template: { name: 'order_ready', language: 'ru', parameters: ['48213'] } } };
    expect(logEntryAsIs(JSON.parse(JSON.stringify(LogEntry.parse(template))))).toBe(false);
    expect(parse(template).success).toBe(true);
  });

  it('leaves to zod what zod would change or refuse', () => {
    const [chat] = samples();
    const { text: _text, ...noText } = chat as InboundEventT & { text: string };
    expect(inboundAsIs(noText)).toBe(false); // zod fills the default in
    expect(inboundAsIs({ ...chat, unknown: 1 })).toBe(false); // zod strips it
    expect(inboundAsIs({ ...chat, type: 'message.other' })).toBe(false);
    expect(inboundAsIs({ ...chat, v: 2 })).toBe(false);
    expect(inboundAsIs({ ...chat, channel: 'tele.gram' })).toBe(false);
    expect(inboundAsIs({ ...chat, receivedAt: '2026-12-05 10:00' })).toBe(false);
    expect(inboundAsIs(JSON.parse(JSON.stringify(chat).replace('"handles":{}', '"handles":{"__proto__":"x"}')))).toBe(false);
    expect(inboundAsIs(null)).toBe(false);
    expect(inboundAsIs([chat])).toBe(false);
    // A name zod rewrites (direction overrides taken out) is zod's; one it leaves alone is vouched for.
    const named = (displayName: string) => ({ ...chat, sender: { ...(chat as InboundEventT).sender, displayName } });
    expect(inboundAsIs(named('\u202eПётр'))).toBe(false);
    expect((InboundEvent.parse(named('\u202eПётр')) as InboundEventT & { sender: { displayName: string } }).sender.displayName).toBe('Пётр');
    expect(inboundAsIs(named('Пётр'))).toBe(true);
    // The same for a chat's title (a private chat's is the person's name: the ticket's subject), a
    // terminal escape in a name, and a NUL in a text (PostgreSQL stores none: U+FFFD in both stores).
    const c = chat as InboundEventT & { conversation: { title?: string }; text: string };
    const titled = { ...c, conversation: { ...c.conversation, title: '\u202eнавИ' } };
    expect(inboundAsIs(titled)).toBe(false);
    expect((InboundEvent.parse(titled) as typeof c).conversation.title).toBe('навИ');
    expect((InboundEvent.parse(named('\u001b[31mИван')) as InboundEventT & { sender: { displayName: string } }).sender.displayName).toBe('[31mИван');
    expect((InboundEvent.parse({ ...c, text: 'a\u0000b' }) as typeof c).text).toBe('a\uFFFDb');
    expect(inboundAsIs({ ...c, text: 'a\u0000b' })).toBe(false);
    expect(inboundAsIs({ ...c, conversation: { ...c.conversation, title: 'Иван' } })).toBe(true);
  });

  it('says no to what it cannot read off a definition, so zod decides', () => {
    expect(asIs(z.string().transform((s) => s.trim()))(' a ')).toBe(false);
    expect(asIs(z.string().refine((s) => s !== 'b'))('a')).toBe(false);
    expect(asIs(z.string().url())('https://example.com')).toBe(false);
    expect(asIs(z.union([z.string(), z.number()]))('a')).toBe(false);
    expect(asIs(z.object({ a: z.string() }).passthrough())({ a: 'x', b: 1 })).toBe(false);
    // A global pattern keeps lastIndex between tests: asked twice, one predicate answers the same.
    const globalPattern = asIs(z.object({ a: z.string().regex(/^x+$/g) }));
    expect(globalPattern({ a: 'xx' })).toBe(true);
    expect(globalPattern({ a: 'xx' })).toBe(true);
    // Found in review: each a yes where zod fails, or changes the value.
    expect(asIs(z.object({ u: z.url() }))({ u: 'x' })).toBe(false); // a format schema's own check
    expect(asIs(z.email())('not-a-mail')).toBe(false);
    expect(asIs(z.iso.datetime())('nope')).toBe(false);
    expect(asIs(z.iso.datetime())('2026-12-05T10:00:00Z')).toBe(true);
    expect(asIs(z.int())(1.5)).toBe(false);
    expect(asIs(z.string().regex(/a/y))('ba')).toBe(false); // sticky
    expect(asIs(z.record(z.enum(['a', 'b']), z.string()))({ a: 'x' })).toBe(false); // zod wants every key
    expect(asIs(z.object({ a: z.string().default('d').optional() }))({})).toBe(false); // zod fills the default in
    enum Level {
      Low,
      High,
    }
    expect(asIs(z.enum(Level))('Low')).toBe(false);
  });

  it('counts string lengths in code points, as zod does', () => {
    const cases: Array<[z.ZodString, string]> = [
      [z.string().min(2), '😀'], [z.string().min(2), '😀😀'], [z.string().max(1), '😀'], [z.string().max(1), 'ab'],
      [z.string().length(1), '😀'], [z.string().length(2), '😀'], [z.string().min(1).max(3), 'а😀б'], [z.string().max(2), '\ud83d'],
    ];
    for (const [schema, value] of cases) {
      const yes = asIs(schema)(value);
      if (yes) expect(schema.safeParse(value).success, `${value} against ${JSON.stringify(schema._zod.def.checks?.map((c) => c._zod.def.check))}`).toBe(true);
      else expect(schema.safeParse(value).success).toBe(false);
    }
  });
});
