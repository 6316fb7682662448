/**
 * Runs the configured connectors: builds each one's context, starts intake and its outbound
 * runner, restarts what fails to start or is asked to restart. What it keeps per connector is in
 * hosted.ts, the state ops are told in hosted-state.ts. Knows no channel by name.
 */
import { registerOwnAddress } from '../core/log-personal.js';
import { newInstanceId } from '../core/holder.js';
import type { Bus } from '../core/bus.js';
import type { Logger } from '../core/logger.js';
import type { HttpMount, RouteHandler } from '../core/http.js';
import { MediaStore } from '../core/media.js';
import { waitForLease } from './standby.js';
import { ConversationStateEvent, DeliveryStatus, type ConnectorState, type InboundEventInput } from '../core/schema.js';
import { Subjects, kvSafe } from '../core/subjects.js';
import { metrics } from '../core/metrics.js';
import { errorMessage } from '../core/errors.js';
import type { ConnectorContext, ConnectorHealth } from './contract.js';
import { serveReplay, type ReplayOutcome } from '../core/replay.js';
import { accountState } from './account-state.js';
import { publishInbound } from './intake.js';
import { OutboundRunner, type OutboundRunnerOptions } from './outbound-runner.js';
import { sleep, whenAborted } from '../core/sleep.js';
import { Supervisor } from '../core/supervisor.js';
import { currentConnector, healthOf, type Hosted, type HostedConnectorSpec, type HostedHealth } from './hosted.js';
import { QUIET_STATES, announce, clearFault, loopChanged, noteFault } from './hosted-state.js';

export type { HostedConnectorSpec, HostedHealth } from './hosted.js';

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
  /** Every configured entry's own addresses, by channel (ConnectorContext.channelAddresses). */
  private readonly channelAddresses = new Map<string, Set<string>>();
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
    // Before any is created: each entry learns the others' addresses, without knowing their kind.
    for (const spec of specs) {
      const known = this.channelAddresses.get(spec.factory.channel) ?? new Set<string>();
      for (const a of spec.factory.ownAddresses?.(spec.options) ?? []) {
        known.add(a.trim().toLowerCase());
        // Ours, not a customer's personal data: log lines name it as it is (core/log-personal.ts).
        registerOwnAddress(a.trim());
      }
      this.channelAddresses.set(spec.factory.channel, known);
    }
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
      clearFault(this.o.bus, hosted, this.loopName(hosted, 'start'), true);
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
    noteFault(this.o.bus, hosted, name, { state: 'stalled', detail: `failed to start: ${errorMessage(first)}; retrying`, since: new Date().toISOString() });
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
          clearFault(this.o.bus, hosted, name);
        }
        // Started: nothing more to do; the loop idles until the gateway stops.
        await whenAborted(signal);
      },
      { baseMs: START_BASE_MS, maxMs: START_MAX_MS, onState: (s) => loopChanged(this.o.bus, hosted, s, 'failed to start') },
    );
    hosted.startLoop = loop;
  }

  private loopName(hosted: Hosted, name: string): string {
    return `connector.${hosted.channel}.${hosted.account}.${name}`;
  }

  private async stopLoops(hosted: Hosted): Promise<void> {
    const loops = [...hosted.loops];
    hosted.loops.clear();
    await Promise.all(loops.map((l) => l.stop()));
  }

  /** Every connector's state as ops were last told it (hosted.ts healthOf). */
  health(): HostedHealth[] {
    return this.hosted.map(healthOf);
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

  private context(channel: string, account: string, log: Logger, hosted: Hosted): ConnectorContext {
    const bus = this.o.bus;
    const signal = AbortSignal.any([this.abort.signal, hosted.own.signal]);
    const subject = Subjects.inbound(channel, account);
    const statePrefix = `${channel}.${account}.`;
    const state = accountState(bus, statePrefix);
    const tell = (h: ConnectorHealth) => announce(bus, hosted, h);
    const setState = (s: ConnectorState, detail?: string) => {
      hosted.state = { state: s, detail, since: new Date().toISOString() };
      if (!QUIET_STATES.has(s)) hosted.lastError = { state: s, detail, at: hosted.state.since };
      // The connector reports again from a loop that was restarted: its own word counts again.
      for (const l of hosted.loops) if (hosted.faults.has(l.name) && l.status.state === 'running') clearFault(bus, hosted, l.name, true);
      // While a loop fails or intake is stalled that is what ops see; the connector's own state shows again after.
      if (hosted.fault || hosted.stall) log.info({ state: s, detail }, 'connector state (shown once intake publishes again)');
      else tell(hosted.state);
    };
    const stalled = (detail: string) => {
      if (hosted.stall) return;
      hosted.stall = { state: 'stalled', detail, since: new Date().toISOString() };
      if (!hosted.fault) tell(hosted.stall);
    };
    const unstalled = () => {
      if (!hosted.stall) return;
      hosted.stall = undefined;
      if (!hosted.fault) tell({ ...hosted.state, since: new Date().toISOString() });
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
      messageIdSecret: bus.messageIdSecret,
      channelAddresses: this.channelAddresses.get(channel) ?? new Set(),
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
              await body({ ...r, progress: () => (r.progress(), clearFault(bus, hosted, loopName)) });
            } catch (err) {
              if (!signal.aborted) throw err;
              // Ended by the stop itself (an AbortError) or failing as it stopped: said, not alerted on.
              log.info({ loop: name, err: errorMessage(err) }, 'connector loop ended with an error while its connector stopped');
            }
            if (signal.aborted) await whenAborted(r.signal);
          },
          { onState: (s) => loopChanged(bus, hosted, s, `loop ${name} stopped`) },
        );
        hosted.loops.add(loop);
        return {
          stop: async () => {
            await loop.stop();
            hosted.loops.delete(loop);
            clearFault(bus, hosted, loopName);
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

