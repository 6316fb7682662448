/**
 * Slack workspaces through Bolt: Socket Mode (default; no public URL) or the Events API on the
 * gateway's HTTP server. DMs and support-channel threads become conversations.
 */
import { z } from 'zod';
import { FetchableUrl } from '../../core/config-units.js';
import type { ConnectorFactory } from '../contract.js';
import { SlackConnector } from './connector.js';

export const SlackOptions = z
  .object({
    /** Bot token (xoxb-…). */
    botToken: z.string().regex(/^xoxb-[A-Za-z0-9-]+$/, 'a bot token starting with xoxb-'),
    /** socket (Socket Mode, needs appToken) or events (Events API, needs signingSecret). */
    mode: z.enum(['socket', 'events']).default('socket'),
    /** App-level token (xapp-…) with connections:write, for Socket Mode. */
    appToken: z.string().regex(/^xapp-[A-Za-z0-9-]+$/, 'an app-level token starting with xapp-').optional(),
    /** Signing secret, for the Events API (POST /connectors/slack/<account>/events). */
    signingSecret: z.string().min(16).optional(),
    /** Web API base URL (tests, Slack GovSlack). */
    apiUrl: FetchableUrl.default('https://slack.com/api/'),
    /** Channels whose every message is support traffic; elsewhere only posts that mention the bot. */
    channels: z.array(z.string().regex(/^[CG][A-Z0-9]+$/, 'a channel id such as C0123ABCD')).default([]),
    /** Larger files are recorded as not fetched, with the reason. Default: media.maxBytes. */
    maxFileBytes: z.number().int().positive().optional(),
    /** Gap between posts to one channel (Slack: about 1 per second). */
    perChannelIntervalMs: z.number().int().nonnegative().default(1000),
    /** A Web API call (users.info, chat.postMessage, apps.connections.open…) not answered by then fails and is retried. */
    apiTimeoutMs: z.number().int().positive().default(10_000),
  })
  .refine((o) => o.mode !== 'socket' || o.appToken, { message: 'Socket Mode needs appToken (xapp-…)', path: ['appToken'] })
  .refine((o) => o.mode !== 'events' || o.signingSecret, { message: 'the Events API needs signingSecret', path: ['signingSecret'] });
export type SlackOptions = z.infer<typeof SlackOptions>;

const factory: ConnectorFactory<SlackOptions> = {
  type: 'slack',
  channel: 'slack',
  options: SlackOptions,
  create: (options, ctx) => new SlackConnector(options, ctx),
};
export default factory;
