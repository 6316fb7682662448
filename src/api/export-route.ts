/**
 * `GET /v1/contacts/{id}/export`: everything the gateway holds on one person in one JSON document
 * per page, for a data-subject access request (152-FZ art. 14, GDPR art. 15). Admin tokens only,
 * the same rule as erasure (`api.tokens[].admin`): a whole person's correspondence in one answer
 * is as sensitive as deleting it. Each page served is announced as `omni.events.audit.export`
 * with counts and the token's name, never whom (an export is a processing of personal data).
 *
 * Bounded by pages: at most `limit` tickets each (oldest first), and a page stops early once its
 * logs pass MAX_PAGE_BYTES, so a person with thousands of tickets never builds one answer of
 * gigabytes in memory; `nextCursor` continues. One ticket always fits, however long its log: it
 * is what GET /v1/tickets/{id} answers whole too.
 */
import { randomUUID } from 'node:crypto';
import type { FastifyInstance } from 'fastify';
import { z } from 'zod';
import type { Bus } from '../core/bus.js';
import type { Logger } from '../core/logger.js';
import { AuditExportEvent, type LogEntry } from '../core/schema.js';
import { Subjects } from '../core/subjects.js';
import type { ReadModel } from '../read-model/read-model.js';
import type { TicketStore } from '../router/tickets.js';
import type { ExportAttachment } from '../read-model/person-export.js';
import type { AttachmentExpiry } from './attachment-expiry.js';
import type { TokenAuth } from './auth.js';
import { queryWholeNumber } from './query-numbers.js';
import { fail, failAuth, failQuery } from './errors.js';

export interface ExportApiDeps {
  bus: Bus;
  store: TicketStore;
  readModel: ReadModel;
  auth: TokenAuth;
  log: Logger;
  /** Files retention deleted read `expired`, as on GET /v1/tickets/{id} (absent: as logged). */
  expiry?: AttachmentExpiry;
}

export const EXPORT_MAX_LIMIT = 200;
/** Past this many bytes of logs a page ends (after at least one ticket); 8 MiB of JSON is seconds to read. */
export const MAX_PAGE_BYTES = 8 * 1024 * 1024;

const ExportQuery = z.strictObject({
  limit: queryWholeNumber(1, EXPORT_MAX_LIMIT).default(50),
  cursor: z.string().optional(),
});

export function registerExportApi(app: FastifyInstance, deps: ExportApiDeps, o: { maxPageBytes?: number } = {}): void {
  const maxPageBytes = o.maxPageBytes ?? MAX_PAGE_BYTES;
  app.get<{ Params: { id: string } }>('/v1/contacts/:id/export', async (req, reply) => {
    const who = deps.auth.authorizeAdminRequest(req);
    if ('error' in who) return failAuth(reply, who.error);
    const q = ExportQuery.safeParse(req.query);
    if (!q.success) return failQuery(reply, q.error);
    const after = q.data.cursor === undefined ? undefined : decodeCursor(q.data.cursor);
    if (q.data.cursor !== undefined && !after) return fail(reply, 'invalid_request', 'cursor is not one this export issued (take nextCursor as given)', 'cursor');
    await deps.readModel.caughtUp();
    const page = await deps.readModel.exportPage(req.params.id, { limit: q.data.limit, after });
    if (!page) return fail(reply, 'contact_not_found', `no contact with id ${req.params.id}`, 'id');

    const tickets = [];
    const counts = { tickets: 0, logEntries: 0, attachments: 0 };
    let bytes = 0;
    for (const ticket of page.tickets) {
      if (tickets.length > 0 && bytes >= maxPageBytes) break;
      const unreadable: Array<{ seq: number; reason: string }> = [];
      const read = (await deps.store.readLog(ticket.id, { onUnreadable: (seq, reason) => unreadable.push({ seq, reason }) })).map((l) => ({ seq: l.seq, ...l.entry }));
      const log = deps.expiry ? await deps.expiry.mark(read) : read;
      const attachments = withExpired(page.attachments.get(ticket.id) ?? [], log);
      const item = { ticket, log, attachments, ...(unreadable.length ? { unreadable } : {}) };
      bytes += Buffer.byteLength(JSON.stringify(item));
      tickets.push(item);
      counts.tickets++;
      counts.logEntries += log.length;
      counts.attachments += attachments.length;
    }
    const last = tickets[tickets.length - 1]?.ticket;
    const more = page.more || tickets.length < page.tickets.length;
    const { requested, ...contact } = page.contact;

    const event = AuditExportEvent.parse({ v: 1, type: 'audit.export', id: randomUUID(), at: new Date().toISOString(), requestedBy: who.name, continued: after !== undefined, exported: counts });
    // Announced before the data leaves: an export the audit trail does not show must not happen.
    await deps.bus.publishJson(Subjects.auditEvent('export'), event, `audit:${event.id}`);
    deps.log.info({ exportId: event.id, requestedBy: who.name, ...counts }, 'exported a person\'s data');
    return {
      exportId: event.id,
      exportedAt: event.at,
      contact,
      ...(requested !== contact.id ? { mergedInto: contact.id } : {}),
      ticketsTotal: page.ticketsTotal,
      tickets,
      ...(page.otherTickets ? { otherTickets: page.otherTickets } : {}),
      nextCursor: more && last ? encodeCursor(last) : null,
    };
  });
}

function encodeCursor(t: { createdAt: string; id: string }): string {
  return Buffer.from(JSON.stringify([new Date(t.createdAt).toISOString(), t.id])).toString('base64url');
}

/** A cursor back as encodeCursor wrote it (an ISO time the database takes and a ticket id), or undefined. */
function decodeCursor(c: string): { createdAt: string; id: string } | undefined {
  try {
    const parsed: unknown = JSON.parse(Buffer.from(c, 'base64url').toString('utf8'));
    // Exactly two: a /v1/tickets?order=created cursor ([time, id, "created"]) is not one of ours.
    if (!Array.isArray(parsed) || parsed.length !== 2) return undefined;
    const [createdAt, id] = parsed as [unknown, unknown];
    if (typeof createdAt !== 'string' || typeof id !== 'string') return undefined;
    if (!/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/.test(createdAt) || new Date(createdAt).toISOString() !== createdAt) return undefined;
    return /^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$/.test(id) ? { createdAt, id } : undefined;
  } catch {
    return undefined;
  }
}

/**
 * The ticket's files as SQL lists them (always `stored` once stored), `expired` where the log,
 * marked by AttachmentExpiry, says retention deleted them: the lawyer is not handed a download
 * that answers 410.
 */
export function withExpired(files: ExportAttachment[], log: Array<LogEntry & { seq: number }>): ExportAttachment[] {
  const expired = new Set<string>();
  for (const e of log) {
    const list = e.kind === 'inbound' ? e.event.attachments : e.kind === 'outbound' ? e.message.attachments : [];
    list.forEach((f, i) => (f as { status?: string }).status === 'expired' && expired.add(`${e.seq}:${i}`));
  }
  return expired.size === 0 ? files : files.map((f) => (expired.has(`${f.messageSeq}:${f.position}`) ? { ...f, status: 'expired' } : f));
}
