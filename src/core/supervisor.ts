/**
 * Owner of the gateway's long-running loops (consumers, watches, lease holders, scanners). A loop
 * that ends or throws while nobody asked it to stop is started again after a jittered backoff, and
 * its state is kept where /readyz, /healthz and /metrics can see it:
 *
 * - running: the loop body is executing (a loop waiting for a lease is still running);
 * - restarting: it ended or threw and waits out its backoff before the next run;
 * - failed: it failed `failAfter` times in a row without progress in between; it is still
 *   retried (at the capped backoff), but something outside it is wrong. /healthz reports it
 *   unless a restart would not help (probes.ts).
 *
 * A body reports progress (`progress()`) when it did useful work; a run that made progress, or
 * lasted longer than `resetAfterMs`, resets the failure count, so a loop that fails once a day
 * never climbs to `failed`. A body that also tells what work waits (`hold`, `failed`) is watched
 * for a stall (stall-clock.ts): `running`, with work waiting and no progress for `stallAfterMs`.
 */
import type { Logger } from './logger.js';
import { metrics, sampleAtScrape } from './metrics.js';
import { StallClock } from './stall-clock.js';
import { backoffMs, sleep } from './sleep.js';
import { errorMessage, isDatabaseUnavailable, isJetStreamRefusal, isNatsUnavailable } from './errors.js';

export const LOOP_STATES = ['running', 'restarting', 'failed'] as const;
export type LoopState = (typeof LOOP_STATES)[number];

export interface LoopStatus {
  name: string;
  state: LoopState;
  /** Readiness needs this loop running (the replica's own consumers). */
  essential: boolean;
  /** False: a failure here does not fail liveness (a restart would not cure it). */
  restartCures: boolean;
  restarts: number;
  /** Failures since the last run that made progress (or lasted `resetAfterMs`); 0 before the first. */
  failuresInARow: number;
  since: string;
  lastProgressAt?: string;
  lastError?: string;
  lastErrorAt?: string;
  /**
   * The last failure was NATS away or silent (`nats`), JetStream answering that it cannot serve
   * (`jetstream`: no leader, JetStream off), or the SQL database away or silent (probes.ts
   * liveness says when that excuses it: a database outage failed /healthz on every replica
   * through the evictor, a NATS outage kept it failing for up to the 30 s backoff after NATS was
   * back, and a full disk on an external nats-server made it flap for as long as the disk was full).
   */
  dependencyDown?: 'nats' | 'jetstream' | 'database';
  /** While restarting or failed: when the next run starts. */
  nextRunAt?: string;
  /**
   * While stalled (stall-clock.ts): since when work has waited without progress. Readiness counts
   * it for the loops that tell their work (routing's partitions, commands); probes.ts.
   */
  stalledSince?: string;
}

export interface LoopRun {
  /** Aborted when the loop is stopped: end the body promptly. */
  signal: AbortSignal;
  /** Call after useful work (a message handled, a scan done). */
  progress(): void;
  /** Work taken (`delta` > 0) or settled (< 0): while some is held and nothing progresses, the loop stalls. */
  hold(delta: number): void;
  /** An attempt at the loop's work failed (and will be retried by someone): counts as work waiting while failures go on. */
  failed(): void;
}

export interface LoopOptions {
  /** First restart delay (jittered, doubling per consecutive failure). */
  baseMs?: number;
  maxMs?: number;
  /** Consecutive failures without progress after which the state is `failed`. */
  failAfter?: number;
  /** A run this long counts as healthy even without progress reports. */
  resetAfterMs?: number;
  essential?: boolean;
  /**
   * False for a loop whose failures a process restart cannot cure (its database is unreachable):
   * it may reach `failed`, and says so in /readyz, but does not fail /healthz.
   */
  restartCures?: boolean;
  /** Told every state change (and every new error), e.g. to mirror it into a connector's state. */
  onState?: (status: LoopStatus) => void;
  /** Work waiting this long without progress is a stall (router.stallAfter; stall-clock.ts). */
  stallAfterMs?: number;
}

type Settings = Required<Omit<LoopOptions, 'onState'>> & Pick<LoopOptions, 'onState'>;

/** Somewhere in [ms/2, ms]: replicas restarted by one NATS blip do not retry in lockstep. */
export function jitter(ms: number, random = Math.random): number {
  return Math.round(ms / 2 + random() * (ms / 2));
}

export class SupervisedLoop {
  private readonly abort = new AbortController();
  private status_: LoopStatus;
  private progressed = false;
  private lastProgressMs = 0;
  private gaugedAtMs = 0;
  private done?: Promise<void>;
  private readonly stall: StallClock;
  private stopSampling = () => {};

  constructor(
    readonly name: string,
    private readonly body: (run: LoopRun) => Promise<void>,
    private readonly o: Settings,
    private readonly log: Logger | undefined,
    private readonly onStopped: (loop: SupervisedLoop) => void,
    private readonly shuttingDown: () => boolean = () => false,
  ) {
    this.status_ = { name, state: 'running', essential: o.essential, restartCures: o.restartCures, restarts: 0, failuresInARow: 0, since: new Date().toISOString() };
    this.stall = new StallClock(o.stallAfterMs);
  }

  get status(): LoopStatus {
    const stalled = this.stalledSince();
    return {
      ...this.status_,
      ...(this.lastProgressMs && { lastProgressAt: new Date(this.lastProgressMs).toISOString() }),
      // The stall clock is monotonic (performance.now): shown in wall time by one fixed offset, so
      // every read of one stall names the same instant.
      ...(stalled !== undefined && { stalledSince: new Date(performance.timeOrigin + stalled).toISOString() }),
    };
  }

  /** Only a running loop stalls: one restarting or failed says so by its state. */
  private stalledSince(): number | undefined {
    return this.status_.state === 'running' ? this.stall.stalledSince() : undefined;
  }

  /** Starts the first run; returns at once. */
  start(): this {
    this.stopSampling = sampleAtScrape(() => metrics.loopStalled.set({ loop: this.name }, this.stalledSince() === undefined ? 0 : 1));
    this.done = this.drive().finally(() => this.onStopped(this));
    return this;
  }

  /** Aborts the body and waits for it to end; no restart follows. */
  async stop(): Promise<void> {
    this.abort.abort();
    await this.done;
  }

  /**
   * Called for every message a consumer loop handles: the time is kept as a number and turned
   * into text when the status is read, and the gauge moves once a second at most (it was a Date
   * string and a labelled gauge write per routed message).
   */
  progress(): void {
    this.progressed = true;
    this.stall.progress();
    const now = Date.now();
    this.lastProgressMs = now;
    if (now - this.gaugedAtMs < 1000) return;
    this.gaugedAtMs = now;
    metrics.loopProgress.set({ loop: this.name }, now / 1000);
  }

  private setState(state: LoopState, tell = false): void {
    const changed = this.status_.state !== state;
    if (changed) this.status_ = { ...this.status_, state, since: new Date().toISOString() };
    for (const s of LOOP_STATES) metrics.loopState.set({ loop: this.name, state: s }, s === state ? 1 : 0);
    if (changed || tell) this.tell();
  }

  private tell(): void {
    try {
      this.o.onState?.(this.status);
    } catch (err) {
      this.log?.error({ loop: this.name, err: errorMessage(err) }, 'loop state observer failed');
    }
  }

  private async drive(): Promise<void> {
    const signal = this.abort.signal;
    const run: LoopRun = { signal, progress: () => this.progress(), hold: (delta) => this.stall.hold(delta), failed: () => this.stall.failed() };
    let failures = 0;
    while (!signal.aborted) {
      this.status_.nextRunAt = undefined;
      this.setState('running');
      this.stall.restart();
      this.progressed = false;
      const startedAt = Date.now();
      let problem: string;
      let dependencyDown: LoopStatus['dependencyDown'];
      try {
        await this.body(run);
        if (signal.aborted || this.shuttingDown()) break;
        problem = 'the loop ended although nothing stopped it';
      } catch (err) {
        if (signal.aborted || this.shuttingDown()) break;
        problem = errorMessage(err);
        dependencyDown = isJetStreamRefusal(err) ? 'jetstream' : isNatsUnavailable(err) ? 'nats' : isDatabaseUnavailable(err) ? 'database' : undefined;
      }
      if (this.progressed || Date.now() - startedAt >= this.o.resetAfterMs) failures = 0;
      failures++;
      this.status_.restarts++;
      this.status_.failuresInARow = failures;
      this.status_.lastError = problem;
      this.status_.lastErrorAt = new Date().toISOString();
      this.status_.dependencyDown = dependencyDown;
      metrics.loopRestarts.inc({ loop: this.name });
      const failed = failures >= this.o.failAfter;
      const delay = jitter(backoffMs(failures - 1, this.o.baseMs, this.o.maxMs));
      this.status_.nextRunAt = new Date(Date.now() + delay).toISOString();
      this.setState(failed ? 'failed' : 'restarting', true);
      this.log?.[failed ? 'error' : 'warn']({ loop: this.name, err: problem, failures, restartInMs: delay }, failed ? 'loop keeps failing; restarting' : 'loop stopped unexpectedly; restarting');
      await sleep(delay, signal);
    }
    for (const s of LOOP_STATES) metrics.loopState.remove({ loop: this.name, state: s });
    this.stopSampling();
    metrics.loopStalled.remove({ loop: this.name });
  }
}

/** The default stall threshold (config: router.stallAfter; docs/operating.md, Stalled routing, says why 60 s). */
export const STALL_AFTER_MS = 60_000;

const DEFAULTS: Settings = { baseMs: 500, maxMs: 30_000, failAfter: 5, resetAfterMs: 60_000, essential: false, restartCures: true, stallAfterMs: STALL_AFTER_MS };

export class Supervisor {
  private readonly loops = new Set<SupervisedLoop>();

  constructor(
    private readonly log?: Logger,
    private readonly defaults: LoopOptions = {},
  ) {}

  /** Runs `body` under supervision until the returned loop (or the supervisor) is stopped. */
  run(name: string, body: (run: LoopRun) => Promise<void>, o: LoopOptions = {}): SupervisedLoop {
    const loop = new SupervisedLoop(name, body, { ...DEFAULTS, ...this.defaults, ...o }, this.log, (l) => this.loops.delete(l), () => this.shuttingDown);
    this.loops.add(loop);
    return loop.start();
  }

  statuses(): LoopStatus[] {
    return [...this.loops].map((l) => l.status);
  }

  private shuttingDown = false;

  /**
   * The process is stopping: a loop that ends from now on (its subscription closed by the
   * shutdown, NATS gone meanwhile) is not restarted nor reported as a failure; modules stop
   * their own loops in order as before. Loops were restarted during a stop with NATS down.
   */
  beginShutdown(): void {
    this.shuttingDown = true;
  }

  /** Stops every loop still running (modules stop their own first, in shutdown order). */
  async stop(): Promise<void> {
    await Promise.all([...this.loops].map((l) => l.stop()));
  }
}
