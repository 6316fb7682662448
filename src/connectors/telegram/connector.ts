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
import { HealthTracker, InvalidEventError, type Connector, type ConnectorContext, type ReplayOutcome, type SendResult } from '../contract.js';
import { normalizeUpdate, type BotIdentity, type Normalized, type TgUpdate } from './normalize.js';
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
    this.sender = new TelegramSender(this.api, ctx, this.health_, o, redact);
    ctx.onReplay((payload) => this.replay(payload));
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

  /** Publishes one update; resolves once it is stored, parked or deliberately skipped. */
  private async ingest(update: TgUpdate): Promise<void> {
    const r = await this.toBus(update);
    if (r.kind === 'invalid') await this.ctx.deadLetter(`telegram update ${update?.update_id ?? '?'}: ${r.reason}`, update);
  }

  /** `omnigate dlq --replay` of a parked update: the same path as intake, the outcome told rather than parked again. */
  private async replay(payload: Buffer): Promise<ReplayOutcome> {
    if (!this.bot) return { outcome: 'refused', reason: 'the bot identity is not known yet (getMe); try again when the connector is connected' };
    let update: TgUpdate;
    try {
      update = JSON.parse(payload.toString('utf8')) as TgUpdate;
    } catch {
      return { outcome: 'refused', reason: 'the letter holds no Telegram update (not JSON)' };
    }
    const r = await this.toBus(update);
    if (r.kind === 'published') return { outcome: 'published', duplicate: r.duplicate };
    if (r.kind === 'skipped') return { outcome: 'refused', reason: `skipped: ${r.reason}` };
    return { outcome: 'invalid', reason: r.reason };
  }

  private async toBus(update: TgUpdate): Promise<{ kind: 'published'; duplicate: boolean } | { kind: 'skipped' | 'invalid'; reason: string }> {
    let n: Normalized;
    try {
      n = normalizeUpdate(update, this.ctx.account, this.bot!, this.o.groups);
    } catch (err) {
      n = { kind: 'invalid', reason: `cannot read the update: ${errorMessage(err)}` };
    }
    if (n.kind === 'skip') {
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

  /** Error text without the bot token (telegraf puts it in request URLs). */
  private redact(err: unknown): string {
    return errorMessage(err).split(this.o.token).join('[token]');
  }
}
