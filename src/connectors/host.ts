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
import { metrics } from '../core/metrics.js';
import { errorMessage } from '../core/errors.js';
import {
  InvalidEventError,
  type AccountState,
  type Connector,
  type ConnectorContext,
  type ConnectorFactory,
  type ConnectorHealth,
  type ReplayHandler,
} from './contract.js';
import { serveReplay } from '../core/replay.js';
import { OutboundRunner, type OutboundRunnerOptions } from './outbound-runner.js';
import { backoffMs, sleep } from '../core/sleep.js';
import type { Supervisor } from '../core/supervisor.js';

/** Room left in a NATS message for headers (Nats-Msg-Id, tracing) beside the event. */
const EVENT_HEADROOM_BYTES = 16 * 1024;
export interface HostedConnectorSpec {
  factory: ConnectorFactory<any>;
  account: string;
  options: unknown;
  /** Readiness depends on this connector (config `required: true`). */
  required?: boolean;
}

/** What /readyz and the connector metrics show for one connector. */
export interface HostedHealth extends ConnectorHealth {
  channel: string;
  type: string;
  account: string;
  required: boolean;
  /** While standing by: when the other replica's lease runs out unless it renews it. */
  standbyUntil?: string;
  /** Last inbound event this replica published for the account. */
  lastEventAt?: string;
  /** Last outbound message this replica's connector sent. */
  lastSendAt?: string;
  /** The latest state that came with a problem (anything but connected, starting, standby, stopped). */
  lastError?: { state: ConnectorState; detail?: string; at: string };
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
  /** Owner of the outbound runners' consumer loops. */
  supervisor?: Supervisor;
}

interface Hosted {
  spec: HostedConnectorSpec;
  channel: string;
  type: string;
  account: string;
  required: boolean;
  connector: Connector;
  /** Aborted when this connector alone is restarted (ctx.signal follows it and the host's). */
  own: AbortController;
  /** Set while a restart runs: a second request joins it instead of stopping the new instance. */
  restarting?: Promise<boolean>;
  lastEventAt?: string;
  lastSendAt?: string;
  lastError?: { state: ConnectorState; detail?: string; at: string };
  runner: OutboundRunner;
  /** The last state the connector published (ctx.setState). */
  state: ConnectorHealth;
  replay?: ReplayHandler;
  /** Set while intake cannot publish to JetStream; shown over `state` until a publish succeeds. */
  stall?: ConnectorHealth;
  /** Set while waiting for a lease another replica holds. */
  standby?: { key: string; holder: string; until: Date };
}

export class ConnectorHost {
  private readonly hosted: Hosted[] = [];
  private readonly abort = new AbortController();
  private readonly replayServers: Array<{ stop(): Promise<void> }> = [];
  readonly instanceId: string;

  constructor(private readonly o: ConnectorHostOptions) {
    this.instanceId = o.instanceId ?? `${process.pid}-${randomUUID().slice(0, 8)}`;
  }

  /** Creates and starts every connector; one that fails to start is reported, the rest go on. */
  async start(specs: HostedConnectorSpec[]): Promise<void> {
    for (const spec of specs) {
      const channel = spec.factory.channel;
      const log = this.o.log.child({ channel, account: spec.account, connector: spec.factory.type });
      const hosted = { spec, channel, type: spec.factory.type, account: spec.account, required: spec.required ?? false, own: new AbortController() } as Hosted;
      hosted.state = { state: 'starting', since: new Date().toISOString() };
      const ctx = this.context(channel, spec.account, log, hosted);
      hosted.connector = spec.factory.create(spec.options, ctx);
      // The runner sends through whichever connector instance is current, so a restart keeps it.
      hosted.runner = new OutboundRunner(this.o.bus, channel, spec.account, currentConnector(hosted), log, this.o.outbound, this.o.supervisor);
      this.hosted.push(hosted);
      try {
        await hosted.connector.start();
        await hosted.runner.start();
        if (hosted.replay) this.replayServers.push(serveReplay(this.o.bus, `inbound.${channel}.${spec.account}`, (p, m) => hosted.replay!(p, m), log));
        log.info('connector started');
      } catch (err) {
        log.error({ err: errorMessage(err) }, 'connector failed to start');
        ctx.setState('stalled', `failed to start: ${errorMessage(err)}`);
      }
    }
  }

  /**
   * Stops one connector and starts a fresh instance from the same config (the outbound runner
   * and the replay service stay; sends wait for the new instance). False when not hosted here.
   */
  async restart(channel: string, account: string): Promise<boolean> {
    const hosted = this.hosted.find((h) => h.channel === channel && h.account === account);
    if (!hosted || this.abort.signal.aborted) return false;
    hosted.restarting ??= this.restartHosted(hosted).finally(() => {
      hosted.restarting = undefined;
    });
    return hosted.restarting;
  }

  private async restartHosted(hosted: Hosted): Promise<boolean> {
    const { channel, account } = hosted;
    const log = this.o.log.child({ channel, account, connector: hosted.type });
    log.warn('connector restart requested');
    hosted.own.abort();
    await hosted.connector.stop().catch((err) => log.warn({ err: errorMessage(err) }, 'connector stop failed'));
    hosted.own = new AbortController();
    const ctx = this.context(channel, account, log, hosted);
    ctx.setState('starting', 'restarted by an operator');
    hosted.connector = hosted.spec.factory.create(hosted.spec.options, ctx);
    try {
      await hosted.connector.start();
      log.info('connector restarted');
    } catch (err) {
      log.error({ err: errorMessage(err) }, 'connector failed to start');
      ctx.setState('stalled', `failed to start: ${errorMessage(err)}`);
    }
    return true;
  }

  /** Stop intake everywhere, then let outbound sends in flight finish. */
  async stop(): Promise<void> {
    this.abort.abort();
    await Promise.all(this.replayServers.map((r) => r.stop()));
    await Promise.all(
      this.hosted.map(async (h) => {
        await h.runner.stop().catch(() => {});
        await h.connector.stop().catch((err) => this.o.log.warn({ err: errorMessage(err), channel: h.channel }, 'connector stop failed'));
      }),
    );
  }

  /**
   * Every connector's state as it was last published on omni.events.connector.* (what the
   * connector reported, or `stalled` while intake cannot reach JetStream, or `standby` while
   * another replica holds its lease): probes and metrics show exactly what ops were told.
   */
  health(): HostedHealth[] {
    return this.hosted.map((h) => {
      const who = {
        channel: h.channel, type: h.type, account: h.account, required: h.required,
        lastEventAt: h.lastEventAt, lastSendAt: h.lastSendAt, lastError: h.lastError,
      };
      const current = h.stall ?? h.state;
      if (current.state === 'standby' && h.standby) {
        const until = h.standby.until.toISOString();
        return { ...who, ...current, detail: `lease ${h.standby.key} is held by ${h.standby.holder} until ${until} unless renewed; this replica takes over then`, standbyUntil: until };
      }
      return { ...who, ...current };
    });
  }

  private context(channel: string, account: string, log: Logger, hosted: Hosted): ConnectorContext {
    const bus = this.o.bus;
    const signal = AbortSignal.any([this.abort.signal, hosted.own.signal]);
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
    const announce = (h: ConnectorHealth) => {
      const event = ConnectorStateEvent.parse({ v: 1, type: 'connector.state', channel, account, state: h.state, detail: h.detail, at: h.since });
      const level = h.state === 'connected' || h.state === 'starting' || h.state === 'stopped' || h.state === 'standby' ? 'info' : 'warn';
      log[level]({ state: h.state, detail: h.detail }, 'connector state');
      bus.publishJson(Subjects.connectorEvent(channel, account), event).catch((err) => log.warn({ err: errorMessage(err) }, 'could not publish connector state'));
    };
    const setState = (s: ConnectorState, detail?: string) => {
      hosted.state = { state: s, detail, since: new Date().toISOString() };
      if (!QUIET_STATES.has(s)) hosted.lastError = { state: s, detail, at: hosted.state.since };
      // While intake is stalled that is what ops see; the connector's own state shows again after.
      if (hosted.stall) log.info({ state: s, detail }, 'connector state (shown once intake publishes again)');
      else announce(hosted.state);
    };
    const stalled = (detail: string) => {
      if (hosted.stall) return;
      hosted.stall = { state: 'stalled', detail, since: new Date().toISOString() };
      announce(hosted.stall);
    };
    const unstalled = () => {
      if (!hosted.stall) return;
      hosted.stall = undefined;
      announce({ ...hosted.state, since: new Date().toISOString() });
    };
    const ctx: ConnectorContext = {
      channel,
      account,
      installationId: bus.installationId,
      log,
      signal,
      state,
      http: this.o.http,
      media: new MediaStore(bus.media, this.o.mediaMaxBytes, `${channel}.${account}`),
      setState,
      deadLetter: async (reason, payload, opts = {}) => {
        const r = await bus.deadLetters.park({
          source: 'connector', scope: `${channel}.${account}`, subject, code: opts.code ?? 'invalid_payload', reason, payload, meta: opts.meta,
        });
        // Suppressed letters are counted; logging each would let a flood fill the log instead.
        if (r === 'stored') log.warn({ reason }, 'inbound payload parked on dead-letter subject');
      },
      dropped: (kind, detail) => {
        (kind === 'duplicate' ? metrics.duplicates : metrics.ignored).inc({ channel });
        log.debug({ kind, detail }, 'inbound message dropped by the connector');
      },
      onReplay: (handler) => {
        hosted.replay = handler;
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
      lease: (name = 'intake') => this.takeLease(`${channel}.${account}.${kvSafe(name)}`, hosted, setState, log),
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
            hosted.lastEventAt = new Date().toISOString();
            unstalled();
            if (ack.duplicate) metrics.duplicates.inc({ channel });
            return { duplicate: ack.duplicate, seq: ack.seq };
          } catch (err) {
            if (signal.aborted && attempt > 1) throw err;
            if (isCasConflict(err)) throw err;
            // The client refused the message itself (a header or subject it cannot carry): the
            // same bytes fail the same way every time, so the caller gets a permanent refusal.
            if (isRefusedByClient(err)) throw new InvalidEventError(`NATS client refused the event: ${errorMessage(err)}`);
            if (attempt >= 3) stalled(`cannot publish to JetStream: ${errorMessage(err)}`);
            await sleep(backoffMs(attempt, 200, 5000), signal);
          }
        }
      },
    };
    return ctx;
  }

  /**
   * Waits for the lease as `standby`, saying whose it is and until when (its last renewal plus
   * the TTL): right after a crash that is the dead holder's key, and nothing polls until it runs
   * out. Once taken the state is `starting` until the connector reports its own.
   */
  private async takeLease(key: string, hosted: Hosted, setState: (s: ConnectorState, detail?: string) => void, log: Logger) {
    const bus = this.o.bus;
    const ttlMs = this.o.leaseTtlMs;
    let waiting = true;
    const look = async () => {
      try {
        const e = await bus.kv.leases.get(key);
        if (!waiting || !e || e.operation !== 'PUT' || e.string() === this.instanceId) return;
        const first = !hosted.standby;
        hosted.standby = { key, holder: e.string(), until: new Date(e.created.getTime() + ttlMs) };
        metrics.connectorStandbyUntil.set({ channel: hosted.channel, account: hosted.account }, hosted.standby.until.getTime() / 1000);
        if (first || hosted.state.state !== 'standby') setState('standby', `waiting for lease ${key}`);
      } catch (err) {
        log.debug({ key, err: errorMessage(err) }, 'lease holder not read');
      }
    };
    // Bounded by the wait below (cleared in finally): it lives exactly as long as the standby.
    const timer = setInterval(() => void look(), Math.max(250, Math.floor(ttlMs / 3))); // eslint-disable-line @typescript-eslint/no-floating-promises -- look() catches its own errors
    void look(); // eslint-disable-line @typescript-eslint/no-floating-promises -- look() catches its own errors
    try {
      return await acquireLease(bus.kv.leases, key, { ttlMs, holder: this.instanceId, signal: AbortSignal.any([this.abort.signal, hosted.own.signal]), log });
    } finally {
      waiting = false;
      clearInterval(timer);
      metrics.connectorStandbyUntil.set({ channel: hosted.channel, account: hosted.account }, 0);
      const wasStandby = hosted.standby !== undefined;
      hosted.standby = undefined;
      if (wasStandby && hosted.state.state === 'standby' && !this.abort.signal.aborted) setState('starting', `lease ${key} taken`);
    }
  }
}

/** States that are not a problem: they do not replace the last error shown to ops. */
const QUIET_STATES: ReadonlySet<ConnectorState> = new Set(['connected', 'starting', 'standby', 'stopped']);

/** A stable Connector for the outbound runner that forwards to the hosted connector of the moment. */
function currentConnector(hosted: Hosted): Connector {
  return {
    start: () => hosted.connector.start(),
    stop: () => hosted.connector.stop(),
    health: () => hosted.connector.health(),
    canSend: () => hosted.connector.canSend?.() ?? true,
    get resendSafe() {
      return hosted.connector.resendSafe;
    },
    async send(message) {
      const result = await hosted.connector.send(message);
      hosted.lastSendAt = new Date().toISOString();
      return result;
    },
  };
}

/** Errors nats.js raises before anything is sent: bad header value, subject or payload size. */
export function isRefusedByClient(err: unknown): boolean {
  const name = (err as { name?: string } | null)?.name;
  return name === 'InvalidArgumentError' || name === 'InvalidSubjectError';
}
