/**
 * The OpenAPI 3.1 description of /v1, served at /v1/openapi.json and kept in the repo as
 * docs/openapi.json (a test fails when they differ). Payload schemas come from the zod
 * definitions, so the document cannot drift from what the API validates.
 */
import { z } from 'zod';
import { ErasureCounts, LogEntry, NoteCommand, OutboundAttachment, ReplyCommand, StatusCommand, Ticket, TicketStatus } from '../core/schema.js';
import { AttachmentInput } from './attachments.js';
import { EXPORT_MAX_LIMIT, MAX_PAGE_BYTES } from './export-route.js';
import { STATUS_OF } from './errors.js';
import { GROUP_BY, REPORT_KINDS } from '../reports/reports.js';
import { consolePaths } from '../console/openapi-paths.js';

const json = (schema: z.ZodType) => z.toJSONSchema(schema, { io: 'output', unrepresentable: 'any', target: 'draft-2020-12' });
/** Request bodies: fields with defaults are optional, as the router's validation treats them. */
const input = (schema: z.ZodType) => z.toJSONSchema(schema, { io: 'input', unrepresentable: 'any', target: 'draft-2020-12' });
const fromPath = { ticketId: true, idempotencyKey: true } as const;

/** A ticket as lists and search show it (from the SQL read model): the record's names plus the cross-channel contact. */
/** The status change's answer on a resolve or close over failed replies (router/commands.ts); absent otherwise. */
const StatusWarnings = {
  type: 'array',
  description: 'present only when the ticket was resolved or closed while agent replies had failed for good: one per reply, oldest first',
  items: {
    type: 'object',
    required: ['code', 'outboundId', 'at', 'reason', 'message'],
    properties: {
      code: { type: 'string', enum: ['undelivered_reply'] },
      outboundId: { type: 'string', description: 'the reply that never reached the customer (its dead letter: GET /v1/dead-letters?source=outbound&ticket=…)' },
      at: { type: 'string', format: 'date-time', description: 'when it failed' },
      reason: { type: 'string', description: 'why, as the channel said (e.g. blocked_by_user: …, a bounce, outside the reply window)' },
      message: { type: 'string' },
    },
  },
};
const TicketSummary = Ticket.pick({ id: true, status: true, channel: true, account: true, conversation: true, subject: true, contact: true, createdAt: true, updatedAt: true, firstResponseAt: true, closedAt: true, lastInboundAt: true, lastOutboundAt: true, messageCount: true, lastDelivery: true }).extend({
  number: z.number().int().nullable(),
  replyWindowEndsAt: Ticket.shape.replyWindowEndsAt.describe('until when the channel allows a free-form reply (WhatsApp Cloud API: 24 hours after the customer\'s last message); later, only a template. Absent where the channel sets no window, and on a ticket listed before the upgrade that added it until the customer writes again'),
  failedReplies: Ticket.shape.failedReplies.describe('agent replies that failed for good and have not gone out since, oldest first, the ten newest (as on GET /v1/tickets/{id}); absent when none'),
  contactId: z.string().nullable().describe('the contact (across channels) this ticket belongs to: GET /v1/contacts/{id}'),
  resolvedAt: z.string().optional(),
  rating: z.number().int().min(1).max(5).optional(),
});
const Contact = z.object({
  id: z.string(),
  displayName: z.string().optional(),
  identities: z.array(z.object({
    kind: z.enum(['phone', 'email', 'telegram_user', 'whatsapp_lid', 'slack_user', 'external']),
    value: z.string(),
    channel: z.string(),
    account: z.string().nullable(),
    proof: z.enum(['sender', 'contact_card', 'profile', 'api']).describe('what proved the identity: the platform\'s sender id, a Telegram contact card of the sender\'s own phone, a verified Slack profile email'),
    scope: z.string().optional(),
  })),
  merged: z.array(z.string()).describe('contact ids merged into this one'),
  tickets: z.number().int(),
  lastTicketAt: z.string().optional(),
  createdAt: z.string(),
});
const SearchHit = z.object({
  ticket: TicketSummary,
  snippet: z.string().describe('the best-matching text, matched words in <b>…</b>'),
  match: z.object({ in: z.enum(['message', 'subject']), seq: z.number().int().optional(), direction: z.string().optional(), at: z.string().optional() }),
  rank: z.number(),
});

let cached: Record<string, unknown> | undefined;

/** Present only when the log subject holds something that is no log entry (left out of `log`). */
const UNREADABLE = {
  type: 'array',
  description: 'Messages on the log subject that are no log entry (only another publisher than the gateway can write them): left out of `log`, with their sequence and why',
  items: { type: 'object', properties: { seq: { type: 'integer' }, reason: { type: 'string' } }, required: ['seq', 'reason'] },
};

export function openApiDocument(): Record<string, unknown> {
  if (cached) return cached;
  const error = { $ref: '#/components/schemas/Error' };
  // Every route that takes a token can also answer 429 to an address throttled for wrong ones.
  const errors = (...codes: number[]) =>
    Object.fromEntries([...codes, ...(codes.includes(401) ? [429] : [])].map((c) => [String(c), { description: ERROR_TEXT[c], content: { 'application/json': { schema: error } } }]));
  const jsonBody = (schema: unknown) => ({ required: true, content: { 'application/json': { schema } } });
  const ticketId = { name: 'id', in: 'path', required: true, schema: { type: 'string', example: 'T-1042' } };
  const idem = { name: 'Idempotency-Key', in: 'header', required: false, schema: { type: 'string', minLength: 1, maxLength: 200 }, description: 'A repeat with the same key (per ticket) returns the first result with `Idempotent-Replayed: true` and does nothing else. The same keys as `idempotencyKey` on the NATS command subjects.' };
  const replayed = { 'Idempotent-Replayed': { description: '`true` when this is the stored result of an earlier request with the same key', schema: { type: 'string', enum: ['true', 'false'] } } };
  const replyJson = input(ReplyCommand.omit(fromPath).extend({ attachments: z.array(AttachmentInput).optional() }));
  const replyForm = {
    type: 'object', required: ['text'],
    properties: {
      text: { type: 'string' }, html: { type: 'string' }, 'author.id': { type: 'string' }, 'author.name': { type: 'string' },
      to: { type: 'string', description: 'Email tickets: comma-separated addresses, as `to` in JSON' }, cc: { type: 'string', description: 'Email tickets: comma-separated addresses, as `cc` in JSON (an empty field copies nobody)' },
      file: { type: 'array', items: { type: 'string', format: 'binary' }, description: 'Any number of file parts (any field name); each becomes an attachment' },
    },
  };
  // The status code for anyone; the details only with a token (any, read-only too) unless http.probeDetails is open.
  const probeBody = (status: string[]) => ({
    type: 'object',
    properties: {
      status: { enum: status },
      reasons: { type: 'array', items: { type: 'string' }, description: 'Without a token: why not, in short fixed texts and config names' },
      details: { type: 'string', description: 'Without details: a token was presented and refused, and why' },
    },
    required: ['status'],
    additionalProperties: true,
  });
  const health = (summary: string, status: string[]) => {
    const content = { 'application/json': { schema: probeBody(status) } };
    return { get: { summary, security: [{}, { bearer: [] }], responses: { 200: { description: 'Yes', content }, 503: { description: 'No', content } } } };
  };
  cached = {
    openapi: '3.1.0',
    info: { title: 'omnigate helpdesk API', version: '1.0.0', description: 'Tickets from Telegram, WhatsApp, Slack, email and web forms. See docs/api.md.' },
    servers: [{ url: '/' }],
    security: [{ bearer: [] }],
    paths: {
      '/healthz': health('The process is alive (no auth needed; failed loops in the body only with a token)', ['ok', 'failing']),
      '/readyz': health('NATS connected, streams present, essential loops and required connectors up (no auth needed; each part in the body only with a token)', ['ready', 'not ready']),
      '/metrics': { get: { summary: 'Prometheus text format (no auth: scrape from inside the network)', security: [], responses: { 200: { description: 'Metrics', content: { 'text/plain': { schema: { type: 'string' } } } } } } },
      '/v1/openapi.json': { get: { summary: 'This document', responses: { 200: { description: 'OpenAPI 3.1', content: { 'application/json': { schema: { type: 'object' } } } }, ...errors(401) } } },
      '/v1/tickets': {
        get: {
          summary: 'List tickets, most recently updated first',
          parameters: [
            { name: 'status', in: 'query', schema: json(TicketStatus) },
            { name: 'channel', in: 'query', schema: { type: 'string' } },
            { name: 'account', in: 'query', schema: { type: 'string' } },
            { name: 'contact', in: 'query', schema: { type: 'string' }, description: 'contact id or any handle (email, @username, phone), case-insensitive' },
            { name: 'updatedSince', in: 'query', schema: { type: 'string', format: 'date-time' }, description: 'tickets whose updatedAt is at or after this instant' },
            { name: 'updatedBefore', in: 'query', schema: { type: 'string', format: 'date-time' }, description: 'tickets whose updatedAt is before this instant' },
            { name: 'createdSince', in: 'query', schema: { type: 'string', format: 'date-time' } },
            { name: 'createdBefore', in: 'query', schema: { type: 'string', format: 'date-time' } },
            { name: 'failedReplies', in: 'query', schema: { type: 'string', enum: ['true', 'false'] }, description: 'true: only tickets with at least one failed reply (failedReplies); false: only tickets with none' },
            { name: 'limit', in: 'query', schema: { type: 'integer', minimum: 1, maximum: 500, default: 50 } },
            { name: 'cursor', in: 'query', schema: { type: 'string' }, description: 'nextCursor of the previous page (keep the same filters and order)' },
            { name: 'order', in: 'query', schema: { type: 'string', enum: ['updated', 'created'], default: 'updated' }, description: 'updated: newest change first (a ticket changed while you page moves past the pages read); created: oldest first by creation, every ticket once (exports, syncing a copy)' },
          ],
          responses: {
            200: { description: 'A page of tickets', content: { 'application/json': { schema: { type: 'object', required: ['tickets', 'nextCursor'], properties: { tickets: { type: 'array', items: { $ref: '#/components/schemas/TicketSummary' } }, nextCursor: { type: ['string', 'null'], description: 'null on the last page' } } } } } },
            ...errors(400, 401),
          },
        },
      },
      '/v1/search': {
        get: {
          summary: 'Full-text search over messages, notes and subjects (Russian and English stemming): one hit per ticket, best first, with a highlighted snippet',
          parameters: [
            { name: 'q', in: 'query', required: true, schema: { type: 'string', minLength: 1, maxLength: 500 }, description: 'words; "a phrase", -excluded, or (websearch syntax)' },
            { name: 'status', in: 'query', schema: json(TicketStatus) },
            { name: 'channel', in: 'query', schema: { type: 'string' } },
            { name: 'limit', in: 'query', schema: { type: 'integer', minimum: 1, maximum: 100, default: 20 } },
          ],
          responses: { 200: { description: 'Hits', content: { 'application/json': { schema: { type: 'object', properties: { results: { type: 'array', items: json(SearchHit) } } } } } }, ...errors(400, 401) },
        },
      },
      '/v1/contacts': {
        get: {
          summary: 'Find contacts by a phone, an email address or a platform handle (what a platform proved, never a guess)',
          parameters: [
            { name: 'phone', in: 'query', schema: { type: 'string' }, description: 'any format, compared in E.164: "+7 916 111-00-01", "79161110001", the Russian/Kazakh domestic "8 916 111-00-01" (+7), "00" and "810" international prefixes, fullwidth digits; an extension ("доб. 123", "ext. 12", "x12", "#12") is dropped; ten digits without "+" ("(916) 111-00-01") are looked up as written and as +7' },
            { name: 'email', in: 'query', schema: { type: 'string' } },
            { name: 'handle', in: 'query', schema: { type: 'string' }, description: 'Telegram user id, Slack user id, WhatsApp LID, a webhook sender id' },
          ],
          responses: { 200: { description: 'Matching contacts', content: { 'application/json': { schema: { type: 'object', properties: { contacts: { type: 'array', items: { $ref: '#/components/schemas/Contact' } } } } } } }, ...errors(400, 401) },
        },
      },
      '/v1/contacts/{id}': {
        get: {
          summary: 'A contact with its identities on every channel; a merged-away id answers with the contact it joined (and mergedInto)',
          parameters: [{ name: 'id', in: 'path', required: true, schema: { type: 'string' } }],
          responses: { 200: { description: 'The contact', content: { 'application/json': { schema: { type: 'object', properties: { contact: { $ref: '#/components/schemas/Contact' }, mergedInto: { type: 'string' } } } } } }, ...errors(401, 404) },
        },
      },
      '/v1/contacts/{id}/merge': {
        post: {
          summary: 'Merge another contact into this one (a person\'s decision; kept when the read model is rebuilt)',
          parameters: [{ name: 'id', in: 'path', required: true, schema: { type: 'string' } }],
          requestBody: jsonBody({ type: 'object', required: ['contactId'], properties: { contactId: { type: 'string', description: 'the contact that joins this one' }, author: { type: 'object', properties: { id: { type: 'string' } } } } }),
          responses: { 200: { description: 'The merged contact', content: { 'application/json': { schema: { type: 'object', properties: { contact: { $ref: '#/components/schemas/Contact' } } } } } }, ...errors(400, 401, 403, 404, 415) },
        },
      },
      '/v1/contacts/{id}/export': {
        get: {
          summary: 'Everything held on a person (this contact and every contact merged with it) for a data-subject access request (152-FZ art. 14): identities, every ticket with its record and whole log, attachments as download references (not the bytes), oldest ticket first, paged. Admin tokens only, like erasure; each page is announced as omni.events.audit.export (counts and the token name only; docs/personal-data.md)',
          parameters: [
            { name: 'id', in: 'path', required: true, schema: { type: 'string' } },
            { name: 'limit', in: 'query', schema: { type: 'integer', minimum: 1, maximum: EXPORT_MAX_LIMIT, default: 50 }, description: `tickets per page; a page also ends early once its logs pass ${MAX_PAGE_BYTES / 1024 / 1024} MiB (always at least one ticket)` },
            { name: 'cursor', in: 'query', schema: { type: 'string' }, description: 'nextCursor of the previous page' },
          ],
          responses: {
            200: {
              description: 'One page of the person\'s data',
              content: { 'application/json': { schema: { type: 'object', required: ['exportId', 'exportedAt', 'contact', 'ticketsTotal', 'tickets', 'nextCursor'], properties: {
                exportId: { type: 'string', description: 'the id of this page\'s audit event' },
                exportedAt: { type: 'string', format: 'date-time' },
                contact: { $ref: '#/components/schemas/Contact' },
                mergedInto: { type: 'string', description: 'present when the id asked for was merged into this contact' },
                ticketsTotal: { type: 'integer', description: 'all tickets of the person, over every page' },
                tickets: { type: 'array', items: { type: 'object', required: ['ticket', 'log', 'attachments'], properties: {
                  ticket: { $ref: '#/components/schemas/TicketSummary' },
                  log: { type: 'array', items: { $ref: '#/components/schemas/LogEntry' }, description: 'the whole ticket log: messages, replies, notes, status changes, deliveries' },
                  attachments: { type: 'array', items: { type: 'object', properties: { messageSeq: { type: 'integer' }, position: { type: 'integer' }, name: { type: 'string' }, mimeType: { type: 'string' }, size: { type: 'integer' }, status: { type: 'string', enum: ['stored', 'failed'] }, download: { type: ['string', 'null'], description: 'GET it with a token for the bytes; null when none were stored' } } } },
                  unreadable: UNREADABLE,
                } } },
                otherTickets: { type: 'array', description: 'first page only: other people\'s tickets the person wrote in (a group chat), with how many messages; read them with GET /v1/tickets/{id}', items: { type: 'object', properties: { ticketId: { type: 'string' }, messages: { type: 'integer' }, firstAt: { type: 'string' }, lastAt: { type: 'string' } } } },
                nextCursor: { type: ['string', 'null'], description: 'null on the last page' },
              } } } },
            },
            ...errors(400, 401, 403, 404),
          },
        },
      },
      '/v1/contacts/{id}/erase': {
        post: {
          summary: 'Erase a person (this contact and every contact merged with it) from every store: ticket logs, ticket records, thread index, attachments, transport streams, dead letters, SQL (admin tokens only; docs/data.md)',
          parameters: [{ name: 'id', in: 'path', required: true, schema: { type: 'string' } }],
          responses: { 200: { description: 'Erased; counts per store. Announced as omni.events.audit.erasure (counts only)', content: { 'application/json': { schema: { type: 'object', properties: { erasureId: { type: 'string' }, contactIds: { type: 'array', items: { type: 'string' } }, ticketIds: { type: 'array', items: { type: 'string' } }, erased: json(ErasureCounts) } } } } }, ...errors(401, 403, 404) },
        },
      },
      '/v1/identities/erase': {
        post: {
          summary: 'Erase a person the read model has no contact for (e.g. every post refused, so only dead letters hold them) by their identifiers: transport streams, ticket events, dead letters (payloads searched), dedup stamps (admin tokens only; an identifier of a known contact is refused: erase the contact; docs/data.md)',
          requestBody: jsonBody({ type: 'object', required: ['identities'], properties: { identities: { type: 'array', minItems: 1, maxItems: 50, items: { type: 'string', minLength: 1, maxLength: 320 }, description: 'platform user ids, phone numbers, email addresses, usernames; a phone of ten digits without "+" that a +7 number could be ("(916) 123-45-67") is refused: write its country code' } } }),
          responses: { 200: { description: 'Erased; counts per store. Announced as omni.events.audit.erasure (counts only)', content: { 'application/json': { schema: { type: 'object', properties: { erasureId: { type: 'string' }, erased: json(ErasureCounts) } } } } }, ...errors(400, 401, 403, 415) },
        },
      },
      '/v1/reports/{kind}': {
        get: {
          summary: 'A support report over [from, to): durations in business time (router.sla.businessHours) with average, median and p90; JSON, or CSV with Accept: text/csv or format=csv',
          parameters: [
            { name: 'kind', in: 'path', required: true, schema: { type: 'string', enum: [...REPORT_KINDS] } },
            { name: 'from', in: 'query', required: true, schema: { type: 'string' }, description: 'ISO date-time, or a date (midnight in the reports\' zone)' },
            { name: 'to', in: 'query', required: true, schema: { type: 'string' }, description: 'exclusive; at most 400 days after from' },
            { name: 'groupBy', in: 'query', schema: { type: 'string', enum: [...GROUP_BY] } },
            { name: 'days', in: 'query', schema: { type: 'number' }, description: 'repeat-contacts: the window (default reports.repeatContactWindow, 7 days)' },
            { name: 'businessHours', in: 'query', schema: { type: 'string', enum: ['true', 'false'] }, description: 'false: wall-clock durations' },
            { name: 'format', in: 'query', schema: { type: 'string', enum: ['json', 'csv'] } },
          ],
          responses: {
            200: { description: 'The report: rows with a `group` and the report\'s columns (docs/api.md)', content: { 'application/json': { schema: { type: 'object', properties: { report: { type: 'string' }, from: { type: 'string' }, to: { type: 'string' }, groupBy: { type: ['string', 'null'] }, businessHours: { type: 'boolean' }, timezone: { type: 'string' }, unit: { type: 'string' }, rows: { type: 'array', items: { type: 'object' } } } } }, 'text/csv': { schema: { type: 'string' } } } },
            ...errors(400, 401, 404),
          },
        },
      },
      '/v1/tickets/{id}': {
        get: {
          summary: 'A ticket with its whole log',
          description: EXPIRED_FILES,
          parameters: [ticketId],
          responses: {
            200: { description: 'Ticket and log', content: { 'application/json': { schema: { type: 'object', properties: { ticket: { $ref: '#/components/schemas/Ticket' }, log: { type: 'array', items: { $ref: '#/components/schemas/LogEntry' } }, unreadable: UNREADABLE } } } } },
            ...errors(401, 404, 410),
          },
        },
      },
      '/v1/tickets/{id}/log': {
        get: {
          summary: 'A ticket\'s log, also after the ticket was evicted from the live store (tickets.evictClosedAfter)',
          description: EXPIRED_FILES,
          parameters: [ticketId],
          responses: {
            200: { description: 'The log; `evicted` is true when the ticket is no longer in KV', content: { 'application/json': { schema: { type: 'object', properties: { ticketId: { type: 'string' }, evicted: { type: 'boolean' }, log: { type: 'array', items: { $ref: '#/components/schemas/LogEntry' } }, unreadable: UNREADABLE } } } } },
            ...errors(401, 404),
          },
        },
      },
      '/v1/tickets/{id}/replies': {
        post: {
          summary: 'Send a public reply through the channel, account and thread the ticket came from',
          description:
            'JSON (attachments as references from POST /v1/attachments or inline base64), or multipart/form-data with the files as parts. ' +
            'Email tickets answer "reply all": To the author of the mail answered (the ticket\'s newest mail, the one In-Reply-To names), Cc everyone else on its To and Cc (and the customer, when someone else wrote it), ' +
            'never the gateway\'s own mailbox addresses and aliases, each address once (case-insensitive), at most 20 in Cc; the ticket\'s contact stays as it is. ' +
            '`to` and `cc` (bare addresses, at most 20 each) replace their part of that default and may name anyone (logged); with `to` alone the others stay in Cc, `cc: []` copies nobody. ' +
            'A refusal names the address (`to.0`, `cc.2`); on a ticket of another channel `to`/`cc` are refused naming the field. ' +
            'Multipart: `to` and `cc` as comma-separated fields. ' +
            '`template` (WhatsApp Cloud API) must be one configured for the ticket\'s account, with its parameters, and without attachments: otherwise a 400 naming `template.name`, `template.language`, `template.parameters` or `attachments`, nothing queued; ' +
            'on a channel that sends no templates (Telegram, Slack, email, WhatsApp Web) a 400 naming `template`; the webhook channel passes it on to its receiver unchecked.',
          parameters: [ticketId, idem],
          requestBody: { required: true, content: { 'application/json': { schema: replyJson }, 'multipart/form-data': { schema: replyForm } } },
          responses: {
            202: { description: 'Accepted for delivery; its fate arrives as a ticket.delivery event', headers: replayed, content: { 'application/json': { schema: { type: 'object', properties: { ticketId: { type: 'string' }, outboundId: { type: 'string' }, status: json(TicketStatus) } } } } },
            ...errors(400, 401, 403, 404, 409, 410, 413, 415, 503),
          },
        },
      },
      '/v1/tickets/{id}/notes': {
        post: {
          summary: 'Add an internal note (logged, never sent)',
          parameters: [ticketId, idem],
          requestBody: jsonBody(input(NoteCommand.omit(fromPath))),
          responses: { 201: { description: 'Noted', headers: replayed, content: { 'application/json': { schema: { type: 'object', properties: { ticketId: { type: 'string' }, noteId: { type: 'string' } } } } } }, ...errors(400, 401, 403, 404, 409, 410, 415, 503) },
        },
      },
      '/v1/tickets/{id}/status': {
        post: {
          summary: 'Change the ticket status',
          parameters: [ticketId, idem],
          requestBody: jsonBody(input(StatusCommand.omit(fromPath))),
          responses: {
            200: {
              description: 'Changed (or already so: from equals status). Resolving or closing is never refused for failed replies, but then `warnings` names each agent reply that failed for good and has not gone out since (the ticket\'s failedReplies): the customer has no answer, the status entry in the log carries them as undeliveredReplies, and the ticket stays listed with failedReplies=true until the reply goes out',
              headers: replayed,
              content: { 'application/json': { schema: { type: 'object', properties: { ticketId: { type: 'string' }, from: json(TicketStatus), status: json(TicketStatus), warnings: StatusWarnings } } } },
            },
            ...errors(400, 401, 403, 404, 409, 410, 415, 503),
          },
        },
      },
      '/v1/attachments': {
        post: {
          summary: 'Upload a file to attach to a reply: the body is the file (with ?name=; without a Content-Type, or as application/x-www-form-urlencoded, typed by its first bytes: PDF, PNG, JPEG, GIF, Ogg, ZIP and Office documents, else application/octet-stream), or multipart/form-data with one file part',
          parameters: [{ name: 'name', in: 'query', required: false, schema: { type: 'string' }, description: 'file name; required when the body is the raw file' }],
          requestBody: { required: true, content: { 'multipart/form-data': { schema: { type: 'object', required: ['file'], properties: { file: { type: 'string', format: 'binary' } } } }, '*/*': { schema: { type: 'string', format: 'binary' } } } },
          responses: { 201: { description: 'Stored; pass this object in a reply\'s attachments', content: { 'application/json': { schema: json(OutboundAttachment) } } }, ...errors(400, 401, 403, 413) },
        },
      },
      '/v1/attachments/{objectKey}': {
        get: {
          summary: 'Download an attachment, streamed. By `ref` (ref/<id> from a log entry or an upload): with the MIME type and file name that reference recorded (RFC 6266 Content-Disposition). By `objectKey` (sha256/<hex>): the bytes only, as application/octet-stream named by the hash (the bytes may be shared by differently named files)',
          parameters: [{ name: 'objectKey', in: 'path', required: true, schema: { type: 'string', pattern: '^(ref/[0-9a-f]{40}|sha256/[0-9a-f]{64})$' } }],
          responses: { 200: { description: 'The bytes, with the recorded Content-Type', content: { '*/*': { schema: { type: 'string', format: 'binary' } } } }, ...errors(401, 404),
            410: { description: 'attachment_expired (`field: objectKey`): the file was stored and deleted since, by retention.attachments or an erasure; the ticket log keeps its name, marked `status: "expired"`', content: { 'application/json': { schema: error } } } },
        },
      },
      ...consolePaths(errors),
    },
    components: {
      securitySchemes: { bearer: { type: 'http', scheme: 'bearer', description: 'A token from api.tokens in the config' } },
      schemas: {
        Error: {
          type: 'object', required: ['error'],
          properties: { error: { type: 'object', required: ['code', 'message'], properties: {
            code: { type: 'string', enum: Object.keys(STATUS_OF) },
            message: { type: 'string' }, field: { type: 'string' },
          } } },
        },
        Ticket: json(Ticket),
        TicketSummary: json(TicketSummary),
        Contact: json(Contact),
        LogEntry: json(LogEntry),
      },
    },
  };
  return cached;
}

/** The log schema knows `stored` and `failed`; `expired` exists only in these answers (api/attachment-expiry.ts). */
const EXPIRED_FILES = 'An attachment deleted since it was logged (retention.attachments) is answered with `status: "expired"` (also on an outbound message\'s attachments, which otherwise carry no status); its download answers 410 attachment_expired. The log itself is append-only and keeps `stored`.';

const ERROR_TEXT: Record<number, string> = {
  400: 'Invalid request: `field` names the offending field',
  401: 'Missing or invalid bearer token',
  403: 'The token is read-only, or (erasure) not an admin token',
  404: 'Unknown ticket, contact, attachment, dead letter or connector',
  409: 'A request with this Idempotency-Key is still being processed (in_progress): retry later with the same key; or a free-form reply after the channel\'s reply window (outside_reply_window, WhatsApp): send a template',
  410: 'The ticket was closed long ago and evicted from the live store (ticket_evicted, `field` names the ticket id): its log is kept at GET /v1/tickets/{id}/log',
  413: 'Attachment or body too large',
  415: 'The body is not sent as application/json, or in a charset the gateway cannot read (unsupported_media_type, `field: Content-Type`)',
  429: 'too_many_auth_failures: this client address presented too many wrong tokens (api.authThrottle); refused without checking the token until `Retry-After` seconds have passed',
  503: 'NATS or the router did not answer (an outage, a leader election): a read or a write with an Idempotency-Key may be retried (Retry-After); any other write: check whether it took effect first',
};
