/** The console's API in the OpenAPI document (src/api/openapi.ts): routes in ./routes.ts. */
type Errors = (...codes: number[]) => Record<string, unknown>;

const ok = (description: string, schema: Record<string, unknown> = { type: 'object' }) => ({ 200: { description, content: { 'application/json': { schema } } } });
const letterFilter = [
  { name: 'source', in: 'query', required: false, schema: { type: 'string', pattern: '^[A-Za-z0-9_-]+(\\.[A-Za-z0-9_-]+)*$' }, description: 'Subject suffix after omni.dlq.: router, router.ignored, inbound.<channel>.<account>, outbound.<channel>.<account>, webhook.<name>; a shorter prefix (inbound, inbound.email) lists all below it' },
  { name: 'reason', in: 'query', required: false, schema: { type: 'string', maxLength: 200 }, description: "The letter's code exactly, or text in its reason (case-insensitive)" },
  { name: 'ticket', in: 'query', required: false, schema: { type: 'string', minLength: 1, maxLength: 100 }, description: 'Only letters of this ticket: its replies that failed for good (outbound letters name their ticket as `ticketId`)' },
  { name: 'since', in: 'query', required: false, schema: { type: 'string', format: 'date-time' }, description: 'Only letters parked at or after this time (ISO date-time with offset), as `omnigate dlq --since`' },
  { name: 'upTo', in: 'query', required: false, schema: { type: 'integer', minimum: 1 }, description: 'Only letters at or below this sequence (a page already shown: the console replays exactly the letters it shows)' },
];
const seq = { name: 'seq', in: 'path', required: true, schema: { type: 'integer', minimum: 1 }, description: 'The letter\'s sequence in the OMNI_DLQ stream' };
const outcomes = {
  type: 'object',
  properties: { results: { type: 'array', items: { type: 'object', required: ['seq', 'outcome'], properties: { seq: { type: 'integer' }, outcome: { type: 'string', enum: ['replayed', 'invalid', 'refused', 'failed'] }, detail: { type: 'string' } } } } },
};

export function consolePaths(errors: Errors): Record<string, unknown> {
  return {
    '/v1/session': { get: { summary: 'The token this request carries: its name, whether it is read-only, and the ticket id prefix', responses: { ...ok('The token'), ...errors(401) } } },
    '/v1/connectors': {
      get: {
        summary: 'Every connector across the replicas that answer within a moment: each replica\'s state, detail, last event and send, last problem and standby expiry; and the lease holders',
        responses: { ...ok('Connectors and the replicas that answered'), ...errors(401) },
      },
    },
    '/v1/connectors/{channel}/{account}/restart': {
      post: {
        summary: 'Stop the connector and start a fresh instance from the same config, on every replica hosting it (outbound runner and replay service stay)',
        parameters: [
          { name: 'channel', in: 'path', required: true, schema: { type: 'string' } },
          { name: 'account', in: 'path', required: true, schema: { type: 'string' } },
        ],
        responses: { ...ok('One answer per replica hosting it', { type: 'object', properties: { results: { type: 'array', items: { type: 'object', properties: { replica: { type: 'string' }, restarted: { type: 'boolean' }, error: { type: 'string' } } } } } }), ...errors(400, 401, 403, 404, 503) },
      },
    },
    '/v1/dead-letters': {
      get: {
        summary: 'The newest dead letters matching the filter, newest first: looked for among the 5000 newest letters of the source given (of any source without one)',
        parameters: [...letterFilter, { name: 'limit', in: 'query', required: false, schema: { type: 'integer', minimum: 1, maximum: 500, default: 100 } }],
        responses: { ...ok('Letters (without payloads) and how many were looked at'), ...errors(400, 401) },
      },
    },
    '/v1/dead-letters/{seq}': {
      get: { summary: 'One dead letter with its payload; a read-only token gets it without payload and meta (personal data), with `payloadWithheld` saying so', parameters: [seq], responses: { ...ok('The letter'), ...errors(400, 401, 404, 503) } },
      delete: {
        summary: 'Erase one dead letter (overwritten on disk, as an erasure does): admin tokens only. For a person whose posts were refused, see POST /v1/identities/erase',
        parameters: [seq],
        responses: { ...ok('Erased', { type: 'object', properties: { seq: { type: 'integer' }, erased: { type: 'boolean' } } }), ...errors(400, 401, 403, 404, 503) },
      },
    },
    '/v1/dead-letters/{seq}/replay': {
      post: { summary: 'Replay one letter the way its source takes it in (as `omnigate dlq --replay`)', parameters: [seq], responses: { ...ok('The outcome', outcomes), ...errors(400, 401, 403, 404, 503) } },
    },
    '/v1/dead-letters/replay': {
      post: {
        summary: 'Replay every letter the filter lists (a source, a reason or a ticket is required), oldest first, one at a time',
        parameters: [...letterFilter, { name: 'limit', in: 'query', required: false, schema: { type: 'integer', minimum: 1, maximum: 200, default: 50 } }],
        responses: { ...ok('One outcome per letter', outcomes), ...errors(400, 401, 403) },
      },
    },
    '/v1/events/tickets': {
      get: {
        summary: 'Ticket events from now on as server-sent events (event: ticket, data: the TicketEvent JSON, or a TicketErasedEvent for an erased ticket, id: its stream sequence)',
        responses: { 200: { description: 'An event stream that stays open', content: { 'text/event-stream': { schema: { type: 'string' } } } }, ...errors(401) },
      },
    },
  };
}
