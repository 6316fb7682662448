/**
 * REST API v1 for helpdesks. Writes go through the same NATS command subjects as everyone on the
 * bus (omni.cmd.reply|note|status), so validation and idempotency have one implementation.
 * Errors: {"error": {"code", "message", "field"?}} with a stable code.
 */
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { NatsConnection } from '@nats-io/transport-node';
import { z } from 'zod';
import type { MediaStore } from '../core/media.js';
import { MediaTooLargeError } from '../core/media.js';
import { OutboundAttachment, TicketStatus, describeZodError, type Ticket } from '../core/schema.js';
import { Subjects } from '../core/subjects.js';
import type { TicketStore } from '../router/tickets.js';
import type { TokenAuth } from './auth.js';
import { openApiDocument } from './openapi.js';

export interface ApiDeps {
  nc: NatsConnection;
  store: TicketStore;
  media: MediaStore;
  auth: TokenAuth;
}

type ErrorCode = 'unauthorized' | 'forbidden' | 'not_found' | 'ticket_not_found' | 'invalid_request' | 'invalid_json' | 'payload_too_large' | 'unavailable' | 'internal';

const STATUS_OF: Record<ErrorCode, number> = {
  unauthorized: 401, forbidden: 403, not_found: 404, ticket_not_found: 404, invalid_request: 400, invalid_json: 400,
  payload_too_large: 413, unavailable: 503, internal: 500,
};

function fail(reply: FastifyReply, code: ErrorCode, message: string, field?: string) {
  return reply.code(STATUS_OF[code]).send({ error: { code, message, ...(field ? { field } : {}) } });
}

const ReplyBody = z.object({
  text: z.string().min(1).max(100_000),
  html: z.string().optional(),
  /** Attachments uploaded before with POST /v1/attachments, or inline as base64. */
  attachments: z
    .array(z.union([OutboundAttachment, z.object({ name: z.string().min(1), mimeType: z.string().default('application/octet-stream'), contentBase64: z.string().min(1) })]))
    .default([]),
  author: z.object({ id: z.string().min(1), name: z.string().optional() }).optional(),
});
const NoteBody = z.object({ text: z.string().min(1).max(100_000), author: z.object({ id: z.string().min(1), name: z.string().optional() }).optional() });
const StatusBody = z.object({ status: TicketStatus, author: z.object({ id: z.string().min(1), name: z.string().optional() }).optional() });
const ListQuery = z.object({
  status: TicketStatus.optional(),
  channel: z.string().optional(),
  account: z.string().optional(),
  contact: z.string().optional(),
  updatedSince: z.string().datetime({ offset: true }).optional(),
  limit: z.coerce.number().int().min(1).max(500).default(50),
  cursor: z.string().optional(),
});

export function registerApi(app: FastifyInstance, deps: ApiDeps): void {
  const guard = (write: boolean) => async (req: FastifyRequest, reply: FastifyReply) => {
    const result = deps.auth.check(req.headers.authorization);
    if (!result.ok) return fail(reply, 'unauthorized', result.message);
    if (write && result.readOnly) return fail(reply, 'forbidden', `token "${result.name}" is read-only`);
  };
  const read = { preHandler: guard(false) };
  const write = { preHandler: guard(true) };

  app.get('/v1/openapi.json', async () => openApiDocument());

  app.get('/v1/tickets', read, async (req, reply) => {
    const q = ListQuery.safeParse(req.query);
    if (!q.success) return fail(reply, 'invalid_request', describeZodError(q.error), String(q.error.issues[0]!.path[0]));
    const { status, channel, account, contact, updatedSince, limit, cursor } = q.data;
    const after = cursor ? decodeCursor(cursor) : undefined;
    if (cursor && !after) return fail(reply, 'invalid_request', 'cursor is not one this API issued', 'cursor');
    const needle = contact?.toLowerCase();
    const matching = (await deps.store.list())
      .filter((t) => (!status || t.status === status) && (!channel || t.channel === channel) && (!account || t.account === account))
      .filter((t) => !updatedSince || t.updatedAt >= new Date(updatedSince).toISOString())
      .filter((t) => !needle || t.contact.id.toLowerCase() === needle || Object.values(t.contact.handles).some((h) => h.toLowerCase() === needle))
      .sort(byUpdatedDesc)
      .filter((t) => !after || byUpdatedDesc(t, after) > 0);
    const page = matching.slice(0, limit);
    const last = page[page.length - 1];
    return { tickets: page, nextCursor: matching.length > limit && last ? encodeCursor(last) : null };
  });

  app.get<{ Params: { id: string } }>('/v1/tickets/:id', read, async (req, reply) => {
    const ticket = await deps.store.get(req.params.id, { fresh: true });
    if (!ticket) return fail(reply, 'ticket_not_found', `no ticket with id ${req.params.id}`);
    const log = await deps.store.readLog(ticket.value.id);
    return { ticket: ticket.value, log: log.map((l) => ({ seq: l.seq, ...l.entry })) };
  });

  app.post<{ Params: { id: string } }>('/v1/tickets/:id/replies', write, async (req, reply) => {
    const body = parseJson(req, reply, ReplyBody);
    if (!body) return reply;
    const attachments = [];
    for (const [i, a] of body.attachments.entries()) {
      if ('objectKey' in a) {
        if (!(await deps.media.has(a.objectKey))) return fail(reply, 'invalid_request', `attachment ${a.objectKey} was not uploaded`, `attachments.${i}.objectKey`);
        attachments.push(a);
        continue;
      }
      try {
        const stored = await deps.media.put(Buffer.from(a.contentBase64, 'base64'), { name: a.name, mimeType: a.mimeType });
        attachments.push({ objectKey: stored.objectKey!, name: stored.name, mimeType: stored.mimeType, size: stored.size, sha256: stored.sha256 });
      } catch (err) {
        if (err instanceof MediaTooLargeError) return fail(reply, 'payload_too_large', err.message, `attachments.${i}`);
        throw err;
      }
    }
    return command(deps, reply, 'reply', {
      ticketId: req.params.id, text: body.text, html: body.html, attachments, author: body.author,
      idempotencyKey: idempotencyKey(req),
    }, 202);
  });

  app.post<{ Params: { id: string } }>('/v1/tickets/:id/notes', write, async (req, reply) => {
    const body = parseJson(req, reply, NoteBody);
    if (!body) return reply;
    return command(deps, reply, 'note', { ticketId: req.params.id, ...body, idempotencyKey: idempotencyKey(req) }, 201);
  });

  app.post<{ Params: { id: string } }>('/v1/tickets/:id/status', write, async (req, reply) => {
    const body = parseJson(req, reply, StatusBody);
    if (!body) return reply;
    return command(deps, reply, 'status', { ticketId: req.params.id, ...body, idempotencyKey: idempotencyKey(req) }, 200);
  });

  app.post<{ Querystring: { name?: string } }>('/v1/attachments', write, async (req, reply) => {
    const bytes = Buffer.isBuffer(req.body) ? req.body : Buffer.alloc(0);
    if (bytes.length === 0) return fail(reply, 'invalid_request', 'send the file as the request body', 'body');
    const name = req.query.name;
    if (!name) return fail(reply, 'invalid_request', 'name query parameter is required (?name=invoice.pdf)', 'name');
    try {
      const stored = await deps.media.put(bytes, { name, mimeType: String(req.headers['content-type'] ?? 'application/octet-stream').split(';')[0]! });
      return reply.code(201).send({ objectKey: stored.objectKey, name: stored.name, mimeType: stored.mimeType, size: stored.size, sha256: stored.sha256 });
    } catch (err) {
      if (err instanceof MediaTooLargeError) return fail(reply, 'payload_too_large', err.message);
      throw err;
    }
  });

  app.get<{ Params: { '*': string } }>('/v1/attachments/*', read, async (req, reply) => {
    const key = req.params['*'];
    const bytes = /^sha256\/[0-9a-f]{64}$/.test(key) ? await deps.media.get(key) : null;
    if (!bytes) return fail(reply, 'not_found', `no attachment ${key}`);
    return reply.header('content-type', 'application/octet-stream').header('cache-control', 'private, max-age=31536000, immutable').send(Buffer.from(bytes));
  });

  app.setErrorHandler((err, _req, reply) => {
    const e = err as { statusCode?: number; message: string };
    if (e.statusCode === 413) return fail(reply, 'payload_too_large', e.message);
    return fail(reply, 'internal', 'internal error');
  });
}

function idempotencyKey(req: FastifyRequest): string | undefined {
  const v = req.headers['idempotency-key'];
  return typeof v === 'string' && v.length > 0 ? v.slice(0, 200) : undefined;
}

function parseJson<T extends z.ZodType>(req: FastifyRequest, reply: FastifyReply, schema: T): z.infer<T> | null {
  let json: unknown;
  try {
    json = JSON.parse(Buffer.isBuffer(req.body) ? req.body.toString('utf8') : '');
  } catch {
    fail(reply, 'invalid_json', 'body is not valid JSON');
    return null;
  }
  const r = schema.safeParse(json);
  if (!r.success) {
    fail(reply, 'invalid_request', describeZodError(r.error), r.error.issues[0]!.path.join('.'));
    return null;
  }
  return r.data;
}

/** Runs a router command over NATS and maps its answer onto HTTP. */
async function command(deps: ApiDeps, reply: FastifyReply, name: 'reply' | 'note' | 'status', body: Record<string, unknown>, okStatus: number) {
  let answer: { ok: boolean; result?: Record<string, unknown>; replayed?: boolean; error?: { code: string; message: string; field?: string } };
  try {
    const m = await deps.nc.request(Subjects.command(name), JSON.stringify(body), { timeout: 10_000 });
    answer = m.json();
  } catch (err) {
    return fail(reply, 'unavailable', `the router did not answer (${(err as Error).message}); retry with the same Idempotency-Key`);
  }
  if (answer.ok) return reply.code(okStatus).header('idempotent-replayed', answer.replayed ? 'true' : 'false').send(answer.result);
  const code = (answer.error?.code ?? 'internal') as ErrorCode;
  return fail(reply, code in STATUS_OF ? code : 'internal', answer.error?.message ?? 'failed', answer.error?.field);
}

function byUpdatedDesc(a: Pick<Ticket, 'updatedAt' | 'id'>, b: Pick<Ticket, 'updatedAt' | 'id'>): number {
  return a.updatedAt === b.updatedAt ? (a.id < b.id ? 1 : a.id > b.id ? -1 : 0) : a.updatedAt < b.updatedAt ? 1 : -1;
}

function encodeCursor(t: Ticket): string {
  return Buffer.from(JSON.stringify([t.updatedAt, t.id])).toString('base64url');
}

function decodeCursor(c: string): Pick<Ticket, 'updatedAt' | 'id'> | undefined {
  try {
    const [updatedAt, id] = JSON.parse(Buffer.from(c, 'base64url').toString('utf8')) as [string, string];
    return typeof updatedAt === 'string' && typeof id === 'string' ? { updatedAt, id } : undefined;
  } catch {
    return undefined;
  }
}
