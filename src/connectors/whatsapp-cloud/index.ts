/**
 * WhatsApp through the official Cloud API (Meta Graph API): signed webhooks in, Graph
 * `messages` calls out. Publishes on channel "whatsapp", like the Baileys Web-session transport,
 * with the same identities (`<number>@s.whatsapp.net`), so a team can switch transports without
 * changing anything downstream.
 */
import { z } from 'zod';
import { FetchableUrl } from '../../core/config-units.js';
import type { ConnectorFactory } from '../contract.js';
import { WhatsAppCloudConnector } from './connector.js';

export const WhatsAppCloudOptions = z.object({
  /** The business phone number's id in WhatsApp Manager (not the number itself). */
  phoneNumberId: z.string().regex(/^\d+$/, 'digits only: the Phone number ID from WhatsApp Manager'),
  /** System-user access token with whatsapp_business_messaging; from the environment. */
  accessToken: z.string().min(20, 'at least 20 characters'),
  /** App secret: X-Hub-Signature-256 on every webhook POST is checked against it. */
  appSecret: z.string().min(16, 'at least 16 characters'),
  /** What you typed as "Verify token" when subscribing the webhook in the Meta app dashboard. */
  verifyToken: z.string().min(8, 'at least 8 characters'),
  /** Graph API base URL (a proxy or a stand-in in tests). */
  graphApiUrl: FetchableUrl.default('https://graph.facebook.com'),
  graphApiVersion: z.string().regex(/^v\d+\.\d+$/, 'such as v21.0').default('v21.0'),
  /** Larger media are recorded as not fetched, with the reason. Default: media.maxBytes. */
  maxFileBytes: z.number().int().positive().optional(),
  /**
   * Approved message templates this account may send (as in WhatsApp Manager): the only messages
   * allowed outside the customer-service window. `parameters` names the body's {{1}}, {{2}}… in order.
   */
  templates: z
    .array(
      z.object({
        name: z.string().regex(/^[a-z0-9_]{1,512}$/, 'lowercase letters, digits and "_", as in WhatsApp Manager'),
        language: z.string().regex(/^[a-z]{2,3}(_[A-Z]{2})?$/, 'such as ru or en_US'),
        parameters: z.array(z.string().min(1)).default([]),
      }),
    )
    .default([]),
  /** WhatsApp's customer-service window: free-form replies only this long after the customer's last message. */
  serviceWindowHours: z.number().positive().max(24).default(24),
  timeoutMs: z.number().int().positive().default(15_000),
  /** A status webhook for a wamid whose send record is not stored yet waits this long for it, then is dropped (logged). */
  statusWaitMs: z.number().int().nonnegative().max(10_000).default(3000),
  /** Send records (wamid → outbound message) without a final status (read, failed) are removed after this many days. */
  statusRetentionDays: z.number().positive().default(30),
  pacing: z
    .object({
      /** Meta's pair rate limit: bursts to one user are throttled; keep a gap per chat. */
      perChatIntervalMs: z.number().int().nonnegative().default(1000),
      /** Cloud API default throughput is 80 messages/s per number. */
      perSecond: z.number().nonnegative().default(50),
      /** The wait after a limit on the number (130429, 80007, 4, 613, 429) when Graph gives no Retry-After (Meta gives none). */
      rateLimitWaitMs: z.number().int().positive().default(10_000),
      /** The wait for one customer's sends after the pair rate limit (131056) without Retry-After; other customers' go on. */
      pairRateLimitWaitMs: z.number().int().positive().default(30_000),
      /** Total time one reply may spend waiting out rate limits; past it a rate limit counts as one failed attempt. */
      rateLimitBudgetMs: z.number().int().min(0).default(10 * 60_000),
      /** `rate_limited` is left for `connected` once the wait asked for has passed and this long without another limit. */
      rateLimitQuietMs: z.number().int().min(0).default(30_000),
    })
    .prefault({}),
});
export type WhatsAppCloudOptions = z.infer<typeof WhatsAppCloudOptions>;

const factory: ConnectorFactory<WhatsAppCloudOptions> = {
  type: 'whatsapp-cloud',
  channel: 'whatsapp',
  options: WhatsAppCloudOptions,
  create: (options, ctx) => new WhatsAppCloudConnector(options, ctx),
  replyTemplates: (options) => ({ kind: 'listed', templates: options.templates }),
};
export default factory;
