/**
 * WhatsApp Cloud API connector. Intake: Meta's webhook (GET verification handshake; POST checked
 * with X-Hub-Signature-256 over the raw body), answered 200 only after every message in it is in
 * JetStream. Status webhooks become delivery reports through the wamid → outbound records we
 * keep when sending (sent-records.ts). Outbound: the 24-hour customer-service window is checked
 * before calling Graph. `omnigate dlq --replay` takes what intake parked (a message, a change, an
 * entry, a whole body) back through the same walk and message path, the outcome told rather than
 * parked again (replay.ts).
 */
import { splitTextAt } from '../../core/text-split.js';
import { createHmac, timingSafeEqual } from 'node:crypto';
import { z } from 'zod';
import type { RawRequest, RawResponse } from '../../core/http.js';
import { Pacer } from '../../core/pacer.js';
import { PermanentDeliveryError, errorMessage } from '../../core/errors.js';
import { describeZodError, type Attachment, type OutboundAttachment, type OutboundMessage } from '../../core/schema.js';
import { safeEqual } from '../../core/signature.js';
import { HealthTracker, InvalidEventError, type Connector, type ConnectorContext, type DeliveryReport, type ReplayOutcome, type SendResult } from '../contract.js';
import { metrics } from '../../core/metrics.js';
import { GraphCallError, GraphClient, classifyGraphError, metaReason } from './graph.js';
import { normalizeCloudMessage, type PendingCloudMedia } from './normalize.js';
import { CloudMessage, MediaInfo, describeAt, idOf, MAX_TIME_MS, type CloudContact, type CloudStatus } from './payload.js';
import { walkItem, walkWebhook, type LetterKind, type WebhookSink } from './webhook-body.js';
import { ReplayTally, readLetter, type TakeResult } from './replay.js';
import { SentRecords } from './sent-records.js';
import { templateBody } from './templates.js';
import type { WhatsAppCloudOptions } from './index.js';
import { sleep, backoffMs } from '../../core/sleep.js';

const TEXT_LIMIT = 4096;
const SWEEP_EVERY_MS = 24 * 3_600_000;
const lastInboundKey = (waId: string) => `wac-last-${waId}`;
/** Within one wamid, the order a status is meant to arrive in; Meta may list them otherwise. */
const STATUS_RANK: Record<string, number> = { sent: 0, delivered: 1, read: 2, failed: 2 };
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
  private readonly pacer: Pacer;
  private readonly stopping = new AbortController();
  private readonly progress = new Map<string, { sent: number; firstId?: string }>();
  private readonly records: SentRecords;
  private checking?: Promise<void>;
  private sweeping?: Promise<void>;
  /** Statuses whose send record is not there yet, waited for after Meta got its answer. */
  private readonly late = new Set<Promise<void>>();

  constructor(
    private readonly o: WhatsAppCloudOptions,
    private readonly ctx: ConnectorContext,
  ) {
    this.health_ = new HealthTracker(ctx);
    this.graph = new GraphClient(o);
    this.pacer = new Pacer(o.pacing.perChatIntervalMs, o.pacing.perSecond);
    this.records = new SentRecords(ctx.state, ctx.log);
    ctx.onReplay((payload, meta) => this.replay(payload, meta));
  }

  async start(): Promise<void> {
    const path = `/connectors/whatsapp-cloud/${this.ctx.account}/webhook`;
    this.ctx.http.route('GET', path, async (req) => this.verifyHandshake(req));
    this.ctx.http.route('POST', path, (req) => this.onWebhook(req));
    this.checking = this.checkToken();
    this.sweeping = this.sweepRecords();
  }

  async stop(): Promise<void> {
    this.stopping.abort();
    await Promise.all([this.checking, this.sweeping, ...this.late]);
    this.health_.set('stopped');
  }

  health() {
    return this.health_.get();
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

  /** Every replica sweeps; deleting twice is harmless, and a pass is one read per record. */
  private async sweepRecords(): Promise<void> {
    const signal = this.stopping.signal;
    while (!signal.aborted) {
      try {
        const removed = await this.records.sweep(this.o.statusRetentionDays * 86_400_000, signal);
        if (removed) this.ctx.log.info({ removed }, 'expired WhatsApp Cloud send records removed');
      } catch (err) {
        this.ctx.log.warn({ err: errorMessage(err) }, 'sweep of WhatsApp Cloud send records failed; next one in a day');
      }
      await sleep(SWEEP_EVERY_MS, signal);
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
    // A status whose send record is there is reported before Meta hears 200. One without (a
    // wamid we never sent, or a send whose record is still being written) must not hold Meta's
    // request: it is answered at once and the record waited for in the background.
    await Promise.all([...statuses.values()].map(async (list) => {
      const ordered = list.sort((a, b) => (STATUS_RANK[a.status] ?? 0) - (STATUS_RANK[b.status] ?? 0));
      const found = await this.records.find(ordered[0]!.id, 0, this.stopping.signal);
      if (found) for (const s of ordered) await this.onStatus(s, 0);
      else this.awaitRecord(ordered);
    }));
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
    if (sentAtMs !== undefined) await this.touchWindow(m.from, sentAtMs);
    return { kind: 'published', duplicate };
  }

  /** The customer-service window runs from the customer's latest message; keep the newest time. */
  private async touchWindow(waId: string, atMs: number): Promise<void> {
    const key = lastInboundKey(waId);
    for (let i = 0; i < 5; i++) {
      const cur = await this.ctx.state.get(key);
      if (cur && Number(cur.value) >= atMs) return;
      try {
        await this.ctx.state.update(key, String(atMs), cur?.revision ?? 0);
        return;
      } catch {
        /* another replica wrote first: read again */
      }
    }
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

  /** Statuses of one wamid, reported once its send record turns up (statusWaitMs at most). */
  private awaitRecord(ordered: CloudStatus[]): void {
    const task = (async () => {
      for (const s of ordered) await this.onStatus(s, this.o.statusWaitMs);
    })().catch((err) => {
      // Meta already has its 200: this status is lost, say so.
      this.ctx.log.warn({ wamid: ordered[0]!.id, err: errorMessage(err) }, 'WhatsApp Cloud status not reported: storing it failed after the webhook was answered');
    });
    this.late.add(task);
    void task.finally(() => this.late.delete(task)); // eslint-disable-line @typescript-eslint/no-floating-promises -- task ends in its own .catch
  }

  private async onStatus(s: CloudStatus, waitMs: number): Promise<void> {
    const found = await this.records.find(s.id, waitMs, this.stopping.signal);
    if (!found) {
      metrics.skippedUpdates.inc({ channel: this.ctx.channel, reason: 'unknown_message_status' });
      this.ctx.log.info({ wamid: s.id, status: s.status, recipient: s.recipient_id },
        'WhatsApp Cloud status dropped: no send record for this wamid (sent outside this gateway, already final, or expired)');
      return;
    }
    const { outboundId, ticketId } = found.ref;
    const err = s.errors?.[0];
    // The same documented reasons as a refused send (graph.ts metaReason), then Meta's own words.
    const code = typeof err?.code === 'number' ? err.code : Number(err?.code) || undefined;
    const words = err ? `${err.code ?? ''} ${err.title ?? err.message ?? ''}${err.error_data?.details ? `: ${err.error_data.details}` : ''}`.trim() : '';
    const report: DeliveryReport = {
      outboundId,
      ticketId,
      status: s.status as DeliveryReport['status'],
      platformMessageId: s.id,
      ...(s.status === 'failed' ? { reason: `${metaReason(code) ?? (code ? `graph_${code}` : 'failed')}${words ? `: ${words}` : ''}` } : {}),
    };
    try {
      await this.ctx.reportDelivery(report);
    } catch (err) {
      // A report the delivery schema refuses would be refused on every retry: park it instead.
      if (!(err instanceof z.ZodError)) throw err;
      await this.park(`whatsapp-cloud status ${s.id}: ${describeZodError(err, 'report')}`, s, 'status');
      return;
    }
    if (s.status === 'read' || s.status === 'failed') await this.records.forget(found.key);
  }

  // ---- outbound ----

  async send(msg: OutboundMessage): Promise<SendResult> {
    const to = msg.conversation.id.replace(/@s\.whatsapp\.net$/, '');
    if (!/^\d{6,20}$/.test(to)) throw new PermanentDeliveryError(`"${msg.conversation.id}" is not a WhatsApp number`, 'invalid_recipient');
    if (msg.template) return this.sendTemplate(to, msg);
    await this.assertInWindow(to);
    const chunks = splitText(msg.text);
    const steps = chunks.length + msg.attachments.length;
    const progress = this.progress.get(msg.id) ?? { sent: 0 };
    this.progress.set(msg.id, progress);
    try {
      for (let i = progress.sent; i < steps; i++) {
        const context = i === 0 && msg.replyTo ? { context: { message_id: msg.replyTo } } : {};
        const body = i < chunks.length
          ? { to, type: 'text', text: { body: chunks[i], preview_url: false }, ...context }
          : { to, ...(await this.mediaBody(msg.attachments[i - chunks.length]!)), ...context };
        await this.pacer.wait(to);
        const wamid = await this.graph.sendMessage(body);
        // A status webhook can still beat this write; onStatus waits a little for it. Failing
        // here must not fail the send: Meta has the message, and a retry would send it twice.
        await this.records.record(wamid, { outboundId: msg.id, ticketId: msg.ticketId }).catch((err) => {
          this.ctx.log.warn({ wamid, outboundId: msg.id, err: errorMessage(err) }, 'could not store the WhatsApp Cloud send record; its statuses will not be reported');
        });
        progress.sent = i + 1;
        progress.firstId ??= wamid;
      }
      this.progress.delete(msg.id);
      if (this.health_.get().state !== 'connected') this.health_.set('connected');
      return { platformMessageId: progress.firstId ?? msg.id };
    } catch (err) {
      const classified = classifyGraphError(err);
      if (err instanceof GraphCallError && (err.status === 401 || err.error?.code === 190)) this.health_.set('auth_failed', classified.message);
      if (err instanceof GraphCallError && err.status === 429) this.health_.set('rate_limited', classified.message);
      throw classified;
    }
  }

  /** A template goes in or out of the window; it is one message, text and attachments aside. */
  private async sendTemplate(to: string, msg: OutboundMessage): Promise<SendResult> {
    if (msg.attachments.length > 0) throw new PermanentDeliveryError('a template reply cannot carry attachments', 'bad_request');
    const body = { to, ...templateBody(msg.template!, this.o.templates) };
    await this.pacer.wait(to);
    let wamid: string;
    try {
      wamid = await this.graph.sendMessage(body);
    } catch (err) {
      throw classifyGraphError(err);
    }
    await this.records.record(wamid, { outboundId: msg.id, ticketId: msg.ticketId }).catch((err) => {
      this.ctx.log.warn({ wamid, outboundId: msg.id, err: errorMessage(err) }, 'could not store the WhatsApp Cloud send record; its statuses will not be reported');
    });
    return { platformMessageId: wamid };
  }

  private async assertInWindow(to: string): Promise<void> {
    const entry = await this.ctx.state.get(lastInboundKey(to));
    const last = entry ? Number(entry.value) : undefined;
    const windowMs = this.o.serviceWindowHours * 3_600_000;
    if (last === undefined || Date.now() - last > windowMs) {
      const since = last === undefined ? 'no message from this customer on record' : `the customer's last message was at ${new Date(last).toISOString()}`;
      throw new PermanentDeliveryError(
        `outside the ${this.o.serviceWindowHours}-hour customer-service window (${since}); WhatsApp only allows approved template messages now`,
        'outside_24h_window',
      );
    }
  }

  private async mediaBody(a: OutboundAttachment): Promise<Record<string, unknown>> {
    const bytes = await this.ctx.media.get(a.objectKey);
    if (!bytes) throw new PermanentDeliveryError(`attachment ${a.name} is not in the object store`, 'attachment_missing');
    const id = await this.graph.uploadMedia(bytes, a.mimeType, a.name);
    const type = /^image\/(jpeg|png)$/.test(a.mimeType) ? 'image' : a.mimeType.startsWith('video/') ? 'video' : a.mimeType.startsWith('audio/') ? 'audio' : 'document';
    return { type, [type]: type === 'document' ? { id, filename: a.name } : { id } };
  }
}

/** Cloud API text bodies are capped at 4096 characters: cut at paragraph, line or word boundaries. */
export function splitText(text: string): string[] {
  return text ? splitTextAt(text, TEXT_LIMIT) : [];
}
