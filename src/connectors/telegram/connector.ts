/**
 * Telegram connector: one bot account. Identifies the bot (getMe), then takes updates by long
 * polling (polling.ts, under a single-runner lease) or by webhook (answered 200 only after the
 * publish), turns each into an event (normalize.ts) with its files in the object store
 * (files.ts), and sends replies (sender.ts).
 */
import { Telegram } from 'telegraf';
import type { RawRequest, RawResponse } from '../../core/http.js';
import { errorMessage } from '../../core/errors.js';
import { parseWebhookJson } from '../../core/json-input.js';
import { describeFetchFailure, networkCause } from '../../core/network-failure.js';
import type { OutboundMessage } from '../../core/schema.js';
import { safeEqual } from '../../core/signature.js';
import { HealthTracker, InvalidEventError, type Connector, type ConnectorContext, type ConnectorLoop, type ReplayOutcome, type SendAttempt, type SendResult } from '../contract.js';
import { metrics } from '../../core/metrics.js';
import { addressesBot, normalizeUpdate, refusedTime, type BotIdentity, type Normalized, type TgUpdate } from './normalize.js';
import { ADDRESSED_ALBUM_MEMORY_MS, AlbumBuffer, RecentKeys } from './album.js';
import { mergeAlbum } from './album-merge.js';
import { ChatStates } from './chat-state.js';
import { TelegramFiles } from './files.js';
import { TelegramSender, retryAfterMs, telegramRetryWaitMs, type TelegramErrorLike } from './sender.js';
import { ALLOWED_UPDATES, TelegramPoller } from './polling.js';
import { sleep, whenAborted } from '../../core/sleep.js';
import { fileLimit, type TelegramOptions } from './index.js';

type TakeResult = { kind: 'published'; duplicate: boolean } | { kind: 'skipped' | 'invalid'; reason: string };

export class TelegramConnector implements Connector {
  private readonly health_: HealthTracker;
  private readonly api: Telegram;
  private readonly files: TelegramFiles;
  private readonly sender: TelegramSender;
  private readonly chats: ChatStates;
  private readonly albums: AlbumBuffer;
  private readonly addressedAlbums = new RecentKeys(ADDRESSED_ALBUM_MEMORY_MS, 10_000);
  private bot?: BotIdentity;
  private intake?: ConnectorLoop;
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
    ctx.onReplay((payload) => this.replay(payload));
  }

  async start(): Promise<void> {
    if (this.o.mode === 'webhook') {
      this.ctx.http.route('POST', `/connectors/telegram/${this.ctx.account}/webhook`, (req) => this.onWebhook(req));
    }
    // Supervised: a run that ends or throws is noticed and started again with backoff.
    this.intake = this.ctx.run('intake', async ({ signal }) => {
      try {
        await this.run(AbortSignal.any([signal, this.stopping.signal]));
      } catch (err) {
        throw new Error(this.redact(err)); // the supervisor logs it: never with the token
      }
    });
  }

  async stop(): Promise<void> {
    this.stopping.abort();
    await this.intake?.stop();
    // Webhook requests may still hold album items: publish them rather than leave them waiting.
    await this.albums.flushAll();
    this.sender.close();
    this.health_.set('stopped');
  }

  health() {
    return this.health_.get();
  }

  /** The sender calls onWire after its pacing, so replies waiting in the pacer are not "maybe sent" (contract.ts). */
  readonly marksWire = true;

  send(message: OutboundMessage, attempt?: SendAttempt): Promise<SendResult> {
    return this.sender.send(message, attempt);
  }

  settled(outboundId: string): void {
    this.sender.settled(outboundId);
  }

  /** Identify the bot (retrying until the token works), then poll or register the webhook. */
  private async run(signal: AbortSignal): Promise<void> {
    while (!signal.aborted && !this.bot) {
      try {
        const me = await this.api.getMe();
        this.bot = { id: me.id, username: me.username };
      } catch (err) {
        const e = err as TelegramErrorLike;
        const rejected = e.code === 401 || e.code === 404;
        const waitMs = rejected ? 60_000 : (retryAfterMs(e, this.ctx.log, 'getMe') ?? 5000);
        if (rejected) this.health_.set('auth_failed', 'Telegram rejected the bot token (getMe 401)');
        else if (e.code === 429) this.health_.set('rate_limited', `getMe: retry after ${waitMs / 1000}s`);
        else this.health_.set('disconnected', `getMe failed: ${this.redact(err)}`);
        await sleep(waitMs, signal);
      }
    }
    if (signal.aborted || !this.bot) return;
    if (this.o.mode === 'webhook') {
      // Registered (or refused: the state says so): the webhook route does the rest until stop.
      const registered = !this.o.webhook?.url || (await this.registerWebhook(this.o.webhook.url, this.o.webhook.secretToken, signal));
      if (registered && !signal.aborted) this.health_.set('connected');
      return whenAborted(signal);
    }
    const poller = new TelegramPoller({
      api: this.api,
      ctx: this.ctx,
      health: this.health_,
      timeoutS: this.o.pollTimeoutS,
      botId: this.bot.id,
      ingest: (u) => this.ingest(u),
      albumKey: (u) => AlbumBuffer.keyOf(u),
      // A few looks per album window, so an item Telegram holds for the next poll still joins its album.
      albumPollMs: Math.min(250, Math.max(20, Math.floor(this.o.albumWaitMs / 4))),
      albumWaitMs: this.o.albumWaitMs,
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
        const waitMs = telegramRetryWaitMs(e, failures, this.ctx.log, 'setWebhook');
        if (code === 401) this.health_.set('auth_failed', 'Telegram rejected the bot token (setWebhook 401)');
        else if (code === 429) this.health_.set('rate_limited', `setWebhook: retry after ${waitMs / 1000}s`);
        else if (code !== undefined && code >= 400 && code < 500) {
          this.health_.set('stalled', `Telegram refused the webhook (fix webhook.url and restart): ${e.description ?? this.redact(err)}`);
          return false;
        } else this.health_.set('disconnected', `setWebhook failed: ${this.redact(err)}`);
        await sleep(waitMs, signal);
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
      // Bounded: a body nested 10,000 deep parsed, then overflowed the stack when it was parked
      // (JSON.stringify), and the 500 made Telegram redeliver it, holding back the updates behind it.
      update = parseWebhookJson(req.rawBody) as TgUpdate;
    } catch (err) {
      await this.ctx.deadLetter(`telegram webhook body refused: ${errorMessage(err)}`, req.rawBody);
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
    await this.parkIfInvalid(await this.take(this.normalize(update), [update]), [update]);
  }

  /** The items of one album, judged together: a mention on any of them admits them all. */
  private async ingestAlbum(updates: TgUpdate[]): Promise<void> {
    await this.parkIfInvalid(await this.take(this.judgeAlbum(updates), updates), updates);
  }

  /**
   * An album is addressed to the bot when any of its items is, and stays so for items that come
   * after it was published (past the album window): they are the album's, not messages of their own.
   */
  private judgeAlbum(updates: TgUpdate[]): Normalized {
    const key = updates.length > 0 ? AlbumBuffer.keyOf(updates[0]!) : undefined;
    const addressed = updates.some((u) => this.addresses(u)) || (key !== undefined && this.addressedAlbums.has(key));
    if (addressed && key !== undefined) this.addressedAlbums.remember(key);
    return mergeAlbum(updates.map((u) => this.normalize(u, { addressed })));
  }

  /** False for an item that cannot be read (normalize parks it with the reason): it must not fail the album's publish. */
  private addresses(u: TgUpdate): boolean {
    try {
      return u?.message !== undefined && addressesBot(u.message, this.bot!);
    } catch {
      return false;
    }
  }

  private normalize(update: TgUpdate, opts?: { addressed: boolean }): Normalized {
    try {
      return normalizeUpdate(update, this.ctx.account, this.bot!, this.o.groups, opts);
    } catch (err) {
      return { kind: 'invalid', reason: `cannot read the update: ${errorMessage(err)}` };
    }
  }

  private async parkIfInvalid(r: TakeResult, updates: TgUpdate[]): Promise<void> {
    if (r.kind !== 'invalid') return;
    const ids = updates.map((u) => u?.update_id ?? '?').join(',');
    await this.ctx.deadLetter(`telegram update ${ids}: ${r.reason}`, updates.length === 1 ? updates[0] : updates);
  }

  /** `omnigate dlq --replay` of a parked update (or album): the same path as intake, the outcome told rather than parked again. */
  private async replay(payload: Buffer): Promise<ReplayOutcome> {
    if (!this.bot) return { outcome: 'refused', reason: 'the bot identity is not known yet (getMe); try again when the connector is connected' };
    let parsed: TgUpdate | TgUpdate[];
    try {
      parsed = JSON.parse(payload.toString('utf8')) as TgUpdate | TgUpdate[];
    } catch {
      return { outcome: 'refused', reason: 'the letter holds no Telegram update (not JSON)' };
    }
    const updates = Array.isArray(parsed) ? parsed : [parsed];
    if (updates.some((u) => u?.my_chat_member)) return { outcome: 'refused', reason: 'a membership update is not replayed (the chat state follows the next one)' };
    const r = await this.take(Array.isArray(parsed) ? this.judgeAlbum(updates) : this.normalize(parsed), updates);
    if (r.kind === 'published') return { outcome: 'published', duplicate: r.duplicate };
    if (r.kind === 'skipped') return { outcome: 'refused', reason: `skipped: ${r.reason}` };
    return { outcome: 'invalid', reason: r.reason };
  }

  private async take(n: Normalized, updates: TgUpdate[]): Promise<TakeResult> {
    if (n.kind === 'skip') {
      const ids = updates.map((u) => u?.update_id ?? '?').join(',');
      metrics.skippedUpdates.inc({ channel: this.ctx.channel, reason: n.code }, updates.length);
      this.ctx.log.debug({ updateIds: ids, reason: n.code, detail: n.reason }, 'Telegram update skipped');
      if (n.loopGuard) this.ctx.dropped('loop_guard', n.reason);
      return { kind: 'skipped', reason: n.reason };
    }
    if (n.kind === 'invalid') return { kind: 'invalid', reason: n.reason };
    const event = n.event;
    if (event.type === 'message.inbound') event.attachments = await this.files.fetchAll(n.files);
    try {
      const published = await this.ctx.publish(event);
      return { kind: 'published', duplicate: published.duplicate };
    } catch (err) {
      if (err instanceof InvalidEventError) return { kind: 'invalid', reason: err.message };
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
    // As for messages (normalize.ts): 1e21 or 1.5 is no chat of Telegram's, and was recorded and
    // announced to the helpdesk as conversation "1e+21" or "1.5".
    if (!Number.isSafeInteger(u.chat.id)) {
      await this.ctx.deadLetter(`telegram update ${update.update_id}: my_chat_member.chat.id: ${u.chat.id} is not a whole number Telegram could have sent (ids have at most 52 bits)`, update);
      return;
    }
    // A date no ISO time can hold threw when the change was announced: retried as if NATS were
    // away, then parked without the field; and stored first, it would outrank every later change.
    const dateRefused = refusedTime(u.date);
    if (dateRefused) {
      await this.ctx.deadLetter(`telegram update ${update.update_id}: my_chat_member.date: ${dateRefused}`, update);
      return;
    }
    await this.chats.apply(u, update.update_id, (change) => this.ctx.announceConversation(change));
  }

  /** Error text without the bot token (telegraf puts it in request URLs). */
  /** Never with the token (Telegram's URLs carry it); a network failure as its cause and the Bot API's host. */
  private redact(err: unknown): string {
    if (networkCause(err)) return describeFetchFailure(err, this.o.apiRoot);
    return errorMessage(err).split(this.o.token).join('[token]');
  }
}
