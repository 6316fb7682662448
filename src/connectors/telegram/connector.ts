/**
 * Telegram connector: one bot account. Identifies the bot (getMe), then takes updates by long
 * polling (polling.ts, under a single-runner lease) or by webhook (answered 200 only after the
 * publish), turns each into an event (normalize.ts) with its files in the object store
 * (files.ts), and sends replies (sender.ts).
 */
import { Telegram } from 'telegraf';
import type { RawRequest, RawResponse } from '../../core/http.js';
import { errorMessage } from '../../core/errors.js';
import type { OutboundMessage } from '../../core/schema.js';
import { safeEqual } from '../../core/signature.js';
import { HealthTracker, InvalidEventError, type Connector, type ConnectorContext, type SendResult } from '../contract.js';
import { metrics } from '../../core/metrics.js';
import { addressesBot, normalizeUpdate, type BotIdentity, type Normalized, type TgUpdate } from './normalize.js';
import { AlbumBuffer } from './album.js';
import { mergeAlbum } from './album-merge.js';
import { ChatStates } from './chat-state.js';
import { TelegramFiles } from './files.js';
import { TelegramSender, telegramRetryWaitMs, type TelegramErrorLike } from './sender.js';
import { ALLOWED_UPDATES, TelegramPoller } from './polling.js';
import { sleep } from '../../core/sleep.js';
import { fileLimit, type TelegramOptions } from './index.js';

export class TelegramConnector implements Connector {
  private readonly health_: HealthTracker;
  private readonly api: Telegram;
  private readonly files: TelegramFiles;
  private readonly sender: TelegramSender;
  private readonly chats: ChatStates;
  private readonly albums: AlbumBuffer;
  private bot?: BotIdentity;
  private running?: Promise<void>;
  private readonly stopping = new AbortController();

  constructor(
    private readonly o: TelegramOptions,
    private readonly ctx: ConnectorContext,
  ) {
    this.health_ = new HealthTracker(ctx);
    // webhookReply off: we never answer a webhook with a method call; every call goes to the API.
    this.api = new Telegram(o.token, { apiRoot: o.apiRoot, webhookReply: false });
    const redact = (err: unknown) => this.redact(err);
    this.files = new TelegramFiles(this.api, ctx, fileLimit(o), redact);
    this.chats = new ChatStates(ctx.state);
    this.sender = new TelegramSender(this.api, ctx, this.health_, o, redact, this.chats);
    this.albums = new AlbumBuffer(o.albumWaitMs, (updates) => this.ingestAlbum(updates));
  }

  async start(): Promise<void> {
    if (this.o.mode === 'webhook') {
      this.ctx.http.route('POST', `/connectors/telegram/${this.ctx.account}/webhook`, (req) => this.onWebhook(req));
    }
    this.running = this.run().catch((err) => {
      if (!this.stopping.signal.aborted) this.health_.set('stalled', this.redact(err));
    });
  }

  async stop(): Promise<void> {
    this.stopping.abort();
    await this.running;
    // Webhook requests may still hold album items: publish them rather than leave them waiting.
    await this.albums.flushAll();
    this.sender.close();
    this.health_.set('stopped');
  }

  health() {
    return this.health_.get();
  }

  send(message: OutboundMessage): Promise<SendResult> {
    return this.sender.send(message);
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
        if (e.code === 401 || e.code === 404) this.health_.set('auth_failed', 'Telegram rejected the bot token (getMe 401)');
        else if (e.code === 429) this.health_.set('rate_limited', `getMe: retry after ${e.parameters?.retry_after}s`);
        else this.health_.set('disconnected', `getMe failed: ${this.redact(err)}`);
        await sleep(e.code === 401 || e.code === 404 ? 60_000 : (e.parameters?.retry_after ?? 5) * 1000, signal);
      }
    }
    if (signal.aborted || !this.bot) return;
    if (this.o.mode === 'webhook') {
      if (this.o.webhook?.url && !(await this.registerWebhook(this.o.webhook.url, this.o.webhook.secretToken, signal))) return;
      if (!signal.aborted) this.health_.set('connected');
      return;
    }
    const poller = new TelegramPoller({
      api: this.api,
      ctx: this.ctx,
      health: this.health_,
      timeoutS: this.o.pollTimeoutS,
      botId: this.bot.id,
      ingest: (u) => this.ingest(u),
      heldBriefly: (u) => AlbumBuffer.keyOf(u) !== undefined,
      redact: (err) => this.redact(err),
    });
    await poller.run(signal);
  }

  /**
   * setWebhook until Telegram takes it: an outage at start must not leave the bot deaf until a
   * restart. False when Telegram refused the URL or the secret (4xx): that needs the config fixed.
   */
  private async registerWebhook(url: string, secretToken: string, signal: AbortSignal): Promise<boolean> {
    for (let failures = 1; !signal.aborted; failures++) {
      try {
        await this.api.setWebhook(url, { secret_token: secretToken, allowed_updates: ALLOWED_UPDATES as never });
        return true;
      } catch (err) {
        const e = err as TelegramErrorLike;
        const code = typeof e.code === 'number' ? e.code : undefined;
        if (code === 401) this.health_.set('auth_failed', 'Telegram rejected the bot token (setWebhook 401)');
        else if (code === 429) this.health_.set('rate_limited', `setWebhook: retry after ${e.parameters?.retry_after}s`);
        else if (code !== undefined && code >= 400 && code < 500) {
          this.health_.set('stalled', `Telegram refused the webhook (fix webhook.url and restart): ${e.description ?? this.redact(err)}`);
          return false;
        } else this.health_.set('disconnected', `setWebhook failed: ${this.redact(err)}`);
        await sleep(telegramRetryWaitMs(e, failures), signal);
      }
    }
    return false;
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

  /**
   * Publishes one update; resolves once it is stored, parked or deliberately skipped. An album
   * item resolves with its whole album (album.ts).
   */
  private async ingest(update: TgUpdate): Promise<void> {
    if (update?.my_chat_member && typeof update.update_id === 'number') return this.onChatMember(update);
    const album = AlbumBuffer.keyOf(update);
    if (album) return this.albums.add(album, update);
    let n: Normalized;
    try {
      n = normalizeUpdate(update, this.ctx.account, this.bot!, this.o.groups);
    } catch (err) {
      n = { kind: 'invalid', reason: `cannot read the update: ${errorMessage(err)}` };
    }
    await this.take(n, [update]);
  }

  /** The items of one album, judged together: a mention on any of them admits them all. */
  private async ingestAlbum(updates: TgUpdate[]): Promise<void> {
    const addressed = updates.some((u) => addressesBot(u.message!, this.bot!));
    const items: Normalized[] = [];
    for (const u of updates) {
      try {
        items.push(normalizeUpdate(u, this.ctx.account, this.bot!, this.o.groups, { addressed }));
      } catch (err) {
        items.push({ kind: 'invalid', reason: `cannot read the update: ${errorMessage(err)}` });
      }
    }
    await this.take(mergeAlbum(items), updates);
  }

  private async take(n: Normalized, updates: TgUpdate[]): Promise<void> {
    const ids = updates.map((u) => u?.update_id ?? '?').join(',');
    const park = (reason: string) => this.ctx.deadLetter(`telegram update ${ids}: ${reason}`, updates.length === 1 ? updates[0] : updates);
    if (n.kind === 'skip') {
      metrics.skippedUpdates.inc({ channel: this.ctx.channel, reason: n.code }, updates.length);
      this.ctx.log.debug({ updateIds: ids, reason: n.code, detail: n.reason }, 'Telegram update skipped');
      return;
    }
    if (n.kind === 'invalid') return park(n.reason);
    const event = n.event;
    if (event.type === 'message.inbound') event.attachments = await this.files.fetchAll(n.files);
    try {
      await this.ctx.publish(event);
    } catch (err) {
      if (err instanceof InvalidEventError) return park(err.message);
      throw err;
    }
  }

  /** my_chat_member: record our standing in the chat and tell the helpdesk when it changed. */
  private async onChatMember(update: TgUpdate): Promise<void> {
    const u = update.my_chat_member!;
    if (typeof u.chat?.id !== 'number' || typeof u.new_chat_member?.status !== 'string' || typeof u.date !== 'number') {
      await this.ctx.deadLetter(`telegram update ${update.update_id}: my_chat_member lacks chat.id, new_chat_member.status or date`, update);
      return;
    }
    await this.chats.apply(u, update.update_id, (change) => this.ctx.announceConversation(change));
  }

  /** Error text without the bot token (telegraf puts it in request URLs). */
  private redact(err: unknown): string {
    return errorMessage(err).split(this.o.token).join('[token]');
  }
}
