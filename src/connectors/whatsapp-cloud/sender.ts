/**
 * Outbound to the Cloud API: paced per chat and per number, free-form replies only inside the
 * customer-service window (service-window.ts), text split past 4096 characters, attachments
 * uploaded to Graph from the object store. Each wamid Graph returns is recorded (sent-records.ts)
 * so its status webhooks become delivery reports.
 */
import { splitTextAt } from '../../core/text-split.js';
import { Pacer } from '../../core/pacer.js';
import { PermanentDeliveryError, errorMessage } from '../../core/errors.js';
import type { OutboundAttachment, OutboundMessage } from '../../core/schema.js';
import type { ConnectorContext, HealthTracker, SendResult } from '../contract.js';
import { GraphCallError, classifyGraphError, type GraphClient } from './graph.js';
import type { SentRecords } from './sent-records.js';
import { assertInWindow } from './service-window.js';
import { templateBody } from './templates.js';
import type { WhatsAppCloudOptions } from './index.js';

const TEXT_LIMIT = 4096;

export class CloudSender {
  private readonly pacer: Pacer;
  private readonly progress = new Map<string, { sent: number; firstId?: string }>();

  constructor(
    private readonly o: WhatsAppCloudOptions,
    private readonly ctx: ConnectorContext,
    private readonly health: HealthTracker,
    private readonly graph: GraphClient,
    private readonly records: SentRecords,
  ) {
    this.pacer = new Pacer(o.pacing.perChatIntervalMs, o.pacing.perSecond);
  }

  async send(msg: OutboundMessage): Promise<SendResult> {
    const to = msg.conversation.id.replace(/@s\.whatsapp\.net$/, '');
    if (!/^\d{6,20}$/.test(to)) throw new PermanentDeliveryError(`"${msg.conversation.id}" is not a WhatsApp number`, 'invalid_recipient');
    if (msg.template) return this.sendTemplate(to, msg);
    await assertInWindow(this.ctx.state, to, this.o.serviceWindowHours);
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
        await this.pacer.wait(to, undefined, this.ctx.signal);
        const wamid = await this.graph.sendMessage(body);
        // A status webhook can still beat this write; status-reports.ts waits a little for it. Failing
        // here must not fail the send: Meta has the message, and a retry would send it twice.
        await this.records.record(wamid, { outboundId: msg.id, ticketId: msg.ticketId }).catch((err) => {
          this.ctx.log.warn({ wamid, outboundId: msg.id, err: errorMessage(err) }, 'could not store the WhatsApp Cloud send record; its statuses will not be reported');
        });
        progress.sent = i + 1;
        progress.firstId ??= wamid;
      }
      this.progress.delete(msg.id);
      if (this.health.get().state !== 'connected') this.health.set('connected');
      return { platformMessageId: progress.firstId ?? msg.id };
    } catch (err) {
      const classified = classifyGraphError(err);
      if (err instanceof GraphCallError && (err.status === 401 || err.error?.code === 190)) this.health.set('auth_failed', classified.message);
      if (err instanceof GraphCallError && err.status === 429) this.health.set('rate_limited', classified.message);
      throw classified;
    }
  }

  /** A template goes in or out of the window; it is one message, text and attachments aside. */
  private async sendTemplate(to: string, msg: OutboundMessage): Promise<SendResult> {
    if (msg.attachments.length > 0) throw new PermanentDeliveryError('a template reply cannot carry attachments', 'bad_request');
    const body = { to, ...templateBody(msg.template!, this.o.templates) };
    await this.pacer.wait(to, undefined, this.ctx.signal);
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
