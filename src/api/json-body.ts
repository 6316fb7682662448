/**
 * The JSON body of an API request: one reader for every route that takes one. A body sent as a
 * media type that is not JSON, or in a charset no decoder here knows, is refused naming
 * `Content-Type` (415, core/json-input.ts); one in a charset that is known is read in it.
 */
import type { FastifyRequest } from 'fastify';
import { JsonInputError, jsonMediaType, parseJsonBody } from '../core/json-input.js';
import { HttpError } from './errors.js';

/** The request's body as a JSON object; every refusal names its field. */
export function jsonObjectBody(req: FastifyRequest): Record<string, unknown> {
  const raw = Buffer.isBuffer(req.body) ? req.body : Buffer.alloc(0);
  const { refusal, charset } = jsonMediaType(req.headers['content-type']);
  if (refusal && raw.length > 0) throw new HttpError('unsupported_media_type', refusal, 'Content-Type');
  let json: unknown;
  try {
    json = parseJsonBody(raw, charset);
  } catch (err) {
    if (!(err instanceof JsonInputError)) throw new HttpError('invalid_json', 'body is not valid JSON', 'body');
    throw new HttpError(err.kind === 'json' ? 'invalid_json' : 'invalid_request', err.message, err.field);
  }
  if (!json || typeof json !== 'object' || Array.isArray(json)) throw new HttpError('invalid_request', 'body must be a JSON object', 'body');
  return json as Record<string, unknown>;
}
