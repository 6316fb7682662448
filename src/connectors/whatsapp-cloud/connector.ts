/**
 * WhatsApp Cloud API connector. Intake: Meta's webhook (GET verification handshake; POST checked
 * with X-Hub-Signature-256 over the raw body), answered 200 only after every message in it is in
 * JetStream. Status webhooks become delivery reports (status-reports.ts). Outbound: sender.ts,
 * free-form replies only inside the customer-service window (service-window.ts). `omnigate dlq
 * --replay` takes what intake parked (a message, a change, an entry, a whole body) back through
 * the same walk and message path, the outcome told rather than parked again (replay.ts).
 */
import { createHmac, timingSafeEqual } from 'node:crypto';
import type { RawRequest, RawResponse } from '../../core/http.js';
import { errorMessage } from '../../core/errors.js';
import { describeZodError, type Attachment, type OutboundMessage } from '../../core/schema.js';
import { safeEqual } from '../../core/signature.js';
import { HealthTracker, InvalidEventError, type Connector, type ConnectorContext, type ReplayOutcome, type SendAttempt, type SendResult } from '../contract.js';
import { metrics } from '../../core/metrics.js';
import { GraphCallError, GraphClient } from './graph.js';
import { normalizeCloudMessage, type PendingCloudMedia } from './normalize.js';
import { CloudMessage, MediaInfo, describeAt, idOf, MAX_TIME_MS, type CloudContact } from './payload.js';
import { walkItem, walkWebhook, type LetterKind, type WebhookSink } from './webhook-body.js';
import { ReplayTally, readLetter, type TakeResult } from './replay.js';
import { SentRecords } from './sent-records.js';
import { CloudSender } from './sender.js';
import { StatusReports } from './status-reports.js';
import { touchWindow } from './service-window.js';
import type { WhatsAppCloudOptions } from './index.js';
import { sleep, backoffMs } from '../../core/sleep.js';

/** Distinct things skipped on purpose that are warned about once each; past this, only counted. */
const WARN_ONCE_MAX = 100;
/** A replay waits this long for the token check (media are fetched from Graph) before it is refused. */
const REPLAY_GRAPH_WAIT_MS = 5_000;
/** The states in which Graph has not (or no longer) taken the token: a replay would record media as failed. */
const NOT_CONNECTED: ReadonlySet<string> = new Set(['starting', 'disconnected', 'auth_failed', 'stopped']);

/** How one message is taken: live (parked when invalid) or replayed (told), and the arrival time of a parked one. */
interface TakeOptions {
  replay: boolean;
  receivedAtMs?: number;
}

export class WhatsAppCloudConnector implements Connector {
  private readonly health_: HealthTracker;
  /** Other accounts' phone number ids seen in this account's webhooks, warned about once each (at most 100). */
  private readonly otherNumbersSeen = new Set<string>();
  /** Change fields and status values passed over, warned about once each (at most 100). */
  private readonly skipsSeen = new Set<string>();
  private readonly graph: GraphClient;
  private readonly stopping = new AbortController();
  private readonly sender: CloudSender;
  private readonly statuses: StatusReports;
  private checking?: Promise<void>;
  private sweeping?: Promise<void>;

  constructor(
    private readonly o: WhatsAppCloudOptions,
    private readonly ctx: ConnectorContext,
  ) {
    this.health_ = new HealthTracker(ctx);
    this.graph = new GraphClient(o);
    const records = new SentRecords(ctx.state, ctx.log);
    this.sender = new CloudSender(o, ctx, this.health_, this.graph, records);
    this.statuses = new StatusReports(ctx, records, {
      statusWaitMs: o.statusWaitMs,
      statusRetentionDays: o.statusRetentionDays,
      signal: this.stopping.signal,
      park: (reason, payload, kind) => this.park(reason, payload, kind),
    });
    ctx.onReplay((payload, meta) => this.replay(payload, meta));
  }

  async start(): Promise<void> {
    const path = `/connectors/whatsapp-cloud/${this.ctx.account}/webhook`;
    this.ctx.http.route('GET', path, async (req) => this.verifyHandshake(req));
    this.ctx.http.route('POST', path, (req) => this.onWebhook(req));
    this.checking = this.checkToken();
    this.sweeping = this.statuses.sweepRecords();
  }

  async stop(): Promise<void> {
    this.stopping.abort();
    await Promise.all([this.checking, this.sweeping, this.statuses.settled()]);
    this.sender.close();
    this.health_.set('stopped');
  }

  health() {
    return this.health_.get();
  }

  /** The sender calls onWire after its pacing and rate-limit waits (contract.ts). */
  readonly marksWire = true;

  send(msg: OutboundMessage, attempt?: SendAttempt): Promise<SendResult> {
    return this.sender.send(msg, attempt);
  }

  settled(outboundId: string): void {
    this.sender.settled(outboundId);
  }

  /** Confirms in the background that the token sees the number; webhooks are accepted meanwhile. */
  private async checkToken(): Promise<void> {
    for (let attempt = 1; !this.stopping.signal.aborted; attempt++) {
      try {
        const info = await this.graph.phoneNumber();
        this.health_.set('connected', info.display_phone_number ? `number ${info.display_phone_number}` : undefined);
        return;
      } catch (err) {
        const e = err as GraphCallError;
        if (e.status === 401 || e.error?.code === 190) this.health_.set('auth_failed', `Graph API rejected the access token: ${e.error?.message ?? ''}`);
        else this.health_.set('disconnected', `Graph API check failed: ${errorMessage(err)}`);
        await sleep(backoffMs(attempt, 1000, 60_000), this.stopping.signal);
      }
    }
  }

  private verifyHandshake(req: RawRequest): RawResponse {
    const q = req.query;
    if (q['hub.mode'] === 'subscribe' && q['hub.verify_token'] && safeEqual(q['hub.verify_token'], this.o.verifyToken)) {
      return { status: 200, headers: { 'content-type': 'text/plain' }, body: q['hub.challenge'] ?? '' };
    }
    return { status: 403, body: { error: 'forbidden', message: 'hub.mode must be subscribe and hub.verify_token must match' } };
  }

  private signatureOk(req: RawRequest): boolean {
    const header = req.headers['x-hub-signature-256'];
    // Exactly 64 hex digits: Buffer.from(…, 'hex') stops at the first non-hex one, so junk after a valid signature passed.
    if (!header || !/^sha256=[0-9a-f]{64}$/i.test(header)) return false;
    const given = Buffer.from(header.slice(7), 'hex');
    const expected = createHmac('sha256', this.o.appSecret).update(req.rawBody).digest();
    return given.length === expected.length && timingSafeEqual(given, expected);
  }

  private async onWebhook(req: RawRequest): Promise<RawResponse> {
    if (!this.signatureOk(req)) return { status: 401, body: { error: 'unauthorized', message: 'missing or wrong X-Hub-Signature-256' } };
    try {
      // Parked items are answered 200 like stored ones: Meta would retry a bad body for days.
      await this.take(req.rawBody);
      return { status: 200, body: '' };
    } catch (err) {
      // Not all of it is stored (NATS, the state store): Meta retries the whole delivery, and
      // dedup absorbs what we have. Nothing the body itself did wrong gets here: that is parked.
      this.ctx.log.warn({ err: errorMessage(err) }, 'whatsapp-cloud webhook not fully stored; asking Meta to retry');
      return { status: 500, body: { error: 'unavailable', message: 'not stored, retry later' } };
    }
  }

  /**
   * Stores (or parks) everything in one webhook body (webhook-body.ts walks it item by item).
   * Throws only when storing failed, which a retry can mend.
   */
  private async take(raw: Buffer): Promise<void> {
    const statuses = await walkWebhook(raw, {
      phoneNumberId: this.o.phoneNumberId,
      log: this.ctx.log,
      park: (reason, payload, kind) => this.park(reason, payload, kind),
      message: (m, at, contacts) => this.ingest(m, at, contacts),
      otherNumber: (id) => this.otherNumber(id),
      skipped: (reason, what, at) => this.passedOver(reason, what, at),
    });
    await this.statuses.report(statuses);
  }

  /**
   * A webhook change for a phone number id that is not this account's. Routine when one Meta app
   * serves several numbers configured as several accounts; when the number is configured nowhere
   * (a typo in `phoneNumberId`, a number added in Meta only), every message to it is dropped here,
   * so it is counted and said at warn once per number, not at debug only (outside trial).
   */
  private otherNumber(id: string): void {
    metrics.skippedUpdates.inc({ channel: this.ctx.channel, reason: 'other_phone_number' });
    if (this.otherNumbersSeen.has(id) || this.otherNumbersSeen.size >= WARN_ONCE_MAX) return;
    this.otherNumbersSeen.add(id);
    this.ctx.log.warn({ phoneNumberId: id, ours: this.o.phoneNumberId }, 'webhook for a phone number id that is not this account\'s: its messages are not taken here (configure an account with that phoneNumberId if they are for this gateway)');
  }

  /**
   * A change of another field, or a status no delivery report carries: readable, and not taken
   * on purpose. Counted, and said at warn once per field or value: at debug only, a status Meta
   * starts sending or a field subscribed by mistake went unseen.
   */
  private passedOver(reason: 'other_change_field' | 'unreported_status', what: string, at: string): void {
    metrics.skippedUpdates.inc({ channel: this.ctx.channel, reason });
    const key = `${reason}:${what}`;
    if (this.skipsSeen.has(key) || this.skipsSeen.size >= WARN_ONCE_MAX) {
      this.ctx.log.debug({ reason, what, at }, 'webhook part passed over');
      return;
    }
    this.skipsSeen.add(key);
    if (reason === 'other_change_field') this.ctx.log.warn({ field: what, at }, 'webhook change of another field than "messages" is not taken (unsubscribe the field in the Meta app if it is not meant for this gateway)');
    else this.ctx.log.warn({ status: what, at }, 'WhatsApp Cloud status passed over: a delivery report carries sent, delivered, read and failed only');
  }

  /**
   * Parks what could not be taken, with what a replay needs (replay.ts); rejects (and so fails
   * the POST, to be retried) only when parking it failed.
   */
  private park(reason: string, payload: unknown, kind: LetterKind, extra: Record<string, string> = {}): Promise<void> {
    return this.ctx.deadLetter(reason, payload ?? null, { meta: { kind, phoneNumberId: this.o.phoneNumberId, ...extra } });
  }

  /** One message, `at` its path in the body: stored, deliberately skipped, or parked with the reason. */
  private async ingest(raw: unknown, at: string, contacts: readonly CloudContact[]): Promise<void> {
    const r = await this.takeMessage(raw, at, contacts, { replay: false });
    if (r.kind === 'skipped') {
      metrics.skippedUpdates.inc({ channel: this.ctx.channel, reason: r.code });
      this.ctx.log.debug({ wamid: idOf(raw), at, reason: r.reason }, 'WhatsApp Cloud message skipped');
    }
    if (r.kind !== 'invalid') return;
    const from = (raw as { from?: unknown } | null)?.from;
    const profileName = typeof from === 'string' ? contacts.find((c) => c.wa_id === from)?.profile?.name : undefined;
    await this.park(r.reason, raw, 'message', { receivedAt: new Date().toISOString(), ...(profileName ? { profileName } : {}) });
  }

  /**
   * `omnigate dlq --replay` of a letter this connector parked: only what was parked (one message,
   * or the messages of the entry, change or body the letter holds) goes through intake's own
   * path, the outcome told rather than parked again. The signature is not checked again: there
   * is none on a part of a body, and the body was checked (X-Hub-Signature-256) before intake
   * walked it; the letter reaches the connector only over NATS from the dead-letter stream.
   * Statuses are not replayed. A failure a retry can heal (NATS away) rejects: the replay
   * answers "replay failed", and the letter can be replayed again.
   */
  private async replay(payload: Buffer, meta: Record<string, string>): Promise<ReplayOutcome> {
    const letter = readLetter(payload, meta, this.o.phoneNumberId, this.ctx.account);
    if (!letter.ok) return { outcome: 'refused', reason: letter.reason };
    if (NOT_CONNECTED.has(this.health_.get().state)) await Promise.race([this.checking, sleep(REPLAY_GRAPH_WAIT_MS, this.ctx.signal)]);
    const h = this.health_.get();
    if (NOT_CONNECTED.has(h.state)) {
      return { outcome: 'refused', reason: `not connected to the Graph API yet (${h.state}${h.detail ? `: ${h.detail}` : ''}): media would be recorded as failed; try again when the connector is connected` };
    }
    const tally = new ReplayTally();
    if (letter.kind === 'message') {
      tally.add(await this.takeMessage(letter.item, 'message', letter.contacts, { replay: true, receivedAtMs: letter.receivedAtMs }));
      return tally.outcome(this.o.phoneNumberId);
    }
    // A part of a body that fails its check is told, not parked again; statuses and contacts are passed over.
    const sink: WebhookSink = {
      phoneNumberId: this.o.phoneNumberId,
      log: this.ctx.log,
      park: async (reason, _payload, kind) => {
        if (kind === 'status' || kind === 'contact') tally.passedOver++;
        else tally.invalid.push(reason);
      },
      otherNumber: (id) => tally.otherNumbers.add(id),
      skipped: (reason) => {
        if (reason === 'unreported_status') tally.passedOver++;
      },
      message: async (m, at, contacts) => tally.add(await this.takeMessage(m, at, contacts, { replay: true })),
    };
    const statuses = letter.kind === 'body' ? await walkWebhook(letter.raw, sink) : await walkItem(letter.kind, letter.item, sink);
    tally.passedOver += statuses.size;
    return tally.outcome(this.o.phoneNumberId);
  }

  /**
   * One message through its check, normalisation, media and publish, then the service window.
   * Rejects only on what a retry can heal (NATS, the state store).
   */
  private async takeMessage(raw: unknown, at: string, contacts: readonly CloudContact[], o: TakeOptions): Promise<TakeResult> {
    const what = `whatsapp-cloud message${idOf(raw) ? ` ${idOf(raw)}` : ''}`;
    const parsed = CloudMessage.safeParse(raw);
    if (!parsed.success) return { kind: 'invalid', reason: `${what}: ${describeAt(parsed.error, at)}` };
    const m = parsed.data;
    let n: ReturnType<typeof normalizeCloudMessage>;
    try {
      n = normalizeCloudMessage(m, contacts, this.ctx.channel, this.ctx.account);
    } catch (err) {
      // A shape the schema let through and the normalizer cannot read: a bug, but this message's alone.
      return { kind: 'invalid', reason: `${what}: ${at}: cannot read the message: ${errorMessage(err)}` };
    }
    if (n.kind === 'skip') return { kind: 'skipped', code: n.code, reason: n.reason };
    if (n.kind === 'invalid') return { kind: 'invalid', reason: `${what}: ${at}: ${n.reason}` };
    const event = n.event;
    // Without Meta's timestamp: live, now; replayed, when the letter says it arrived (else no window is claimed).
    const sentAtMs = m.timestamp ? m.timestamp * 1000 : o.replay ? o.receivedAtMs : Date.now();
    if (event.type === 'message.inbound' && n.media) event.attachments = [await this.download(n.media)];
    // The ticket (and the API) know until when a free-form reply may go: the reply is refused at once after it.
    if (event.type === 'message.inbound' && sentAtMs !== undefined) event.replyWindowEndsAt = new Date(Math.min(sentAtMs + this.o.serviceWindowHours * 3_600_000, MAX_TIME_MS)).toISOString();
    let duplicate: boolean;
    try {
      duplicate = (await this.ctx.publish(event)).duplicate;
    } catch (err) {
      if (err instanceof InvalidEventError) return { kind: 'invalid', reason: `${what}: ${at}: ${err.message}` };
      throw err;
    }
    // Keeps the newest time only: an old message replayed does not reopen the window.
    if (sentAtMs !== undefined) await touchWindow(this.ctx.state, m.from, sentAtMs);
    return { kind: 'published', duplicate };
  }

  private async download(media: PendingCloudMedia): Promise<Attachment> {
    const limit = Math.min(this.o.maxFileBytes ?? Infinity, this.ctx.media.maxBytes);
    const meta = { name: media.name, mimeType: media.mimeType, kind: media.kind };
    try {
      const answer = MediaInfo.safeParse(await this.graph.mediaInfo(media.mediaId));
      if (!answer.success) return this.ctx.media.failed(meta, `Graph's media info is unusable: ${describeZodError(answer.error)}`);
      const info = answer.data;
      if (typeof info.file_size === 'number' && info.file_size > limit) {
        return this.ctx.media.failed({ ...meta, size: info.file_size }, `file is ${info.file_size} bytes; the limit is ${limit} bytes`);
      }
      const bytes = await this.graph.download(info.url, limit);
      return await this.ctx.media.put(bytes, { ...meta, mimeType: info.mime_type ?? media.mimeType });
    } catch (err) {
      return this.ctx.media.failed(meta, `could not fetch the media: ${errorMessage(err)}`);
    }
  }
}
