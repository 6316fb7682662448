/**
 * Keeps the embedded nats-server's JetStream answering after its disk filled up.
 *
 * A write that fails for lack of space leaves JetStream unusable until nats-server restarts:
 * 2.9.10 deadlocks its file store (every JetStream request times out, also after space is freed,
 * and SIGTERM no longer stops the process: seen here, goroutines waiting in
 * `rebuildStateLocked`), newer servers turn JetStream off and answer 503 "not enabled". Only a
 * restart of the server cures either. A gateway under an orchestrator got that restart from
 * /healthz, the whole gateway with it; one run by hand or by a plain systemd unit stayed unable to
 * take a message for good. With the embedded server the gateway owns that server, so it restarts
 * it itself: once JetStream has not answered for `stuckAfterMs` while the connection is up, and
 * only when the volume has room again (a restart onto a full disk would wedge at the first write).
 */
import type { Bus } from './bus.js';
import type { JetStreamAvailability } from './jetstream-availability.js';
import type { EmbeddedNats } from './embedded-nats.js';
import type { Logger } from './logger.js';
import { metrics } from './metrics.js';
import { sleep } from './sleep.js';
import type { Supervisor } from './supervisor.js';

/** How long one probe waits for JetStream's answer. */
const PROBE_TIMEOUT_MS = 5_000;

/**
 * Free space a restart waits for. nats-server gives JetStream 75 % of what is free when it starts;
 * with less than this the first writes after the restart would fill the volume again.
 */
const MIN_FREE_BYTES = 64 * 1024 * 1024;

/** What one probe of JetStream found: answering, not answering in time, or answering that it is off. */
export type JetStreamHealth = 'ok' | 'silent' | 'off';

export interface JetStreamWatchdogOptions {
  /** Asks JetStream once (a cheap API request with a short timeout). */
  probe: () => Promise<JetStreamHealth>;
  /** False while the client is not connected: the server's own exit is its restart's business, not ours. */
  connected: () => boolean;
  /** Bytes free for the server's store directory. */
  freeBytes: () => Promise<number>;
  /** Restarts the server; true once it is started again, false when it was not restarted (stopping, or a restart under way); throws when it failed. */
  restart: (reason: string) => Promise<boolean>;
  log: Logger;
  /** JetStream silent or off this long, connected all the while, before a restart. */
  stuckAfterMs: number;
  /** A restart waits until the volume has at least this much free. */
  minFreeBytes: number;
  /** Called once per restart, with why (the metric). */
  onRestart?: (reason: JetStreamHealth) => void;
  now?: () => number;
}

/** How often a warning repeats while JetStream stays stuck (no room yet, or busy). */
const WARN_EVERY_MS = 60_000;

export class JetStreamWatchdog {
  private stuckSince?: number;
  /** The volume was seen under minFreeBytes while JetStream was stuck: a silence then is the full-disk wedge, not load. */
  private pressureSeen = false;
  private lastFullDiskWarnAt = -Infinity;
  private lastBusyWarnAt = -Infinity;
  private readonly now: () => number;

  constructor(private readonly o: JetStreamWatchdogOptions) {
    this.now = o.now ?? Date.now;
  }

  /** One look: probes, and restarts the server when it has been stuck long enough with room on the disk. Returns what it did. */
  async check(): Promise<'ok' | 'waiting' | 'disk full' | 'busy' | 'restarted' | 'disconnected'> {
    if (!this.o.connected()) {
      this.forget();
      return 'disconnected';
    }
    const health = await this.o.probe();
    if (health === 'ok') {
      this.forget();
      return 'ok';
    }
    const now = this.now();
    this.stuckSince ??= now;
    // Sampled at every look while stuck: by the time the window is over, space may have been freed.
    const free = await this.o.freeBytes();
    if (free < this.o.minFreeBytes) this.pressureSeen = true;
    const stuckMs = now - this.stuckSince;
    if (stuckMs < this.o.stuckAfterMs) return 'waiting';
    const what = health === 'off' ? 'answers that it is off' : 'does not answer';
    // "Off" says itself what it is; a silence with the disk never short is an overloaded server,
    // which a restart would only interrupt (and /healthz still has its say).
    if (health === 'silent' && !this.pressureSeen) {
      if (now - this.lastBusyWarnAt >= WARN_EVERY_MS) {
        this.lastBusyWarnAt = now;
        this.o.log.warn(
          { stuckSeconds: Math.round(stuckMs / 1000), freeMB: Math.floor(free / 1e6) },
          "the embedded nats-server's JetStream does not answer, and its volume has room: not restarting it (overloaded? its own log says more)",
        );
      }
      return 'busy';
    }
    if (free < this.o.minFreeBytes) {
      if (now - this.lastFullDiskWarnAt >= WARN_EVERY_MS) {
        this.lastFullDiskWarnAt = now;
        this.o.log.error(
          { stuckSeconds: Math.round(stuckMs / 1000), freeMB: Math.floor(free / 1e6), neededMB: Math.ceil(this.o.minFreeBytes / 1e6) },
          `the embedded nats-server's JetStream ${what} and its volume is full: intake answers 503 until space is freed; the server is restarted as soon as there is room`,
        );
      }
      return 'disk full';
    }
    this.o.log.error(
      { stuckSeconds: Math.round(stuckMs / 1000), freeMB: Math.floor(free / 1e6), health },
      `the embedded nats-server's JetStream ${what} (a full disk leaves it so until the server restarts): restarting the server`,
    );
    // The restarted server gets a whole window of its own before it is judged again.
    this.forget();
    if (!(await this.o.restart(`JetStream ${what} for ${Math.round(stuckMs / 1000)} s`))) return 'waiting';
    this.o.onRestart?.(health);
    return 'restarted';
  }

  /** Stuck, and the volume was seen short of space meanwhile: the full-disk wedge, which a restart onto that volume does not mend. */
  get stuckShortOfSpace(): boolean {
    return this.stuckSince !== undefined && this.pressureSeen;
  }

  private forget(): void {
    this.stuckSince = undefined;
    this.pressureSeen = false;
  }
}

/**
 * Runs the watchdog for the gateway's embedded server as a supervised loop (`nats.embedded-watchdog`).
 * Its verdicts feed `availability` (liveness): stuck with the volume short of space is away (a
 * restart of the gateway would restart its server onto the same full volume); a silence with room
 * on the disk is left to /healthz, as before (a restart of the gateway restarts its server).
 */
export function superviseEmbeddedJetStream(embedded: EmbeddedNats, bus: Bus, loops: Supervisor, log: Logger, stuckAfterMs: number, availability?: JetStreamAvailability): void {
  const watchdog = new JetStreamWatchdog({
    probe: () => bus.jetStreamHealth(PROBE_TIMEOUT_MS),
    connected: () => bus.connected,
    freeBytes: () => embedded.freeBytes(),
    restart: (reason) => embedded.restart(reason),
    onRestart: (reason) => metrics.embeddedNatsRestarts.inc({ reason }),
    log,
    stuckAfterMs,
    minFreeBytes: MIN_FREE_BYTES,
  });
  loops.run('nats.embedded-watchdog', async ({ signal, progress }) => {
    while (!signal.aborted) {
      const verdict = await watchdog.check();
      if (verdict === 'ok') availability?.markBack();
      else if (verdict === 'disk full' || watchdog.stuckShortOfSpace) availability?.markAway("the embedded nats-server's JetStream is stuck and its volume is short of space: the server is restarted once there is room");
      else if (verdict === 'busy' || verdict === 'restarted') availability?.markNotAway();
      progress();
      await sleep(Math.min(5_000, stuckAfterMs / 4), signal);
    }
  });
}
