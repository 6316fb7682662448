/**
 * Drives one connector's outbound queue (durable consumer on omni.out.<channel>.<account>):
 * per-conversation order, at most one send per idempotency key, retries with backoff or the
 * platform's retry-after, and a failed delivery plus a dead letter when a message cannot be sent.
 * Every outcome is published on omni.status.<channel>.<account> for the router to log.
 */
import type { JsMsg } from '@nats-io/jetstream';
import type { Bus } from '../core/bus.js';
import { LaneConsumer } from '../core/lane-consumer.js';
import type { Supervisor } from '../core/supervisor.js';
import { sleep, backoffMs } from '../core/sleep.js';
import type { Logger } from '../core/logger.js';
import { DeliveryStatus, OutboundMessage, describeZodError, type DeliveryStatus as Status, type RefusedCopy } from '../core/schema.js';
import { Consumers, Streams, Subjects } from '../core/subjects.js';
import { holdsReply, previousReplyOf } from '../core/reply-order.js';
import { PermanentDeliveryError, SendElsewhereError, TransientDeliveryError, errorMessage, reasonCode } from '../core/errors.js';
import type { Connector } from './contract.js';
import { ERASED_REASON, erasureOf } from './outbound-erasure.js';
import { TakenOverError, wireMarks } from './outbound-wire.js';
import type { HolderWatch } from '../core/holder-watch.js';
import { DEFAULT_MAX_TAKEOVERS, diedHoldingReason, markerKey as markerKeyOf, markerOf, markerWatch, othersMayStillSend, settled, takenOverFromDead, writeMarker, type Marker } from './outbound-marker.js';

export interface OutboundRunnerOptions {
  maxAttempts: number;
  backoffBaseMs: number;
  backoffMaxMs: number;
  ackWaitMs: number;
  concurrency: number;
  /** This gateway's connectors holder id (core/holder.ts, `<pid>-<host>-<random>-connectors`): named in in-flight markers and passed to the connector. */
  replica?: string;
  /**
   * Holder ids of gateways known dead (the previous gateway on the embedded data directory, whose
   * lock we hold): a message one of them had in flight is decided at once, not waited on.
   */
  deadReplicas?: readonly string[];
  /** How many gateways may die holding one reply before it fails for good (`outbound.maxTakeovers`; default DEFAULT_MAX_TAKEOVERS). */
  maxTakeovers?: number;
}

/** How soon a message handed back by a replica that cannot send it is offered again. */
const SEND_ELSEWHERE_DELAY_MS = 500;

/** How often a message another replica has in flight looks for that replica's outcome. */
const MARKER_POLL_MS = 1_000;

/** How soon a reply held back for its conversation's previous one is offered again, growing with each offer up to the max. */
const PREVIOUS_REPLY_POLL_MS = 250;
const PREVIOUS_REPLY_POLL_MAX_MS = 5_000;

/** Tries to store an outcome before handing the message back: ~30 s of backoff plus each call's own timeout. */
const RECORD_ATTEMPTS = 20;

export class OutboundRunner {
  private consumer?: LaneConsumer<OutboundMessage>;
  /** Aborted on stop: a backoff wait ends at once and its message is handed back (nak). */
  private readonly stopping = new AbortController();
  /** Outbound id → the outcome of a send this process made and has not stored yet (see finish). */
  private readonly unrecorded = new Map<string, Marker>();
  /** Other replicas' markers, since when this process sees them unchanged (othersMayStillSend). */
  private readonly markers: HolderWatch;

  constructor(
    private readonly bus: Bus,
    private readonly channel: string,
    private readonly account: string,
    private readonly connector: Connector,
    private readonly log: Logger,
    private readonly o: OutboundRunnerOptions,
    private readonly supervisor?: Supervisor,
  ) {
    this.markers = markerWatch(o.ackWaitMs);
  }

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
      supervisor: this.supervisor,
      loopName: `outbound.${this.channel}.${this.account}`,
      decode: (m) => this.parse(m),
      laneOf: (msg) => `${msg.conversation.id}:${msg.conversation.threadId ?? ''}`,
      handle: (m, msg) => this.handleInPlace(m, msg),
      onError: (m, msg, err) => {
        this.log.error({ err: errorMessage(err), outboundId: msg.id }, 'outbound handling failed; will be redelivered');
        m.nak(this.o.backoffBaseMs);
      },
    });
    await this.consumer.start();
  }

  /** Stop taking new messages and let in-flight sends finish; waits are handed back (nak). */
  async stop(): Promise<void> {
    // Pulling ends before waits end (and nak): see LaneConsumer.stopPulling.
    await this.consumer?.stopPulling();
    this.stopping.abort();
    const confirmed = await this.consumer?.stop();
    if (confirmed === false) this.log.warn('NATS did not confirm the hand-back of outbound messages: some may come back only after ack_wait');
  }

  private parse(m: JsMsg): OutboundMessage | null {
    let json: unknown;
    try {
      json = m.json();
    } catch {
      this.parkOrRetry(m, 'invalid_json', 'outbound payload is not valid JSON');
      return null;
    }
    const result = OutboundMessage.safeParse(json);
    if (!result.success) {
      this.parkOrRetry(m, 'invalid_message', `outbound payload does not match schema v1: ${describeZodError(result.error)}`);
      return null;
    }
    return result.data;
  }

  /** Parking runs beside the consumer loop; if it fails the message comes back and is parked again. */
  private parkOrRetry(m: JsMsg, code: string, reason: string): void {
    this.park(m, code, reason).catch((err) => {
      this.log.error({ err: errorMessage(err), subject: m.subject }, 'could not park an outbound message; will be redelivered');
      m.nak(this.o.backoffBaseMs);
    });
  }

  private async park(m: JsMsg, code: string, reason: string): Promise<void> {
    this.log.warn({ subject: m.subject, reason }, 'outbound message parked on dead-letter subject');
    await this.bus.deadLetters.park({ source: 'outbound', scope: `${this.channel}.${this.account}`, subject: m.subject, code, reason, payload: m.data });
    m.ack();
  }

  /**
   * Handles a message until it is settled, retrying in place when NATS fails under it (a marker
   * read or write timing out in a leader election): a nak would let the conversation's next
   * message be sent before this one. A stop ends the retries (the message goes back, nak).
   */
  private async handleInPlace(m: JsMsg, msg: OutboundMessage): Promise<void> {
    for (let attempt = 0; ; attempt++) {
      try {
        return await this.handle(m, msg);
      } catch (err) {
        if (this.stopping.signal.aborted || this.bus.nc.isClosed()) throw err;
        this.log.warn({ outboundId: msg.id, attempt: attempt + 1, err: errorMessage(err) }, 'outbound handling failed; retrying in place, later messages of the conversation wait');
        m.working();
        await sleep(backoffMs(attempt, this.o.backoffBaseMs, this.o.backoffMaxMs), this.stopping.signal);
        if (this.stopping.signal.aborted) throw err;
      }
    }
  }

  private async handle(m: JsMsg, msg: OutboundMessage): Promise<void> {
    // Not this replica's to send: hand it back before any marker says an attempt began.
    if (this.connector.canSend?.() === false) return void m.nak(SEND_ELSEWHERE_DELAY_MS);
    const kv = this.bus.kv.dedup;
    const markerKey = markerKeyOf(msg.id);
    // Sent by this process, but the outcome could not be stored before the message went back.
    const unrecorded = this.unrecorded.get(msg.id);
    if (unrecorded) return this.finish(m, msg, markerKey, unrecorded, 'sent', unrecorded.pid);
    let entry = await kv.get(markerKey);
    let marker = markerOf(entry);
    // Offered here while another live replica may still be sending it or storing the outcome
    // (its keep-alives lost in a NATS election, ack_wait passed; or it was killed): wait for its
    // word in place, so later messages of the conversation stay behind this one, re-reading.
    for (let waitMs = othersMayStillSend(entry, this.markers, this.o), first = true; waitMs > 0; waitMs = othersMayStillSend(entry, this.markers, this.o), first = false) {
      if (first) this.log.info({ outboundId: msg.id, holder: marker?.by, waitMs }, 'another replica has this message in flight; waiting for its outcome before sending again');
      await sleep(Math.min(waitMs, MARKER_POLL_MS), this.stopping.signal);
      if (this.stopping.signal.aborted) return void m.nak();
      entry = await kv.get(markerKey);
      marker = markerOf(entry);
    }
    if (settled(marker)) {
      m.ack(); // already decided: a replay changes nothing
      return;
    }
    const round = marker?.round;
    // Gateways that died holding this reply, counting this takeover: carried in every marker
    // written from here, so a reply that kills each gateway taking it ends failed (maxTakeovers).
    const takenOver = takenOverFromDead(marker, this.o.replica);
    const takeovers = (marker?.takeovers ?? 0) + (takenOver ? 1 : 0);
    const carry = (next: Marker): Marker => ({ ...next, ...(round ? { round } : {}), ...(takeovers ? { takeovers } : {}) });
    // Not attempted yet: the conversation's previous reply goes first (core/reply-order.ts).
    if (!marker && (await this.waitsForPreviousReply(m, msg))) return;
    if (marker?.s === 'in-flight' && !this.connector.resendSafe) {
      // A previous process stopped in the middle of the platform call: it may or may not have
      // been delivered, and sending again could duplicate a reply, so we report instead.
      await this.finish(m, msg, markerKey, carry({ s: 'failed', attempts: marker.attempts }), 'failed', undefined,
        'outcome_unknown: the gateway stopped while this message was being sent; check the chat before resending');
      return;
    }
    // Claimed by a gateway that stopped before its platform call (it was pacing or waiting out a
    // rate limit): nothing went out, and that claim is not an attempt. In flight where the
    // receiver deduplicates by our key: sending again is safe, and the attempt count goes on.
    let attempts = marker?.s === 'claimed' ? Math.max(0, marker.attempts - 1) : (marker?.attempts ?? 0);
    // Every marker this handler writes is a compare-and-set on the one it read or wrote last:
    // two deliveries of one message (to two replicas) cannot both start an attempt.
    let revision = entry?.revision ?? 0;
    const mark = async (next: Marker): Promise<boolean> => {
      const r = await writeMarker(this.bus.kv.dedup, markerKey, next, revision);
      if (r === null) {
        // Left unsettled: the copy that took over is the server's current delivery.
        this.log.warn({ outboundId: msg.id }, 'another replica took this message over; leaving it to that replica');
        return false;
      }
      revision = r;
      return true;
    };
    if (takenOver && marker) {
      const maxTakeovers = this.o.maxTakeovers ?? DEFAULT_MAX_TAKEOVERS;
      const said = { outboundId: msg.id, ticketId: msg.ticketId, state: marker.s, attempts: marker.attempts, holder: marker.by, takeovers, maxTakeovers };
      if (takeovers > maxTakeovers) {
        // Erased meanwhile: reported as such, its text not parked again.
        const failed = carry({ s: 'failed', attempts });
        if (await this.erased(m, msg, markerKey, failed)) return;
        // A compare-and-set first: a replica that took it over meanwhile keeps it.
        if (!(await mark(failed))) return;
        this.log.error(said, 'gateways keep dying while they hold this reply: failed for good instead of taken over again, as it may be what kills them (outbound.maxTakeovers)');
        await this.finish(m, msg, markerKey, failed, 'failed', undefined, diedHoldingReason(marker.s, takeovers, maxTakeovers));
        return;
      }
      this.log.warn(said, marker.s === 'in-flight'
        ? 'send was in flight when a gateway stopped; sending again (the receiver deduplicates by idempotency key)'
        : 'a gateway stopped while this reply waited for its platform call (nothing went out); sending it');
    }
    // While we retry, the lane consumer tells the server we are still working on the message.
    for (;;) {
      // Erased while it waited (its lane, a backoff): the person asked to be forgotten, so it is not sent.
      if (await this.erased(m, msg, markerKey, carry({ s: 'failed', attempts }))) return;
      attempts++;
      const claim = { attempts, by: this.o.replica };
      const wire = this.connector.marksWire ? wireMarks((next) => mark(carry({ ...next, ...claim })), this.o.ackWaitMs) : undefined;
      if (!(await mark(carry({ s: wire ? 'claimed' : 'in-flight', attempts, by: this.o.replica, at: Date.now() })))) return;
      try {
        const result = await this.connector.send(msg, { attempt: attempts, replica: this.o.replica, ...wire });
        await this.finish(m, msg, markerKey, carry({ s: 'sent', attempts, pid: result.platformMessageId }), 'sent', result.platformMessageId, undefined, { park: true, refusedCopies: result.refusedCopies });
        return;
      } catch (err) {
        if (err instanceof TakenOverError) return; // mark() logged it
        if (err instanceof SendElsewhereError) {
          // Lost the session between canSend() and the call: undo the attempt, hand it back.
          if (await mark(carry({ s: 'retry', attempts: attempts - 1 }))) m.nak(SEND_ELSEWHERE_DELAY_MS);
          return;
        }
        if (err instanceof PermanentDeliveryError) {
          await this.finish(m, msg, markerKey, carry({ s: 'failed', attempts }), 'failed', undefined, `${err.reason}: ${err.message}`);
          return;
        }
        if (!(await mark(carry({ s: 'retry', attempts })))) return;
        if (attempts >= this.o.maxAttempts) {
          await this.finish(m, msg, markerKey, carry({ s: 'failed', attempts }), 'failed', undefined,
            `retries_exhausted after ${attempts} attempts: ${errorMessage(err)}`);
          return;
        }
        const delay = this.retryDelay(err, attempts, msg);
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

  /**
   * The wait before the next attempt: the platform's Retry-After when it gave one, within
   * `backoffMax` as for outgoing webhooks. Obeyed as given, a receiver answering 429 with
   * `Retry-After: 99999` held the reply (and the conversation's next ones) for 28 hours while the
   * ticket looked answered; capped, the attempt counts, and a platform that keeps refusing ends
   * as a failed delivery the agent sees, after at most `maxAttempts` × `backoffMax`.
   */
  private retryDelay(err: unknown, attempts: number, msg: OutboundMessage): number {
    const backoff = backoffMs(attempts - 1, this.o.backoffBaseMs, this.o.backoffMaxMs);
    const asked = err instanceof TransientDeliveryError ? err.retryAfterMs : undefined;
    if (asked === undefined) return backoff;
    if (asked > this.o.backoffMaxMs) {
      this.log.warn({ outboundId: msg.id, retryAfterMs: asked, waitMs: this.o.backoffMaxMs }, 'the platform asked to wait longer than outbound.backoffMax; retrying after backoffMax (the attempt counts)');
      return this.o.backoffMaxMs;
    }
    return asked;
  }

  /**
   * Whether the message left the stream while it waited here (outbound-erasure.ts): then it is
   * not sent; acked, with no outcome when the ticket is gone with it.
   */
  private async erased(m: JsMsg, msg: OutboundMessage, markerKey: string, failed: Marker): Promise<boolean> {
    const erasure = await erasureOf(this.bus, m, msg.ticketId);
    if (erasure === 'kept') return false;
    // Its agent must learn it was not sent, or the customer waits on a reply that looks
    // answered; no dead letter, which would store the erased text again.
    if (erasure === 'ticket-lives') {
      this.log.warn({ outboundId: msg.id, ticketId: msg.ticketId }, 'outbound message erased while it waited to be sent (it named a person whose data was erased): not sent, reported failed');
      // With its replay round: a replayed reply's status must not be taken for its first failure's.
      await this.finish(m, msg, markerKey, failed, 'failed', undefined, ERASED_REASON, { park: false });
      return true;
    }
    this.log.info({ outboundId: msg.id, ticketId: msg.ticketId }, 'outbound message erased while it waited to be sent: not sent');
    m.ack();
    this.connector.settled?.(msg.id);
    return true;
  }

  /**
   * Whether the reply this one names as its predecessor may still be sent; then this one is handed
   * back for a while (nak) instead of waiting in place, so a predecessor queued behind it in this
   * lane (its pull was cut off and it came back late) is not blocked by it. The predecessor is
   * settled once its marker says sent or failed, the shared consumer's ack floor has passed it, or
   * the stream no longer holds it (expired; parked without a marker).
   */
  private async waitsForPreviousReply(m: JsMsg, msg: OutboundMessage): Promise<boolean> {
    const previous = previousReplyOf(m.headers);
    if (!previous) return false;
    const theirs = markerOf(await this.bus.kv.dedup.get(markerKeyOf(previous.id)));
    if (settled(theirs)) return false;
    const consumer = await this.bus.jsm.consumers.info(Streams.outbound, Consumers.outbound(this.channel, this.account));
    if (consumer.ack_floor.stream_seq >= previous.seq) return false;
    // Gone, or another message at that sequence: the stream was recreated since (sequences start again).
    if (!(await holdsReply(this.bus.jsm, previous))) return false;
    const deliveries = m.info.deliveryCount;
    this.log[deliveries === 1 ? 'info' : 'debug']({ outboundId: msg.id, after: previous.id, previousState: theirs?.s ?? 'not started', deliveries },
      "reply held back until the conversation's previous reply is sent or failed");
    m.nak(Math.min(PREVIOUS_REPLY_POLL_MAX_MS, PREVIOUS_REPLY_POLL_MS * deliveries));
    return true;
  }

  private async finish(
    m: JsMsg,
    msg: OutboundMessage,
    markerKey: string,
    marker: Marker,
    status: Status['status'],
    platformMessageId?: string,
    reason?: string,
    o: { park: boolean; refusedCopies?: RefusedCopy[] } = { park: true },
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
      purpose: msg.purpose,
      round: marker.round,
      refusedCopies: o.refusedCopies?.length ? o.refusedCopies : undefined,
    });
    // A send that happened is remembered until its outcome is stored: should the recording give up
    // (and the message come back here), it is recorded then, not sent again.
    if (status === 'sent') this.unrecorded.set(msg.id, marker);
    await this.recording(msg.id, () => this.bus.publishJson(Subjects.status(msg.channel, msg.account), event, `status:${msg.id}:${status}${marker.round ? `:r${marker.round}` : ''}`));
    // The final marker before the dead letter: a letter that could not be stored must not bring
    // the message back with a `retry` marker, to be sent after it was reported failed.
    await this.recording(msg.id, () => this.bus.kv.dedup.put(markerKey, JSON.stringify(marker)));
    this.unrecorded.delete(msg.id);
    // Only once the marker is stored: until then the message may come back and be sent from where it stopped.
    this.connector.settled?.(msg.id);
    if (status === 'failed' && o.park) {
      this.log.warn({ outboundId: msg.id, ticketId: msg.ticketId, reason }, 'delivery failed');
      await this.recording(msg.id, () => this.bus.deadLetters.park({
        source: 'outbound', scope: `${msg.channel}.${msg.account}`, subject: m.subject, code: reasonCode(reason),
        reason: `${reason ?? 'failed'}${marker.round ? ` (replay ${marker.round})` : ''}`, payload: m.data, meta: { outboundId: msg.id, ticketId: msg.ticketId },
      })).catch((err: unknown) => {
        // Decided and reported either way (the ticket log has the failure); only the copy for `dlq --replay` is missing.
        this.log.error({ outboundId: msg.id, err: errorMessage(err) }, 'failed reply could not be parked as a dead letter; its failure is recorded on the ticket');
      });
    }
    m.ack();
  }

  /**
   * Records an outcome the platform already has. Handing the message back instead (nak) would
   * redeliver it with its marker still 'in-flight': sent a second time where the receiver
   * deduplicates, reported 'outcome_unknown' elsewhere — for a reply that was delivered. A NATS
   * node loss costs seconds of timeouts and 503s while streams elect leaders: wait that out
   * (the lane consumer keeps the message ours meanwhile); only a long outage hands back. A stop
   * waits too (a SIGTERM must never cause a second send): the app's shutdownTimeout bounds it,
   * after which the connection is closed and the process is as good as crashed.
   */
  private async recording<T>(outboundId: string, write: () => Promise<T>): Promise<T> {
    for (let attempt = 0; ; attempt++) {
      try {
        return await write();
      } catch (err) {
        if (attempt >= RECORD_ATTEMPTS || this.bus.nc.isClosed()) throw err;
        this.log.warn({ outboundId, attempt: attempt + 1, err: errorMessage(err) }, 'recording a send outcome failed; retrying (the message is not sent again)');
        await sleep(backoffMs(attempt, 250, 2000));
      }
    }
  }
}
