/**
 * Telegram connector. Intake: long polling through telegraf's Bot API client with our own offset
 * loop, so the offset advances only after JetStream acknowledged the event (a crash means
 * Telegram serves the update again and dedup absorbs it); or webhook mode, answering 200 only
 * after the publish. Outbound: paced per chat and per bot, split past 4096 characters, 429
 * retry_after honoured, permanent refusals reported with the reason.
 */
import { Telegram } from 'telegraf';
import type { RawRequest, RawResponse } from '../../core/http.js';
import { Pacer } from '../../core/pacer.js';
import { MediaTooLargeError } from '../../core/media.js';
import { PermanentDeliveryError, TransientDeliveryError, errorMessage } from '../../core/errors.js';
import type { Attachment, OutboundMessage } from '../../core/schema.js';
import { safeEqual } from '../../core/signature.js';
import { HealthTracker, InvalidEventError, type Connector, type ConnectorContext, type SendResult } from '../contract.js';
import { MESSAGE_LIMIT, splitText, toTelegramHtml } from './format.js';
import { normalizeUpdate, platformId, type BotIdentity, type PendingFile, type TgUpdate } from './normalize.js';
import { PUBLIC_BOT_API, PUBLIC_FILE_LIMIT, type TelegramOptions } from './index.js';

const ALLOWED_UPDATES = ['message', 'edited_message'] as const;
const OFFSET_KEY = 'offset';

interface TelegramErrorLike {
  code?: number;
  description?: string;
  parameters?: { retry_after?: number; migrate_to_chat_id?: number };
}

export class TelegramConnector implements Connector {
  private readonly health_: HealthTracker;
  private readonly api: Telegram;
  private readonly pacer: Pacer;
  private readonly maxFileBytes: number;
  private bot?: BotIdentity;
  private polling?: Promise<void>;
  private readonly stopping = new AbortController();
  /** Chunks already delivered per outbound id, so a retry after a partial send continues, not repeats. */
  private readonly progress = new Map<string, { sent: number; firstId?: string }>();

  constructor(
    private readonly o: TelegramOptions,
    private readonly ctx: ConnectorContext,
  ) {
    this.health_ = new HealthTracker(ctx);
    this.api = new Telegram(o.token, { apiRoot: o.apiRoot, webhookReply: false });
    this.pacer = new Pacer(o.pacing.privateChatIntervalMs, o.pacing.perSecond);
    this.maxFileBytes = o.maxFileBytes ?? (o.apiRoot === PUBLIC_BOT_API ? PUBLIC_FILE_LIMIT : 2000 * 1024 * 1024);
  }

  async start(): Promise<void> {
    if (this.o.mode === 'webhook') {
      this.ctx.http.route('POST', `/connectors/telegram/${this.ctx.account}/webhook`, (req) => this.onWebhook(req));
    }
    this.polling = this.run().catch((err) => {
      if (!this.stopping.signal.aborted) this.health_.set('stalled', errorMessage(err));
    });
  }

  async stop(): Promise<void> {
    this.stopping.abort();
    await this.polling;
    this.health_.set('stopped');
  }

  health() {
    return this.health_.get();
  }

  /** Identify the bot (retrying until the token works), then poll or register the webhook. */
  private async run(): Promise<void> {
    const signal = this.stopping.signal;
    while (!signal.aborted && !this.bot) {
      try {
        const me = await this.api.getMe();
        this.bot = { id: me.id, username: me.username };
      } catch (err) {
        const e = err as TelegramErrorLike;
        if (e.code === 401 || e.code === 404) this.health_.set('auth_failed', 'Telegram rejected the bot token (getMe)');
        else this.health_.set('disconnected', `getMe failed: ${this.describe(err)}`);
        await sleep(e.code === 401 ? 60_000 : 5_000, signal);
      }
    }
    if (signal.aborted) return;
    if (this.o.mode === 'webhook') {
      if (this.o.webhook?.url) {
        await this.api.setWebhook(this.o.webhook.url, { secret_token: this.o.webhook.secretToken, allowed_updates: [...ALLOWED_UPDATES] });
      }
      this.health_.set('connected');
      return;
    }
    const lease = await this.ctx.lease('polling').catch(() => null);
    if (!lease || signal.aborted) return;
    try {
      await this.api.deleteWebhook();
      await this.poll(signal);
    } finally {
      await lease.release();
    }
  }

  private async poll(signal: AbortSignal): Promise<void> {
    const stored = await this.ctx.state.get(OFFSET_KEY);
    let offset = stored ? Number(stored.value) : 0;
    let failures = 0;
    while (!signal.aborted) {
      let updates: TgUpdate[];
      try {
        // callApi rather than getUpdates(): it takes our abort signal, so stop() ends a long poll at once.
        updates = (await this.api.callApi(
          'getUpdates',
          { offset, limit: 100, timeout: this.o.pollTimeoutS, allowed_updates: [...ALLOWED_UPDATES] },
          { signal: signal as never }, // telegraf types its own AbortSignal; the native one works with node-fetch
        )) as unknown as TgUpdate[];
        failures = 0;
        if (this.health_.get().state !== 'connected') this.health_.set('connected');
      } catch (err) {
        if (signal.aborted) return;
        failures++;
        const e = err as TelegramErrorLike;
        if (e.code === 401) this.health_.set('auth_failed', 'Telegram rejected the bot token');
        else if (e.code === 409) this.health_.set('stalled', 'another poller or a webhook is active for this bot (409)');
        else if (e.code === 429) this.health_.set('rate_limited', `getUpdates: retry after ${e.parameters?.retry_after}s`);
        else if (failures >= 3) this.health_.set('disconnected', `getUpdates failing: ${this.describe(err)}`);
        const wait = e.parameters?.retry_after ? e.parameters.retry_after * 1000 : Math.min(30_000, 500 * 2 ** failures);
        await sleep(e.code === 401 ? 60_000 : wait, signal);
        continue;
      }
      for (const update of updates) {
        // Anything but a stored event (or a parked bad update) stops here: the offset does not
        // move, so Telegram serves the update again on the next call.
        await this.ingest(update);
        offset = update.update_id + 1;
      }
      if (updates.length > 0) await this.ctx.state.put(OFFSET_KEY, String(offset));
    }
  }

  private async onWebhook(req: RawRequest): Promise<RawResponse> {
    const given = req.headers['x-telegram-bot-api-secret-token'] ?? '';
    if (!this.o.webhook || !safeEqual(given, this.o.webhook.secretToken)) {
      return { status: 401, body: { error: 'unauthorized', message: 'missing or wrong X-Telegram-Bot-Api-Secret-Token' } };
    }
    if (!this.bot) return { status: 503, body: { error: 'starting', message: 'bot identity not known yet' } };
    let update: TgUpdate;
    try {
      update = JSON.parse(req.rawBody.toString('utf8')) as TgUpdate;
    } catch {
      await this.ctx.deadLetter('telegram webhook body is not valid JSON', req.rawBody);
      return { status: 200, body: '' }; // Telegram would retry a bad body forever
    }
    try {
      await this.ingest(update);
      return { status: 200, body: '' };
    } catch (err) {
      return { status: 500, body: { error: 'unavailable', message: errorMessage(err) } }; // Telegram retries
    }
  }

  /** Publishes one update; resolves once it is stored, parked or deliberately skipped. */
  private async ingest(update: TgUpdate): Promise<void> {
    const n = normalizeUpdate(update, this.ctx.account, this.bot!, this.o.groups);
    if (n.kind === 'skip') return;
    if (n.kind === 'invalid') {
      await this.ctx.deadLetter(`telegram update ${update?.update_id ?? '?'}: ${n.reason}`, update);
      return;
    }
    const event = n.event;
    if (event.type === 'message.inbound') event.attachments = await this.download(n.files);
    try {
      await this.ctx.publish(event);
    } catch (err) {
      if (err instanceof InvalidEventError) {
        await this.ctx.deadLetter(`telegram update ${update.update_id}: ${err.message}`, update);
        return;
      }
      throw err;
    }
  }

  private async download(files: PendingFile[]): Promise<Attachment[]> {
    const out: Attachment[] = [];
    for (const f of files) {
      const meta = { name: f.name, mimeType: f.mimeType, kind: f.kind, size: f.size };
      if (f.size !== undefined && f.size > this.maxFileBytes) {
        out.push(this.ctx.media.failed(meta, `file is ${f.size} bytes; the Bot API serves files up to ${this.maxFileBytes} bytes (a self-hosted Bot API server via apiRoot lifts this)`));
        continue;
      }
      try {
        const link = await this.api.getFileLink(f.fileId);
        const res = await fetch(link, { signal: AbortSignal.timeout(60_000) });
        if (!res.ok) throw new Error(`file download answered ${res.status}`);
        out.push(await this.ctx.media.put(new Uint8Array(await res.arrayBuffer()), meta));
      } catch (err) {
        const reason = err instanceof MediaTooLargeError ? err.message : `could not fetch the file: ${this.describe(err)}`;
        out.push(this.ctx.media.failed(meta, reason));
      }
    }
    return out;
  }

  async send(msg: OutboundMessage): Promise<SendResult> {
    const chatId = msg.conversation.id;
    const interval = msg.conversation.kind === 'group' ? this.o.pacing.groupIntervalMs : this.o.pacing.privateChatIntervalMs;
    const thread = msg.conversation.threadId ? { message_thread_id: Number(msg.conversation.threadId) } : {};
    const replyTo = msg.replyTo?.startsWith(`${chatId}:`) ? Number(msg.replyTo.slice(chatId.length + 1)) : undefined;
    const useHtml = !!msg.html && toTelegramHtml(msg.html).length <= MESSAGE_LIMIT;
    const chunks = useHtml ? [toTelegramHtml(msg.html!)] : msg.text ? splitText(msg.text) : [];
    const steps = chunks.length + msg.attachments.length;
    const progress = this.progress.get(msg.id) ?? { sent: 0 };
    this.progress.set(msg.id, progress);
    try {
      for (let i = progress.sent; i < steps; i++) {
        await this.pacer.wait(chatId, interval);
        const extra = {
          ...thread,
          ...(i === 0 && replyTo ? { reply_parameters: { message_id: replyTo, allow_sending_without_reply: true } } : {}),
        };
        let sent: { message_id: number };
        if (i < chunks.length) {
          sent = await this.api.sendMessage(chatId, chunks[i]!, { ...extra, ...(useHtml ? { parse_mode: 'HTML' as const } : {}) });
        } else {
          const a = msg.attachments[i - chunks.length]!;
          const bytes = await this.ctx.media.get(a.objectKey);
          if (!bytes) throw new PermanentDeliveryError(`attachment ${a.name} is not in the object store`, 'attachment_missing');
          const file = { source: Buffer.from(bytes), filename: a.name };
          sent = a.mimeType.startsWith('image/') && a.size <= 10 * 1024 * 1024
            ? await this.api.sendPhoto(chatId, file, extra)
            : await this.api.sendDocument(chatId, file, extra);
        }
        progress.sent = i + 1;
        progress.firstId ??= platformId(chatId, sent.message_id);
      }
      if (this.health_.get().state === 'rate_limited') this.health_.set('connected');
      this.progress.delete(msg.id);
      return { platformMessageId: progress.firstId ?? platformId(chatId, 0) };
    } catch (err) {
      throw this.classify(err, chatId);
    }
  }

  private classify(err: unknown, chatId: string): Error {
    if (err instanceof PermanentDeliveryError) return err;
    const e = err as TelegramErrorLike;
    const description = e.description ?? errorMessage(err);
    if (e.code === 429) {
      const ms = (e.parameters?.retry_after ?? 1) * 1000;
      this.pacer.defer(chatId, ms);
      this.health_.set('rate_limited', `Telegram asked to wait ${ms / 1000}s`);
      return new TransientDeliveryError(`Telegram rate limit: ${description}`, ms);
    }
    if (e.code === 403) {
      const reason = /blocked/i.test(description) ? 'blocked_by_user' : /deactivated/i.test(description) ? 'user_deactivated' : /kicked|not a member/i.test(description) ? 'bot_removed_from_chat' : 'forbidden';
      return new PermanentDeliveryError(description, reason);
    }
    if (e.code === 400) {
      const reason = /chat not found/i.test(description) ? 'chat_not_found' : /upgraded to a supergroup/i.test(description) ? 'chat_migrated' : 'bad_request';
      return new PermanentDeliveryError(description, reason);
    }
    if (e.code === 401) {
      this.health_.set('auth_failed', 'Telegram rejected the bot token');
      return new TransientDeliveryError('bot token rejected (401)');
    }
    return new TransientDeliveryError(`Telegram send failed: ${this.describe(err)}`);
  }

  /** Error text without the bot token (telegraf puts it in request URLs). */
  private describe(err: unknown): string {
    return errorMessage(err).split(this.o.token).join('[token]');
  }
}

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal.aborted) return resolve();
    const t = setTimeout(resolve, ms);
    signal.addEventListener('abort', () => {
      clearTimeout(t);
      resolve();
    }, { once: true });
  });
}
