/**
 * How one ticket-log entry changes the read model. Mirrors what the router does to the ticket
 * record (src/router/ticket-changes.ts, deliveries.ts, commands.ts) using only what the entry
 * carries, so the tables can be rebuilt from the log alone. Called once per log sequence, in
 * order, inside the transaction that also moves the checkpoint (projection.ts).
 *
 * Also replayed over rows that are still there (lost-rows.ts: rows were lost behind
 * the projection): child rows are written where missing (ON CONFLICT DO NOTHING; status_changes,
 * ratings, sla_breaches by their sequence), and an entry's effect on its ticket row only where the
 * row does not hold it yet (`BatchMemory.inTicketRow`, by tickets.last_seq), so message_count,
 * reopened_count, the status and last_seq come out as a forward apply left them. A deliveries row
 * takes an entry only above its own last_seq.
 */
import type { InboundMessage, LogEntry, OutboundMessage } from '../core/schema.js';
import type { Queryable } from './database.js';
import { BatchMemory, type BatchTally } from './batch-memory.js';
import { failedRepliesAfter, failedReplyItem } from './failed-replies.js';
import { provenIdentities, resolveContact } from './contacts.js';

type Entry<K extends LogEntry['kind']> = Extract<LogEntry, { kind: K }>;

/** The trailing number of a ticket id (`T-1042` → 1042): the router builds ids as prefix + number. */
export function ticketNumberOf(id: string): number | null {
  const m = /(\d+)$/.exec(id);
  return m ? Number(m[1]) : null;
}

/** A 👍 on our answer: logged, but the customer is not waiting for anything (router.ts). */
function isReactionOnly(e: InboundMessage): boolean {
  return !e.text.trim() && e.attachments.length === 0 && e.parts.length > 0 && e.parts.every((p) => p.type === 'reaction');
}

/**
 * What was applied; unknown tickets (an entry before any message) are counted, not fatal. `orphan`
 * is also an edit or delete of a message SQL does not have (the label kept as it was); only the
 * former are tallied as missing tickets (BatchTally.missingTickets).
 */
export type Applied = 'applied' | 'duplicate' | 'orphan';

export interface SequencedEntry {
  /** OMNI_LOG stream sequence. */
  seq: number;
  ticketId: string;
  entry: LogEntry;
}

/** Entries applied between two turns given back to the event loop. */
const YIELD_EVERY = 50;

/**
 * A batch of entries in log order, inside the caller's transaction; returns how many had each
 * outcome. `added`, when given, is increased by the ticket and message rows written (the
 * projection keeps those counts with its checkpoint) and by the entries whose ticket SQL lacked.
 */
export async function applyEntries(tx: Queryable, entries: SequencedEntry[], added?: BatchTally, verifyLoss = false): Promise<Map<Applied, number>> {
  const outcomes = new Map<Applied, number>();
  const count = (outcome: Applied, n = 1) => outcomes.set(outcome, (outcomes.get(outcome) ?? 0) + n);
  const memory = new BatchMemory(tx, verifyLoss);
  await memory.prefetch(entries.map((e) => e.ticketId), entries.flatMap((e) => (e.entry.kind === 'inbound' ? [provenIdentities(e.entry.event)] : [])));
  for (let i = 0; i < entries.length; i++) {
    // Entries whose contact and ticket the batch knows already resolve without a round trip, so
    // a whole batch could run as one turn of the event loop; the router shares that loop.
    if (i % YIELD_EVERY === YIELD_EVERY - 1) await new Promise<void>((resolve) => setImmediate(resolve));
    const e = entries[i]!;
    count(await applyEntry(tx, e.seq, e.ticketId, e.entry, memory));
  }
  const duplicates = await memory.flush();
  if (duplicates) {
    count('applied', -duplicates);
    count('duplicate', duplicates);
  }
  if (added) {
    added.tickets += memory.added.tickets;
    added.messages += memory.added.messages;
    added.missingTickets += memory.added.missingTickets;
  }
  return outcomes;
}

/**
 * Applies one entry. Within a batch, pass the batch's memory and call its flush() before the
 * checkpoint moves: an inbound message is written then, and counted 'applied' here unless the
 * flush finds it in SQL already. Without a memory, the entry is written before this returns.
 */
export async function applyEntry(tx: Queryable, seq: number, ticketId: string, entry: LogEntry, memory?: BatchMemory): Promise<Applied> {
  if (!memory) {
    const own = new BatchMemory(tx);
    const applied = await applyEntry(tx, seq, ticketId, entry, own);
    return (await own.flush()) > 0 ? 'duplicate' : applied;
  }
  // Every other kind reads or changes the ticket row: the inbound messages before it are written first.
  if (entry.kind !== 'inbound') await memory.flushTicket(ticketId);
  switch (entry.kind) {
    case 'inbound':
      return inbound(tx, memory, seq, ticketId, entry);
    case 'outbound':
      return outbound(tx, memory, seq, ticketId, entry);
    case 'note':
      return note(tx, memory, seq, ticketId, entry);
    case 'edited':
      return touched(await tx.query(
        `UPDATE messages SET text = $3, edited_at = $4 WHERE ticket_id = $1 AND platform_message_id = $2 AND direction = 'inbound' RETURNING seq`,
        [ticketId, entry.event.targetPlatformMessageId, entry.event.text, entry.at],
      ));
    case 'deleted':
      return touched(await tx.query(
        `UPDATE messages SET deleted_at = $3 WHERE ticket_id = $1 AND platform_message_id = $2 AND direction = 'inbound' RETURNING seq`,
        [ticketId, entry.event.targetPlatformMessageId, entry.at],
      ));
    case 'delivery':
      return delivery(tx, memory, seq, ticketId, entry);
    case 'rating':
      return rating(tx, memory, seq, ticketId, entry);
    case 'sla':
      return sla(tx, memory, seq, ticketId, entry);
    case 'status':
      return status(tx, memory, seq, ticketId, entry);
    case 'escalation':
      // Kept in the log (and on the KV record); nothing a report or list needs.
      return 'applied';
    case 'redaction':
      return redaction(tx, ticketId, entry);
  }
}

/**
 * SQL keeps no mail's To or Cc but in one place: a ticket whose row a reply made (no customer
 * message before it, see outbound()) took its contact's id from that reply's first To, and a
 * mail's conversation is its correspondent's address. A redaction of that position takes it out
 * of the row too (both ids, where the conversation's is the same address), as it is applied and
 * on every rebuild (the redaction entry follows the reply in the log); left empty, not guessed.
 */
async function redaction(tx: Queryable, ticketId: string, entry: Entry<'redaction'>): Promise<Applied> {
  if (!entry.fields.some((f) => f.field === 'to' && f.index === 0)) return 'applied';
  await tx.query(
    `UPDATE tickets SET contact = jsonb_set(contact, '{id}', '""'::jsonb),
            conversation = CASE WHEN conversation->>'id' = contact->>'id' THEN jsonb_set(conversation, '{id}', '""'::jsonb) ELSE conversation END
      WHERE id = $1 AND contact_id IS NULL
        AND EXISTS (SELECT 1 FROM messages WHERE seq = $2 AND ticket_id = $1 AND direction = 'outbound')
        AND NOT EXISTS (SELECT 1 FROM messages WHERE ticket_id = $1 AND seq < $2)`,
    [ticketId, entry.seq],
  );
  return 'applied';
}

/** An edit or delete: `orphan` when SQL has no such message (routine: edits of messages never stored), not tallied as a missing ticket. */
function touched(rows: unknown[]): Applied {
  return rows.length ? 'applied' : 'orphan';
}

/** An entry whose ticket SQL does not have. */
function orphan(memory: BatchMemory): Applied {
  memory.added.missingTickets++;
  return 'orphan';
}

/**
 * A ticket row an entry would have to make from the middle of its log (BatchMemory.verifyLoss):
 * every ticket opens with a customer message, so only that message makes its row in the normal
 * course; a later entry finding none is what rows lost behind the projection look like.
 */
export class MissingTicketRowError extends Error {
  constructor(
    readonly ticketId: string,
    readonly seq: number,
  ) {
    super(`ticket ${ticketId} has no row in SQL for log entry ${seq}, which did not open it`);
  }
}

async function inbound(tx: Queryable, memory: BatchMemory, seq: number, ticketId: string, entry: Entry<'inbound'>): Promise<Applied> {
  const e = entry.event;
  if (memory.verifyLoss && entry.match.rule !== 'new-ticket' && !(await memory.ticketExists(ticketId))) throw new MissingTicketRowError(ticketId, seq);
  const contactId = await resolveContact(tx, e, entry.at, memory);
  if (!(await memory.ticketExists(ticketId))) {
    await tx.query(
      `INSERT INTO tickets (id, number, status, channel, account, conversation, subject, contact_id, contact, created_at, updated_at, last_seq)
       VALUES ($1, $2, 'new', $3, $4, $5, $6, $7, $8, $9, $9, $10)`,
      [ticketId, ticketNumberOf(ticketId), e.channel, e.account, JSON.stringify(e.conversation), e.email?.subject || e.conversation.title || null, contactId,
        JSON.stringify({ id: e.sender.id, displayName: e.sender.displayName, handles: e.sender.handles }), entry.at, seq],
    );
    memory.ticketCreated(ticketId);
  }
  // As the router: a message counts and updates the ticket; a pending ticket is open again (no
  // status entry is logged for that); a closed one reopens by its own status entry; the channel's
  // reply window, if it has one, reaches the latest end a message gave. Written with the
  // ticket's other messages of this batch (batch-memory.ts).
  const added = memory.addInbound({
    seq, ticketId, id: e.id, channel: e.channel, account: e.account, contactId, authorId: e.sender.id, authorName: e.sender.displayName ?? null,
    platformMessageId: e.platform.messageId || null, at: entry.at, text: e.text, subject: e.email?.subject || e.subject || null, attachments: e.attachments, waitsSince: isReactionOnly(e) ? null : e.receivedAt,
    replyWindowEndsAt: e.replyWindowEndsAt ?? null,
  });
  return added ? 'applied' : 'duplicate';
}

function purposeOf(m: OutboundMessage): string | null {
  return m.purpose ?? (m.automated ? null : 'agent_reply');
}

async function outbound(tx: Queryable, memory: BatchMemory, seq: number, ticketId: string, entry: Entry<'outbound'>): Promise<Applied> {
  const m = entry.message;
  if (!(await memory.ticketExists(ticketId))) {
    if (memory.verifyLoss) throw new MissingTicketRowError(ticketId, seq);
    // A ticket we wrote first (no customer message yet): its contact is the conversation.
    await tx.query(
      `INSERT INTO tickets (id, number, status, channel, account, conversation, subject, contact, created_at, updated_at, last_seq)
       VALUES ($1, $2, 'new', $3, $4, $5, $6, $7, $8, $8, $9)`,
      [ticketId, ticketNumberOf(ticketId), m.channel, m.account, JSON.stringify(m.conversation), m.email?.subject ?? m.conversation.title ?? null,
        JSON.stringify({ id: m.email?.to[0] ?? m.conversation.id, handles: {} }), entry.at, seq],
    );
    memory.ticketCreated(ticketId);
  }
  const purpose = purposeOf(m);
  // The message and, as commands.ts does, its effect on the ticket in one statement: a reply that
  // is not automatic answers the ticket (new/open → pending, no status entry is logged for it).
  // The effect goes with this entry's message row, written now or (a replay) still there under
  // a ticket row that does not hold it yet; not with the same message logged again.
  const [{ n } = { n: 0 }] = await tx.query<{ n: number }>(
    `WITH ins AS (
       INSERT INTO messages (seq, ticket_id, id, direction, purpose, channel, account, author_id, author_name, at, text)
       VALUES ($1::bigint, $2, $3, 'outbound', $4::text, $5, $6, $7, $8, $9::timestamptz, $10) ON CONFLICT (ticket_id, direction, id) DO NOTHING RETURNING seq
     ), answered AS (
       UPDATE tickets SET last_outbound_at = $9::timestamptz, updated_at = greatest(updated_at, $9::timestamptz), last_seq = $1::bigint,
              csat_requested_at = CASE WHEN $4::text = 'satisfaction_request' THEN coalesce(csat_requested_at, $9::timestamptz) ELSE csat_requested_at END,
              status = CASE WHEN NOT $11::boolean AND status IN ('new', 'open') THEN 'pending' ELSE status END
        WHERE id = $2 AND NOT $12::boolean AND (EXISTS (SELECT 1 FROM ins) OR EXISTS (SELECT 1 FROM messages WHERE seq = $1::bigint)) RETURNING 1
     )
     SELECT count(*)::int AS n FROM ins`,
    [seq, ticketId, m.id, purpose, m.channel, m.account, m.author.id, m.author.name ?? null, entry.at, m.text, m.automated, await memory.inTicketRow(ticketId, seq)],
  );
  if (!n) return 'duplicate';
  memory.added.messages++;
  for (const [position, a] of m.attachments.entries()) {
    await tx.query(
      `INSERT INTO attachments (message_seq, position, ticket_id, name, mime_type, size, sha256, object_key, ref, kind, status)
       VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, 'document', 'stored')`,
      [seq, position, ticketId, a.name, a.mimeType, a.size, a.sha256 ?? null, a.objectKey, a.ref ?? null],
    );
  }
  return 'applied';
}

async function note(tx: Queryable, memory: BatchMemory, seq: number, ticketId: string, entry: Entry<'note'>): Promise<Applied> {
  if (!(await memory.ticketExists(ticketId))) return orphan(memory);
  const inserted = await tx.query(
    `INSERT INTO messages (seq, ticket_id, id, direction, channel, account, author_id, author_name, at, text)
     SELECT $1, id, $3, 'note', channel, account, $4, $5, $6, $7 FROM tickets WHERE id = $2
     ON CONFLICT (ticket_id, direction, id) DO NOTHING RETURNING seq`,
    [seq, ticketId, entry.id, entry.author.id, entry.author.name ?? null, entry.at, entry.text],
  );
  if (!inserted.length) return 'duplicate';
  memory.added.messages++;
  return 'applied';
}

/** The delivery statement's new failed_replies: an agent reply's failure listed, its later outcome taking it off ($16: the failure's item). */
const FAILED_REPLIES = failedRepliesAfter({ agentReply: `(SELECT purpose FROM p) = 'agent_reply'`, outboundId: '$1', at: '$10::timestamptz', item: '$16::jsonb' });

async function delivery(tx: Queryable, memory: BatchMemory, seq: number, ticketId: string, entry: Entry<'delivery'>): Promise<Applied> {
  const s = entry.status;
  if (!(await memory.ticketExists(ticketId))) return orphan(memory);
  const column = ({ sent: 'sent_at', delivered: 'delivered_at', read: 'read_at', failed: 'failed_at' } as const)[s.status];
  const last = JSON.stringify({ status: s.status, reason: s.reason, outboundId: s.outboundId, at: s.at });
  // One statement: the purpose (the status's own, else its message's), the delivery row, and for
  // an agent reply, as deliveries.ts does: the first sent one is the first response, and a sent
  // one answers what waited (in whatever order outcomes arrive: least/greatest). One that fails
  // after it was sent (a bounce, a late failed status) answers nothing any more: the first
  // response, the last reply and the messages it answered are taken from the other replies sent.
  // Every outcome moves updated_at, as on the ticket, so `updatedSince` polling sees it.
  // (CTEs read the tables as they were before this statement: `o.outbound_id <> $1` leaves out
  // this reply's own row, still `sent` there.) Replayed over rows still there: the deliveries row
  // takes only what is above its last_seq, the ticket row only what it does not hold ($15); the
  // inbound messages' answered_at is set where a restored message lacks it. An agent reply's
  // outcome also keeps the ticket's failed replies (failed-replies.ts).
  await tx.query(
    `WITH p AS (
       SELECT coalesce($5::text, (SELECT purpose FROM messages WHERE ticket_id = $2 AND direction = 'outbound' AND id = $1)) AS purpose
     ), undo AS (
       SELECT (SELECT purpose FROM p) = 'agent_reply' AND $6 = 'failed'
              AND EXISTS (SELECT 1 FROM deliveries WHERE outbound_id = $1 AND sent_at IS NOT NULL) AS sent_before
     ), others AS (
       SELECT min(o.sent_at) AS first_sent, max(o.sent_at) AS last_sent FROM deliveries o
        WHERE o.ticket_id = $2 AND o.outbound_id <> $1 AND o.purpose = 'agent_reply' AND o.status <> 'failed' AND o.sent_at IS NOT NULL
     ), d AS (
       INSERT INTO deliveries (outbound_id, ticket_id, channel, account, purpose, status, reason, platform_message_id, attempts, ${column}, updated_at, last_seq)
       SELECT $1, $2, $3, $4, p.purpose, $6, $7, $8, $9, $10::timestamptz, $10::timestamptz, $11::bigint FROM p
       ON CONFLICT (outbound_id) DO UPDATE SET status = $6, reason = coalesce($7, deliveries.reason),
         platform_message_id = coalesce($8, deliveries.platform_message_id), attempts = greatest(deliveries.attempts, $9),
         ${column} = coalesce(deliveries.${column}, $10::timestamptz), updated_at = $10::timestamptz, last_seq = $11::bigint, purpose = coalesce(deliveries.purpose, EXCLUDED.purpose)
       WHERE deliveries.last_seq < $11::bigint
       RETURNING 1
     ), t AS (
       UPDATE tickets SET last_seq = $11::bigint, updated_at = greatest(updated_at, $14::timestamptz),
              last_delivery = CASE WHEN (SELECT purpose FROM p) = 'agent_reply' THEN $12 ELSE last_delivery END,
              first_response_at = CASE WHEN (SELECT purpose FROM p) IS DISTINCT FROM 'agent_reply' THEN first_response_at
                                       WHEN $13::boolean THEN least(first_response_at, $10::timestamptz)
                                       WHEN (SELECT sent_before FROM undo) THEN (SELECT first_sent FROM others)
                                       ELSE first_response_at END,
              last_agent_reply_at = CASE WHEN (SELECT purpose FROM p) IS DISTINCT FROM 'agent_reply' THEN last_agent_reply_at
                                         WHEN $13::boolean THEN greatest(last_agent_reply_at, $10::timestamptz)
                                         WHEN (SELECT sent_before FROM undo) THEN (SELECT last_sent FROM others)
                                         ELSE last_agent_reply_at END,
              failed_replies = ${FAILED_REPLIES}
        WHERE id = $2 AND NOT $15::boolean RETURNING 1
     ), m AS (
       UPDATE messages SET answered_at = $10::timestamptz
        WHERE ticket_id = $2 AND direction = 'inbound' AND answered_at IS NULL AND at <= $10::timestamptz AND $13::boolean AND (SELECT purpose FROM p) = 'agent_reply' RETURNING 1
     ), unanswered AS (
       UPDATE messages i SET answered_at = (
                SELECT min(o.sent_at) FROM deliveries o
                 WHERE o.ticket_id = $2 AND o.outbound_id <> $1 AND o.purpose = 'agent_reply' AND o.status <> 'failed' AND o.sent_at >= i.at)
        WHERE i.ticket_id = $2 AND i.direction = 'inbound' AND (SELECT sent_before FROM undo)
          AND i.answered_at = (SELECT sent_at FROM deliveries WHERE outbound_id = $1) RETURNING 1
     )
     SELECT 1`,
    [s.outboundId, ticketId, s.channel, s.account, s.purpose ?? null, s.status, s.reason ?? null, s.platformMessageId ?? null, s.attempts, s.at, seq, last, s.status === 'sent', entry.at,
      await memory.inTicketRow(ticketId, seq), failedReplyItem(s)],
  );
  return 'applied';
}

async function rating(tx: Queryable, memory: BatchMemory, seq: number, ticketId: string, entry: Entry<'rating'>): Promise<Applied> {
  const inserted = await tx.query(
    `INSERT INTO ratings (seq, ticket_id, contact_id, channel, account, rating, low, event_id, at)
     SELECT $1, id, contact_id, channel, account, $3, $4, $5, $6 FROM tickets WHERE id = $2
     ON CONFLICT (ticket_id, event_id) DO NOTHING RETURNING seq`,
    [seq, ticketId, entry.rating, entry.low, entry.eventId, entry.at],
  );
  if (!inserted.length) {
    if (!(await memory.ticketExists(ticketId))) return orphan(memory);
    // The same rating logged again; or this entry's own row, still there under a replay, whose
    // ticket row was made anew and lacks it.
    if (!(await ownRow(tx, memory, 'ratings', ticketId, seq))) return 'duplicate';
  } else if (await memory.inTicketRow(ticketId, seq)) return 'applied';
  await tx.query('UPDATE tickets SET rating = $2, rated_at = $3, last_seq = $4 WHERE id = $1', [ticketId, entry.rating, entry.at, seq]);
  return inserted.length ? 'applied' : 'duplicate';
}

async function sla(tx: Queryable, memory: BatchMemory, seq: number, ticketId: string, entry: Entry<'sla'>): Promise<Applied> {
  const inserted = await tx.query(
    `INSERT INTO sla_breaches (seq, ticket_id, breach, since, at, limit_ms, escalated_to)
     SELECT $1, id, $3, $4, $5, $6, $7 FROM tickets WHERE id = $2
     ON CONFLICT (ticket_id, breach, since) DO NOTHING RETURNING seq`,
    [seq, ticketId, entry.breach, entry.since, entry.at, entry.limitMs, entry.escalatedTo ?? null],
  );
  if (!inserted.length) {
    if (!(await memory.ticketExists(ticketId))) return orphan(memory);
    if (!(await ownRow(tx, memory, 'sla_breaches', ticketId, seq))) return 'duplicate';
  } else if (await memory.inTicketRow(ticketId, seq)) return 'applied';
  await tx.query(
    `UPDATE tickets SET last_seq = $2,
            first_response_breached_at = CASE WHEN $3 = 'first_response' THEN coalesce(first_response_breached_at, $4::timestamptz) ELSE first_response_breached_at END,
            no_answer_breached_for = CASE WHEN $3 = 'no_answer' THEN $5::timestamptz ELSE no_answer_breached_for END
      WHERE id = $1`,
    [ticketId, seq, entry.breach, entry.at, entry.since],
  );
  return inserted.length ? 'applied' : 'duplicate';
}

/**
 * A row of `table` from entry `seq` itself (not the same thing logged again) is there, and the
 * ticket row does not hold the entry: a replay over a ticket row made anew (docs/data.md).
 */
async function ownRow(tx: Queryable, memory: BatchMemory, table: 'ratings' | 'sla_breaches', ticketId: string, seq: number): Promise<boolean> {
  if (await memory.inTicketRow(ticketId, seq)) return false;
  return (await tx.query(`SELECT 1 FROM ${table} WHERE seq = $1`, [seq])).length > 0;
}

async function status(tx: Queryable, memory: BatchMemory, seq: number, ticketId: string, entry: Entry<'status'>): Promise<Applied> {
  if (!(await memory.ticketExists(ticketId))) return orphan(memory);
  // Replayed over rows still there: the status_changes row is written if missing, the ticket row
  // changed only if it does not hold this entry ($8), or reopened_count would count twice and an
  // older status overwrite the ticket's (a pending set by a later reply, which logs none).
  const inRow = await memory.inTicketRow(ticketId, seq);
  await tx.query(
    `WITH change AS (
       INSERT INTO status_changes (seq, ticket_id, from_status, to_status, at, author_id, reason) VALUES ($1::bigint, $2, $3, $4::text, $5::timestamptz, $6, $7)
       ON CONFLICT (seq) DO NOTHING
     )
     UPDATE tickets SET
            reopened_count = reopened_count + CASE WHEN status IN ('resolved', 'closed') AND $4::text IN ('new', 'open', 'pending') THEN 1 ELSE 0 END,
            status = $4::text, updated_at = greatest(updated_at, $5::timestamptz), last_seq = $1::bigint,
            resolved_at = CASE WHEN $4::text = 'resolved' THEN $5::timestamptz WHEN $4::text = 'closed' THEN resolved_at ELSE NULL END,
            closed_at = CASE WHEN $4::text = 'closed' THEN $5::timestamptz ELSE NULL END
      WHERE id = $2 AND NOT $8::boolean`,
    [seq, ticketId, entry.from ?? null, entry.to, entry.at, entry.author.id, entry.reason ?? null, inRow],
  );
  return inRow ? 'duplicate' : 'applied';
}
