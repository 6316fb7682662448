/**
 * The one error shape of the HTTP surface: {"error": {"code", "message", "field"?}}. Codes are
 * stable (clients switch on them); messages are for humans and may change.
 */
import type { FastifyReply } from 'fastify';
import type { z } from 'zod';
import { describeZodError } from '../core/schema.js';
import { describeUnknownKey, unknownKeys } from '../core/strict-keys.js';

export const STATUS_OF = {
  invalid_request: 400,
  invalid_json: 400,
  unauthorized: 401,
  forbidden: 403,
  not_found: 404,
  ticket_not_found: 404,
  contact_not_found: 404,
  /** Closed long ago and evicted from the live store (tickets.evictClosedAfter): history only. */
  ticket_evicted: 410,
  /** The file was stored and deleted since (retention.attachments, or an erasure): the log keeps its name only. */
  attachment_expired: 410,
  in_progress: 409,
  /** A free-form reply after the channel's reply window (WhatsApp's 24 hours): only a template may go. */
  outside_reply_window: 409,
  payload_too_large: 413,
  /** This client address presented too many wrong tokens (api.authThrottle): refused unchecked until Retry-After. */
  too_many_auth_failures: 429,
  /** A body in a media type the route does not read (JSON routes: anything but application/json). */
  unsupported_media_type: 415,
  internal: 500,
  unavailable: 503,
} as const;

export type ErrorCode = keyof typeof STATUS_OF;

export interface ApiError {
  code: ErrorCode;
  message: string;
  field?: string;
  /** Seconds for the Retry-After header (a throttled address). */
  retryAfterS?: number;
}

export function isErrorCode(code: string | undefined): code is ErrorCode {
  return !!code && Object.hasOwn(STATUS_OF, code);
}

export function fail(reply: FastifyReply, code: ErrorCode, message: string, field?: string): FastifyReply {
  return reply.code(STATUS_OF[code]).send({ error: { code, message, ...(field ? { field } : {}) } });
}

/** An authentication refusal (401, 403, 429), with its Retry-After when it has one. */
export function failAuth(reply: FastifyReply, error: ApiError): FastifyReply {
  if (error.retryAfterS !== undefined) reply.header('retry-after', String(error.retryAfterS));
  return fail(reply, error.code, error.message, error.field);
}

/** Thrown inside a handler to answer with an error without threading replies through helpers. */
export class HttpError extends Error {
  constructor(
    readonly code: ErrorCode,
    message: string,
    readonly field?: string,
  ) {
    super(message);
    this.name = 'HttpError';
  }
}

/**
 * Refuses a body field its schema does not know, naming it (and the nearest known name): a typo
 * such as `autor` was dropped by the parse and the reply went out without its author.
 */
export function refuseUnknownFields(schema: z.ZodType, body: unknown, known: string[] = []): void {
  const [u] = unknownKeys(schema, body, known, 1);
  if (u) throw new HttpError('invalid_request', `${u.path.join('.')}: ${describeUnknownKey(u)}`, u.path.join('.'));
}

/**
 * A query string that did not parse: 400 naming the parameter. Unknown parameters are refused
 * (the schemas are strict): a typo such as `chanel=telegram` silently returned every channel.
 */
export function failQuery(reply: FastifyReply, error: z.ZodError): FastifyReply {
  const issue = error.issues[0]!;
  if (issue.code === 'unrecognized_keys') {
    const name = issue.keys[0]!;
    return fail(reply, 'invalid_request', `unknown query parameter "${name}"`, name);
  }
  return fail(reply, 'invalid_request', describeZodError(error), String(issue.path[0] ?? 'query'));
}
