/**
 * Webhooks out: every ticket event (stream OMNI_EVENTS) POSTed to each configured URL, signed
 * (src/core/signature.ts), in order per ticket, retried with capped exponential backoff for as long
 * as `retryFor` allows, then parked on omni.dlq.webhook.<name> with the reason. Each webhook has
 * its own durable consumer, so a receiver that is down for an hour gets everything when it is
 * back, and one slow receiver never holds up another.
 */
import type { JsMsg } from '@nats-io/jetstream';
import type { Bus } from '../core/bus.js';
import { deadLetter } from '../core/dead-letter.js';
import { errorMessage } from '../core/errors.js';
import { LaneConsumer } from '../core/lane-consumer.js';
import type { Logger } from '../core/logger.js';
import { metrics } from '../core/metrics.js';
import { SIGNATURE_HEADER, sign } from '../core/signature.js';
import { Consumers, Streams } from '../core/subjects.js';

export interface WebhookTarget {
  name: string;
  url: string;
  secret: string;
  events: string[];
  timeout: number;
  retryFor: number;
  backoffBase: number;
  backoffMax: number;
}

export class WebhookDispatcher {
  private consumer?: LaneConsumer<{ type: string; ticketId: string }>;
  private stopping = false;

  constructor(
    private readonly bus: Bus,
    private readonly target: WebhookTarget,
    private readonly log: Logger,
  ) {}

  async start(): Promise<void> {
    this.consumer = new LaneConsumer<{ type: string; ticketId: string }>(this.bus, {
      stream: Streams.events,
      config: {
        durable_name: Consumers.webhooks(this.target.name),
        filter_subject: 'omni.events.ticket.>',
        ack_wait: 60_000_000_000,
        max_ack_pending: 1000,
        max_deliver: -1,
      },
      concurrency: 128,
      decode: (m) => {
        let event: { type?: string; ticketId?: string };
        try {
          event = m.json();
        } catch {
          m.term();
          return null;
        }
        if (!this.wanted(event.type)) {
          m.ack();
          return null;
        }
        return { type: event.type ?? 'unknown', ticketId: event.ticketId ?? '' };
      },
      laneOf: (e) => e.ticketId,
      handle: (m, e) => this.deliver(m, e.type),
      onError: (m, _e, err) => {
        this.log.warn({ webhook: this.target.name, err: errorMessage(err) }, 'webhook delivery interrupted; will be redelivered');
        m.nak(1000);
      },
    });
    await this.consumer.start();
  }

  async stop(): Promise<void> {
    this.stopping = true;
    await this.consumer?.stop();
  }

  private wanted(type: string | undefined): boolean {
    return this.target.events.includes('*') || (!!type && this.target.events.includes(type));
  }

  /** Holds this ticket's lane until the receiver took the event (or it is parked): order per ticket. */
  private async deliver(m: JsMsg, type: string): Promise<void> {
    // The budget counts from when the event happened, so a gateway restart does not reset it.
    const firstSeen = m.info.timestampNanos / 1_000_000 || Date.now();
    const keepAlive = setInterval(() => m.working(), 20_000);
    try {
      for (let attempt = 1; ; attempt++) {
        const problem = await this.post(m.data, type, m.info.streamSequence);
        if (!problem) {
          m.ack();
          return;
        }
        if (Date.now() - firstSeen > this.target.retryFor) {
          metrics.webhookParked.inc({ webhook: this.target.name });
          this.log.error({ webhook: this.target.name, problem }, 'webhook delivery parked after the retry budget');
          await deadLetter(this.bus, `webhook.${this.target.name}`, m.subject, `retry budget exhausted after ${attempt} attempts: ${problem}`, m.data);
          m.ack();
          return;
        }
        metrics.webhookRetries.inc({ webhook: this.target.name });
        const delay = Math.min(this.target.backoffMax, this.target.backoffBase * 2 ** Math.min(attempt - 1, 20));
        if (this.stopping) {
          m.nak(delay);
          return;
        }
        if (attempt === 1 || attempt % 10 === 0) this.log.warn({ webhook: this.target.name, attempt, problem }, 'webhook delivery failed; retrying');
        await new Promise((r) => setTimeout(r, delay));
      }
    } finally {
      clearInterval(keepAlive);
    }
  }

  /** One POST; returns what went wrong, or undefined when the receiver answered 2xx. */
  private async post(body: Uint8Array, type: string, seq: number): Promise<string | undefined> {
    const raw = Buffer.from(body);
    try {
      const res = await fetch(this.target.url, {
        method: 'POST',
        headers: {
          'content-type': 'application/json',
          [SIGNATURE_HEADER]: sign(this.target.secret, raw),
          'x-omnigate-event': type,
          'x-omnigate-delivery': `${this.target.name}-${seq}`,
          'user-agent': 'omnigate-webhooks/1',
        },
        body: raw,
        signal: AbortSignal.timeout(this.target.timeout),
      });
      await res.arrayBuffer().catch(() => undefined);
      return res.ok ? undefined : `receiver answered ${res.status}`;
    } catch (err) {
      return `receiver unreachable: ${errorMessage(err)}`;
    }
  }
}
