/**
 * Slack connector. Bolt's App provides the Web API client (retries off, so 429s reach us with
 * their Retry-After) and request verification; intake goes through our own receiver because
 * Bolt acknowledges Events API deliveries before listeners run, and we acknowledge Slack (HTTP 200
 * or the Socket Mode envelope ack) only after JetStream stored the event. Unacked Socket Mode
 * envelopes and retried HTTP events are redelivered by Slack; event ids make them no-ops.
 */
import { App, verifySlackRequest } from '@slack/bolt';
import { SocketModeClient } from '@slack/socket-mode';
import { ErrorCode, LogLevel, type WebClient } from '@slack/web-api';
import type { RawRequest, RawResponse } from '../../core/http.js';
import { Pacer } from '../../core/pacer.js';
import { MediaTooLargeError } from '../../core/media.js';
import { PermanentDeliveryError, TransientDeliveryError, errorMessage } from '../../core/errors.js';
import type { Attachment, OutboundMessage } from '../../core/schema.js';
import { HealthTracker, InvalidEventError, type Connector, type ConnectorContext, type SendResult } from '../contract.js';
import { escapeMrkdwn, normalizeEnvelope, platformId, type Envelope, type SlackFile } from './normalize.js';
import type { SlackOptions } from './index.js';

/** Errors that will not go away by retrying the same message. */
const PERMANENT = new Set(['channel_not_found', 'not_in_channel', 'account_inactive', 'is_archived', 'invalid_auth', 'msg_too_long', 'no_text', 'restricted_action', 'cannot_reply_to_message', 'user_not_found', 'not_authed', 'token_revoked']);

export class SlackConnector implements Connector {
  private readonly health_: HealthTracker;
  private readonly client: WebClient;
  private readonly app: InstanceType<typeof App>;
  private readonly pacer: Pacer;
  private socket?: SocketModeClient;
  private botUserId = '';
  private readonly channels: Set<string>;
  private readonly threads = new Set<string>();
  private readonly users = new Map<string, { at: number; name?: string; email?: string }>();

  constructor(
    private readonly o: SlackOptions,
    private readonly ctx: ConnectorContext,
  ) {
    this.health_ = new HealthTracker(ctx);
    this.app = new App({
      token: o.botToken,
      // Intake is ours (see above); the App is here for its client and conventions.
      receiver: { init: () => {}, start: async () => undefined, stop: async () => undefined } as never,
      deferInitialization: true,
      logLevel: LogLevel.ERROR,
      clientOptions: { slackApiUrl: o.apiUrl, retryConfig: { retries: 0 }, rejectRateLimitedCalls: true, logLevel: LogLevel.ERROR },
    });
    this.client = this.app.client;
    this.pacer = new Pacer(o.perChannelIntervalMs, 0);
    this.channels = new Set(o.channels);
  }

  async start(): Promise<void> {
    if (this.o.mode === 'events') {
      this.ctx.http.route('POST', `/connectors/slack/${this.ctx.account}/events`, (req) => this.onHttp(req));
    }
    void this.connect();
  }

  private async connect(): Promise<void> {
    for (let attempt = 0; !this.ctx.signal.aborted && !this.botUserId; attempt++) {
      try {
        const auth = await this.client.auth.test();
        this.botUserId = String(auth.user_id ?? '');
      } catch (err) {
        const code = (err as { data?: { error?: string } }).data?.error;
        this.health_.set(code === 'invalid_auth' || code === 'not_authed' || code === 'token_revoked' ? 'auth_failed' : 'disconnected', `auth.test: ${code ?? errorMessage(err)}`);
        await new Promise((r) => setTimeout(r, Math.min(60_000, 1000 * 2 ** attempt)));
      }
    }
    if (this.ctx.signal.aborted) return;
    if (this.o.mode === 'events') return this.health_.set('connected');
    this.socket = new SocketModeClient({ appToken: this.o.appToken!, logLevel: LogLevel.ERROR, clientOptions: { slackApiUrl: this.o.apiUrl } });
    this.socket.on('connected', () => this.health_.set('connected'));
    this.socket.on('reconnecting', () => this.health_.set('disconnected', 'Socket Mode reconnecting'));
    this.socket.on('slack_event', async ({ ack, type, body }: { ack: () => Promise<void>; type: string; body: Envelope }) => {
      if (type !== 'events_api') return ack();
      try {
        await this.ingest(body);
        await ack(); // only now: an unacked envelope is redelivered by Slack
      } catch (err) {
        this.ctx.log.warn({ err: errorMessage(err) }, 'Slack event not stored; leaving it unacknowledged for redelivery');
      }
    });
    try {
      await this.socket.start();
    } catch (err) {
      this.health_.set('disconnected', `Socket Mode: ${errorMessage(err)}`);
    }
  }

  async stop(): Promise<void> {
    await this.socket?.disconnect().catch(() => {});
    this.health_.set('stopped');
  }

  health() {
    return this.health_.get();
  }

  private async onHttp(req: RawRequest): Promise<RawResponse> {
    const raw = req.rawBody.toString('utf8');
    try {
      verifySlackRequest({
        signingSecret: this.o.signingSecret!,
        body: raw,
        headers: {
          'x-slack-signature': req.headers['x-slack-signature'] ?? '',
          'x-slack-request-timestamp': Number(req.headers['x-slack-request-timestamp']),
        },
      });
    } catch {
      return { status: 401, body: { error: 'unauthorized', message: 'invalid Slack signature' } };
    }
    let body: Envelope;
    try {
      body = JSON.parse(raw) as Envelope;
    } catch {
      await this.ctx.deadLetter('slack event body is not valid JSON', req.rawBody);
      return { status: 400, body: { error: 'invalid_json' } };
    }
    if (body.type === 'url_verification') return { status: 200, body: { challenge: body.challenge } };
    try {
      await this.ingest(body);
      return { status: 200, body: '' };
    } catch (err) {
      return { status: 500, body: { error: 'unavailable', message: errorMessage(err) } }; // Slack retries
    }
  }

  /** Resolves once the event is stored, parked, or deliberately skipped. */
  private async ingest(body: Envelope): Promise<void> {
    const e = body?.event;
    if (e?.thread_ts && !this.threads.has(`${e.channel}:${e.thread_ts}`) && (await this.ctx.state.get(`thread:${e.channel}:${e.thread_ts}`))) {
      this.threads.add(`${e.channel}:${e.thread_ts}`);
    }
    const n = normalizeEnvelope(body, {
      account: this.ctx.account,
      botUserId: this.botUserId,
      channels: this.channels,
      knownThread: (channel, ts) => this.threads.has(`${channel}:${ts}`),
    });
    if (n.kind === 'skip') return;
    if (n.kind === 'invalid') return this.ctx.deadLetter(`slack event ${body?.event_id ?? '?'}: ${n.reason}`, body);
    const event = n.event;
    if (n.userId && 'sender' in event && event.sender) Object.assign(event.sender, await this.identity(n.userId));
    if (event.type === 'message.inbound') event.attachments = await this.download(n.files);
    try {
      await this.ctx.publish(event);
    } catch (err) {
      if (err instanceof InvalidEventError) return this.ctx.deadLetter(`slack event ${body.event_id}: ${err.message}`, body);
      throw err;
    }
    if (n.startsThread) {
      this.threads.add(`${e!.channel}:${n.startsThread}`);
      await this.ctx.state.put(`thread:${e!.channel}:${n.startsThread}`, '1');
    }
  }

  /** users.info, cached for an hour: display name and email for the ticket's contact. */
  private async identity(userId: string): Promise<{ displayName?: string; handles: Record<string, string> }> {
    let u = this.users.get(userId);
    if (!u || Date.now() - u.at > 3_600_000) {
      try {
        const res = await this.client.users.info({ user: userId });
        const p = res.user?.profile;
        u = { at: Date.now(), name: p?.display_name || p?.real_name || res.user?.real_name || res.user?.name, email: p?.email };
      } catch {
        u = { at: Date.now() - 3_000_000 }; // retry in ten minutes
      }
      this.users.set(userId, u);
    }
    return { displayName: u.name, handles: { slack: userId, ...(u.email ? { email: u.email } : {}) } };
  }

  private async download(files: SlackFile[]): Promise<Attachment[]> {
    const out: Attachment[] = [];
    const limit = this.o.maxFileBytes ?? this.ctx.media.maxBytes;
    for (const f of files) {
      const meta = { name: f.name ?? f.title ?? f.id, mimeType: f.mimetype ?? 'application/octet-stream', kind: f.mimetype?.startsWith('image/') ? 'image' : 'document', size: f.size };
      const url = f.url_private_download ?? f.url_private;
      if (f.size !== undefined && f.size > limit) {
        out.push(this.ctx.media.failed(meta, `file is ${f.size} bytes; the limit is ${limit}`));
        continue;
      }
      if (!url) {
        out.push(this.ctx.media.failed(meta, 'Slack sent no download URL for this file'));
        continue;
      }
      try {
        const res = await fetch(url, { headers: { authorization: `Bearer ${this.o.botToken}` }, signal: AbortSignal.timeout(60_000) });
        if (!res.ok) throw new Error(`download answered ${res.status}`);
        out.push(await this.ctx.media.put(new Uint8Array(await res.arrayBuffer()), meta));
      } catch (err) {
        out.push(this.ctx.media.failed(meta, err instanceof MediaTooLargeError ? err.message : `could not fetch the file: ${errorMessage(err)}`));
      }
    }
    return out;
  }

  async send(msg: OutboundMessage): Promise<SendResult> {
    const channel = msg.conversation.id;
    const thread_ts = msg.conversation.kind === 'private' ? undefined : msg.conversation.threadId;
    await this.pacer.wait(channel);
    try {
      let ts: string | undefined;
      if (msg.text) {
        const res = await this.client.chat.postMessage({ channel, text: escapeMrkdwn(msg.text), thread_ts, unfurl_links: false });
        ts = res.ts;
      }
      for (const a of msg.attachments) {
        const bytes = await this.ctx.media.get(a.objectKey);
        if (!bytes) throw new PermanentDeliveryError(`attachment ${a.name} is not in the object store`, 'attachment_missing');
        await this.pacer.wait(channel);
        await this.client.filesUploadV2({ channel_id: channel, file: Buffer.from(bytes), filename: a.name, ...(thread_ts ? { thread_ts } : {}) } as never);
      }
      if (this.health_.get().state === 'rate_limited') this.health_.set('connected');
      return { platformMessageId: platformId(channel, ts ?? thread_ts ?? '0') };
    } catch (err) {
      throw this.classify(err, channel);
    }
  }

  private classify(err: unknown, channel: string): Error {
    if (err instanceof PermanentDeliveryError) return err;
    const e = err as { code?: string; retryAfter?: number; data?: { error?: string } };
    if (e.code === ErrorCode.RateLimitedError) {
      const ms = (e.retryAfter ?? 1) * 1000;
      this.pacer.defer(channel, ms);
      this.health_.set('rate_limited', `Slack asked to wait ${ms / 1000}s`);
      return new TransientDeliveryError('Slack rate limit (429)', ms);
    }
    const code = e.data?.error;
    if (e.code === ErrorCode.PlatformError && code && PERMANENT.has(code)) {
      if (code === 'invalid_auth' || code === 'token_revoked') this.health_.set('auth_failed', code);
      return new PermanentDeliveryError(`Slack refused: ${code}`, code);
    }
    return new TransientDeliveryError(`Slack send failed: ${code ?? errorMessage(err)}`);
  }
}
