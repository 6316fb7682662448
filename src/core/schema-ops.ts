/**
 * Operational payloads of schema v1: connector state changes ops alert on, dead letters, and
 * the one-line rendering of validation errors used at every edge. Re-exported by schema.ts.
 */
import { z } from 'zod';
import { IsoTime, SCHEMA_VERSION, SubjectToken } from './schema-base.js';

export const ConnectorState = z.enum([
  'starting',
  'connected',
  /** Another replica holds this account's lease; this one takes over when it runs out. */
  'standby',
  'auth_failed',
  'pairing_needed',
  'rate_limited',
  'stalled',
  /** Its start or an intake loop keeps failing; still retried at the capped backoff. */
  'failed',
  'disconnected',
  'stopped',
]);
export type ConnectorState = z.infer<typeof ConnectorState>;

/** omni.events.connector.<channel>.<account>: ops alert on these. */
export const ConnectorStateEvent = z.object({
  v: z.literal(SCHEMA_VERSION),
  type: z.literal('connector.state'),
  channel: SubjectToken,
  account: SubjectToken,
  state: ConnectorState,
  detail: z.string().optional(),
  at: IsoTime,
});
export type ConnectorStateEvent = z.infer<typeof ConnectorStateEvent>;

/**
 * omni.events.conversation.<channel>.<account>: our standing in one conversation changed (the
 * customer blocked or unblocked us, we were removed from or promoted in a group). Replies to a
 * `blocked` or `removed` conversation fail at once; `active` again clears that.
 */
export const ConversationState = z.enum(['active', 'blocked', 'removed']);
export type ConversationState = z.infer<typeof ConversationState>;
export const ConversationStateEvent = z.object({
  v: z.literal(SCHEMA_VERSION),
  type: z.literal('conversation.state'),
  /** Unique per change (consumers dedupe on it). */
  id: z.string().min(1),
  channel: SubjectToken,
  account: SubjectToken,
  conversation: z.object({ id: z.string().min(1), kind: z.enum(['private', 'group', 'channel', 'email']), title: z.string().optional() }),
  state: ConversationState,
  /** Our role where it is not a private chat: `admin` after a promotion. */
  role: z.enum(['member', 'admin']).optional(),
  /** The platform's own words, e.g. "kicked by 12345". */
  detail: z.string().optional(),
  at: IsoTime,
});
export type ConversationStateEvent = z.infer<typeof ConversationStateEvent>;

/** omni.dlq.<source>: what could not be processed, with the reason and the original bytes. */
export const DeadLetter = z.object({
  v: z.literal(SCHEMA_VERSION),
  type: z.literal('dead-letter'),
  source: z.string(),
  subject: z.string(),
  reason: z.string(),
  at: IsoTime,
  /** The original payload as UTF-8 text (base64 when it was not valid UTF-8); empty when stored aside. */
  payload: z.string(),
  payloadEncoding: z.enum(['utf8', 'base64']),
  /**
   * Older letters kept payloads over 256 KB whole in the object store under this key;
   * `omnigate dlq --replay` still reads them. New letters never set it (see `truncated`).
   */
  payloadObjectKey: z.string().optional(),
  /** Size of the original payload in bytes. */
  payloadBytes: z.number().int().nonnegative().optional(),
  /** Short machine-readable reason (the `reason` label of omnigate_dead_letters_total). Added in v1, optional. */
  code: z.string().max(64).optional(),
  /** True when `payload` holds only the head of the original (over `deadLetters.maxPayloadBytes`): not replayable. */
  truncated: z.boolean().optional(),
  /** What replay needs besides the payload (e.g. the mailbox a raw mail came from). */
  meta: z.record(z.string(), z.string()).optional(),
});
export type DeadLetter = z.infer<typeof DeadLetter>;

/** Render a zod error as one line naming each offending field. */
export function describeZodError(error: z.ZodError, prefix = ''): string {
  return error.issues
    .map((issue) => {
      const path = [prefix, ...issue.path.map(String)].filter(Boolean).join('.');
      return `${path || '(root)'}: ${issue.message}`;
    })
    .join('; ');
}
