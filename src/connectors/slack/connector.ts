/**
 * Slack connector. A plain Web API client (Bolt is used only for verifySlackRequest, see
 * events-api.ts: an App was built here just for its client), configured so its own retries never
 * hide a 429 from the runtime (retries off, rate-limited calls rejected with Retry-After) and with
 * a timeout: the SDK's default is none, and one hung call would stall an event (every Slack retry
 * joins the stuck attempt) or a conversation's outbound lane for good. Intake is Socket Mode
 * (socket.ts) or the Events API (events-api.ts); both acknowledge Slack only after ctx.publish
 * resolved, and both go through ingest() below, which checks the event's shape first (shape.ts)
 * and parks one that fails at once. Events of one conversation are published in the order they
 * arrived (publish-order.ts). `omnigate dlq --replay` takes a parked envelope through the same
 * path (take()), the outcome told rather than parked again (replay.ts).
 */
import { ErrorCode, WebClient, type WebClientOptions } from '@slack/web-api';
import { Pacer } from '../../core/pacer.js';
import { sleep, backoffMs, whenAborted } from '../../core/sleep.js';
import { PermanentDeliveryError, TransientDeliveryError, errorMessage } from '../../core/errors.js';
import { describeFetchFailure, networkCause } from '../../core/network-failure.js';
import type { OutboundMessage } from '../../core/schema.js';
import { HealthTracker, InvalidEventError, type Connector, type ConnectorContext, type ConnectorLoop, type ReplayOutcome, type SendAttempt, type SendResult } from '../contract.js';
import { WireMarks } from '../wire-marks.js';
import { AUTH_ERRORS, PERMANENT_SEND_ERRORS, slackErrorCode } from './errors.js';
import { EventDedup } from './event-dedup.js';
import { slackLibraryLogger } from './library-logger.js';
import { eventsEndpoint } from './events-api.js';
import { downloadFiles, slackFileOrigins, uploadFile } from './files.js';
import { conversationOf, normalizeMessage, platformId, threadOf, type Normalized, type SlackMessageEvent } from './normalize.js';
import { PublishOrder } from './publish-order.js';
import { eventIdOf, parseEnvelope, type RawEnvelope } from './shape.js';
import { otherWorkspace, readLetter, type Workspace } from './replay.js';
import { escapeMrkdwn } from './text.js';
import { SocketSession } from './socket.js';
import { UserDirectory } from './users.js';
import type { SlackOptions } from './index.js';

/** Slack truncates a message's text beyond this (api.slack.com/changelog/2018-04-truncating-really-long-messages). */
const SLACK_TEXT_LIMIT = 40_000;

/** Slack delivers an event at most this many times again (Events API and Socket Mode alike). */
const SLACK_LAST_RETRY = 3;
/** An upload carries a whole file in one request: the API timeout would cut off a large one on a slow link. */
const UPLOAD_TIMEOUT_MS = 300_000;

/** A replay waits this long for auth.test (the loop guard needs our user id) before it is refused. */
const REPLAY_IDENTITY_WAIT_MS = 5_000;

/** What became of one envelope: intake parks `invalid`, a replay reports it. */
type TakeResult = { kind: 'published'; duplicate: boolean } | { kind: 'skipped' | 'invalid'; reason: string };

/** What a send already achieved, so a retry after a failed upload does not post the text twice. */
interface SendProgress {
  ts?: string;
  filesDone: number;
}

export class SlackConnector implements Connector {
  /** send() says when it posts (contract.ts): a reply waiting in the pacer is not "maybe sent". */
  readonly marksWire = true;
  private readonly health_: HealthTracker;
  private readonly client: WebClient;
  private readonly pacer: Pacer;
  private readonly dedup = new EventDedup();
  /** Events of one conversation are published in the order they arrived (publish-order.ts). */
  private readonly order = new PublishOrder();
  private readonly users: UserDirectory;
  private readonly channels: Set<string>;
  /** `channel:thread_ts` of threads we took a message from; KV keeps them across restarts. */
  private readonly threads = new Set<string>();
  private readonly progress = new Map<string, SendProgress>();
  /** The only origins the bot token is sent to for a file download (files.ts). */
  private readonly fileOrigins: ReadonlySet<string>;
  private socket?: SocketSession;
  private intake?: ConnectorLoop;
  private botUserId = '';
  private botName = '';
  /** The workspace (and organisation) of the bot token, from auth.test: a replayed letter must be of it. */
  private workspace: Workspace = {};
  private readonly whoAmI: Promise<void>;
  private resolveWhoAmI!: () => void;

  constructor(
    private readonly o: SlackOptions,
    private readonly ctx: ConnectorContext,
  ) {
    this.health_ = new HealthTracker(ctx);
    const clientOptions: WebClientOptions = {
      slackApiUrl: o.apiUrl,
      retryConfig: { retries: 0 },
      rejectRateLimitedCalls: true,
      timeout: o.apiTimeoutMs,
      logger: slackLibraryLogger(ctx.log),
    };
    this.client = new WebClient(o.botToken, clientOptions);
    this.users = new UserDirectory(this.client);
    this.pacer = new Pacer(o.perChannelIntervalMs, 0);
    this.channels = new Set(o.channels);
    this.fileOrigins = slackFileOrigins(o.apiUrl);
    this.whoAmI = new Promise((r) => (this.resolveWhoAmI = r));
    ctx.onReplay((payload) => this.replay(payload));
  }

  async start(): Promise<void> {
    if (this.o.mode === 'events') {
      this.ctx.http.route(
        'POST',
        `/connectors/slack/${this.ctx.account}/events`,
        eventsEndpoint({
          signingSecret: this.o.signingSecret!,
          log: this.ctx.log,
          onEvent: (body, retryNum) => this.dedup.run(eventIdOf(body), () => this.ingest(body, retryNum)),
          deadLetter: (reason, payload) => this.ctx.deadLetter(reason, payload),
          // Slack waits 3 s for an answer: a short wait for auth.test, else 503 and Slack retries.
          ready: async () => this.botUserId !== '' || (await Promise.race([this.whoAmI.then(() => true), sleep(2000).then(() => false)])),
        }),
      );
    }
    // Supervised: a connect loop that ends or throws is noticed and started again with backoff.
    this.intake = this.ctx.run('intake', ({ signal }) => this.connect(AbortSignal.any([signal, this.ctx.signal])));
  }

  /** auth.test until it answers (our user id drives the loop guard and mentions), then intake. */
  private async connect(signal: AbortSignal): Promise<void> {
    for (let attempt = 0; !signal.aborted && !this.botUserId; attempt++) {
      try {
        const auth = await this.client.auth.test();
        this.botName = String(auth.user ?? '');
        this.botUserId = String(auth.user_id ?? '');
        this.workspace = { teamId: auth.team_id || undefined, enterpriseId: auth.enterprise_id || undefined };
      } catch (err) {
        const code = slackErrorCode(err);
        const refused = code !== undefined && AUTH_ERRORS.has(code);
        this.health_.set(refused ? 'auth_failed' : 'disconnected', `auth.test: ${code ?? errorMessage(err)}`);
        await sleep(refused ? 300_000 : backoffMs(attempt, 1000, 60_000), signal);
      }
    }
    if (signal.aborted) return;
    this.resolveWhoAmI();
    if (this.o.mode === 'events') {
      this.health_.set('connected');
      return whenAborted(signal); // the Events API route does the rest until stop
    }
    // A session left by a run that threw is closed before a new one opens.
    await this.socket?.stop();
    this.socket = new SocketSession({
      appToken: this.o.appToken!,
      apiUrl: this.o.apiUrl,
      apiTimeoutMs: this.o.apiTimeoutMs,
      signal,
      log: this.ctx.log,
      health: this.health_,
      onEvent: (body, retryNum) => this.dedup.run(eventIdOf(body), () => this.ingest(body, retryNum)),
    });
    await this.socket.run();
  }

  async stop(): Promise<void> {
    await this.socket?.stop();
    await this.intake?.stop();
    this.health_.set('stopped');
  }

  health() {
    return this.health_.get();
  }

  /**
   * Resolves once the event is stored, parked, or deliberately skipped; rejects to be redelivered.
   * Only a failure a retry can heal rejects (NATS or Slack away): an event of the wrong shape is
   * parked at once and acknowledged, since Slack would deliver the same bytes again.
   */
  private async ingest(body: RawEnvelope, retryNum = 0): Promise<void> {
    const r = await this.take(body, retryNum >= SLACK_LAST_RETRY);
    if (r.kind === 'invalid') await this.ctx.deadLetter(`slack event ${eventIdOf(body) ?? '?'}: ${r.reason}`, body);
  }

  /**
   * `omnigate dlq --replay` of a parked envelope (Events API or Socket Mode alike): the same path
   * as intake, the outcome told rather than parked again. Not through the event-id dedup: it
   * remembers the event as done once it was parked; JetStream's Nats-Msg-Id tells a duplicate.
   * A failure a retry can heal (NATS away, Slack's file host failing) rejects: the replay answers
   * "replay failed" and publishes nothing, and the letter can be replayed again later.
   */
  private async replay(payload: Buffer): Promise<ReplayOutcome> {
    const letter = readLetter(payload);
    if (!letter.ok) return { outcome: 'refused', reason: letter.reason };
    if (!this.botUserId) await Promise.race([this.whoAmI, sleep(REPLAY_IDENTITY_WAIT_MS, this.ctx.signal)]);
    if (!this.botUserId) return { outcome: 'refused', reason: 'not connected to Slack yet (auth.test has not answered: the loop guard needs our user id); try again when the connector is connected' };
    const foreign = otherWorkspace(letter.body, this.workspace, this.ctx.account);
    if (foreign) return { outcome: 'refused', reason: foreign };
    // Files a retry cannot fetch are recorded as failed, as on any delivery; a transient failure
    // rejects (this is not Slack's last delivery: the operator replays again).
    const r = await this.take(letter.body, false);
    if (r.kind === 'published') return { outcome: 'published', duplicate: r.duplicate };
    if (r.kind === 'skipped') return { outcome: 'refused', reason: `skipped: ${r.reason}` };
    return { outcome: 'invalid', reason: r.reason };
  }

  /**
   * One envelope through shape check, normalisation, thread state, users.info, files and publish.
   * Rejects only on what a retry can heal; `lastDelivery`: record such a file failure instead.
   * Its place in its conversation's line is taken before the first await, so events of one
   * conversation are published in the order they arrived however long each took to prepare.
   */
  private async take(body: RawEnvelope, lastDelivery: boolean): Promise<TakeResult> {
    const parsed = parseEnvelope(body);
    if (parsed.kind === 'skip') return { kind: 'skipped', reason: parsed.reason };
    if (parsed.kind === 'invalid') return parsed;
    const conversation = conversationOf(parsed.event);
    const turn = this.order.enter(`${conversation.id}/${conversation.threadId ?? ''}`);
    try {
      return await this.prepareAndPublish(parsed.event, lastDelivery, turn.ready);
    } finally {
      turn.leave();
    }
  }

  private async prepareAndPublish(e: SlackMessageEvent, lastDelivery: boolean, ourTurn: Promise<void>): Promise<TakeResult> {
    const thread = threadOf(e);
    if (thread) await this.loadThread(e.channel, thread);
    const n = this.normalize(e);
    if (n.kind === 'skip') {
      if (n.loopGuard) this.ctx.dropped('loop_guard', n.reason);
      return { kind: 'skipped', reason: n.reason };
    }
    if (n.kind === 'invalid') return n;
    // Before users.info, downloads and the publish: a reply that arrives meanwhile must already
    // find its thread, or it would be skipped and acknowledged.
    if (n.thread) await this.rememberThread(e.channel, n.thread);
    const event = n.event;
    if (n.userId && 'sender' in event && event.sender) Object.assign(event.sender, await this.users.identity(n.userId));
    if (event.type === 'message.inbound') {
      event.attachments = await downloadFiles(n.files, {
        botToken: this.o.botToken,
        fileOrigins: this.fileOrigins,
        media: this.ctx.media,
        limit: this.o.maxFileBytes ?? this.ctx.media.maxBytes,
        lastDelivery,
      });
    }
    await ourTurn;
    try {
      const published = await this.ctx.publish(event);
      return { kind: 'published', duplicate: published.duplicate };
    } catch (err) {
      if (err instanceof InvalidEventError) return { kind: 'invalid', reason: err.message };
      throw err;
    }
  }

  /** Pure and given a checked event, so it should not throw; if it does, that is about this event: parked, not retried. */
  private normalize(e: SlackMessageEvent): Normalized {
    try {
      return normalizeMessage(e, {
        account: this.ctx.account,
        botUserId: this.botUserId,
        channels: this.channels,
        knownThread: (channel, ts) => this.threads.has(`${channel}:${ts}`),
        nameOf: (id) => (id === this.botUserId && this.botName) || this.users.knownName(id),
      });
    } catch (err) {
      return { kind: 'invalid', reason: `cannot read the event: ${errorMessage(err)}` };
    }
  }

  private async loadThread(channel: string, ts: string): Promise<void> {
    const key = `${channel}:${ts}`;
    if (!this.threads.has(key) && (await this.ctx.state.get(`thread:${key}`))) this.threads.add(key);
  }

  private async rememberThread(channel: string, ts: string): Promise<void> {
    const key = `${channel}:${ts}`;
    // ingest() loaded the thread from KV before normalizing: if it is here, KV has it too.
    if (this.threads.has(key)) return;
    // The in-memory set is only a cache of KV: drop it wholesale rather than grow without bound.
    if (this.threads.size > 50_000) this.threads.clear();
    this.threads.add(key);
    try {
      await this.ctx.state.put(`thread:${key}`, '1');
    } catch (err) {
      // The event is redelivered: let that attempt write it again.
      this.threads.delete(key);
      throw err;
    }
  }

  async send(msg: OutboundMessage, attempt?: SendAttempt): Promise<SendResult> {
    const channel = msg.conversation.id;
    const threadTs = msg.conversation.kind === 'private' ? undefined : msg.conversation.threadId;
    const done = this.progress.get(msg.id) ?? { filesDone: 0 };
    const wire = await WireMarks.begin(attempt, () => done.ts !== undefined || done.filesDone > 0);
    try {
      if (msg.text && !done.ts) {
        const text = escapeMrkdwn(msg.text);
        // Slack keeps the first 40,000 characters and drops the rest without an error: a reply
        // that long fails visibly instead (the ticket goes back to open with the reason).
        if (text.length > SLACK_TEXT_LIMIT) throw new PermanentDeliveryError(`text is ${text.length} characters; Slack truncates a message after ${SLACK_TEXT_LIMIT}: send it in parts`, 'text_too_long');
        await this.pacer.wait(channel, undefined, this.ctx.signal);
        await wire.calling();
        const res = await this.client.chat.postMessage({ channel, text, thread_ts: threadTs, unfurl_links: false });
        done.ts = res.ts;
        this.track(msg.id, done);
      }
      for (const a of msg.attachments.slice(done.filesDone)) {
        const bytes = await this.ctx.media.get(a.objectKey);
        if (!bytes) throw new PermanentDeliveryError(`attachment ${a.name} is not in the object store`, 'attachment_missing');
        await this.pacer.wait(channel, undefined, this.ctx.signal);
        // The upload itself shows nobody the file: only its completion posts it in the channel.
        await uploadFile(this.client, { channel, threadTs }, bytes, a.name, () => wire.calling(), Math.max(this.o.apiTimeoutMs, UPLOAD_TIMEOUT_MS));
        done.filesDone++;
        this.track(msg.id, done);
      }
      this.progress.delete(msg.id);
      if (this.health_.get().state === 'rate_limited') this.health_.set('connected');
      return { platformMessageId: platformId(channel, done.ts ?? threadTs ?? '0') };
    } catch (err) {
      // Slack answered (a 429, or ok:false): nothing of this call was posted.
      if (refusedBySlack(err)) await wire.refused();
      const classified = this.classify(err, channel);
      if (classified instanceof PermanentDeliveryError) this.progress.delete(msg.id);
      throw classified;
    }
  }

  private track(id: string, done: SendProgress): void {
    this.progress.set(id, done);
    if (this.progress.size > 1000) this.progress.delete(this.progress.keys().next().value!);
  }

  private classify(err: unknown, channel: string): Error {
    if (err instanceof PermanentDeliveryError || err instanceof TransientDeliveryError) return err;
    const e = err as { code?: string; retryAfter?: number };
    if (e.code === ErrorCode.RateLimitedError) {
      const ms = (e.retryAfter ?? 1) * 1000;
      this.pacer.defer(channel, ms);
      this.health_.set('rate_limited', `Slack asked to wait ${ms / 1000}s`);
      return new TransientDeliveryError('Slack rate limit (429)', ms);
    }
    const code = slackErrorCode(err);
    if (code && PERMANENT_SEND_ERRORS.has(code)) {
      if (AUTH_ERRORS.has(code)) this.health_.set('auth_failed', code);
      return new PermanentDeliveryError(`Slack refused: ${code}`, code);
    }
    return new TransientDeliveryError(`Slack send failed: ${code ?? (networkCause(err) ? describeFetchFailure(err, this.o.apiUrl) : errorMessage(err))}`);
  }
}

/**
 * Whether Slack answered the call with a refusal (rate limited, or `ok: false`), which posts
 * nothing; a timeout or a broken connection may have posted, and is not one.
 */
function refusedBySlack(err: unknown): boolean {
  return (err as { code?: string } | undefined)?.code === ErrorCode.RateLimitedError || slackErrorCode(err) !== undefined;
}
