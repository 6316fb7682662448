/**
 * What the API and the timers ask of the read model. Every query is served by an index
 * (migrations.ts); none reads every ticket, except the list's failedReplies filter when fewer
 * tickets than a page have failed replies (listTickets says why that is left so).
 */
import type { Queryable } from './database.js';
import { normalizeEmail } from './contacts.js';
import { phoneLookupValues, recordedPhoneForms, writtenPhone } from '../core/phone.js';

export interface TicketRow {
  id: string;
  number: number | null;
  status: string;
  channel: string;
  account: string;
  conversation: unknown;
  subject: string | null;
  contact_id: string | null;
  contact: { id: string; displayName?: string; handles?: Record<string, string> };
  created_at: string;
  updated_at: string;
  first_response_at: string | null;
  resolved_at: string | null;
  closed_at: string | null;
  last_inbound_at: string | null;
  /** The last agent reply sent (column last_agent_reply_at), as the ticket's lastOutboundAt: not a reply queued, nor one that failed after it was sent. */
  last_outbound_at: string | null;
  message_count: number;
  last_delivery: unknown;
  rating: number | null;
  /** Null in rows from before migration 7 until the customer's next message, and where the channel sets no window. */
  reply_window_ends_at: string | null;
  /** Null when none (never empty). */
  failed_replies: Array<{ outboundId: string; at: string; reason: string }> | null;
}

/** A ticket as the API shows it from SQL: the KV record's names, plus the cross-channel contact. */
export function ticketView(r: TicketRow) {
  const canonical = r as TicketRow & { contact_root?: string | null };
  return {
    id: r.id,
    number: r.number,
    status: r.status,
    channel: r.channel,
    account: r.account,
    conversation: r.conversation,
    ...(r.subject !== null ? { subject: r.subject } : {}),
    contact: r.contact,
    contactId: canonical.contact_root ?? r.contact_id,
    createdAt: r.created_at,
    updatedAt: r.updated_at,
    ...(r.first_response_at ? { firstResponseAt: r.first_response_at } : {}),
    ...(r.resolved_at ? { resolvedAt: r.resolved_at } : {}),
    ...(r.closed_at ? { closedAt: r.closed_at } : {}),
    ...(r.last_inbound_at ? { lastInboundAt: r.last_inbound_at } : {}),
    ...(r.last_outbound_at ? { lastOutboundAt: r.last_outbound_at } : {}),
    messageCount: r.message_count,
    ...(r.last_delivery ? { lastDelivery: r.last_delivery } : {}),
    ...(r.reply_window_ends_at ? { replyWindowEndsAt: r.reply_window_ends_at } : {}),
    ...(r.failed_replies?.length ? { failedReplies: r.failed_replies } : {}),
    ...(r.rating !== null ? { rating: r.rating } : {}),
  };
}
export type TicketView = ReturnType<typeof ticketView>;

export const TICKET_COLUMNS = `t.id, t.number, t.status, t.channel, t.account, t.conversation, t.subject, t.contact_id, t.contact, t.created_at, t.updated_at,
  t.first_response_at, t.resolved_at, t.closed_at, t.last_inbound_at, t.last_agent_reply_at AS last_outbound_at, t.message_count, t.last_delivery, t.rating,
  t.reply_window_ends_at, t.failed_replies, (SELECT coalesce(c.merged_into, c.id) FROM contacts c WHERE c.id = t.contact_id) AS contact_root`;

export interface TicketFilter {
  status?: string;
  channel?: string;
  account?: string;
  /** A contact id (c_…), or a platform id / handle / phone / email of the customer. */
  contact?: string;
  updatedSince?: string;
  updatedBefore?: string;
  createdSince?: string;
  createdBefore?: string;
  /** true: tickets with at least one failed reply listed; false: tickets with none. */
  failedReplies?: boolean;
  /**
   * `updated` (the default): newest change first, the desk's view; a ticket changed while a client
   * pages moves to the front, past the pages it has read (an outside trial paged 296 tickets under
   * load and got 294). `created`: oldest first by creation, a complete pass: a ticket opened meanwhile
   * lands on a later page, and one that changes stays where it was.
   */
  order?: 'updated' | 'created';
  /** Exclusive: the page after this (updated_at or created_at, by `order`; and id). */
  after?: { at: string; id: string };
  limit: number;
}

/** Contact ids (every merged one included) that `needle` names; empty when it names none. */
export async function contactIdsFor(db: Queryable, needle: string): Promise<string[]> {
  const values = [needle, needle.toLowerCase(), ...phoneLookupValues(needle), normalizeEmail(needle)].filter((v): v is string => !!v);
  const rows = await db.query<{ id: string }>(
    `WITH roots AS (
       SELECT coalesce(c.merged_into, c.id) AS root FROM contacts c WHERE c.id = $1
       UNION SELECT coalesce(c.merged_into, c.id) FROM contact_identities i JOIN contacts c ON c.id = i.contact_id WHERE i.value = ANY($2::text[]))
     SELECT root AS id FROM roots UNION SELECT c.id FROM contacts c JOIN roots r ON c.merged_into = r.root`,
    [needle, values],
  );
  return rows.map((r) => r.id);
}

/** By `order` (TicketFilter); (updated_at, id) and (created_at, id) are unique, so a cursor page never repeats a ticket, nor skips one that did not change. */
export async function listTickets(db: Queryable, f: TicketFilter): Promise<{ tickets: TicketView[]; more: boolean }> {
  const where: string[] = [];
  const params: unknown[] = [];
  const p = (v: unknown) => {
    params.push(v);
    return `$${params.length}`;
  };
  if (f.status) where.push(`t.status = ${p(f.status)}`);
  if (f.channel) where.push(`t.channel = ${p(f.channel)}`);
  if (f.account) where.push(`t.account = ${p(f.account)}`);
  if (f.updatedSince) where.push(`t.updated_at >= ${p(f.updatedSince)}`);
  if (f.updatedBefore) where.push(`t.updated_at < ${p(f.updatedBefore)}`);
  if (f.createdSince) where.push(`t.created_at >= ${p(f.createdSince)}`);
  if (f.createdBefore) where.push(`t.created_at < ${p(f.createdBefore)}`);
  // No index of its own: the page is read newest first through the other filters' index, these
  // rows kept. Failed replies are rare, so with fewer than a page of them every ticket row is
  // read: 33 ms per 100,000 tickets on PostgreSQL, 80 on PGlite (docs/data.md), which a desk at
  // thousands of tickets a week is years from. A partial index on (updated_at, id) WHERE
  // failed_replies IS NOT NULL is the remedy should a read model grow to millions.
  if (f.failedReplies !== undefined) where.push(`t.failed_replies IS ${f.failedReplies ? 'NOT ' : ''}NULL`);
  const byCreation = f.order === 'created';
  if (f.after) where.push(byCreation ? `(t.created_at, t.id) > (${p(f.after.at)}::timestamptz, ${p(f.after.id)})` : `(t.updated_at, t.id) < (${p(f.after.at)}::timestamptz, ${p(f.after.id)})`);
  if (f.contact) {
    const ids = await contactIdsFor(db, f.contact);
    const either: string[] = [];
    // Not a known identity: the platform id or a handle as the router recorded it (a scan of the
    // other filters' result, like the in-memory index did; identities are the indexed way).
    if (ids.length) either.push(`t.contact_id = ANY(${p(ids)}::text[])`);
    else {
      const needle = p(f.contact.toLowerCase());
      either.push(`lower(t.contact->>'id') = ${needle} OR EXISTS (SELECT 1 FROM jsonb_each_text(coalesce(t.contact->'handles', '{}'::jsonb)) h WHERE lower(h.value) = ${needle})`);
    }
    // A phone handle is recorded as the customer typed it (a web form's "8 (903) 111-22-33"): it is
    // compared by its digits in every form the number is written, and also when the number is
    // some contact's proven identity — a web-form ticket of a person who writes on WhatsApp too.
    const phone = writtenPhone(f.contact) ? recordedPhoneForms(f.contact) : undefined;
    if (phone?.digits.length) {
      const recorded = `regexp_replace(t.contact->'handles'->>'phone', '[^0-9]', '', 'g')`;
      either.push(
        `${recorded} = ANY(${p(phone.digits)}::text[]) OR (ltrim(t.contact->'handles'->>'phone') NOT LIKE '+%' AND ${recorded} = ANY(${p(phone.unprefixed)}::text[]))`,
      );
    }
    where.push(`(${either.map((c) => `(${c})`).join(' OR ')})`);
  }
  const rows = await db.query<TicketRow>(
    `SELECT ${TICKET_COLUMNS} FROM tickets t ${where.length ? `WHERE ${where.join(' AND ')}` : ''}
      ORDER BY ${byCreation ? 't.created_at, t.id' : 't.updated_at DESC, t.id DESC'} LIMIT ${p(f.limit + 1)}`,
    params,
  );
  return { tickets: rows.slice(0, f.limit).map(ticketView), more: rows.length > f.limit };
}

export interface SearchHit {
  ticket: TicketView;
  /** The best-matching text, HTML-escaped, with the matched words in <b>…</b>: safe to render as HTML. */
  snippet: string;
  /** Where the best match is: a message's text or a subject, with the message's log sequence when it is one message's (a mail's own subject), none for the ticket's. */
  match: { in: 'message' | 'subject'; seq?: number; direction?: string; at?: string };
  rank: number;
}

/**
 * Search first reads the newest SEARCH_RECENT ticket-log sequences row by row, and searches the
 * whole history through the full-text index only when fewer than `limit` tickets match there.
 * Why: the index answers a rare word at once, but a common one costs in proportion to its matches
 * (133,000 for a product name in 5 M messages: 0.25 s to read the index alone, 1.5 s to rank),
 * while the newest matches are what people look for and a common word has enough of them.
 */
export const SEARCH_RECENT = 20_000;

/**
 * Full text over messages (not deleted ones), their own subjects (a mail's) and tickets' subjects, Russian and English stemming: «оплата»
 * finds «оплатил». The query is websearch syntax ("quoted phrase", -word, or). One hit per ticket,
 * best rank first — among the newest messages when they hold `limit` matching tickets (SEARCH_RECENT).
 */
export async function search(db: Queryable, q: string, o: { limit: number; status?: string; channel?: string }): Promise<SearchHit[]> {
  const [top] = await db.query<{ seq: number | null }>('SELECT max(seq) AS seq FROM messages');
  const from = (top?.seq ?? 0) - SEARCH_RECENT;
  let rows: SearchRow[] = [];
  if (from > 0) {
    // Subjects of tickets created since the window started (a subject is set when the ticket is).
    const [start] = await db.query<{ at: string }>('SELECT at FROM messages WHERE seq > $1 ORDER BY seq LIMIT 1', [from]);
    rows = await searchIn(db, q, o, { seq: from, at: start?.at ?? new Date(0).toISOString() });
  }
  if (rows.length < o.limit) rows = await searchIn(db, q, o, null);
  return rows.map((r) => ({
    ticket: ticketView(r),
    snippet: highlighted(r.snippet),
    match: r.hit_seq === null ? { in: 'subject' as const } : { in: r.hit_in, seq: r.hit_seq, direction: r.hit_direction ?? undefined, at: r.hit_at ?? undefined },
    rank: Number(r.rank),
  }));
}

/**
 * ts_headline marks matches but escapes nothing: a customer's `<img onerror=…>` came back as
 * markup inside the snippet. Matches are marked with control characters, the text is escaped,
 * then the marks become <b>…</b>.
 */
// The text's own U+0001/U+0002 (a customer can send them) are made spaces before ts_headline, so
// only its markers become <b> and </b>.
const MARK_START = '\u0001';
const MARK_STOP = '\u0002';
const HTML_ESCAPES: Record<string, string> = { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' };

function highlighted(snippet: string): string {
  return snippet
    .replace(/[&<>"']/g, (c) => HTML_ESCAPES[c]!)
    .replaceAll(MARK_START, '<b>')
    .replaceAll(MARK_STOP, '</b>');
}

type SearchRow = TicketRow & { hit_seq: number | null; hit_direction: string | null; hit_at: string | null; hit_in: 'message' | 'subject'; snippet: string; rank: number };

/**
 * The newest rows (`recent`: messages by sequence, tickets by created_at, matched row by row with ts_match_vq, which
 * the planner cannot turn into a full-text index scan) or everything (through the GIN indexes).
 * The tsquery is written out where it is used, not in a CTE, so the planner sees its value; only
 * the `limit` best hits are joined to their tickets.
 */
/** The expression of migration 9's partial index on messages' own subjects, written the same way so the planner uses it. */
const SUBJECT_TSV = `(to_tsvector('russian', coalesce(m.subject, '')) || to_tsvector('english', coalesce(m.subject, '')))`;

async function searchIn(db: Queryable, q: string, o: { limit: number; status?: string; channel?: string }, recent: { seq: number; at: string } | null): Promise<SearchRow[]> {
  const TSQ = `(websearch_to_tsquery('russian', $1) || websearch_to_tsquery('english', $1))`;
  const match = (column: string) => (recent ? `ts_match_vq(${column}, ${TSQ})` : `${column} @@ ${TSQ}`);
  const filtered = o.status !== undefined || o.channel !== undefined;
  return db.query<SearchRow>(
    `WITH hits AS (
       SELECT m.ticket_id, m.seq, m.direction, m.at, m.text, ts_rank(m.search, ${TSQ}) AS rank, 'message' AS hit_in FROM messages m
        WHERE ${match('m.search')} AND m.deleted_at IS NULL ${recent ? 'AND m.seq > $5' : ''}
       UNION ALL
       SELECT m.ticket_id, m.seq, m.direction, m.at, m.subject, ts_rank(${SUBJECT_TSV}, ${TSQ}) * 2, 'subject' FROM messages m
        WHERE m.subject IS NOT NULL AND ${match(SUBJECT_TSV)} AND m.deleted_at IS NULL ${recent ? 'AND m.seq > $5' : ''}
       UNION ALL
       SELECT t.id, NULL, NULL, NULL, t.subject, ts_rank(t.search, ${TSQ}) * 2, 'subject' FROM tickets t
        WHERE ${match('t.search')} ${recent ? 'AND t.created_at >= $6' : ''}),
     best AS (SELECT DISTINCT ON (ticket_id) * FROM hits ORDER BY ticket_id, rank DESC, seq DESC NULLS LAST),
     top AS (
       SELECT b.* FROM best b
        WHERE ${filtered ? `EXISTS (SELECT 1 FROM tickets f WHERE f.id = b.ticket_id AND ($3::text IS NULL OR f.status = $3) AND ($4::text IS NULL OR f.channel = $4))` : '$3::text IS NULL AND $4::text IS NULL'}
        ORDER BY b.rank DESC, b.seq DESC NULLS LAST, b.ticket_id DESC LIMIT $2)
     SELECT ${TICKET_COLUMNS}, b.seq AS hit_seq, b.direction AS hit_direction, b.at AS hit_at, b.hit_in, b.rank,
            ts_headline('russian', translate(b.text, chr(1) || chr(2), '  '), ${TSQ}, 'StartSel=' || chr(1) || ', StopSel=' || chr(2) || ', MaxWords=30, MinWords=8, MaxFragments=2') AS snippet
       FROM top b JOIN tickets t ON t.id = b.ticket_id
      ORDER BY b.rank DESC, b.seq DESC NULLS LAST, b.ticket_id DESC`,
    [q, o.limit, o.status ?? null, o.channel ?? null, ...(recent ? [recent.seq, recent.at] : [])],
  );
}

export interface ContactView {
  id: string;
  displayName?: string;
  identities: Array<{ kind: string; value: string; channel: string; account: string | null; proof: string; scope?: string }>;
  /** Contacts merged into this one. */
  merged: string[];
  tickets: number;
  lastTicketAt?: string;
  createdAt: string;
}

/** The contact (its root when `id` was merged away), with identities and ticket counts. */
export async function getContact(db: Queryable, id: string): Promise<(ContactView & { requested: string }) | null> {
  const [c] = await db.query<{ id: string; display_name: string | null; created_at: string }>(
    `SELECT r.id, r.display_name, r.created_at FROM contacts c JOIN contacts r ON r.id = coalesce(c.merged_into, c.id) WHERE c.id = $1`,
    [id],
  );
  if (!c) return null;
  const members = await db.query<{ id: string }>('SELECT id FROM contacts WHERE id = $1 OR merged_into = $1', [c.id]);
  const ids = members.map((m) => m.id);
  const identities = await db.query<{ kind: string; scope: string; value: string; channel: string; account: string | null; proof: string }>(
    `SELECT kind, scope, value, channel, account, proof FROM contact_identities WHERE contact_id = ANY($1::text[]) ORDER BY created_at, kind, value`,
    [ids],
  );
  const [stats] = await db.query<{ n: number; last: string | null }>(
    `SELECT count(*)::int AS n, max(created_at) AS last FROM tickets WHERE contact_id = ANY($1::text[])`,
    [ids],
  );
  return {
    requested: id,
    id: c.id,
    ...(c.display_name ? { displayName: c.display_name } : {}),
    identities: identities.map((i) => ({ kind: i.kind, value: i.value, channel: i.channel, account: i.account, proof: i.proof, ...(i.scope ? { scope: i.scope } : {}) })),
    merged: ids.filter((x) => x !== c.id),
    tickets: stats?.n ?? 0,
    ...(stats?.last ? { lastTicketAt: stats.last } : {}),
    createdAt: c.created_at,
  };
}

/** Contacts by a phone, an email address or a platform handle/id (identities only: what a platform proved). */
export async function findContacts(db: Queryable, by: { phone?: string; email?: string; handle?: string }): Promise<ContactView[]> {
  const conditions: Array<[string, string[]]> = [];
  if (by.phone) {
    const phones = phoneLookupValues(by.phone);
    if (phones.length) conditions.push(['phone', phones]);
  }
  if (by.email) {
    const email = normalizeEmail(by.email);
    if (email) conditions.push(['email', [email]]);
  }
  const roots = new Set<string>();
  for (const [kind, values] of conditions) {
    const rows = await db.query<{ root: string }>(
      `SELECT DISTINCT coalesce(c.merged_into, c.id) AS root FROM contact_identities i JOIN contacts c ON c.id = i.contact_id WHERE i.kind = $1 AND i.value = ANY($2::text[])`,
      [kind, values],
    );
    for (const r of rows) roots.add(r.root);
  }
  if (by.handle) {
    const handle = by.handle.replace(/^@/, '');
    const rows = await db.query<{ root: string }>(
      `SELECT DISTINCT coalesce(c.merged_into, c.id) AS root FROM contact_identities i JOIN contacts c ON c.id = i.contact_id
        WHERE i.kind IN ('telegram_user', 'whatsapp_lid', 'slack_user', 'external') AND i.value = ANY($1::text[])`,
      [[by.handle, handle]],
    );
    for (const r of rows) roots.add(r.root);
  }
  const out: ContactView[] = [];
  for (const root of roots) {
    const c = await getContact(db, root);
    if (c) {
      const { requested: _requested, ...view } = c;
      out.push(view);
    }
  }
  return out;
}

/**
 * Due-work candidates for the SLA and satisfaction timers: tickets that may be due at `now`. A
 * superset by design (wall-clock time ≥ business time; the read model may lag a few entries):
 * the timers decide on the KV record, which stays the source of truth for open tickets.
 */
export async function dueTickets(
  db: Queryable,
  kind: 'sla' | 'csat',
  o: { now: number; firstResponseMs?: number; noAnswerMs?: number; csatDelayMs?: number; csatWindowMs?: number; limit?: number },
): Promise<string[]> {
  const limit = o.limit ?? 1000;
  if (kind === 'sla') {
    const rows = await db.query<{ id: string }>(
      `(SELECT id FROM tickets WHERE first_response_at IS NULL AND first_response_breached_at IS NULL AND status IN ('new', 'open') AND created_at < $1 ORDER BY created_at LIMIT $3)
       UNION
       (SELECT id FROM tickets WHERE status IN ('new', 'open') AND last_inbound_at IS NOT NULL AND last_inbound_at < $2
          AND first_response_at IS NOT NULL AND (last_agent_reply_at IS NULL OR last_agent_reply_at < last_inbound_at)
          AND (no_answer_breached_for IS NULL OR no_answer_breached_for <> last_inbound_at)
        ORDER BY last_inbound_at LIMIT $3)`,
      [new Date(o.now - (o.firstResponseMs ?? 0)).toISOString(), new Date(o.now - (o.noAnswerMs ?? 0)).toISOString(), limit],
    );
    return rows.map((r) => r.id);
  }
  // The rules of SatisfactionRequests.due() that SQL can judge. A ticket never to be asked (no
  // answer reached the customer, its reply window closed) stays a candidate: newest first, and
  // only within the rating window after the delay, so such tickets cannot fill the page for good
  // (oldest first, a thousand of them stopped every request on every channel).
  const cutoff = new Date(o.now - (o.csatDelayMs ?? 0)).toISOString();
  const tooLate = new Date(o.now - (o.csatDelayMs ?? 0) - (o.csatWindowMs ?? 7 * 86_400_000)).toISOString();
  const rows = await db.query<{ id: string }>(
    `SELECT id FROM tickets WHERE csat_requested_at IS NULL AND status IN ('resolved', 'closed')
        AND (resolved_at < $1 OR closed_at < $1) AND greatest(resolved_at, closed_at) > $3
        AND first_response_at IS NOT NULL AND (last_delivery IS NULL OR last_delivery->>'status' <> 'failed')
      ORDER BY greatest(resolved_at, closed_at) DESC LIMIT $2`,
    [cutoff, limit, tooLate],
  );
  return rows.map((r) => r.id);
}

/** omnigate_tickets{status}: one indexed count per status. */
export async function countByStatus(db: Queryable): Promise<Record<string, number>> {
  const rows = await db.query<{ status: string; n: number }>('SELECT status, count(*)::int AS n FROM tickets GROUP BY status');
  return Object.fromEntries(rows.map((r) => [r.status, r.n]));
}

/** The highest ticket number the read model holds; 0 when it holds none. */
export async function highestTicketNumber(db: Queryable): Promise<number> {
  const [row] = await db.query<{ n: number | string | null }>('SELECT max(number) AS n FROM tickets');
  return Number(row?.n ?? 0);
}
