/**
 * tickets.failed_replies as the projection keeps it: the ticket record's failedReplies
 * (router/deliveries.ts, noteFailedReply) made from delivery entries alone, so the list shows
 * what GET /v1/tickets/{id} shows. A reply that failed for good is listed (again, with its newest
 * failure, when a replay failed too); an outcome of it that went out later than the failure
 * (a replay sent, delivered or read) takes it off; the ten newest stay, oldest first. NULL when
 * empty, never '[]': the list's `failedReplies` filter asks IS NOT NULL.
 *
 * A failure older than an outcome of the same reply already applied (a replay's `sent` logged
 * first) is not listed, as on the ticket: nothing later would take it off. The ticket judges
 * that by its lastDelivery, which names only the newest reply's outcome; here the reply's own
 * deliveries row is asked, which still knows when another reply was answered in between.
 */
import type { DeliveryStatus } from '../core/schema.js';

/** Ticket.failedReplies holds at most this many. */
const KEPT = 10;

/** The list item a failure adds, keyed as on the ticket record; null for any other outcome. */
export function failedReplyItem(s: DeliveryStatus): string | null {
  return s.status === 'failed' ? JSON.stringify({ outboundId: s.outboundId, at: s.at, reason: s.reason ?? 'unknown' }) : null;
}

/**
 * The new value of tickets.failed_replies, as an expression for an UPDATE of `tickets` that runs
 * in the statement writing the outcome's deliveries row (which it must read as it was before).
 * Each argument is an SQL expression: whether the outcome is of an agent reply, the reply's
 * outbound id (text), the outcome's time (timestamptz) and failedReplyItem's item (jsonb, NULL
 * for an outcome that is no failure).
 */
export function failedRepliesAfter(o: { agentReply: string; outboundId: string; at: string; item: string }): string {
  const items = `jsonb_array_elements(tickets.failed_replies) WITH ORDINALITY AS x(f, n)`;
  return `CASE
    WHEN NOT coalesce(${o.agentReply}, false) THEN tickets.failed_replies
    WHEN ${o.item} IS NULL THEN (SELECT jsonb_agg(f ORDER BY n) FROM ${items} WHERE f->>'outboundId' <> ${o.outboundId} OR (f->>'at')::timestamptz > ${o.at})
    WHEN EXISTS (SELECT 1 FROM deliveries r WHERE r.outbound_id = ${o.outboundId} AND r.status <> 'failed' AND r.updated_at > ${o.at}) THEN tickets.failed_replies
    ELSE (SELECT jsonb_agg(f ORDER BY n) FROM (
            SELECT f, n FROM (SELECT f, n FROM ${items} WHERE f->>'outboundId' <> ${o.outboundId} UNION ALL SELECT ${o.item}, ${Number.MAX_SAFE_INTEGER}::bigint) listed
             ORDER BY n DESC LIMIT ${KEPT}) kept)
  END`;
}
