/**
 * What the read model knows of one person for a data-subject access request (152-FZ art. 14,
 * GDPR art. 15): the contact with every identity of its merge group, their tickets a page at a
 * time (oldest first, so a page once read never shifts while the person writes on), the
 * attachments of those tickets as references, and where they wrote in tickets that are not theirs
 * (a group chat). The ticket logs themselves are NATS's; the API reads them beside this.
 */
import type { Queryable } from './database.js';
import { TICKET_COLUMNS, getContact, ticketView, type ContactView, type TicketRow, type TicketView } from './queries.js';

export interface ExportAttachment {
  /** OMNI_LOG sequence of the message that carried it, and its place among that message's files. */
  messageSeq: number;
  position: number;
  name: string;
  mimeType: string;
  size: number;
  status: string;
  /** GET this (with a token) for the bytes; null when none were stored (status `failed`). */
  download: string | null;
}

export interface PersonExportPage {
  /** The merge group's root, as GET /v1/contacts/{id} shows it; `requested` is the id asked for. */
  contact: ContactView & { requested: string };
  ticketsTotal: number;
  tickets: TicketView[];
  /** Per ticket id of this page. */
  attachments: Map<string, ExportAttachment[]>;
  /** More tickets after this page. */
  more: boolean;
  /** Tickets of other people the person wrote in, with how many messages (first page only: null on later ones). */
  otherTickets: Array<{ ticketId: string; messages: number; firstAt: string; lastAt: string }> | null;
}

/** null when no such contact. `after`: the last ticket of the previous page (created_at, id). */
export async function personExportPage(db: Queryable, contactId: string, o: { limit: number; after?: { createdAt: string; id: string } }): Promise<PersonExportPage | null> {
  const contact = await getContact(db, contactId);
  if (!contact) return null;
  const ids = [contact.id, ...contact.merged];
  const rows = await db.query<TicketRow>(
    `SELECT ${TICKET_COLUMNS} FROM tickets t
      WHERE t.contact_id = ANY($1::text[]) AND (t.created_at, t.id) > ($2::timestamptz, $3::text)
      ORDER BY t.created_at, t.id LIMIT $4`,
    [ids, o.after?.createdAt ?? '-infinity', o.after?.id ?? '', o.limit + 1],
  );
  const tickets = rows.slice(0, o.limit).map(ticketView);
  const attachments = new Map<string, ExportAttachment[]>(tickets.map((t) => [t.id, []]));
  const files = await db.query<{ ticket_id: string; message_seq: number | string; position: number; name: string; mime_type: string; size: number | string; status: string; object_key: string | null; ref: string | null }>(
    `SELECT ticket_id, message_seq, position, name, mime_type, size, status, object_key, ref FROM attachments
      WHERE ticket_id = ANY($1::text[]) ORDER BY message_seq, position`,
    [tickets.map((t) => t.id)],
  );
  for (const f of files) {
    // By reference the download comes with the file's own name and type; by content with neither.
    const key = f.ref ?? f.object_key;
    attachments.get(f.ticket_id)?.push({
      messageSeq: Number(f.message_seq), position: f.position, name: f.name, mimeType: f.mime_type, size: Number(f.size), status: f.status,
      download: key ? `/v1/attachments/${key}` : null,
    });
  }
  const otherTickets = o.after
    ? null
    : (await db.query<{ ticket_id: string; n: number; first_at: string | Date; last_at: string | Date }>(
      `SELECT m.ticket_id, count(*)::int AS n, min(m.at) AS first_at, max(m.at) AS last_at FROM messages m
        WHERE m.contact_id = ANY($1::text[]) AND NOT EXISTS (SELECT 1 FROM tickets t WHERE t.id = m.ticket_id AND t.contact_id = ANY($1::text[]))
        GROUP BY m.ticket_id ORDER BY min(m.at), m.ticket_id`,
      [ids],
    )).map((r) => ({ ticketId: r.ticket_id, messages: r.n, firstAt: new Date(r.first_at).toISOString(), lastAt: new Date(r.last_at).toISOString() }));
  return { contact, ticketsTotal: contact.tickets, tickets, attachments, more: rows.length > o.limit, otherTickets };
}
