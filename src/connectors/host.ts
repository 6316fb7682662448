/**
 * Runs the configured connectors: builds each one's context, starts intake and its outbound
 * runner, tracks state for /readyz and publishes state changes for ops. Knows no channel by name.
 */
import { newInstanceId } from '../core/holder.js';
import type { Bus } from '../core/bus.js';
import type { Logger } from '../core/logger.js';
import type { HttpMount, RouteHandler } from '../core/http.js';
import { MediaStore } from '../core/media.js';
import { waitForLease } from './standby.js';
import { ConnectorStateEvent, ConversationStateEvent, DeliveryStatus, type ConnectorState, type InboundEventInput } from '../core/schema.js';
import { Subjects, kvSafe } from '../core/subjects.js';
import { metrics } from '../core/metrics.js';
import { errorMessage } from '../core/errors.js';
import {
  type AccountState,
  type Connector,
  type ConnectorContext,
  type ConnectorFactory,
  type ConnectorHealth,
  type ReplayHandler,
} from './contract.js';
import { serveReplay, type ReplayOutcome } from '../core/replay.js';
import { accountState } from './account-state.js';
import { publishInbound } from './intake.js';
import { OutboundRunner, type OutboundRunnerOptions } from './outbound-runner.js';
import { backoffMs, sleep, whenAborted } from '../core/sleep.js';
import { Supervisor, type LoopStatus, type SupervisedLoop } from '../core/supervisor.js';

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
  channel: string;
  type: string;
  account: string;
  required: boolean;
  connector: Connector;
  /** Aborted when this connector alone is restarted (ctx.signal follows it and the host's). */
  own: AbortController;
  /** Set while an operator's restart runs: a second request joins it instead of stopping the new instance. */
  restarting?: Promise<boolean>;
  lastEventAt?: string;
  lastSendAt?: string;
  lastError?: { state: ConnectorState; detail?: string; at: string };
  /** The replay service is served once per connector; it calls whichever instance is current. */
  replayServed?: boolean;
  runner: OutboundRunner;
  /** The last state the connector published (ctx.setState). */
  state: ConnectorHealth;
  replay?: ReplayHandler;
  /** Set while intake cannot publish to JetStream; shown over `state` until a publish succeeds. */
  stall?: ConnectorHealth;
  /** Set while waiting for a lease another replica holds. */
  standby?: { key: string; holder: string; until: Date };
  /** Set while its start or one of its loops (ctx.run) is restarting or failed; shown over all else. */
  fault?: ConnectorHealth;
  /** Loops (ctx.run, and the start retry) whose fault is shown, by loop name. */
  faults: Map<string, ConnectorHealth>;
  loops: Set<SupervisedLoop>;
  /** Retries a failed start until it succeeds; idles afterwards until stop. */
  startLoop?: SupervisedLoop;
  started: boolean;
  spec: HostedConnectorSpec;
  ctx: ConnectorContext;
  log: Logger;
}

/** A failed start is tried again after this (jittered, doubling), at most every START_MAX_MS. */
const START_BASE_MS = 1_000;
const START_MAX_MS = 60_000;
/** How long stopping a connector whose start failed may take before the next attempt goes on. */
const FAILED_STOP_MS = 5_000;

export class ConnectorHost {
  private readonly hosted: Hosted[] = [];
  private readonly abort = new AbortController();
  private readonly replayServers: Array<{ stop(): Promise<void> }> = [];
  private readonly supervisor: Supervisor;
  /** Every route a connector mounted, by method and path: a connector started again replaces its handlers. */
  private readonly routes = new Map<string, RouteHandler>();
  readonly instanceId: string;

  constructor(private readonly o: ConnectorHostOptions) {
    this.instanceId = o.instanceId ?? newInstanceId();
    this.supervisor = o.supervisor ?? new Supervisor(o.log);
  }

  /**
   * Creates and starts every connector. One whose start() fails is reported (`stalled`, then
   * `failed`) and tried again with a fresh instance under the supervisor (jittered backoff from
   * START_BASE_MS, capped at START_MAX_MS) until it starts or the gateway stops; the rest go on.
   */
  async start(specs: HostedConnectorSpec[]): Promise<void> {
    for (const spec of specs) {
      const channel = spec.factory.channel;
      const log = this.o.log.child({ channel, account: spec.account, connector: spec.factory.type });
      const hosted = { channel, type: spec.factory.type, account: spec.account, required: spec.required ?? false, spec, log, own: new AbortController() } as Hosted;
      hosted.state = { state: 'starting', since: new Date().toISOString() };
      hosted.faults = new Map();
      hosted.loops = new Set();
      hosted.started = false;
      hosted.ctx = this.context(channel, spec.account, log, hosted);
      this.hosted.push(hosted);
      try {
        await this.startOnce(hosted);
      } catch (err) {
        log.error({ err: errorMessage(err) }, 'connector failed to start; retrying with backoff');
        this.retryStart(hosted, err);
      }
    }
  }

  /** A fresh instance of the connector and its outbound runner, started. Throws what start() threw. */
  private async startOnce(hosted: Hosted): Promise<void> {
    const { spec, ctx, log } = hosted;
    hosted.connector = spec.factory.create(spec.options, ctx);
    try {
      await hosted.connector.start();
      // Through currentConnector: the runner sees the instance of the moment and notes each send.
      hosted.runner = new OutboundRunner(this.o.bus, hosted.channel, hosted.account, currentConnector(hosted), log, { ...this.o.outbound, replica: this.instanceId }, this.supervisor);
      await hosted.runner.start();
    } catch (err) {
      await this.stopInstance(hosted);
      throw err;
    }
    hosted.started = true;
    if (!hosted.replayServed) {
      hosted.replayServed = true;
      // Served for every running connector: one without a replay says so, instead of the replay
      // reading as "no running connector" (the gateway and the connector were running).
      const none: ReplayOutcome = { outcome: 'refused', reason: `the ${hosted.type} connector takes no replays: what it refused was refused to its sender (an HTTP 4xx), who sends it again` };
      this.replayServers.push(serveReplay(this.o.bus, `inbound.${hosted.channel}.${hosted.account}`, (p, m) => (hosted.replay ? hosted.replay(p, m) : Promise.resolve(none)), log));
    }
    log.info('connector started');
  }

  /** Best effort, bounded: what an instance left running (loops, sockets) must not linger when it failed to start or is restarted. */
  private async stopInstance(hosted: Hosted): Promise<void> {
    const stopping = Promise.all([
      hosted.runner?.stop().catch((err) => hosted.log.debug({ err: errorMessage(err) }, 'stopping the outbound runner of a stopped instance failed')),
      hosted.connector.stop().catch((err) => hosted.log.debug({ err: errorMessage(err) }, 'stopping the connector after a failed start failed')),
    ]);
    // Not cut short by the gateway's stop: a runner still recording a send must finish, or the
    // bus closes under it and the reply is sent again (or reported unknown) after the restart.
    await Promise.race([stopping, sleep(FAILED_STOP_MS)]);
    hosted.runner = undefined as unknown as OutboundRunner;
    await this.stopLoops(hosted);
  }

  /**
   * Stops one connector and starts a fresh instance from the same config (an operator's restart,
   * from the console or the API). A start that fails goes on retrying as at gateway start.
   * False when the connector is not hosted here.
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
    hosted.log.warn('connector restart requested');
    hosted.own.abort();
    if (hosted.startLoop) {
      await hosted.startLoop.stop();
      hosted.startLoop = undefined;
      this.clearFault(hosted, this.loopName(hosted, 'start'), true);
    }
    if (hosted.started) await this.stopInstance(hosted);
    hosted.started = false;
    // The gateway began stopping meanwhile: starting an instance now would outlive the host.
    if (this.abort.signal.aborted) return false;
    hosted.own = new AbortController();
    hosted.ctx = this.context(hosted.channel, hosted.account, hosted.log, hosted);
    hosted.ctx.setState('starting', 'restarted by an operator');
    try {
      await this.startOnce(hosted);
      hosted.log.info('connector restarted');
    } catch (err) {
      hosted.log.error({ err: errorMessage(err) }, 'connector failed to start after a restart; retrying with backoff');
      this.retryStart(hosted, err);
    }
    return true;
  }

  private retryStart(hosted: Hosted, first: unknown): void {
    const name = this.loopName(hosted, 'start');
    this.noteFault(hosted, name, { state: 'stalled', detail: `failed to start: ${errorMessage(first)}; retrying`, since: new Date().toISOString() });
    let tries = 0;
    const loop = this.supervisor.run(
      name,
      async ({ signal, progress }) => {
        // The first attempt ran inline at start: wait out a backoff before the next one.
        if (tries++ === 0) await sleep(START_BASE_MS, signal);
        if (signal.aborted) return;
        if (!hosted.started) {
          await this.startOnce(hosted);
          progress();
          this.clearFault(hosted, name);
        }
        // Started: nothing more to do; the loop idles until the gateway stops.
        await whenAborted(signal);
      },
      { baseMs: START_BASE_MS, maxMs: START_MAX_MS, onState: (s) => this.loopChanged(hosted, s, 'failed to start') },
    );
    hosted.startLoop = loop;
  }

  private loopName(hosted: Hosted, name: string): string {
    return `connector.${hosted.channel}.${hosted.account}.${name}`;
  }

  /** A connector loop ended or threw (restarting/failed), or runs again: mirror it into the connector's state. */
  private loopChanged(hosted: Hosted, s: LoopStatus, what: string): void {
    if (s.state === 'running') return; // cleared when the connector reports again (see clearFault)
    const retry = s.nextRunAt ? `; retrying at ${s.nextRunAt}` : '';
    const detail = `${what}: ${s.lastError ?? 'unknown error'}${retry} (${s.restarts} restart${s.restarts === 1 ? '' : 's'})`;
    this.noteFault(hosted, s.name, { state: s.state === 'failed' ? 'failed' : 'stalled', detail, since: new Date().toISOString() });
  }

  private noteFault(hosted: Hosted, loop: string, h: ConnectorHealth): void {
    hosted.faults.set(loop, h);
    const worst = [...hosted.faults.values()].find((f) => f.state === 'failed') ?? h;
    hosted.fault = worst;
    this.announce(hosted, worst);
  }

  private clearFault(hosted: Hosted, loop: string, quiet = false): void {
    if (!hosted.faults.delete(loop)) return;
    const rest = [...hosted.faults.values()];
    hosted.fault = rest.find((f) => f.state === 'failed') ?? rest[0];
    if (!quiet) this.announce(hosted, hosted.fault ?? hosted.stall ?? { ...hosted.state, since: new Date().toISOString() });
  }

  private announce(hosted: Hosted, h: ConnectorHealth): void {
    const { channel, account, log } = hosted;
    const event = ConnectorStateEvent.parse({ v: 1, type: 'connector.state', channel, account, state: h.state, detail: h.detail, at: h.since });
    const level = h.state === 'connected' || h.state === 'starting' || h.state === 'stopped' || h.state === 'standby' ? 'info' : 'warn';
    log[level]({ state: h.state, detail: h.detail }, 'connector state');
    this.o.bus.publishJson(Subjects.connectorEvent(channel, account), event).catch((err) => log.warn({ err: errorMessage(err) }, 'could not publish connector state'));
  }

  private async stopLoops(hosted: Hosted): Promise<void> {
    const loops = [...hosted.loops];
    hosted.loops.clear();
    await Promise.all(loops.map((l) => l.stop()));
  }

  /** Stop intake everywhere, then let outbound sends in flight finish. */
  async stop(): Promise<void> {
    this.abort.abort();
    // A restart under way ends first (it starts nothing once aborted), so what it started is stopped below.
    await Promise.all(this.hosted.flatMap((h) => (h.restarting ? [h.restarting.catch(() => false)] : [])));
    await Promise.all(this.replayServers.map((r) => r.stop()));
    await Promise.all(
      this.hosted.map(async (h) => {
        await h.runner?.stop().catch((err) => h.log.warn({ err: errorMessage(err) }, 'stopping the outbound runner failed; its messages come back after ack_wait'));
        if (h.started) await h.connector.stop().catch((err) => this.o.log.warn({ err: errorMessage(err), channel: h.channel }, 'connector stop failed'));
        // Loops the connector's stop() did not end, and a start still being retried.
        await Promise.all([this.stopLoops(h), h.startLoop?.stop()]);
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
      const current = h.fault ?? h.stall ?? h.state;
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
    const state = accountState(bus, statePrefix);
    const announce = (h: ConnectorHealth) => this.announce(hosted, h);
    const setState = (s: ConnectorState, detail?: string) => {
      hosted.state = { state: s, detail, since: new Date().toISOString() };
      if (!QUIET_STATES.has(s)) hosted.lastError = { state: s, detail, at: hosted.state.since };
      // The connector reports again from a loop that was restarted: its own word counts again.
      for (const l of hosted.loops) if (hosted.faults.has(l.name) && l.status.state === 'running') this.clearFault(hosted, l.name, true);
      // While a loop fails or intake is stalled that is what ops see; the connector's own state shows again after.
      if (hosted.fault || hosted.stall) log.info({ state: s, detail }, 'connector state (shown once intake publishes again)');
      else announce(hosted.state);
    };
    const stalled = (detail: string) => {
      if (hosted.stall) return;
      hosted.stall = { state: 'stalled', detail, since: new Date().toISOString() };
      if (!hosted.fault) announce(hosted.stall);
    };
    const unstalled = () => {
      if (!hosted.stall) return;
      hosted.stall = undefined;
      if (!hosted.fault) announce({ ...hosted.state, since: new Date().toISOString() });
    };
    // Routes go through one table: a connector created again after a failed start replaces its
    // handlers (the HTTP server takes no new routes once it listens).
    const http: HttpMount = {
      route: (method, path, handler, opts) => {
        const key = `${method} ${path}`;
        const known = this.routes.has(key);
        this.routes.set(key, handler);
        if (!known) this.o.http.route(method, path, (req) => this.routes.get(key)!(req), opts);
      },
    };
    const ctx: ConnectorContext = {
      channel,
      account,
      installationId: bus.installationId,
      log,
      signal,
      state,
      http,
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
      run: (name, body) => {
        const loopName = this.loopName(hosted, kvSafe(name));
        const loop = this.supervisor.run(
          loopName,
          // Useful work after a restart shows the connector's own state again. A body that ends
          // because the connector is being stopped (its context's signal, aborted before the
          // connector's stop() stops this loop) waits for that stop: reported as a loop that
          // ended by itself, every SIGTERM raised a `stalled` alert (outside trial, Slack events).
          async (r) => {
            try {
              await body({ signal: r.signal, progress: () => (r.progress(), this.clearFault(hosted, loopName)) });
            } catch (err) {
              if (!signal.aborted) throw err;
              // Ended by the stop itself (an AbortError) or failing as it stopped: said, not alerted on.
              log.info({ loop: name, err: errorMessage(err) }, 'connector loop ended with an error while its connector stopped');
            }
            if (signal.aborted) await whenAborted(r.signal);
          },
          { onState: (s) => this.loopChanged(hosted, s, `loop ${name} stopped`) },
        );
        hosted.loops.add(loop);
        return {
          stop: async () => {
            await loop.stop();
            hosted.loops.delete(loop);
            this.clearFault(hosted, loopName);
          },
        };
      },
      lease: (name = 'intake') =>
        waitForLease({
          bus, key: `${channel}.${account}.${kvSafe(name)}`, ttlMs: this.o.leaseTtlMs, holder: this.instanceId, signal, log,
          standby: hosted, isStandby: () => hosted.state.state === 'standby', setState,
        }),
      // On the conversation's partition: one router replica owns it and routes it in order.
      publish: (input: InboundEventInput, opts?: { giveUpAfterMs?: number }) =>
        publishInbound(bus, channel, account, input, signal, {
          published: () => {
            hosted.lastEventAt = new Date().toISOString();
            unstalled();
          },
          stalled,
        }, opts?.giveUpAfterMs),
    };
    return ctx;
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
    async send(message, attempt) {
      const result = await hosted.connector.send(message, attempt);
      hosted.lastSendAt = new Date().toISOString();
      return result;
    },
  };
}
