/**
 * The OpenAPI 3.1 description of /v1, served at /v1/openapi.json and kept in the repo as
 * docs/openapi.json (a test fails when they differ). Payload schemas come from the zod
 * definitions, so the document cannot drift from what the API validates.
 */
import { z } from 'zod';
import { LogEntry, OutboundAttachment, Ticket, TicketStatus } from '../core/schema.js';

const json = (schema: z.ZodType) => z.toJSONSchema(schema, { io: 'output', unrepresentable: 'any', target: 'draft-2020-12' });

let cached: Record<string, unknown> | undefined;

export function openApiDocument(): Record<string, unknown> {
  if (cached) return cached;
  const error = { $ref: '#/components/schemas/Error' };
  const errors = (...codes: number[]) =>
    Object.fromEntries(codes.map((c) => [String(c), { description: ERROR_TEXT[c], content: { 'application/json': { schema: error } } }]));
  const ticketId = { name: 'id', in: 'path', required: true, schema: { type: 'string', example: 'T-1042' } };
  const idem = { name: 'Idempotency-Key', in: 'header', required: false, schema: { type: 'string', maxLength: 200 }, description: 'A repeat with the same key returns the first result and does nothing else.' };
  const author = { type: 'object', properties: { id: { type: 'string' }, name: { type: 'string' } }, required: ['id'] };
  cached = {
    openapi: '3.1.0',
    info: { title: 'omnigate helpdesk API', version: '1.0.0', description: 'Tickets from Telegram, WhatsApp, Slack, email and web forms. See docs/api.md.' },
    servers: [{ url: '/' }],
    security: [{ bearer: [] }],
    paths: {
      '/v1/tickets': {
        get: {
          summary: 'List tickets, most recently updated first',
          parameters: [
            { name: 'status', in: 'query', schema: json(TicketStatus) },
            { name: 'channel', in: 'query', schema: { type: 'string' } },
            { name: 'account', in: 'query', schema: { type: 'string' } },
            { name: 'contact', in: 'query', schema: { type: 'string' }, description: 'contact id or any handle (email, @username, phone)' },
            { name: 'updatedSince', in: 'query', schema: { type: 'string', format: 'date-time' } },
            { name: 'limit', in: 'query', schema: { type: 'integer', minimum: 1, maximum: 500, default: 50 } },
            { name: 'cursor', in: 'query', schema: { type: 'string' }, description: 'nextCursor of the previous page' },
          ],
          responses: {
            200: { description: 'A page of tickets', content: { 'application/json': { schema: { type: 'object', properties: { tickets: { type: 'array', items: { $ref: '#/components/schemas/Ticket' } }, nextCursor: { type: ['string', 'null'] } } } } } },
            ...errors(400, 401),
          },
        },
      },
      '/v1/tickets/{id}': {
        get: {
          summary: 'A ticket with its whole log',
          parameters: [ticketId],
          responses: {
            200: { description: 'Ticket and log', content: { 'application/json': { schema: { type: 'object', properties: { ticket: { $ref: '#/components/schemas/Ticket' }, log: { type: 'array', items: { $ref: '#/components/schemas/LogEntry' } } } } } } },
            ...errors(401, 404),
          },
        },
      },
      '/v1/tickets/{id}/replies': {
        post: {
          summary: 'Send a public reply through the channel, account and thread the ticket came from',
          parameters: [ticketId, idem],
          requestBody: { required: true, content: { 'application/json': { schema: {
            type: 'object', required: ['text'],
            properties: {
              text: { type: 'string' }, html: { type: 'string' }, author,
              attachments: { type: 'array', items: { oneOf: [json(OutboundAttachment), { type: 'object', required: ['name', 'contentBase64'], properties: { name: { type: 'string' }, mimeType: { type: 'string' }, contentBase64: { type: 'string', contentEncoding: 'base64' } } }] } },
            },
          } } } },
          responses: {
            202: { description: 'Accepted for delivery; its fate arrives as a ticket.delivery event', content: { 'application/json': { schema: { type: 'object', properties: { ticketId: { type: 'string' }, outboundId: { type: 'string' }, status: json(TicketStatus) } } } } },
            ...errors(400, 401, 403, 404, 413, 503),
          },
        },
      },
      '/v1/tickets/{id}/notes': {
        post: {
          summary: 'Add an internal note (logged, never sent)',
          parameters: [ticketId, idem],
          requestBody: { required: true, content: { 'application/json': { schema: { type: 'object', required: ['text'], properties: { text: { type: 'string' }, author } } } } },
          responses: { 201: { description: 'Noted', content: { 'application/json': { schema: { type: 'object', properties: { ticketId: { type: 'string' }, noteId: { type: 'string' } } } } } }, ...errors(400, 401, 403, 404, 503) },
        },
      },
      '/v1/tickets/{id}/status': {
        post: {
          summary: 'Change the ticket status',
          parameters: [ticketId, idem],
          requestBody: { required: true, content: { 'application/json': { schema: { type: 'object', required: ['status'], properties: { status: json(TicketStatus), author } } } } },
          responses: { 200: { description: 'Changed', content: { 'application/json': { schema: { type: 'object', properties: { ticketId: { type: 'string' }, from: json(TicketStatus), status: json(TicketStatus) } } } } }, ...errors(400, 401, 403, 404, 503) },
        },
      },
      '/v1/attachments': {
        post: {
          summary: 'Upload a file to attach to a reply (the body is the file)',
          parameters: [{ name: 'name', in: 'query', required: true, schema: { type: 'string' } }],
          requestBody: { required: true, content: { '*/*': { schema: { type: 'string', format: 'binary' } } } },
          responses: { 201: { description: 'Stored; pass this object in a reply\'s attachments', content: { 'application/json': { schema: json(OutboundAttachment) } } }, ...errors(400, 401, 403, 413) },
        },
      },
      '/v1/attachments/{objectKey}': {
        get: {
          summary: 'Download an attachment (objectKey from a log entry, e.g. sha256/<hex>)',
          parameters: [{ name: 'objectKey', in: 'path', required: true, schema: { type: 'string' } }],
          responses: { 200: { description: 'The bytes', content: { 'application/octet-stream': { schema: { type: 'string', format: 'binary' } } } }, ...errors(401, 404) },
        },
      },
    },
    components: {
      securitySchemes: { bearer: { type: 'http', scheme: 'bearer', description: 'A token from api.tokens in the config' } },
      schemas: {
        Error: {
          type: 'object', required: ['error'],
          properties: { error: { type: 'object', required: ['code', 'message'], properties: {
            code: { type: 'string', enum: ['unauthorized', 'forbidden', 'not_found', 'ticket_not_found', 'invalid_request', 'invalid_json', 'payload_too_large', 'unavailable', 'internal'] },
            message: { type: 'string' }, field: { type: 'string' },
          } } },
        },
        Ticket: json(Ticket),
        LogEntry: json(LogEntry),
      },
    },
  };
  return cached;
}

const ERROR_TEXT: Record<number, string> = {
  400: 'Invalid request: `field` names the offending field',
  401: 'Missing or invalid bearer token',
  403: 'The token is read-only',
  404: 'Unknown ticket or attachment',
  413: 'Attachment or body too large',
  503: 'The router did not answer in time: retry with the same Idempotency-Key',
};
