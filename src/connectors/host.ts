/**
 * Runs the configured connectors: builds each one's context, starts intake and its outbound
 * runner, tracks state for /readyz and publishes state changes for ops. Knows no channel by name.
 */
import { randomUUID } from 'node:crypto';
import type { Bus } from '../core/bus.js';
import { isCasConflict } from '../core/bus.js';
import type { Logger } from '../core/logger.js';
import type { HttpMount } from '../core/http.js';
import { MediaStore } from '../core/media.js';
import { acquireLease } from '../core/lease.js';
import {
  ConnectorStateEvent,
  ConversationStateEvent,
  DeliveryStatus,
  InboundEvent,
  describeZodError,
  type ConnectorState,
  type InboundEventInput,
} from '../core/schema.js';
import { Subjects, kvSafe } from '../core/subjects.js';
import { deadLetter } from '../core/dead-letter.js';
import { errorMessage } from '../core/errors.js';
import { InvalidEventError, type AccountState, type Connector, type ConnectorContext, type ConnectorFactory, type ConnectorHealth } from './contract.js';
import { OutboundRunner, type OutboundRunnerOptions } from './outbound-runner.js';
import { backoffMs, sleep } from '../core/sleep.js';

/** Room left in a NATS message for headers (Nats-Msg-Id, tracing) beside the event. */
const EVENT_HEADROOM_BYTES = 16 * 1024;
export interface HostedConnectorSpec {
  factory: ConnectorFactory<any>;
  account: string;
  options: unknown;
}

export interface ConnectorHostOptions {
  bus: Bus;
  log: Logger;
  http: HttpMount;
  mediaMaxBytes: number;
  leaseTtlMs: number;
  outbound: OutboundRunnerOptions;
  /** Identifies this process as a lease holder. */
  instanceId?: string;
}

interface Hosted {
  channel: string;
  type: string;
  account: string;
  connector: Connector;
  runner: OutboundRunner;
  state: ConnectorHealth;
}

export class ConnectorHost {
  private readonly hosted: Hosted[] = [];
  private readonly abort = new AbortController();
  readonly instanceId: string;

  constructor(private readonly o: ConnectorHostOptions) {
    this.instanceId = o.instanceId ?? `${process.pid}-${randomUUID().slice(0, 8)}`;
  }

  /** Creates and starts every connector; one that fails to start is reported, the rest go on. */
  async start(specs: HostedConnectorSpec[]): Promise<void> {
    for (const spec of specs) {
      const channel = spec.factory.channel;
      const log = this.o.log.child({ channel, account: spec.account, connector: spec.factory.type });
      const hosted = { channel, type: spec.factory.type, account: spec.account } as Hosted;
      hosted.state = { state: 'starting', since: new Date().toISOString() };
      const ctx = this.context(channel, spec.account, log, hosted);
      hosted.connector = spec.factory.create(spec.options, ctx);
      hosted.runner = new OutboundRunner(this.o.bus, channel, spec.account, hosted.connector, log, this.o.outbound);
      this.hosted.push(hosted);
      try {
        await hosted.connector.start();
        await hosted.runner.start();
        log.info('connector started');
      } catch (err) {
        log.error({ err: errorMessage(err) }, 'connector failed to start');
        ctx.setState('stalled', `failed to start: ${errorMessage(err)}`);
      }
    }
  }

  /** Stop intake everywhere, then let outbound sends in flight finish. */
  async stop(): Promise<void> {
    this.abort.abort();
    await Promise.all(
      this.hosted.map(async (h) => {
        await h.runner.stop().catch(() => {});
        await h.connector.stop().catch((err) => this.o.log.warn({ err: errorMessage(err), channel: h.channel }, 'connector stop failed'));
      }),
    );
  }

  health(): Array<{ channel: string; type: string; account: string } & ConnectorHealth> {
    return this.hosted.map((h) => ({ channel: h.channel, type: h.type, account: h.account, ...h.connector.health() }));
  }

  private context(channel: string, account: string, log: Logger, hosted: Hosted): ConnectorContext {
    const bus = this.o.bus;
    const signal = this.abort.signal;
    const subject = Subjects.inbound(channel, account);
    const statePrefix = `${channel}.${account}.`;
    const state: AccountState = {
      async get(key) {
        const e = await bus.kv.state.get(statePrefix + kvSafe(key));
        return e && e.operation === 'PUT' ? { value: e.string(), revision: e.revision } : null;
      },
      put: (key, value) => bus.kv.state.put(statePrefix + kvSafe(key), value),
      update: (key, value, revision) =>
        revision === 0 ? bus.kv.state.create(statePrefix + kvSafe(key), value) : bus.kv.state.update(statePrefix + kvSafe(key), value, revision),
      async delete(key) {
        await bus.kv.state.delete(statePrefix + kvSafe(key));
      },
      async keys(prefix = '') {
        const out: string[] = [];
        for await (const k of await bus.kv.state.keys(`${statePrefix}>`)) {
          const short = k.slice(statePrefix.length);
          if (short.startsWith(prefix)) out.push(short);
        }
        return out;
      },
    };
    const setState = (s: ConnectorState, detail?: string) => {
      hosted.state = { state: s, detail, since: new Date().toISOString() };
      const event = ConnectorStateEvent.parse({ v: 1, type: 'connector.state', channel, account, state: s, detail, at: hosted.state.since });
      const level = s === 'connected' || s === 'starting' || s === 'stopped' ? 'info' : 'warn';
      log[level]({ state: s, detail }, 'connector state');
      bus.publishJson(Subjects.connectorEvent(channel, account), event).catch((err) => log.warn({ err: errorMessage(err) }, 'could not publish connector state'));
    };
    const ctx: ConnectorContext = {
      channel,
      account,
      log,
      signal,
      state,
      http: this.o.http,
      media: new MediaStore(bus.media, this.o.mediaMaxBytes),
      setState,
      deadLetter: async (reason, payload) => {
        log.warn({ reason }, 'inbound payload parked on dead-letter subject');
        await deadLetter(bus, `inbound.${channel}.${account}`, subject, reason, payload);
      },
      reportDelivery: async (r) => {
        const event = DeliveryStatus.parse({ v: 1, type: 'delivery.status', channel, account, attempts: 0, at: new Date().toISOString(), ...r });
        await bus.publishJson(Subjects.status(channel, account), event, `status:${r.outboundId}:${r.status}`);
      },
      announceConversation: async (change) => {
        const event = ConversationStateEvent.parse({ v: 1, type: 'conversation.state', channel, account, ...change });
        log.info({ conversation: event.conversation.id, state: event.state, role: event.role, detail: event.detail }, 'conversation state');
        await bus.publishJson(Subjects.conversationEvent(channel, account), event, event.id);
      },
      lease: (name = 'intake') =>
        acquireLease(bus.kv.leases, `${channel}.${account}.${kvSafe(name)}`, { ttlMs: this.o.leaseTtlMs, holder: this.instanceId, signal, log }),
      publish: async (input: InboundEventInput) => {
        const parsed = InboundEvent.safeParse({ ...input, v: 1, channel, account, receivedAt: input.receivedAt ?? new Date().toISOString() });
        if (!parsed.success) throw new InvalidEventError(`event does not match schema v1: ${describeZodError(parsed.error)}`);
        const event = parsed.data;
        const payload = JSON.stringify(event);
        // Over the server's max_payload the publish can never succeed: retrying would block this
        // account's intake forever. The connector parks it (the dead letter stores big payloads aside).
        const bytes = Buffer.byteLength(payload);
        const limit = (bus.nc.info?.max_payload ?? 1_048_576) - EVENT_HEADROOM_BYTES;
        if (bytes > limit) throw new InvalidEventError(`event is ${bytes} bytes, over the ${limit}-byte limit of a NATS message: move large bodies into the object store`);
        // NATS being down must not lose what the platform handed us: keep trying (the caller has
        // not acknowledged the platform yet), and say so after a few seconds.
        for (let attempt = 1; ; attempt++) {
          try {
            const ack = await bus.js.publish(subject, payload, { msgID: event.id });
            if (attempt > 3) setState('connected', 'NATS reachable again');
            return { duplicate: ack.duplicate, seq: ack.seq };
          } catch (err) {
            if (signal.aborted && attempt > 1) throw err;
            if (isCasConflict(err)) throw err;
            if (attempt === 3) setState('stalled', `cannot publish to JetStream: ${errorMessage(err)}`);
            await sleep(backoffMs(attempt, 200, 5000), signal);
          }
        }
      },
    };
    return ctx;
  }
}
