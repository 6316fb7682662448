/**
 * REST API v1 for helpdesks. Writes go through the same NATS command subjects as everyone on the
 * bus (omni.cmd.reply|note|status): the API only turns HTTP into a command (ticket id from the
 * path, Idempotency-Key header, uploaded files into object-store references) and the router
 * validates it, so the rules, the field names in errors and idempotency are one implementation.
 */
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { NatsConnection } from '@nats-io/transport-node';
import { z } from 'zod';
import { QueryDateTime } from './query-time.js';
import { queryWholeNumber } from './query-numbers.js';
import { CommandAuthor, NoteCommand, ReplyCommand, StatusCommand, TicketStatus, describeZodError, visibleId } from '../core/schema.js';
import { INVISIBLE_ID_REFUSAL } from '../core/schema-base.js';
import { nearest } from '../core/strict-keys.js';
import { Subjects } from '../core/subjects.js';
import type { TicketStore } from '../router/tickets.js';
import { AttachmentInput, Attachments, isMultipart, readMultipart } from './attachments.js';
import type { TokenAuth } from './auth.js';
import { jsonObjectBody } from './json-body.js';
import { HttpError, fail, failAuth, failQuery, isErrorCode, refuseUnknownFields } from './errors.js';
import { isNatsUnavailable } from '../core/errors.js';
import { openApiDocument } from './openapi.js';
import { MergeRefusal, type ReadModel } from '../read-model/read-model.js';

export interface ApiDeps {
  nc: NatsConnection;
  store: TicketStore;
  /** The SQL read model: lists, search and contacts. */
  readModel: ReadModel;
  attachments: Attachments;
  auth: TokenAuth;
  /** How long to wait for the router's answer to a command. */
  commandTimeoutMs?: number;
}

const MAX_IDEMPOTENCY_KEY = 200;
/** Room for the request's headers (reply inbox, tracing) beside the command in one NATS message. */
const COMMAND_HEADROOM_BYTES = 4 * 1024;

/** The router was not reached or did not answer in time: the same request may succeed later. */

/** A channel as tickets name it: `Webhook` or `telegram,email` matched nothing, and said nothing. */
const ChannelName = z.string().regex(/^[a-z0-9_-]{1,64}$/, 'one channel name as tickets carry it, in lower case (telegram, whatsapp, slack, email, webhook…); a list is not taken: ask once per channel');

const ListQuery = z.strictObject({
  status: TicketStatus.optional(),
  channel: ChannelName.optional(),
  account: z.string().optional(),
  contact: z.string().optional(),
  updatedSince: QueryDateTime.optional(),
  updatedBefore: QueryDateTime.optional(),
  createdSince: QueryDateTime.optional(),
  createdBefore: QueryDateTime.optional(),
  /** Only tickets with (true) or without (false) failed replies; `1`, `yes` or `True` would be a guess: refused naming the field. */
  failedReplies: z.enum(['true', 'false'], { error: 'true (tickets with at least one failed reply) or false (tickets with none)' }).optional(),
  limit: queryWholeNumber(1, 500).default(50),
  cursor: z.string().optional(),
  /** updated: newest change first (a ticket changed meanwhile moves past the pages read); created: oldest first, every ticket once (exports, sync). */
  order: z.enum(['updated', 'created'], { error: 'updated (newest change first) or created (oldest first: a complete pass while tickets change)' }).default('updated'),
});

const SearchQuery = z.strictObject({
  q: z.string().trim().min(1).max(500),
  status: TicketStatus.optional(),
  channel: ChannelName.optional(),
  limit: queryWholeNumber(1, 100).default(20),
});

const ContactQuery = z
  .strictObject({ phone: z.string().min(1).max(64).optional(), email: z.string().min(1).max(320).optional(), handle: z.string().min(1).max(1024).optional() })
  .refine((v) => v.phone || v.email || v.handle, { message: 'give phone, email or handle', path: ['phone'] });

/** Unknown keys refused, as in every body: a misspelt key was dropped and the merge, which is permanent, made anyway. */
const MergeBody = z.object({ contactId: z.string().min(1).max(64), author: CommandAuthor.optional() });

const iso = (v: string | undefined) => (v ? new Date(v).toISOString() : undefined);

/** Only the HTTP-specific part of a reply is checked here; the router checks the rest. */
const ReplyAttachments = z.object({ attachments: z.array(AttachmentInput).optional() });

export function registerApi(app: FastifyInstance, deps: ApiDeps): void {
  const guard = async (req: FastifyRequest, reply: FastifyReply) => {
    const refused = deps.auth.authorizeRequest(req);
    if (refused) return failAuth(reply, refused);
  };
  // onRequest: refused before the body is read, so no token means no 30 MB upload buffered.
  const guarded = { onRequest: guard };

  app.get('/v1/openapi.json', guarded, async () => openApiDocument());

  app.get('/v1/tickets', guarded, async (req, reply) => {
    const q = ListQuery.safeParse(req.query);
    if (!q.success) return failQuery(reply, q.error);
    const { status, channel, account, contact, limit, cursor, order } = q.data;
    const after = cursor ? decodeCursor(cursor) : undefined;
    if (cursor && !after) return fail(reply, 'invalid_request', 'cursor is not one this API issued', 'cursor');
    if (after && after.order !== order) return fail(reply, 'invalid_request', `cursor was issued for order=${after.order}: page on with the same order`, 'cursor');
    // Read-your-writes: a change made by the previous request is in the log; wait (bounded) until it is in SQL.
    await deps.readModel.caughtUp();
    const page = await deps.readModel.listTickets({
      status, channel, account, contact, limit, order, after,
      failedReplies: q.data.failedReplies === undefined ? undefined : q.data.failedReplies === 'true',
      updatedSince: iso(q.data.updatedSince), updatedBefore: iso(q.data.updatedBefore),
      createdSince: iso(q.data.createdSince), createdBefore: iso(q.data.createdBefore),
    });
    const last = page.tickets[page.tickets.length - 1];
    return { tickets: page.tickets, nextCursor: page.more && last ? encodeCursor(last, order) : null };
  });

  app.get('/v1/search', guarded, async (req, reply) => {
    const q = SearchQuery.safeParse(req.query);
    if (!q.success) return failQuery(reply, q.error);
    await deps.readModel.caughtUp();
    return { results: await deps.readModel.search(q.data.q, { limit: q.data.limit, status: q.data.status, channel: q.data.channel }) };
  });

  app.get('/v1/contacts', guarded, async (req, reply) => {
    const q = ContactQuery.safeParse(req.query);
    if (!q.success) return failQuery(reply, q.error);
    await deps.readModel.caughtUp();
    return { contacts: await deps.readModel.findContacts(q.data) };
  });

  app.get<{ Params: { id: string } }>('/v1/contacts/:id', guarded, async (req, reply) => {
    await deps.readModel.caughtUp();
    const contact = await deps.readModel.getContact(req.params.id);
    if (!contact) return fail(reply, 'contact_not_found', `no contact with id ${req.params.id}`);
    const { requested, ...view } = contact;
    // A merged-away id answers with the contact it joined, and says so.
    return { contact: view, ...(requested !== view.id ? { mergedInto: view.id } : {}) };
  });

  app.post<{ Params: { id: string } }>('/v1/contacts/:id/merge', guarded, async (req, reply) => {
    const json = jsonObjectBody(req);
    refuseUnknownFields(MergeBody, json);
    const body = MergeBody.safeParse(json);
    if (!body.success) return fail(reply, 'invalid_request', describeZodError(body.error), body.error.issues[0]!.path.join('.'));
    await deps.readModel.caughtUp();
    try {
      return { contact: await deps.readModel.merge(req.params.id, body.data.contactId, body.data.author?.id ?? 'api') };
    } catch (err) {
      if (!(err instanceof MergeRefusal)) throw err;
      return fail(reply, err.notFound ? 'contact_not_found' : 'invalid_request', err.message, err.field);
    }
  });

  app.get<{ Params: { id: string } }>('/v1/tickets/:id', guarded, async (req, reply) => {
    const ticket = await deps.store.get(req.params.id, { fresh: true });
    if (!ticket) {
      if (await deps.store.evicted(req.params.id)) {
        return fail(reply, 'ticket_evicted', `ticket ${req.params.id} was closed long ago and evicted from the live store (tickets.evictClosedAfter); its history: GET /v1/tickets/${req.params.id}/log; GET /v1/tickets lists it`, 'id');
      }
      return fail(reply, 'ticket_not_found', `no ticket with id ${req.params.id}`, 'id');
    }
    const { log, unreadable } = await readableLog(deps.store, ticket.value.id);
    return { ticket: ticket.value, log: await deps.attachments.expiry.mark(log.map((l) => ({ seq: l.seq, ...l.entry }))), ...unreadable };
  });

  // The log alone: the same for a live ticket and for one evicted from KV (the log is kept).
  app.get<{ Params: { id: string } }>('/v1/tickets/:id/log', guarded, async (req, reply) => {
    const id = req.params.id;
    const live = await deps.store.get(id, { fresh: true });
    const evicted = !live && (await deps.store.evicted(id));
    if (!live && !evicted) return fail(reply, 'ticket_not_found', `no ticket with id ${id}`, 'id');
    const { log, unreadable } = await readableLog(deps.store, id);
    return { ticketId: id, evicted, log: await deps.attachments.expiry.mark(log.map((l) => ({ seq: l.seq, ...l.entry }))), ...unreadable };
  });

  app.post<{ Params: { id: string } }>('/v1/tickets/:id/replies', guarded, async (req, reply) => {
    const key = idempotencyKey(req);
    let body: Record<string, unknown>;
    if (isMultipart(req)) {
      const { fields, files } = await readMultipart(req);
      const nul = [...fields].find(([, v]) => v.includes('\u0000'))?.[0];
      if (nul !== undefined) throw new HttpError('invalid_request', `${nul}: contains a NUL character (U+0000)`, nul);
      const unknown = [...fields.keys()].find((name) => !MULTIPART_FIELDS.includes(name));
      if (unknown !== undefined) {
        const suggestion = nearest(unknown, MULTIPART_FIELDS);
        throw new HttpError('invalid_request', `unknown field "${unknown}"${suggestion ? `; did you mean "${suggestion}"?` : `; known fields: ${MULTIPART_FIELDS.join(', ')} (and files)`}`, unknown);
      }
      const attachments = [];
      for (const [i, f] of files.entries()) attachments.push(await deps.attachments.storeFile(f, `attachments.${i}`, req.params.id));
      body = { text: fields.get('text'), html: fields.get('html'), author: authorFromFields(fields), attachments, to: addressList(fields.get('to')), cc: addressList(fields.get('cc')) };
    } else {
      body = jsonObjectBody(req);
      refuseUnknownFields(ReplyBody, body);
      const parsed = ReplyAttachments.safeParse(body);
      if (!parsed.success) throw new HttpError('invalid_request', describeZodError(parsed.error), parsed.error.issues[0]!.path.join('.'));
      body = { ...body, attachments: await deps.attachments.resolve(parsed.data.attachments ?? [], req.params.id) };
    }
    return command(deps, reply, 'reply', { ...body, ticketId: req.params.id, idempotencyKey: key }, 202);
  });

  app.post<{ Params: { id: string } }>('/v1/tickets/:id/notes', guarded, async (req, reply) => {
    const body = jsonObjectBody(req);
    refuseUnknownFields(NoteBody, body);
    return command(deps, reply, 'note', { ...body, ticketId: req.params.id, idempotencyKey: idempotencyKey(req) }, 201);
  });

  app.post<{ Params: { id: string } }>('/v1/tickets/:id/status', guarded, async (req, reply) => {
    const body = jsonObjectBody(req);
    refuseUnknownFields(StatusBody, body);
    return command(deps, reply, 'status', { ...body, ticketId: req.params.id, idempotencyKey: idempotencyKey(req) }, 200);
  });

  deps.attachments.register(app, { read: guarded, write: guarded });
}

/** What a body may name: the command less what the route supplies (the ticket in the path, the key in a header). */
const fromRoute = { ticketId: true, idempotencyKey: true } as const;
const ReplyBody = ReplyCommand.omit(fromRoute).extend(ReplyAttachments.shape);
const NoteBody = NoteCommand.omit(fromRoute);
const StatusBody = StatusCommand.omit(fromRoute);
/** Text fields of a multipart reply (files may have any field name). */
const MULTIPART_FIELDS = ['text', 'html', 'author.id', 'author.name', 'to', 'cc'];

function idempotencyKey(req: FastifyRequest): string | undefined {
  const v = req.headers['idempotency-key'];
  if (typeof v !== 'string' || v.length === 0) return undefined;
  // Truncating would make two different keys one: refuse instead.
  if (v.length > MAX_IDEMPOTENCY_KEY) throw new HttpError('invalid_request', `Idempotency-Key longer than ${MAX_IDEMPOTENCY_KEY} characters`, 'Idempotency-Key');
  // It travels on as a header (the webhook channel's receiver gets it) and names a claim in KV.
  if (/[\u0000-\u001f\u007f]/.test(v)) throw new HttpError('invalid_request', 'Idempotency-Key must not contain control characters (tab, CR, LF…)', 'Idempotency-Key');
  // Node reads a header as Latin-1: U+202E sent as UTF-8 arrives as "â\u0080®", so its bytes are read as UTF-8 to look.
  if (!visibleId(v) || !visibleId(Buffer.from(v, 'latin1').toString('utf8'))) throw new HttpError('invalid_request', `Idempotency-Key ${INVISIBLE_ID_REFUSAL}`, 'Idempotency-Key');
  return v;
}

/** Multipart has no arrays: `to` and `cc` come as comma-separated fields (an empty `cc` is "copy nobody"). */
function addressList(field: string | undefined): string[] | undefined {
  if (field === undefined) return undefined;
  return field.split(',').map((a) => a.trim()).filter((a) => a.length > 0);
}

/** Multipart has no nesting: the author comes as fields `author.id` and `author.name`. */
function authorFromFields(fields: Map<string, string>): { id: string; name?: string } | undefined {
  const id = fields.get('author.id');
  return id === undefined ? undefined : { id, name: fields.get('author.name') };
}

type CommandAnswer =
  | { ok: true; result: Record<string, unknown>; replayed?: boolean }
  | { ok: false; error?: { code?: string; message?: string; field?: string } };

/**
 * Runs a router command over NATS and maps its answer onto HTTP. Only a router that did not
 * answer is 503 (a retry with the same Idempotency-Key can succeed); a body the bus cannot carry
 * is the client's to fix (413).
 */
async function command(deps: ApiDeps, reply: FastifyReply, name: 'reply' | 'note' | 'status', body: Record<string, unknown>, okStatus: number) {
  const payload = JSON.stringify(body);
  const bytes = Buffer.byteLength(payload);
  const limit = (deps.nc.info?.max_payload ?? 1_048_576) - COMMAND_HEADROOM_BYTES;
  if (bytes > limit) return fail(reply, 'payload_too_large', `command is ${bytes} bytes encoded, over the ${limit}-byte limit of a bus message: shorten the text or upload files with POST /v1/attachments`, 'body');
  let answer: CommandAnswer;
  try {
    const m = await deps.nc.request(Subjects.command(name), payload, { timeout: deps.commandTimeoutMs ?? 10_000 });
    answer = m.json();
  } catch (err) {
    if (!isNatsUnavailable(err)) throw err;
    // With its key a retry acts once (Retry-After); without one it may act twice: check first.
    if (typeof body.idempotencyKey === 'string') {
      return fail(reply.header('retry-after', '5'), 'unavailable', `the router did not answer (${(err as Error).message}); retry with the same Idempotency-Key`);
    }
    return fail(reply, 'unavailable', `the router did not answer (${(err as Error).message}); it may still act: check the ticket's log before sending again, and send an Idempotency-Key to make retries safe`);
  }
  if (answer.ok) return reply.code(okStatus).header('idempotent-replayed', answer.replayed ? 'true' : 'false').send(answer.result);
  const code = answer.error?.code;
  return fail(reply, isErrorCode(code) ? code : 'internal', answer.error?.message ?? 'failed', answer.error?.field);
}

/** `[time, id]` for order=updated (as cursors were before order existed), `[time, id, "created"]` otherwise. */
function encodeCursor(t: { updatedAt: string; createdAt: string; id: string }, order: 'updated' | 'created'): string {
  return Buffer.from(JSON.stringify(order === 'created' ? [t.createdAt, t.id, order] : [t.updatedAt, t.id])).toString('base64url');
}

/**
 * A cursor back as encodeCursor wrote it, or undefined. Checked to the letter: one made by hand
 * with `"1"` for the time (Date.parse takes it, PostgreSQL does not) or a NUL in the id reached
 * SQL and answered 500.
 */
function decodeCursor(c: string): { at: string; id: string; order: 'updated' | 'created' } | undefined {
  try {
    const [at, id, order = 'updated', ...rest] = JSON.parse(Buffer.from(c, 'base64url').toString('utf8')) as [string, string, string?];
    if (typeof at !== 'string' || typeof id !== 'string' || !ISSUED_ID.test(id) || rest.length > 0) return undefined;
    if (order !== 'updated' && order !== 'created') return undefined;
    return isCalendarTime(at) ? { at, id, order } : undefined;
  } catch {
    return undefined;
  }
}

const ISSUED_TIME = /^(\d{4})-(\d{2})-(\d{2})T([01]\d|2[0-3]):[0-5]\d:[0-5]\d(?:\.\d{1,9})?(?:Z|[+-]\d{2}:\d{2})$/;

/** An ISO time whose day is one of its month's: Date.parse takes 2026-02-30 (as 2 March), PostgreSQL refuses it. */
function isCalendarTime(text: string): boolean {
  const m = ISSUED_TIME.exec(text);
  if (!m) return false;
  const [year, month, day] = [Number(m[1]), Number(m[2]), Number(m[3])];
  return month >= 1 && month <= 12 && day >= 1 && new Date(Date.UTC(year, month - 1, day)).getUTCDate() === day;
}
/** A ticket id as the router makes them (prefix, dash, number), with room for prefixes of other deployments. */
const ISSUED_ID = /^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$/;

/**
 * A ticket's log for the API, with `unreadable` (sequence and why) when the log subject holds
 * something that is no log entry: left out of `log`, named rather than failing the whole read.
 */
async function readableLog(store: TicketStore, ticketId: string) {
  const skipped: Array<{ seq: number; reason: string }> = [];
  const log = await store.readLog(ticketId, { onUnreadable: (seq, reason) => skipped.push({ seq, reason }) });
  return { log, unreadable: skipped.length ? { unreadable: skipped } : {} };
}
