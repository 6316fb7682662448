/**
 * What /healthz and /readyz answer, and the connector gauges sampled with them.
 *
 * - Liveness: the process answers and no supervised loop has `failed` (kept failing with NATS
 *   connected: restarting the process is the remaining cure). With NATS away, loops that need it
 *   fail too, but a restart would not bring NATS back, so liveness holds and readiness says why.
 *   The same with NATS connected and JetStream away for any client (a full disk on the server, no
 *   leader: jetstream-availability.ts): a restarted process would not even start. And for the
 *   read model's loop and its database: an outage there is not cured by a restart (it restarted
 *   every replica at once); /readyz shows it.
 * - Readiness: this replica can take intake and serve the API: NATS connected, streams present,
 *   its essential loops (router consumers, command subscriptions, outbound runners, webhook
 *   consumers, the ticket watch) running, none of the loops that tell their work (routing's
 *   partitions, delivery outcomes, commands) stalled (work waiting, no progress for
 *   router.stallAfter: a bucket without quorum while NATS and JetStream look up; stall-clock.ts),
 *   and every connector config marks `required` usable.
 *   Other connectors are reported (state, detail, standby expiry) but do not make it unready:
 *   one expired token must not take the API and the other channels out of a load balancer.
 * - Who sees what: the details only with an API token (api/server.ts, http.probeDetails); others
 *   get `Readiness.reasons`, which must name no address, login, host or error text.
 */
import type { Bus } from './core/bus.js';
import { errorMessage } from './core/errors.js';
import { metrics } from './core/metrics.js';
import { ConnectorState } from './core/schema.js';
import { within } from './core/sleep.js';
import { Streams } from './core/subjects.js';
import type { LoopStatus, Supervisor } from './core/supervisor.js';
import type { JetStreamAvailability } from './core/jetstream-availability.js';
import type { HostedHealth } from './connectors/host.js';
import type { Readiness } from './api/server.js';

/** States in which a connector is doing its job on this replica. */
const UP: ReadonlySet<string> = new Set(['connected', 'rate_limited']);
/** A required connector may also be standing by: another replica does the job meanwhile. */
const REQUIRED_OK: ReadonlySet<string> = new Set([...UP, 'standby']);

export interface ProbeDeps {
  bus?: Bus;
  supervisor: Supervisor;
  connectors: () => HostedHealth[];
  /** The SQL read model's projection: its lag is reported, not a reason to be unready (lists may lag a little). */
  readModel?: () => Promise<unknown> | undefined;
  /** Helpdesk adapters' states (reported; a helpdesk that is down never makes a replica unready: its events wait). */
  helpdesks?: () => unknown[];
  /** Whether JetStream is away for any client (absent: the embedded server without its watchdog, which a restart of ours restarts). */
  jetStream?: Pick<JetStreamAvailability, 'away' | 'recentlyBack'>;
}

/**
 * How long after NATS (or JetStream) came back a loop's NATS failure is still put down to the
 * outage (JetStream finding its streams, a backoff of up to 30 s to run out). Past it, a loop
 * that keeps failing with NATS timeouts while the connection is up and JetStream answers is
 * wedged, and a restart is the cure.
 */
const NATS_GRACE_MS = 60_000;

/** Whether a failed loop's last failure is its dependency's, so a restart of this process would not cure it. */
function excused(l: LoopStatus, d: ProbeDeps): boolean {
  // The database away, or JetStream's own answer that it cannot serve (a restart gets the same).
  if (l.dependencyDown === 'database' || l.dependencyDown === 'jetstream') return true;
  if (l.dependencyDown !== 'nats' || !l.lastErrorAt) return false;
  const at = Date.parse(l.lastErrorAt);
  if (d.bus && at < d.bus.connectedSinceMs + NATS_GRACE_MS) return true;
  return d.jetStream?.recentlyBack(at, NATS_GRACE_MS) ?? false;
}

/**
 * Whether an essential loop counts as serving for readiness. A single restart after a run that was
 * doing fine (a consumer's pull giving up after missed heartbeats) is back within its first
 * backoff (at most `baseMs`, 0.5 s): a trial's /readyz flipped to 503 for about a second on every
 * such restart. A second failure in a row, or `failed`, is a loop that is not coming back by itself.
 */
export function serving(l: LoopStatus): boolean {
  return l.state === 'running' || (l.state === 'restarting' && l.failuresInARow <= 1);
}

export function liveness(d: ProbeDeps): Readiness {
  const failed = d.supervisor.statuses().filter((l) => l.state === 'failed' && l.restartCures && !excused(l, d));
  const natsUp = d.bus?.connected ?? false;
  // JetStream away for any client, NATS connected: whatever fails meanwhile, a restart would not
  // help (it would not start without JetStream); /readyz says why. It flapped to 503 before.
  const away = natsUp ? d.jetStream?.away : undefined;
  const alive = failed.length === 0 || !natsUp || away !== undefined;
  const checks: Record<string, unknown> = {};
  const reasons = failed.map((l) => `loop ${publicLoopName(l.name)} failed`);
  if (failed.length) checks.failedLoops = failed.map(brief);
  if (away && failed.length) {
    checks.jetStream = { available: false, since: away.since, reason: away.why };
    reasons.push('JetStream not available to any client while NATS is connected');
  }
  return { ready: alive, checks, reasons };
}

/**
 * How long one step of the readiness probe may wait on NATS or SQL. Kubernetes gives the probe
 * 3 s (deploy/kubernetes): during a NATS outage the read model's sample waited for its request
 * timeout (10 s) and every probe timed out instead of answering 503 with the reason.
 */
const PROBE_STEP_MS = 1_000;

class JetStreamSilentError extends Error {
  constructor(ms: number) {
    super(`JetStream did not list the streams within ${ms} ms`);
  }
}


export async function readiness(d: ProbeDeps): Promise<Readiness> {
  const checks: Record<string, unknown> = {};
  const reasons: string[] = [];
  const natsOk = d.bus?.connected ?? false;
  checks.nats = { connected: natsOk, server: d.bus?.serverVersion };
  if (!natsOk) reasons.push('NATS not connected');
  if (natsOk && d.bus) {
    try {
      const bus = d.bus;
      const names = await within(PROBE_STEP_MS, (async () => {
        const out: string[] = [];
        for await (const s of bus.jsm.streams.names()) out.push(s);
        return out;
      })(), () => new JetStreamSilentError(PROBE_STEP_MS));
      const missing = Object.values(Streams).filter((s) => !names.includes(s));
      checks.streams = missing.length ? { missing } : 'ok';
      if (missing.length) reasons.push(`streams missing: ${missing.join(', ')}`);
    } catch (err) {
      // Connected, and the API silent: not NATS being away but JetStream (a leader election, an
      // overloaded server, or a full disk on the server, which leaves JetStream so: docs/data.md).
      const silent = err instanceof JetStreamSilentError;
      checks.streams = { error: errorMessage(err) };
      reasons.push(silent ? 'JetStream not answering while NATS is connected (for seconds while a restarted NATS cluster elects its leaders; for good when the NATS server\'s disk is full: see docs/data.md, Disk)' : 'streams not listed');
    }
  }
  if (d.readModel) {
    try {
      const rm = await within(PROBE_STEP_MS, Promise.resolve(d.readModel()));
      if (rm) checks.readModel = rm;
    } catch (err) {
      checks.readModel = { error: errorMessage(err) };
    }
  }
  // The reasons for callers without a token (Readiness.reasons). So far fixed texts and stream
  // names; a loop's name may carry a mailbox address.
  const open = [...reasons];
  const loops = d.supervisor.statuses();
  checks.loops = loops;
  for (const l of loops) {
    if (l.essential && !serving(l)) {
      reasons.push(`loop ${l.name} ${l.state}`);
      open.push(`loop ${publicLoopName(l.name)} ${l.state}`);
    }
  }
  // Any loop, essential or not: only the ones whose work must move report a stall (a partition's
  // consumer is not `essential`, it may be handed to another replica, but while held it must route).
  const stalled = loops.filter((l) => l.stalledSince !== undefined);
  if (stalled.length) checks.stalled = stalled.map((l) => ({ loop: l.name, since: l.stalledSince }));
  for (const name of new Set(stalled.map((l) => l.name))) reasons.push(stallReason(name));
  for (const name of new Set(stalled.map((l) => publicLoopName(l.name)))) open.push(stallReason(name));
  const connectors = sampleConnectors(d.connectors());
  checks.connectors = connectors;
  for (const c of connectors) {
    if (!c.required || REQUIRED_OK.has(c.state)) continue;
    // Config names and a state: the detail (addresses, hosts, errors) stays under `connectors`.
    const reason = `required connector ${c.channel}/${c.account} ${c.state}`;
    reasons.push(reason);
    open.push(reason);
  }
  const helpdesks = d.helpdesks?.() ?? [];
  if (helpdesks.length) checks.helpdesks = helpdesks;
  if (reasons.length) checks.reasons = reasons;
  return { ready: reasons.length === 0, checks, reasons: open };
}

function stallReason(loop: string): string {
  return `loop ${loop} stalled: work waiting and no progress (NATS connected; a stream or bucket without a leader or quorum is the usual cause: docs/operating.md, Stalled routing)`;
}

/**
 * A loop's name as a caller without a token sees it: a connector's loops are named after what
 * they serve (`connector.email.support.mailbox:<address>`), so only the connector is named.
 */
export function publicLoopName(name: string): string {
  const parts = name.split('.');
  return parts[0] === 'connector' && parts.length > 3 ? parts.slice(0, 3).join('.') : name;
}

/** omnigate_connector_up / _state / _required from the states the connectors last published. */
export function sampleConnectors(connectors: HostedHealth[]): HostedHealth[] {
  for (const h of connectors) {
    const who = { channel: h.channel, account: h.account };
    metrics.connectorUp.set(who, UP.has(h.state) ? 1 : 0);
    metrics.connectorRequired.set(who, h.required ? 1 : 0);
    for (const state of ConnectorState.options) metrics.connectorState.set({ ...who, state }, state === h.state ? 1 : 0);
  }
  return connectors;
}

function brief(l: LoopStatus) {
  return { name: l.name, since: l.since, restarts: l.restarts, lastError: l.lastError };
}
