/**
 * One configured helpdesk adapter as the host runs it: a loop that takes the lease
 * `helpdesk.<id>`, then consumes the ticket events with the durable `helpdesk-<id>` in lanes per
 * ticket and starts the adapter's own intake (polling); without the lease it stands by. Each
 * event is retried until the helpdesk takes it or it is parked; what an event does there is
 * event-writer.ts.
 */
import { setMaxListeners } from 'node:events';
import type { JsMsg } from '@nats-io/jetstream';
import type { Bus } from '../core/bus.js';
import { newInstanceId } from '../core/holder.js';
import type { Logger } from '../core/logger.js';
import type { HttpMount } from '../core/http.js';
import { MediaStore } from '../core/media.js';
import { acquireLease, type Lease } from '../core/lease.js';
import { LaneConsumer, failedHolderPauseMs, leasedTicketEvents } from '../core/lane-consumer.js';
import { rewindOrphans } from '../core/rewind.js';
import { errorMessage } from '../core/errors.js';
import { metrics } from '../core/metrics.js';
import { serveReplay, type ReplayOutcome } from '../core/replay.js';
import { TicketErasedEvent, TicketEvent, type TicketStreamEvent } from '../core/schema.js';
import { safeParser } from '../core/schema-as-is.js';
import { jsonOrUndefined } from '../core/json-input.js';
import { backoffMs, sleep } from '../core/sleep.js';
import { Streams, kvSafe } from '../core/subjects.js';
import type { LoopRun, Supervisor } from '../core/supervisor.js';
import type { Language } from '../core/texts.js';
import { helpdeskTexts } from './texts.js';
import {
  HelpdeskRefusedError,
  HelpdeskUnavailableError,
  type HelpdeskAdapter,
  type HelpdeskContext,
  type HelpdeskFactory,
  type HelpdeskHealth,
} from './contract.js';
import { HelpdeskRecords } from './mapping.js';
import { AnswerTaker } from './answers.js';
import { HelpdeskWriter } from './event-writer.js';

/** Every helpdesk state, for the enum-style gauge (a state added to the contract must be added here). */
const HELPDESK_STATES = Object.keys({ starting: 1, connected: 1, disconnected: 1, auth_failed: 1, standby: 1, stopped: 1 } satisfies Record<HelpdeskHealth['state'], 1>);
/** Ticket events as the router publishes them are taken as they are; zod judges the rest (core/schema-as-is.ts). */
const parseLifecycleEvent = safeParser(TicketEvent);
const parseErasedEvent = safeParser(TicketErasedEvent);
function parseTicketEvent(json: unknown): ReturnType<typeof parseLifecycleEvent> | ReturnType<typeof parseErasedEvent> {
  return (json as { type?: unknown } | null)?.type === 'ticket.erased' ? parseErasedEvent(json) : parseLifecycleEvent(json);
}

export interface HelpdeskSpec {
  factory: HelpdeskFactory<any>;
  id: string;
  options: unknown;
  /** Keep retrying an event this long (counted from the event) before parking it. */
  retryForMs: number;
  backoffBaseMs: number;
  backoffMaxMs: number;
  /** An event held by a gateway that died is given out again after this. */
  redeliverAfterMs: number;
}

export interface HelpdeskHostOptions {
  bus: Bus;
  log: Logger;
  http: HttpMount;
  mediaMaxBytes: number;
  leaseTtlMs: number;
  holder?: string;
  supervisor?: Supervisor;
  /** The team's language (`router.language`) for what adapters write by themselves; default ru. */
  language?: Language;
}

export interface HostedHelpdeskHealth extends HelpdeskHealth {
  id: string;
  type: string;
  /** This replica holds the lease and syncs. */
  syncing: boolean;
}

export function helpdeskConsumer(id: string): string {
  return `helpdesk-${kvSafe(id)}`;
}

export class HostedHelpdesk {
  adapter!: HelpdeskAdapter;
  syncing = false;
  private health: HelpdeskHealth = { state: 'starting', since: new Date().toISOString() };
  /** Aborted when this replica's term as the syncing one ends: retry waits end, the event is handed back. */
  private term = new AbortController();
  private lease?: Lease;
  readonly records: HelpdeskRecords;
  readonly answers: AnswerTaker;
  /** What each event does to the helpdesk (event-writer.ts); made with the adapter, in create(). */
  private writer!: HelpdeskWriter;

  get id(): string {
    return this.spec.id;
  }

  constructor(
    private readonly spec: HelpdeskSpec,
    private readonly o: HelpdeskHostOptions,
    private readonly log: Logger,
    private readonly signal: AbortSignal,
  ) {
    this.records = new HelpdeskRecords(spec.id, o.bus.kv.state, o.bus.kv.dedup);
    const texts = helpdeskTexts(o.language ?? 'ru');
    this.answers = new AnswerTaker(o.bus, spec.id, this.records, log, async (externalId, ticketId) => {
      await this.adapter?.tellAgents?.(externalId, texts.answerNotSent(ticketId));
    });
    // Every state's series from the start: an alert on auth_failed, or on absent(), needs them before the first change.
    this.gaugeState(this.health.state);
  }

  private gaugeState(state: HelpdeskHealth['state']): void {
    for (const s of HELPDESK_STATES) metrics.helpdeskState.set({ helpdesk: this.spec.id, state: s }, s === state ? 1 : 0);
  }

  create(): void {
    const ctx: HelpdeskContext = {
      id: this.spec.id,
      installationId: this.o.bus.installationId,
      texts: helpdeskTexts(this.o.language ?? 'ru'),
      log: this.log,
      media: new MediaStore(this.o.bus.media, this.o.mediaMaxBytes, `helpdesk.${this.spec.id}`),
      state: this.records.adapterState(),
      http: this.o.http,
      signal: this.signal,
      takeAnswer: (a) => this.answers.take(a),
      taken: (id) => this.records.taken(id),
      lookup: (ticketId) => this.records.lookup(ticketId),
      setHealth: (state, detail) => this.setHealth(state, detail),
    };
    this.adapter = this.spec.factory.create(this.spec.options, ctx);
    this.writer = new HelpdeskWriter(this.spec.id, this.spec.factory.type, this.adapter, this.records, this.o.bus, this.log);
  }

  /** Ends the current term: its consumer saw events that may never have reached it. */
  private onCut: (why: string) => void = () => {};
  private onFailing: (why: string) => void = () => {};
  /** This term's consumer, while this replica syncs: `consumerFailing` asks it. */
  private current?: LaneConsumer<TicketStreamEvent>;

  /** This replica syncs, but its consumer loop is failing: what it reads of the durable may be stale. */
  get consumerFailing(): boolean {
    return this.current?.failing ?? false;
  }

  status(): HostedHelpdeskHealth {
    return { ...this.health, id: this.spec.id, type: this.spec.factory.type, syncing: this.syncing };
  }

  private setHealth(state: HelpdeskHealth['state'], detail?: string): void {
    if (state === this.health.state) {
      // The same outage, another error text (the next retry, the poller's call, another
      // endpoint): keep the latest detail, but `since` stays when the state began (what an
      // operator and an alert read as "for how long") and nothing is logged again: before, every
      // retry and poll restarted `since` and logged another warning.
      this.health = { ...this.health, detail };
      return;
    }
    this.health = { state, detail, since: new Date().toISOString() };
    this.gaugeState(state);
    const level = state === 'connected' || state === 'standby' ? 'info' : 'warn';
    this.log[level]({ helpdesk: this.spec.id, state, detail }, 'helpdesk state changed');
  }

  /** Terms as the syncing replica, one after another, until stopped. */
  async serve({ signal, progress }: LoopRun): Promise<void> {
    const key = `helpdesk.${kvSafe(this.spec.id)}`;
    const ended = new Promise<void>((r) => signal.addEventListener('abort', () => r(), { once: true }));
    while (!signal.aborted) {
      this.setHealth('standby', 'waiting for the lease: another replica syncs this helpdesk');
      let lease: Lease;
      try {
        lease = await acquireLease(this.o.bus.kv.leases, key, { ttlMs: this.o.leaseTtlMs, holder: this.o.holder ?? newInstanceId(), signal, log: this.log });
      } catch (err) {
        if (signal.aborted) return;
        this.log.warn({ helpdesk: this.spec.id, err: errorMessage(err) }, 'helpdesk lease not taken; retrying');
        await sleep(1000, signal);
        continue;
      }
      this.lease = lease;
      this.term = new AbortController();
      setMaxListeners(0, this.term.signal);
      // Events lost in flight (a NATS drop, a nats-server restarted from older consumer state)
      // end the term; the next one, on this replica or another, rewinds.
      let cutWhy = '';
      const cut = new Promise<void>((resolve) => (this.onCut = (why) => ((cutWhy = why), resolve())));
      // The consumer loop kept failing: end the term as on a lost lease, release, sit out a while.
      let failedWhy = '';
      const failing = new Promise<void>((resolve) => (this.onFailing = (why) => ((failedWhy = why), resolve())));
      const consumer = this.consumer();
      this.current = consumer;
      const replays = serveReplay(this.o.bus, `helpdesk.${this.spec.id}`, (payload) => this.replay(payload), this.log);
      let adapterStarted = false;
      try {
        // What a holder that died (or an earlier term) left unacknowledged comes again first, in
        // stream order, rather than after redeliverAfter behind newer events of its ticket. Events
        // it had already applied come again too: push() finds them done (records, per event id).
        const from = await rewindOrphans(this.o.bus.jsm, Streams.events, helpdeskConsumer(this.spec.id), () => lease.valid());
        if (from) this.log.warn({ helpdesk: this.spec.id, fromSeq: from }, 'events left unacknowledged by the previous term: syncing again from the ack floor, in order (events already applied are skipped)');
        await consumer.start();
        this.syncing = true;
        this.setHealth('starting', 'syncing from this replica');
        await this.adapter.start();
        adapterStarted = true;
        progress();
        this.log.info({ helpdesk: this.spec.id }, 'syncing this helpdesk from this process');
        await Promise.race([lease.lost, ended, cut, failing]);
        if (cutWhy) this.log.warn({ helpdesk: this.spec.id, why: cutWhy }, 'events sent to this replica may have been lost in flight: ending this term, the next rewinds to the ack floor');
      } catch (err) {
        this.log.warn({ helpdesk: this.spec.id, err: errorMessage(err) }, 'helpdesk sync failed; retrying');
        await sleep(1000, signal);
      } finally {
        this.syncing = false;
        await consumer.stopPulling();
        this.term.abort();
        if (adapterStarted) await this.adapter.stop().catch((err: unknown) => this.log.warn({ helpdesk: this.spec.id, err: errorMessage(err) }, 'adapter stop failed'));
        await Promise.all([consumer.stop(), replays.stop()]);
        this.current = undefined;
        await lease.release();
      }
      if (failedWhy && !signal.aborted) {
        const pauseMs = failedHolderPauseMs(this.o.leaseTtlMs);
        this.log.error({ helpdesk: this.spec.id, err: failedWhy, pauseMs }, 'helpdesk consumer kept failing on this replica: lease released for another replica, competing again after the pause');
        await sleep(pauseMs, signal);
      }
    }
    this.setHealth('stopped');
  }

  private consumer(): LaneConsumer<TicketStreamEvent> {
    return new LaneConsumer<TicketStreamEvent>(this.o.bus, {
      stream: Streams.events,
      ...leasedTicketEvents(helpdeskConsumer(this.spec.id), this.spec.redeliverAfterMs, this.o.leaseTtlMs),
      concurrency: 16,
      supervisor: this.o.supervisor,
      loopName: `helpdesk.${this.spec.id}.consumer`,
      decode: async (m) => {
        const parsed = parseTicketEvent(jsonOrUndefined(m.data) ?? null);
        if (parsed.success) return parsed.data;
        try {
          await this.o.bus.deadLetters.park({
            source: 'helpdesk', scope: this.spec.id, subject: m.subject, code: 'invalid_event',
            reason: `not a ticket event of schema v1: ${parsed.error.issues[0]?.path.join('.') ?? ''} ${parsed.error.issues[0]?.message ?? ''}`, payload: m.data,
          });
          m.ack();
        } catch (err) {
          // Not thrown: that would end the pull mid-batch and leave the rest of it lost in flight.
          this.log.warn({ helpdesk: this.spec.id, err: errorMessage(err), seq: m.seq }, 'an invalid event could not be parked; it comes back and is parked then');
          m.nak(1000);
        }
        return null;
      },
      laneOf: (e) => e.ticketId,
      handle: (m, e) => this.deliver(m, e),
      onError: (m, _e, err) => {
        this.log.warn({ helpdesk: this.spec.id, err: errorMessage(err) }, 'helpdesk sync interrupted; the event will come again');
        if (!this.lease?.expired()) m.nak(1000);
      },
      stale: () => this.lease?.expired() ?? false,
      onPullCutOff: (why) => this.onCut(why),
      onFailing: (why) => this.onFailing(why),
    });
  }

  /** Holds the ticket's lane until the helpdesk took the event, or it is parked: order per ticket. */
  private async deliver(m: JsMsg, event: TicketStreamEvent): Promise<void> {
    const firstSeen = m.info.timestampNanos / 1_000_000 || Date.now();
    const started = performance.now();
    for (let attempt = 1; ; attempt++) {
      if (this.term.signal.aborted || !this.lease?.valid()) return this.settle(m, 'nak');
      try {
        const outcome = await this.writer.push(event);
        metrics.helpdeskEvents.inc({ helpdesk: this.spec.id, outcome });
        if (outcome === 'applied') metrics.helpdeskSync.observe({ helpdesk: this.spec.id }, (performance.now() - started) / 1000);
        this.setHealth('connected');
        return this.settle(m, 'ack');
      } catch (err) {
        if (err instanceof HelpdeskRefusedError) {
          await this.park(m, event, err.code, err.message);
          return this.settle(m, 'ack');
        }
        if (this.term.signal.aborted) return this.settle(m, 'nak');
        if (Date.now() - firstSeen > this.spec.retryForMs) {
          await this.park(m, event, 'retries_exhausted', `retry budget exhausted after ${attempt} attempts: ${errorMessage(err)}`);
          return this.settle(m, 'ack');
        }
        metrics.helpdeskRetries.inc({ helpdesk: this.spec.id });
        const retryAfter = err instanceof HelpdeskUnavailableError ? (err.retryAfterMs ?? 0) : 0;
        const delay = Math.min(this.spec.backoffMaxMs, Math.max(retryAfter, backoffMs(attempt - 1, this.spec.backoffBaseMs, this.spec.backoffMaxMs)));
        // Credentials refused stay `auth_failed` (it flipped to `disconnected` on every retry).
        this.setHealth(err instanceof HelpdeskUnavailableError && err.authFailed ? 'auth_failed' : 'disconnected', errorMessage(err));
        if (attempt === 1 || attempt % 10 === 0) this.log.warn({ helpdesk: this.spec.id, ticketId: event.ticketId, event: event.type, attempt, delayMs: delay, err: errorMessage(err) }, 'helpdesk did not take the event; retrying');
        await sleep(delay, this.term.signal);
      }
    }
  }

  private settle(m: JsMsg, how: 'ack' | 'nak'): void {
    // A holder past its lease TTL may have been replaced: the successor gets the message back.
    if (this.lease?.expired()) return;
    if (how === 'ack') m.ack();
    else m.nak();
  }

  private async park(m: JsMsg | null, event: TicketStreamEvent, code: string, reason: string): Promise<void> {
    this.log.error({ helpdesk: this.spec.id, ticketId: event.ticketId, event: event.type, code, reason }, 'helpdesk refused the event: parked');
    metrics.helpdeskEvents.inc({ helpdesk: this.spec.id, outcome: 'parked' });
    await this.records.abandon(event.id);
    await this.o.bus.deadLetters.park({
      source: 'helpdesk', scope: this.spec.id, subject: m?.subject ?? `omni.events.${event.type}`, code, reason: `${event.type} of ${event.ticketId}: ${reason}`,
      payload: event, meta: { ticketId: event.ticketId, eventId: event.id },
    });
  }

  /** `omnigate dlq --replay` of a parked event: pushed once more, by the syncing replica. */
  private async replay(payload: Buffer): Promise<ReplayOutcome> {
    const parsed = parseTicketEvent(jsonOrUndefined(payload) ?? null);
    if (!parsed.success) return { outcome: 'refused', reason: 'not a ticket event' };
    try {
      const r = await this.writer.push(parsed.data);
      return { outcome: 'published', duplicate: r === 'done' || r === 'echo' };
    } catch (err) {
      return { outcome: 'invalid', reason: `the helpdesk did not take it: ${errorMessage(err)}` };
    }
  }
}
