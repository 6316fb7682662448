/**
 * REST API v1 for helpdesks. Writes go through the same NATS command subjects as everyone on the
 * bus (omni.cmd.reply|note|status): the API only turns HTTP into a command (ticket id from the
 * path, Idempotency-Key header, uploaded files into object-store references) and the router
 * validates it, so the rules, the field names in errors and idempotency are one implementation.
 */
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { NatsConnection } from '@nats-io/transport-node';
import { z } from 'zod';
import { TicketStatus, describeZodError, type Ticket } from '../core/schema.js';
import { Subjects } from '../core/subjects.js';
import { JsonInputError, parseJsonBounded } from '../core/json-input.js';
import type { TicketStore } from '../router/tickets.js';
import { AttachmentInput, Attachments, isMultipart, readMultipart } from './attachments.js';
import type { TokenAuth } from './auth.js';
import { HttpError, fail, isErrorCode } from './errors.js';
import { openApiDocument } from './openapi.js';
import type { TicketIndex } from './ticket-index.js';

export interface ApiDeps {
  nc: NatsConnection;
  store: TicketStore;
  index: TicketIndex;
  attachments: Attachments;
  auth: TokenAuth;
  /** How long to wait for the router's answer to a command. */
  commandTimeoutMs?: number;
}

const MAX_IDEMPOTENCY_KEY = 200;
/** Room for the request's headers (reply inbox, tracing) beside the command in one NATS message. */
const COMMAND_HEADROOM_BYTES = 4 * 1024;

/** The router was not reached or did not answer in time: the same request may succeed later. */
function isRetryable(err: unknown): boolean {
  const name = (err as { name?: string } | null)?.name ?? '';
  return ['TimeoutError', 'NoRespondersError', 'RequestError', 'ClosedConnectionError', 'DrainingConnectionError', 'ConnectionError'].includes(name);
}

const ListQuery = z.object({
  status: TicketStatus.optional(),
  channel: z.string().optional(),
  account: z.string().optional(),
  contact: z.string().optional(),
  updatedSince: z.iso.datetime({ offset: true }).optional(),
  limit: z.coerce.number().int().min(1).max(500).default(50),
  cursor: z.string().optional(),
});

/** Only the HTTP-specific part of a reply is checked here; the router checks the rest. */
const ReplyAttachments = z.object({ attachments: z.array(AttachmentInput).optional() });

export function registerApi(app: FastifyInstance, deps: ApiDeps): void {
  const guard = async (req: FastifyRequest, reply: FastifyReply) => {
    const refused = deps.auth.authorize(req.headers.authorization, req.method);
    if (refused) return fail(reply, refused.code, refused.message);
  };
  // onRequest: refused before the body is read, so no token means no 30 MB upload buffered.
  const guarded = { onRequest: guard };

  app.get('/v1/openapi.json', guarded, async () => openApiDocument());

  app.get('/v1/tickets', guarded, async (req, reply) => {
    const q = ListQuery.safeParse(req.query);
    if (!q.success) return fail(reply, 'invalid_request', describeZodError(q.error), String(q.error.issues[0]!.path[0]));
    const { status, channel, account, contact, updatedSince, limit, cursor } = q.data;
    const after = cursor ? decodeCursor(cursor) : undefined;
    if (cursor && !after) return fail(reply, 'invalid_request', 'cursor is not one this API issued', 'cursor');
    const since = updatedSince ? new Date(updatedSince).toISOString() : undefined;
    const needle = contact?.toLowerCase();
    await deps.index.caughtUp();
    const matching: Ticket[] = [];
    for (const t of deps.index.all()) {
      if ((status && t.status !== status) || (channel && t.channel !== channel) || (account && t.account !== account)) continue;
      if (since && t.updatedAt < since) continue;
      if (after && byUpdatedDesc(t, after) <= 0) continue;
      if (needle && t.contact.id.toLowerCase() !== needle && !Object.values(t.contact.handles).some((h) => h.toLowerCase() === needle)) continue;
      matching.push(t);
    }
    matching.sort(byUpdatedDesc);
    const page = matching.slice(0, limit);
    const last = page[page.length - 1];
    return { tickets: page, nextCursor: matching.length > limit && last ? encodeCursor(last) : null };
  });

  app.get<{ Params: { id: string } }>('/v1/tickets/:id', guarded, async (req, reply) => {
    const ticket = await deps.store.get(req.params.id, { fresh: true });
    if (!ticket) return fail(reply, 'ticket_not_found', `no ticket with id ${req.params.id}`);
    const log = await deps.store.readLog(ticket.value.id);
    return { ticket: ticket.value, log: log.map((l) => ({ seq: l.seq, ...l.entry })) };
  });

  app.post<{ Params: { id: string } }>('/v1/tickets/:id/replies', guarded, async (req, reply) => {
    const key = idempotencyKey(req);
    let body: Record<string, unknown>;
    if (isMultipart(req)) {
      const { fields, files } = await readMultipart(req);
      const attachments = [];
      for (const [i, f] of files.entries()) attachments.push(await deps.attachments.storeFile(f, `attachments.${i}`, req.params.id));
      body = { text: fields.get('text'), html: fields.get('html'), author: authorFromFields(fields), attachments };
    } else {
      body = jsonObject(req);
      const parsed = ReplyAttachments.safeParse(body);
      if (!parsed.success) throw new HttpError('invalid_request', describeZodError(parsed.error), parsed.error.issues[0]!.path.join('.'));
      body = { ...body, attachments: await deps.attachments.resolve(parsed.data.attachments ?? [], req.params.id) };
    }
    return command(deps, reply, 'reply', { ...body, ticketId: req.params.id, idempotencyKey: key }, 202);
  });

  app.post<{ Params: { id: string } }>('/v1/tickets/:id/notes', guarded, async (req, reply) => {
    return command(deps, reply, 'note', { ...jsonObject(req), ticketId: req.params.id, idempotencyKey: idempotencyKey(req) }, 201);
  });

  app.post<{ Params: { id: string } }>('/v1/tickets/:id/status', guarded, async (req, reply) => {
    return command(deps, reply, 'status', { ...jsonObject(req), ticketId: req.params.id, idempotencyKey: idempotencyKey(req) }, 200);
  });

  deps.attachments.register(app, { read: guarded, write: guarded });
}

function idempotencyKey(req: FastifyRequest): string | undefined {
  const v = req.headers['idempotency-key'];
  if (typeof v !== 'string' || v.length === 0) return undefined;
  // Truncating would make two different keys one: refuse instead.
  if (v.length > MAX_IDEMPOTENCY_KEY) throw new HttpError('invalid_request', `Idempotency-Key longer than ${MAX_IDEMPOTENCY_KEY} characters`, 'Idempotency-Key');
  return v;
}

function jsonObject(req: FastifyRequest): Record<string, unknown> {
  let json: unknown;
  try {
    json = parseJsonBounded(Buffer.isBuffer(req.body) ? req.body.toString('utf8') : '');
  } catch (err) {
    throw new HttpError('invalid_json', err instanceof JsonInputError ? err.message : 'body is not valid JSON', 'body');
  }
  if (!json || typeof json !== 'object' || Array.isArray(json)) throw new HttpError('invalid_request', 'body must be a JSON object', 'body');
  return json as Record<string, unknown>;
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
    if (!isRetryable(err)) throw err;
    return fail(reply, 'unavailable', `the router did not answer (${(err as Error).message}); retry with the same Idempotency-Key`);
  }
  if (answer.ok) return reply.code(okStatus).header('idempotent-replayed', answer.replayed ? 'true' : 'false').send(answer.result);
  const code = answer.error?.code;
  return fail(reply, isErrorCode(code) ? code : 'internal', answer.error?.message ?? 'failed', answer.error?.field);
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
