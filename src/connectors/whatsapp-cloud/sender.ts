/**
 * Outbound to the Cloud API: paced per chat and per number, free-form replies only inside the
 * customer-service window (service-window.ts), text split past 4096 characters, attachments
 * uploaded to Graph from the object store. Each wamid Graph returns is recorded (sent-records.ts)
 * so its status webhooks become delivery reports. Meta's throughput limits are waited out inside
 * the send (throttle.ts), so they cost time, not the runner's attempts.
 */
import { splitTextAt } from '../../core/text-split.js';
import { Pacer } from '../../core/pacer.js';
import { PermanentDeliveryError, TransientDeliveryError, errorMessage } from '../../core/errors.js';
import { partlyDelivered, partNames } from '../partial-delivery.js';
import type { OutboundAttachment, OutboundMessage } from '../../core/schema.js';
import type { ConnectorContext, HealthTracker, SendAttempt, SendResult } from '../contract.js';
import { RateLimitState } from '../rate-limit-state.js';
import { WireMarks } from '../wire-marks.js';
import { GraphCallError, classifyGraphError, type GraphClient } from './graph.js';
import type { SentRecords } from './sent-records.js';
import { assertInWindow } from './service-window.js';
import { templateBody } from './templates.js';
import { throttleOf, type Throttle } from './throttle.js';
import type { WhatsAppCloudOptions } from './index.js';

const TEXT_LIMIT = 4096;

/**
 * One reply's progress across the runner's attempts: parts already delivered (a retry continues,
 * not repeats), and `waitedMs`, the time spent waiting out rate limits, bounded by rateLimitBudgetMs.
 */
interface Progress {
  sent: number;
  firstId?: string;
  waitedMs: number;
  /** The runtime's wire marks of the current attempt (contract.ts marksWire). */
  wire?: WireMarks;
}

export class CloudSender {
  private readonly pacer: Pacer;
  private readonly rateLimit: RateLimitState;
  /** Dropped when the reply is sent or refused here, else when the runtime settles it (`settled`). */
  private readonly progress = new Map<string, Progress>();

  constructor(
    private readonly o: WhatsAppCloudOptions,
    private readonly ctx: ConnectorContext,
    private readonly health: HealthTracker,
    private readonly graph: GraphClient,
    private readonly records: SentRecords,
  ) {
    this.pacer = new Pacer(o.pacing.perChatIntervalMs, o.pacing.perSecond);
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
    const to = msg.conversation.id.replace(/@s\.whatsapp\.net$/, '');
    if (!/^\d{6,20}$/.test(to)) throw new PermanentDeliveryError(`"${msg.conversation.id}" is not a WhatsApp number`, 'invalid_recipient');
    const progress = this.progress.get(msg.id) ?? { sent: 0, waitedMs: 0 };
    this.progress.set(msg.id, progress);
    progress.wire = await WireMarks.begin(attempt, () => progress.sent > 0);
    try {
      const result = msg.template ? await this.sendTemplate(to, msg, progress) : await this.sendParts(to, msg, progress);
      this.progress.delete(msg.id);
      // `rate_limited` is left by its own clock (rate-limit-state.ts): a send between two limits must not flap it.
      const state = this.health.get().state;
      if (state !== 'connected' && state !== 'rate_limited') this.health.set('connected');
      return result;
    } catch (err) {
      const outcome = this.classify(err);
      if (!(outcome instanceof PermanentDeliveryError)) throw outcome;
      this.progress.delete(msg.id);
      // Part of the reply may have reached the customer: say which (a template is one message).
      if (msg.template) throw outcome;
      throw partlyDelivered(outcome, partNames(splitText(msg.text).length, msg.attachments.map((a) => a.name)), progress.sent);
    }
  }

  private async sendParts(to: string, msg: OutboundMessage, progress: Progress): Promise<SendResult> {
    await assertInWindow(this.ctx.state, to, this.o.serviceWindowHours);
    const chunks = splitText(msg.text);
    const steps = chunks.length + msg.attachments.length;
    for (let i = progress.sent; i < steps; i++) {
      const context = i === 0 && msg.replyTo ? { context: { message_id: msg.replyTo } } : {};
      const body = i < chunks.length
        ? { to, type: 'text', text: { body: chunks[i], preview_url: false }, ...context }
        : { to, ...(await this.mediaBody(to, msg.attachments[i - chunks.length]!, progress)), ...context };
      await this.pacer.wait(to, undefined, this.ctx.signal);
      const wamid = await this.waitingOutRateLimits(to, progress, () => this.graph.sendMessage(body));
      await this.record(wamid, msg);
      progress.sent = i + 1;
      progress.firstId ??= wamid;
    }
    return { platformMessageId: progress.firstId ?? msg.id };
  }

  /** A template goes in or out of the window; it is one message, text and attachments aside. */
  private async sendTemplate(to: string, msg: OutboundMessage, progress: Progress): Promise<SendResult> {
    if (msg.attachments.length > 0) throw new PermanentDeliveryError('a template reply cannot carry attachments', 'bad_request');
    const body = { to, ...templateBody(msg.template!, this.o.templates) };
    await this.pacer.wait(to, undefined, this.ctx.signal);
    const wamid = await this.waitingOutRateLimits(to, progress, () => this.graph.sendMessage(body));
    await this.record(wamid, msg);
    return { platformMessageId: wamid };
  }

  /** A status webhook can still beat this write; status-reports.ts waits a little for it. */
  private async record(wamid: string, msg: OutboundMessage): Promise<void> {
    // Failing here must not fail the send: Meta has the message, and a retry would send it twice.
    await this.records.record(wamid, { outboundId: msg.id, ticketId: msg.ticketId }).catch((err) => {
      this.ctx.log.warn({ wamid, outboundId: msg.id, err: errorMessage(err) }, 'could not store the WhatsApp Cloud send record; its statuses will not be reported');
    });
  }

  /**
   * Runs one Graph call, waiting out each throughput limit Meta answers (throttle.ts) and calling
   * again, so a rate limit costs time, not one of the runner's attempts: nine 130429s in a row
   * used to end a reply as retries_exhausted. A limit on the number holds every send of the
   * account; the pair limit (131056) only this customer's. The waits of one reply add up to at
   * most rateLimitBudgetMs; past that the limit goes to the runner as a transient failure (one
   * attempt, with the wait asked for).
   */
  private async waitingOutRateLimits<T>(to: string, progress: Progress, call: () => Promise<T>, delivers = true): Promise<T> {
    for (;;) {
      try {
        if (delivers) await progress.wire?.calling();
        return await call();
      } catch (err) {
        const throttle = throttleOf(err, this.o.pacing);
        if (!throttle) throw err;
        if (delivers) await progress.wire?.refused();
        this.hold(to, throttle, err);
        if (progress.waitedMs + throttle.waitMs > this.o.pacing.rateLimitBudgetMs || this.ctx.signal.aborted) throw err;
        this.ctx.log.debug({ to, code: throttle.code, scope: throttle.scope, waitMs: throttle.waitMs, waitedMs: progress.waitedMs }, 'WhatsApp Cloud rate limit: waiting it out');
        const started = performance.now();
        await this.pacer.wait(to, undefined, this.ctx.signal);
        progress.waitedMs += performance.now() - started;
      }
    }
  }

  /** Holds the sends the limit is about, and says so in the state when the whole number is limited. */
  private hold(to: string, throttle: Throttle, err: unknown): void {
    if (throttle.scope === 'recipient') {
      this.pacer.defer(to, throttle.waitMs);
      return;
    }
    this.pacer.deferAll(throttle.waitMs);
    const code = throttle.code !== undefined ? `code ${throttle.code}` : (err as GraphCallError).status;
    this.rateLimit.hit(throttle.waitMs, `Graph API rate limit (${code}): sends wait ${Math.ceil(throttle.waitMs / 1000)}s`);
  }

  private classify(err: unknown): Error {
    if (err instanceof GraphCallError && (err.status === 401 || err.error?.code === 190)) this.health.set('auth_failed', classifyGraphError(err).message);
    // Only past the reply's wait budget, or when stopping: the runner retries after the same wait.
    const throttle = throttleOf(err, this.o.pacing);
    if (throttle) return new TransientDeliveryError(`rate limited beyond the reply's wait budget (pacing.rateLimitBudgetMs): ${errorMessage(err)}`, throttle.waitMs);
    return classifyGraphError(err);
  }

  private async mediaBody(to: string, a: OutboundAttachment, progress: Progress): Promise<Record<string, unknown>> {
    const bytes = await this.ctx.media.get(a.objectKey);
    if (!bytes) throw new PermanentDeliveryError(`attachment ${a.name} is not in the object store`, 'attachment_missing');
    // An upload reaches no customer: it is not the wire (a stop after it has sent nothing).
    const id = await this.waitingOutRateLimits(to, progress, () => this.graph.uploadMedia(bytes, a.mimeType, a.name), false);
    const type = /^image\/(jpeg|png)$/.test(a.mimeType) ? 'image' : a.mimeType.startsWith('video/') ? 'video' : a.mimeType.startsWith('audio/') ? 'audio' : 'document';
    return { type, [type]: type === 'document' ? { id, filename: a.name } : { id } };
  }
}

/** Cloud API text bodies are capped at 4096 characters: cut at paragraph, line or word boundaries. */
export function splitText(text: string): string[] {
  return text ? splitTextAt(text, TEXT_LIMIT) : [];
}
