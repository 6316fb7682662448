/**
 * Drives one connector's outbound queue (durable consumer on omni.out.<channel>.<account>):
 * per-conversation order, at most one send per idempotency key, retries with backoff or the
 * platform's retry-after, and a failed delivery plus a dead letter when a message cannot be sent.
 * Every outcome is published on omni.status.<channel>.<account> for the router to log.
 */
import type { JsMsg } from '@nats-io/jetstream';
import type { Bus } from '../core/bus.js';
import { LaneConsumer } from '../core/lane-consumer.js';
import { sleep, backoffMs } from '../core/sleep.js';
import type { Logger } from '../core/logger.js';
import { DeliveryStatus, OutboundMessage, describeZodError, type DeliveryStatus as Status } from '../core/schema.js';
import { Consumers, Streams, Subjects, kvSafe } from '../core/subjects.js';
import { PermanentDeliveryError, SendElsewhereError, TransientDeliveryError, errorMessage } from '../core/errors.js';
import { deadLetter } from '../core/dead-letter.js';
import type { Connector } from './contract.js';

export interface OutboundRunnerOptions {
  maxAttempts: number;
  backoffBaseMs: number;
  backoffMaxMs: number;
  ackWaitMs: number;
  concurrency: number;
}

/** How soon a message handed back by a replica that cannot send it is offered again. */
const SEND_ELSEWHERE_DELAY_MS = 500;

type Marker = { s: 'in-flight' | 'retry' | 'sent' | 'failed'; attempts: number; pid?: string };

export class OutboundRunner {
  private consumer?: LaneConsumer<OutboundMessage>;
  /** Aborted on stop: a backoff wait ends at once and its message is handed back (nak). */
  private readonly stopping = new AbortController();

  constructor(
    private readonly bus: Bus,
    private readonly channel: string,
    private readonly account: string,
    private readonly connector: Connector,
    private readonly log: Logger,
    private readonly o: OutboundRunnerOptions,
  ) {}

  async start(): Promise<void> {
    this.consumer = new LaneConsumer<OutboundMessage>(this.bus, {
      stream: Streams.outbound,
      config: {
        durable_name: Consumers.outbound(this.channel, this.account),
        filter_subject: Subjects.outbound(this.channel, this.account),
        ack_wait: this.o.ackWaitMs * 1_000_000,
        max_ack_pending: Math.max(64, this.o.concurrency * 2),
        max_deliver: -1,
      },
      concurrency: this.o.concurrency,
      decode: (m) => this.parse(m),
      laneOf: (msg) => `${msg.conversation.id}:${msg.conversation.threadId ?? ''}`,
      handle: (m, msg) => this.handle(m, msg),
      onError: (m, msg, err) => {
        this.log.error({ err: errorMessage(err), outboundId: msg.id }, 'outbound handling failed; will be redelivered');
        m.nak(this.o.backoffBaseMs);
      },
    });
    await this.consumer.start();
  }

  /** Stop taking new messages and let in-flight sends finish; waits are handed back (nak). */
  async stop(): Promise<void> {
    this.stopping.abort();
    await this.consumer?.stop();
  }

  private parse(m: JsMsg): OutboundMessage | null {
    let json: unknown;
    try {
      json = m.json();
    } catch {
      this.park(m, 'outbound payload is not valid JSON').catch((err: unknown) => this.log.error({ err: errorMessage(err), subject: m.subject }, 'parking failed; the message will be redelivered'));
      return null;
    }
    const result = OutboundMessage.safeParse(json);
    if (!result.success) {
      this.park(m, `outbound payload does not match schema v1: ${describeZodError(result.error)}`).catch((err: unknown) => this.log.error({ err: errorMessage(err), subject: m.subject }, 'parking failed; the message will be redelivered'));
      return null;
    }
    return result.data;
  }

  private async park(m: JsMsg, reason: string): Promise<void> {
    this.log.warn({ subject: m.subject, reason }, 'outbound message parked on dead-letter subject');
    await deadLetter(this.bus, `outbound.${this.channel}.${this.account}`, m.subject, reason, m.data);
    m.ack();
  }

  private async handle(m: JsMsg, msg: OutboundMessage): Promise<void> {
    // Not this replica's to send: hand it back before any marker says an attempt began.
    if (this.connector.canSend?.() === false) return void m.nak(SEND_ELSEWHERE_DELAY_MS);
    const kv = this.bus.kv.dedup;
    const markerKey = `out.${kvSafe(msg.id)}`;
    const entry = await kv.get(markerKey);
    const marker: Marker | null = entry && entry.operation === 'PUT' ? (entry.json() as Marker) : null;
    if (marker?.s === 'sent' || marker?.s === 'failed') {
      m.ack(); // already decided: a replay changes nothing
      return;
    }
    if (marker?.s === 'in-flight') {
      // A previous process stopped in the middle of the platform call: it may or may not have
      // been delivered. Sending again could duplicate a reply, so we report instead of guessing.
      await this.finish(m, msg, markerKey, { s: 'failed', attempts: marker.attempts }, 'failed', undefined,
        'outcome_unknown: the gateway stopped while this message was being sent; check the chat before resending');
      return;
    }
    let attempts = marker?.attempts ?? 0;
    // While we retry, the lane consumer tells the server we are still working on the message.
    for (;;) {
      attempts++;
      await kv.put(markerKey, JSON.stringify({ s: 'in-flight', attempts } satisfies Marker));
      try {
        const result = await this.connector.send(msg);
        await this.finish(m, msg, markerKey, { s: 'sent', attempts, pid: result.platformMessageId }, 'sent', result.platformMessageId);
        return;
      } catch (err) {
        if (err instanceof SendElsewhereError) {
          // Lost the session between canSend() and the call: undo the attempt, hand it back.
          await kv.put(markerKey, JSON.stringify({ s: 'retry', attempts: attempts - 1 } satisfies Marker));
          m.nak(SEND_ELSEWHERE_DELAY_MS);
          return;
        }
        if (err instanceof PermanentDeliveryError) {
          await this.finish(m, msg, markerKey, { s: 'failed', attempts }, 'failed', undefined, `${err.reason}: ${err.message}`);
          return;
        }
        await kv.put(markerKey, JSON.stringify({ s: 'retry', attempts } satisfies Marker));
        if (attempts >= this.o.maxAttempts) {
          await this.finish(m, msg, markerKey, { s: 'failed', attempts }, 'failed', undefined,
            `retries_exhausted after ${attempts} attempts: ${errorMessage(err)}`);
          return;
        }
        const delay = err instanceof TransientDeliveryError && err.retryAfterMs !== undefined
          ? err.retryAfterMs
          : backoffMs(attempts - 1, this.o.backoffBaseMs, this.o.backoffMaxMs);
        this.log.warn({ outboundId: msg.id, attempts, delayMs: delay, err: errorMessage(err) }, 'send failed; retrying');
        const waitUntil = Date.now() + delay;
        await sleep(delay, this.stopping.signal);
        if (this.stopping.signal.aborted) {
          // Another replica, or our restart, continues from the stored attempt count.
          m.nak(Math.max(0, waitUntil - Date.now()));
          return;
        }
      }
    }
  }

  private async finish(
    m: JsMsg,
    msg: OutboundMessage,
    markerKey: string,
    marker: Marker,
    status: Status['status'],
    platformMessageId?: string,
    reason?: string,
  ): Promise<void> {
    const event: Status = DeliveryStatus.parse({
      v: 1,
      type: 'delivery.status',
      outboundId: msg.id,
      ticketId: msg.ticketId,
      channel: msg.channel,
      account: msg.account,
      status,
      platformMessageId,
      reason,
      attempts: marker.attempts,
      at: new Date().toISOString(),
    });
    await this.bus.publishJson(Subjects.status(msg.channel, msg.account), event, `status:${msg.id}:${status}`);
    if (status === 'failed') {
      this.log.warn({ outboundId: msg.id, ticketId: msg.ticketId, reason }, 'delivery failed');
      await deadLetter(this.bus, `outbound.${msg.channel}.${msg.account}`, m.subject, reason ?? 'failed', m.data);
    }
    await this.bus.kv.dedup.put(markerKey, JSON.stringify(marker));
    m.ack();
  }
}
