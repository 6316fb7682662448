/**
 * A person's footprint in the read model, and its removal. The person is a contact together with
 * every contact merged into it (or the one it was merged into): one human, several identities.
 * Their tickets go whole; messages they wrote in someone else's ticket (a group chat) go one by
 * one, by the ticket-log sequence the projection recorded, so the log can lose exactly those too.
 */
import type { Database, Queryable } from './database.js';
import { CHECKPOINT_NAME } from './migrations.js';

export interface PersonFootprint {
  /** The contact ids that are this person (the root and everything merged into it). */
  contactIds: string[];
  /** Their tickets. */
  ticketIds: string[];
  /** Platform identifiers: phone numbers, email addresses, platform user ids. */
  identities: string[];
  /** OMNI_LOG sequences of messages they wrote in tickets that are not theirs. */
  foreignMessageSeqs: number[];
  /** Stored attachment objects referenced by their messages and tickets. */
  objectKeys: string[];
}

/** null when no such contact. */
export async function personFootprint(db: Queryable, contactId: string): Promise<PersonFootprint | null> {
  const [root] = await db.query<{ root: string }>(`SELECT coalesce(merged_into, id) AS root FROM contacts WHERE id = $1`, [contactId]);
  if (!root) return null;
  const contactIds = (await db.query<{ id: string }>(`SELECT id FROM contacts WHERE id = $1 OR merged_into = $1 ORDER BY id`, [root.root])).map((r) => r.id);
  const ticketIds = (await db.query<{ id: string }>(`SELECT id FROM tickets WHERE contact_id = ANY($1::text[]) ORDER BY id`, [contactIds])).map((r) => r.id);
  const identities = (await db.query<{ value: string }>(`SELECT DISTINCT value FROM contact_identities WHERE contact_id = ANY($1::text[])`, [contactIds])).map((r) => r.value);
  // The router's own record of the customer (ticket.contact) holds the platform id and handles too.
  for (const r of await db.query<{ contact: { id?: string; handles?: Record<string, string> } }>(`SELECT contact FROM tickets WHERE id = ANY($1::text[])`, [ticketIds])) {
    if (r.contact.id) identities.push(r.contact.id);
    identities.push(...Object.values(r.contact.handles ?? {}));
  }
  const foreignMessageSeqs = (
    await db.query<{ seq: number }>(`SELECT seq FROM messages WHERE contact_id = ANY($1::text[]) AND NOT (ticket_id = ANY($2::text[])) ORDER BY seq`, [contactIds, ticketIds])
  ).map((r) => Number(r.seq));
  const objectKeys = (
    await db.query<{ object_key: string }>(
      `SELECT DISTINCT a.object_key FROM attachments a JOIN messages m ON m.seq = a.message_seq
        WHERE a.object_key IS NOT NULL AND (a.ticket_id = ANY($1::text[]) OR m.contact_id = ANY($2::text[]))`,
      [ticketIds, contactIds],
    )
  ).map((r) => r.object_key);
  return { contactIds, ticketIds, identities: [...new Set(identities.filter(Boolean))], foreignMessageSeqs, objectKeys };
}

/**
 * Whether a ticket outside `erasing` (or a message not in `exceptSeqs`) still uses `key`: stored
 * bytes (`sha256/…`, shared by everyone who sent the same content) or a reference record (`ref/…`,
 * shared by everyone who sent the same file under the same name on one account).
 */
export async function fileReferencedElsewhere(db: Queryable, key: string, erasing: ReadonlySet<string>, exceptSeqs: number[] = []): Promise<boolean> {
  // One column each, so each is served by its own index (migration 4).
  const column = key.startsWith('ref/') ? 'ref' : 'object_key';
  const rows = await db.query(
    `SELECT 1 FROM attachments WHERE ${column} = $1 AND NOT (ticket_id = ANY($2::text[])) AND NOT (message_seq = ANY($3::bigint[])) LIMIT 1`,
    [key, [...erasing], exceptSeqs],
  );
  return rows.length > 0;
}

/**
 * Deletes the person's rows, or (no contacts) just the tickets' rows, in one transaction;
 * returns rows deleted per table. The projection's count of its rows (projection_checkpoint) goes
 * down by as many in the same transaction, so its consistency check does not take an erasure for
 * rows lost; the checkpoint row is locked first, as a batch does, so the two never deadlock.
 */
export async function eraseRows(
  db: Database,
  o: {
    ticketIds: string[];
    contactIds?: string[];
    messageSeqs?: number[];
    /**
     * Retention: the people of these tickets go too once nothing of theirs is left (no ticket,
     * message or rating of their contact or one merged with it). Their contact and identities
     * (addresses, phones) outlived their last ticket, findable by GET /v1/contacts for ever.
     */
    contactsLeftWithNothing?: boolean;
  },
): Promise<Record<string, number>> {
  const t = o.ticketIds;
  const given = o.contactIds ?? [];
  const s = o.messageSeqs ?? [];
  return db.transaction(async (tx) => {
    await tx.query('SELECT seq FROM projection_checkpoint WHERE name = $1 FOR UPDATE', [CHECKPOINT_NAME]);
    const people = o.contactsLeftWithNothing ? await peopleOf(tx, t) : [];
    const counts: Record<string, number> = {};
    const del = async (table: string, sql: string, params: unknown[]) => {
      const rows = await tx.query(`DELETE FROM ${table} WHERE ${sql} RETURNING 1 AS gone`, params);
      counts[table] = (counts[table] ?? 0) + rows.length;
    };
    await del('attachments', `ticket_id = ANY($1::text[]) OR message_seq = ANY($2::bigint[]) OR message_seq IN (SELECT seq FROM messages WHERE contact_id = ANY($3::text[]))`, [t, s, given]);
    await del('messages', `ticket_id = ANY($1::text[]) OR seq = ANY($2::bigint[]) OR contact_id = ANY($3::text[])`, [t, s, given]);
    await del('deliveries', `ticket_id = ANY($1::text[])`, [t]);
    await del('status_changes', `ticket_id = ANY($1::text[])`, [t]);
    await del('ratings', `ticket_id = ANY($1::text[]) OR contact_id = ANY($2::text[])`, [t, given]);
    await del('sla_breaches', `ticket_id = ANY($1::text[])`, [t]);
    await del('tickets', `id = ANY($1::text[])`, [t]);
    const c = o.contactsLeftWithNothing ? await leftWithNothing(tx, people) : given;
    if (c.length) {
      await del('contact_identities', `contact_id = ANY($1::text[])`, [c]);
      await del('contact_merges', `from_id = ANY($1::text[]) OR into_id = ANY($1::text[])`, [c]);
      await tx.query(`UPDATE contacts SET merged_into = NULL WHERE id = ANY($1::text[])`, [c]);
      await del('contacts', `id = ANY($1::text[])`, [c]);
    }
    await tx.query('UPDATE projection_checkpoint SET tickets = tickets - $2, messages = messages - $3 WHERE name = $1', [CHECKPOINT_NAME, counts.tickets ?? 0, counts.messages ?? 0]);
    return counts;
  });
}

/** The contacts of these tickets, their customers and everyone who wrote in them, with every contact merged with one. */
async function peopleOf(tx: Queryable, ticketIds: string[]): Promise<string[]> {
  const rows = await tx.query<{ id: string }>(
    `WITH direct AS (
       SELECT contact_id AS id FROM tickets WHERE id = ANY($1::text[]) AND contact_id IS NOT NULL
       UNION SELECT contact_id FROM messages WHERE ticket_id = ANY($1::text[]) AND contact_id IS NOT NULL),
     roots AS (SELECT DISTINCT coalesce(c.merged_into, c.id) AS root FROM contacts c JOIN direct d ON d.id = c.id)
     SELECT c.id FROM contacts c JOIN roots r ON c.id = r.root OR c.merged_into = r.root`,
    [ticketIds],
  );
  return rows.map((r) => r.id);
}

/** Of `people`, the merge groups with no ticket, message or rating left: erased whole. */
async function leftWithNothing(tx: Queryable, people: string[]): Promise<string[]> {
  if (people.length === 0) return [];
  const rows = await tx.query<{ id: string }>(
    `WITH grp AS (SELECT id, coalesce(merged_into, id) AS root FROM contacts WHERE id = ANY($1::text[])),
     kept AS (
       SELECT DISTINCT g.root FROM grp g
        WHERE EXISTS (SELECT 1 FROM tickets WHERE contact_id = g.id)
           OR EXISTS (SELECT 1 FROM messages WHERE contact_id = g.id)
           OR EXISTS (SELECT 1 FROM ratings WHERE contact_id = g.id))
     SELECT id FROM grp WHERE root NOT IN (SELECT root FROM kept)`,
    [people],
  );
  return rows.map((r) => r.id);
}

/** Tickets resolved or closed before `cutoff` and still so (the retention sweeper's question). */
export async function ticketsClosedBefore(db: Queryable, cutoff: Date, limit: number): Promise<string[]> {
  const rows = await db.query<{ id: string }>(
    `SELECT id FROM tickets WHERE status IN ('resolved', 'closed') AND coalesce(closed_at, resolved_at) < $1 ORDER BY coalesce(closed_at, resolved_at) LIMIT $2`,
    [cutoff.toISOString(), limit],
  );
  return rows.map((r) => r.id);
}

/**
 * Tickets resolved or closed before `cutoff`, after `cursor` in (closed time, id) order, oldest
 * first, with the close time the cursor moves to (the eviction sweeper's question; it decides on
 * the KV record, this only names candidates).
 */
export async function ticketsToEvict(db: Queryable, cursor: { at: string; id: string } | null, cutoff: Date, limit: number): Promise<Array<{ id: string; closedAt: string }>> {
  const rows = await db.query<{ id: string; closed: Date | string }>(
    `SELECT id, coalesce(closed_at, resolved_at) AS closed FROM tickets
      WHERE status IN ('resolved', 'closed') AND coalesce(closed_at, resolved_at) < $1
        AND (coalesce(closed_at, resolved_at), id) > ($2::timestamptz, $3::text)
      ORDER BY coalesce(closed_at, resolved_at), id LIMIT $4`,
    [cutoff.toISOString(), cursor?.at ?? '-infinity', cursor?.id ?? '', limit],
  );
  return rows.map((r) => ({ id: r.id, closedAt: new Date(r.closed).toISOString() }));
}
