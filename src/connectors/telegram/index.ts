/**
 * Telegram bots through telegraf's Bot API client: long polling (default) or webhook mode with
 * secret_token verification. Several bots per gateway, one connector entry each.
 */
import { z } from 'zod';
import { FetchableUrl } from '../../core/config-units.js';
import type { ConnectorFactory } from '../contract.js';
import { TelegramConnector } from './connector.js';

export const PUBLIC_BOT_API = 'https://api.telegram.org';
/**
 * The Bot API serves files up to 20 MB. Only a self-hosted server started with --local lifts it;
 * one without --local refuses bigger files just the same ("file is too big").
 */
export const PUBLIC_FILE_LIMIT = 20 * 1024 * 1024;

export const TelegramOptions = z.object({
  /** Bot token from @BotFather; always from the environment: token: ${TELEGRAM_TOKEN}. */
  token: z.string().regex(/^\d+:[A-Za-z0-9_-]{10,}$/, 'a bot token such as 123456:ABC-... (from @BotFather)'),
  mode: z.enum(['polling', 'webhook']).default('polling'),
  /** Bot API base URL; a self-hosted telegram-bot-api server in --local mode lifts the 20 MB file limit. */
  apiRoot: FetchableUrl.default(PUBLIC_BOT_API),
  webhook: z
    .object({
      /** Checked against X-Telegram-Bot-Api-Secret-Token on every webhook request. */
      secretToken: z.string().regex(/^[A-Za-z0-9_-]{16,256}$/, '16-256 characters: letters, digits, "_" and "-"'),
      /** Public HTTPS URL of /connectors/telegram/<account>/webhook; when set, setWebhook is called at start. */
      url: z.string().url().optional(),
    })
    .optional(),
  /** Which group messages open/join tickets: only when the bot is mentioned or replied to, all, or none. */
  groups: z.enum(['mention', 'all', 'off']).default('mention'),
  /** How long album items (one media_group_id) are awaited after the last one before the album is judged and published. */
  albumWaitMs: z.number().int().min(0).max(10_000).default(1500),
  /** Long-polling timeout in seconds. */
  pollTimeoutS: z.number().int().min(0).max(50).default(25),
  /** Larger files are recorded as attachments that could not be fetched. Default: 20 MB on the public API, else the server's own. */
  maxFileBytes: z.number().int().positive().optional(),
  pacing: z
    .object({
      privateChatIntervalMs: z.number().int().nonnegative().default(1000),
      groupIntervalMs: z.number().int().nonnegative().default(3000),
      perSecond: z.number().positive().default(25),
      /** Longest total wait on 429 retry_after answers for one reply before it counts as a failed attempt. */
      rateLimitBudgetMs: z.number().int().min(0).default(10 * 60_000),
      /** `rate_limited` is left only after this long without a 429 (damps alert flapping). */
      rateLimitQuietMs: z.number().int().min(0).default(30_000),
    })
    .prefault({}),
}).refine((o) => o.mode !== 'webhook' || o.webhook, { message: 'webhook mode needs webhook.secretToken', path: ['webhook'] });
export type TelegramOptions = z.infer<typeof TelegramOptions>;

/**
 * The download limit in force: configured, else 20 MB on the public API, else none of our own: we
 * cannot tell whether a self-hosted server runs with --local, so it decides (and its "file is too
 * big" is recorded as the reason) rather than us refusing files it would serve.
 */
export function fileLimit(o: Pick<TelegramOptions, 'apiRoot' | 'maxFileBytes'>): number {
  if (o.maxFileBytes !== undefined) return o.maxFileBytes;
  return new URL(o.apiRoot).host === new URL(PUBLIC_BOT_API).host ? PUBLIC_FILE_LIMIT : Number.MAX_SAFE_INTEGER;
}

const factory: ConnectorFactory<TelegramOptions> = {
  type: 'telegram',
  channel: 'telegram',
  options: TelegramOptions,
  create: (options, ctx) => new TelegramConnector(options, ctx),
};
export default factory;
