/**
 * Generic HTTP channel: any web form or system opens tickets by POSTing JSON, and replies are
 * POSTed back to a callback URL, signed the same way. It is also the reference connector the
 * core tests run through.
 */
import { z } from 'zod';
import { FetchableUrl } from '../../core/config-units.js';
import type { ConnectorFactory } from '../contract.js';
import { WebhookConnector } from './connector.js';

export const WebhookOptions = z.object({
  /** Shared secret: inbound requests carry `Authorization: Bearer <secret>` or an HMAC signature. */
  secret: z.string().min(16, 'at least 16 characters'),
  /** Where replies are POSTed; omit to keep replies on the bus only (they are then reported failed). */
  callbackUrl: FetchableUrl.optional(),
  timeoutMs: z.number().int().positive().default(10_000),
  /** Pacing per conversation for callbacks. */
  perConversationIntervalMs: z.number().int().nonnegative().default(0),
  /**
   * Whether the site's `sender.id` and `conversationId` are ids it authenticated (a logged-in
   * account, a random id it issued to one browser): `authenticated`, the default, threads by them.
   * `unverified`: a form anyone can fill in — each message opens a conversation of its own, its
   * typed email and phone are contact details only, and edits and deletions are refused (a
   * message's `sender.verified: true` is refused: the operator's word wins). On an authenticated
   * account, `sender.verified: false` makes one message's sender unverified (an open form beside
   * logged-in users).
   */
  senderIds: z.enum(['authenticated', 'unverified']).default('authenticated'),
});
export type WebhookOptions = z.infer<typeof WebhookOptions>;

const factory: ConnectorFactory<WebhookOptions> = {
  type: 'webhook',
  channel: 'webhook',
  options: WebhookOptions,
  create: (options, ctx) => new WebhookConnector(options, ctx),
  // The reply is POSTed as it is, template included: the receiver decides what to do with it.
  replyTemplates: () => ({ kind: 'passed-on' }),
};
export default factory;
