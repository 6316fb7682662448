/**
 * Outbound to Telegram: paced per chat (groups slower) and per bot, text split past 4096 units
 * with formatting carried as entities, attachments from the object store, and every Bot API
 * refusal turned into the runtime's transient/permanent outcome.
 */
import type { Telegram } from 'telegraf';
import { Pacer } from '../../core/pacer.js';
import { PermanentDeliveryError, TransientDeliveryError } from '../../core/errors.js';
import { partlyDelivered, partNames } from '../partial-delivery.js';
import type { OutboundAttachment, OutboundMessage } from '../../core/schema.js';
import type { ConnectorContext, HealthTracker, SendAttempt, SendResult } from '../contract.js';
import { htmlToEntities, splitFormatted, splitText, type FormattedChunk } from './format.js';
import { platformId } from './normalize.js';
import type { TelegramOptions } from './index.js';
import { backoffMs, sleep } from '../../core/sleep.js';
import type { ChatStates } from './chat-state.js';
import type { Logger } from '../../core/logger.js';
import { RateLimitState } from '../rate-limit-state.js';
import { WireMarks } from '../wire-marks.js';

export interface TelegramErrorLike {
  code?: number;
  description?: string;
  parameters?: { retry_after?: number; migrate_to_chat_id?: number };
}

/**
 * The longest retry_after we honour. Node's timers overflow past 2^31-1 ms (~24.8 days) and then
 * fire at once, so `retry_after: 3000000` was a tight retry loop; and no wait past an hour is
 * worth more than asking again then.
 */
export const MAX_RETRY_AFTER_MS = 60 * 60_000;
/** The shortest wait after a Telegram error: the first backoff of the retry loops, and Telegram's own unit (1 s). */
export const MIN_RETRY_WAIT_MS = 1000;

/**
 * Telegram's retry_after as a wait in ms, made safe to wait: undefined when there is none or it
 * is unusable (not a number, NaN, zero or negative), so the caller backs off as usual; never
 * below MIN_RETRY_WAIT_MS, never above MAX_RETRY_AFTER_MS (logged when Telegram asked for longer).
 */
export function retryAfterMs(e: TelegramErrorLike, log?: Logger, call = 'Telegram call'): number | undefined {
  const asked: unknown = e?.parameters?.retry_after;
  if (typeof asked !== 'number' || Number.isNaN(asked) || asked <= 0) return undefined;
  const ms = asked * 1000;
  if (ms > MAX_RETRY_AFTER_MS) {
    log?.warn({ retryAfterS: asked, waitMs: MAX_RETRY_AFTER_MS }, `${call}: Telegram asked to wait ${asked} s (retry_after), longer than ${MAX_RETRY_AFTER_MS / 1000} s; waiting ${MAX_RETRY_AFTER_MS / 1000} s`);
    return MAX_RETRY_AFTER_MS;
  }
  return Math.max(MIN_RETRY_WAIT_MS, Math.ceil(ms));
}

/**
 * How long a retry loop (getUpdates, setWebhook) waits after a Telegram error: what Telegram
 * asked for (bounded: retryAfterMs), a minute after a rejected token (it will not fix itself
 * soon), else backoff.
 */
export function telegramRetryWaitMs(e: TelegramErrorLike, failures: number, log?: Logger, call?: string): number {
  if (e.code === 401) return 60_000;
  return retryAfterMs(e, log, call) ?? backoffMs(failures, 500, 30_000);
}

/** Formats Telegram shows as a photo; anything else (GIF, SVG, HEIC...) goes as a document. */
const PHOTO_TYPES = new Set(['image/jpeg', 'image/png', 'image/webp']);
const PHOTO_MAX_BYTES = 10 * 1024 * 1024;
/** sendPhoto's refusals of the picture itself, which sendDocument takes. */
const PHOTO_REFUSALS = /PHOTO_INVALID_DIMENSIONS|IMAGE_PROCESS_FAILED|PHOTO_SAVE_FILE_INVALID|PHOTO_EXT_INVALID/;

type Step = { chunk: FormattedChunk } | { attachment: OutboundAttachment };

/** A reply's progress across its attempts in this process, and the runtime's wire marks of the current attempt. */
interface Progress {
  sent: number;
  firstId?: string;
  waitedMs: number;
  wire?: WireMarks;
}

export class TelegramSender {
  private readonly pacer: Pacer;
  private readonly rateLimit: RateLimitState;
  /**
   * Steps already delivered per outbound id, so a retry after a partial send continues, not
   * repeats; `waitedMs`: time spent waiting out 429s for this reply, bounded by rateLimitBudgetMs.
   * Dropped when the reply is sent or refused here, else when the runtime settles it (`settled`).
   */
  private readonly progress = new Map<string, Progress>();
  /** Groups upgraded to supergroups: Telegram tells us the new id once; later sends go there directly. */
  private readonly migrated = new Map<string, string>();

  constructor(
    private readonly api: Telegram,
    private readonly ctx: ConnectorContext,
    private readonly health: HealthTracker,
    private readonly o: TelegramOptions,
    private readonly redact: (err: unknown) => string,
    private readonly chats: ChatStates,
  ) {
    this.pacer = new Pacer(o.pacing.privateChatIntervalMs, o.pacing.perSecond);
    this.rateLimit = new RateLimitState(health, o.pacing.rateLimitQuietMs);
  }

  close(): void {
    this.rateLimit.close();
  }

  /** The runtime stored the reply's final outcome (contract.ts `settled`): its progress goes. */
  settled(outboundId: string): void {
    this.progress.delete(outboundId);
  }

  async send(msg: OutboundMessage, attempt?: SendAttempt): Promise<SendResult> {
    // The user blocked the bot, or a group removed it (my_chat_member): Telegram would refuse
    // with 403; fail at once instead of calling it (and counting against our rate limits).
    const mark = await this.chats.get(msg.conversation.id);
    if (mark?.state === 'blocked') throw new PermanentDeliveryError('the user blocked the bot (my_chat_member); not sent', 'blocked_by_user');
    if (mark?.state === 'removed') throw new PermanentDeliveryError('the bot was removed from this group (my_chat_member); not sent', 'bot_removed_from_chat');
    let chatId = this.migrated.get(msg.conversation.id) ?? msg.conversation.id;
    const interval = msg.conversation.kind === 'group' ? this.o.pacing.groupIntervalMs : this.o.pacing.privateChatIntervalMs;
    const thread = msg.conversation.threadId ? { message_thread_id: Number(msg.conversation.threadId) } : {};
    // Platform ids are `${chatId}:${messageId}`: quote only a message of this very chat.
    const replyTo = msg.replyTo?.startsWith(`${msg.conversation.id}:`) ? Number(msg.replyTo.slice(msg.conversation.id.length + 1)) : undefined;
    const steps = this.steps(msg);
    const progress = this.progress.get(msg.id) ?? { sent: 0, waitedMs: 0 };
    this.progress.set(msg.id, progress);
    progress.wire = await WireMarks.begin(attempt, () => progress.sent > 0);
    try {
      for (let i = progress.sent; i < steps.length; i++) {
        await this.pacer.wait(chatId, interval, this.ctx.signal);
        const extra = {
          ...thread,
          ...(i === 0 && replyTo ? { reply_parameters: { message_id: replyTo, allow_sending_without_reply: true } } : {}),
        };
        let sent: { message_id: number };
        try {
          sent = await this.waitingOutRateLimits(chatId, progress, methodOf(steps[i]!), () => this.sendStep(chatId, steps[i]!, extra));
        } catch (err) {
          const newChat = (err as TelegramErrorLike).parameters?.migrate_to_chat_id;
          if (newChat === undefined) throw err;
          this.ctx.log.info({ from: chatId, to: newChat }, 'group was upgraded to a supergroup; sending to the new chat id');
          this.migrated.set(msg.conversation.id, String(newChat));
          chatId = String(newChat);
          const target = chatId;
          sent = await this.waitingOutRateLimits(target, progress, methodOf(steps[i]!), () => this.sendStep(target, steps[i]!, extra));
        }
        progress.sent = i + 1;
        progress.firstId ??= platformId(chatId, sent.message_id);
      }
      this.progress.delete(msg.id);
      return { platformMessageId: progress.firstId ?? platformId(chatId, 0) };
    } catch (err) {
      const outcome = this.classify(err, chatId);
      if (!(outcome instanceof PermanentDeliveryError)) throw outcome;
      this.progress.delete(msg.id);
      // Part of the reply may have reached the customer: say which (the reason code stays Telegram's).
      const names = partNames(steps.filter((x) => 'chunk' in x).length, steps.flatMap((x) => ('attachment' in x ? [x.attachment.name] : [])));
      throw partlyDelivered(outcome, names, progress.sent);
    }
  }

  /**
   * Runs one Bot API call, waiting out each 429's retry_after and calling again, so a rate limit
   * costs time, not one of the runner's attempts: a long 429 storm used to end a reply as
   * retries_exhausted. The waits of one reply add up to at most rateLimitBudgetMs; past that the
   * 429 goes to the runner as a transient failure (one attempt, with Telegram's wait).
   */
  private async waitingOutRateLimits<T>(chatId: string, progress: Progress, method: string, call: () => Promise<T>): Promise<T> {
    for (;;) {
      try {
        await progress.wire?.calling();
        return await call();
      } catch (err) {
        const e = err as TelegramErrorLike;
        if (e.code !== 429) throw err;
        await progress.wire?.refused();
        const ms = retryAfterMs(e, this.ctx.log, method) ?? MIN_RETRY_WAIT_MS;
        this.pacer.defer(chatId, ms);
        this.rateLimit.hit(ms, `Telegram asked to wait ${Math.ceil(ms / 1000)}s (429); sends wait it out`);
        if (progress.waitedMs + ms > this.o.pacing.rateLimitBudgetMs || this.ctx.signal.aborted) throw err;
        progress.waitedMs += ms;
        this.ctx.log.debug({ chatId, waitMs: ms, waitedMs: progress.waitedMs }, 'Telegram 429: waiting it out');
        await sleep(ms, this.ctx.signal);
        if (this.ctx.signal.aborted) throw err;
      }
    }
  }

  private steps(msg: OutboundMessage): Step[] {
    let chunks: FormattedChunk[] = [];
    if (msg.html) {
      const formatted = htmlToEntities(msg.html);
      if (formatted.text) chunks = splitFormatted(formatted.text, formatted.entities);
    }
    if (chunks.length === 0 && msg.text) chunks = splitText(msg.text).map((text) => ({ text, entities: [] }));
    return [...chunks.map((chunk) => ({ chunk })), ...msg.attachments.map((attachment) => ({ attachment }))];
  }

  private async sendStep(chatId: string, step: Step, extra: Record<string, unknown>): Promise<{ message_id: number }> {
    if ('chunk' in step) {
      // No parse_mode ever: the text goes exactly as typed, formatting rides in `entities`.
      const { text, entities } = step.chunk;
      if (entities.length === 0) return this.api.sendMessage(chatId, text, extra);
      try {
        return await this.api.sendMessage(chatId, text, { ...extra, entities: entities as never });
      } catch (err) {
        const e = err as TelegramErrorLike;
        if (e.code !== 400 || !/entit/i.test(e.description ?? '')) throw err;
        // Formatting Telegram refuses must not cost the customer the answer: send it plain.
        this.ctx.log.warn({ err: e.description }, 'Telegram refused the formatting; sending plain text');
        return this.api.sendMessage(chatId, text, extra);
      }
    }
    const a = step.attachment;
    const bytes = await this.ctx.media.get(a.objectKey);
    if (!bytes) throw new PermanentDeliveryError(`attachment ${a.name} is not in the object store`, 'attachment_missing');
    const file = { source: Buffer.from(bytes), filename: multipartFileName(a.name) };
    if (!PHOTO_TYPES.has(a.mimeType) || bytes.byteLength > PHOTO_MAX_BYTES) return this.api.sendDocument(chatId, file, extra);
    try {
      return await this.api.sendPhoto(chatId, file, extra);
    } catch (err) {
      const e = err as TelegramErrorLike;
      if (e.code !== 400 || !PHOTO_REFUSALS.test(e.description ?? '')) throw err;
      // A picture Telegram will not show as a photo (a long screenshot of a page: the sides more
      // than 20:1 or over 10,000 px together; an image it cannot decode) still goes, as a file.
      this.ctx.log.info({ err: e.description, name: a.name }, 'Telegram refused the picture as a photo; sending it as a document');
      return this.api.sendDocument(chatId, file, extra);
    }
  }

  private classify(err: unknown, chatId: string): Error {
    if (err instanceof PermanentDeliveryError) return err;
    const e = err as TelegramErrorLike;
    const description = e.description ?? this.redact(err);
    if (e.code === 429) {
      // Only past the reply's wait budget (waitingOutRateLimits, which logged a capped wait), or when stopping.
      const ms = retryAfterMs(e) ?? MIN_RETRY_WAIT_MS;
      this.pacer.defer(chatId, ms);
      return new TransientDeliveryError(`Telegram rate limit beyond the reply's wait budget: ${description}`, ms);
    }
    if (e.code === 401) {
      this.health.set('auth_failed', 'Telegram rejected the bot token');
      return new TransientDeliveryError('bot token rejected (401)');
    }
    // Any other 4xx is Telegram's answer about this very message: sending it again gets the same.
    if (typeof e.code === 'number' && e.code >= 400 && e.code < 500) return new PermanentDeliveryError(description, refusalReason(e.code, description));
    return new TransientDeliveryError(`Telegram send failed: ${description}`);
  }
}

/** The Bot API method a step is sent with (for the log). */
function methodOf(step: Step): string {
  if ('chunk' in step) return 'sendMessage';
  return PHOTO_TYPES.has(step.attachment.mimeType) ? 'sendPhoto' : 'sendDocument';
}

/** A stable reason for a Bot API refusal (4xx other than 401 and 429). */
function refusalReason(code: number, description: string): string {
  if (code === 403) {
    return /blocked/i.test(description) ? 'blocked_by_user'
      : /deactivated/i.test(description) ? 'user_deactivated'
      : /kicked|not a member/i.test(description) ? 'bot_removed_from_chat' : 'forbidden';
  }
  if (code === 413 || /too (big|large)/i.test(description)) return 'too_large';
  if (code === 400) {
    return /chat not found/i.test(description) ? 'chat_not_found'
      : /thread not found|topic.*(closed|deleted)/i.test(description) ? 'topic_not_found' : 'bad_request';
  }
  return code === 404 ? 'not_found' : `refused_${code}`;
}

/**
 * The file name as telegraf can carry it: telegraf writes it into the part's header as
 * `filename="<name>"` without escaping, so a `"` (ООО "Ромашка", common in Russian document names)
 * ended the name early and broke the part: no document reached Telegram, or one named «Договор ООО »
 * without its extension. Straight quotes become «» (opening, closing, in turn), a backslash (an
 * escape character in a quoted header value) and control characters (a line break would end the
 * header) become `_`, as safeFileName does for stored names.
 */
export function multipartFileName(name: string): string {
  let open = false;
  return name.replace(/[\\\u0000-\u001f\u007f]/g, '_').replace(/"/g, () => ((open = !open) ? '«' : '»'));
}
