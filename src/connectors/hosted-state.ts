/**
 * The state ops are told of a hosted connector: a failing loop or start (a fault) is shown over
 * a stalled intake, which is shown over what the connector itself reported; each change is
 * logged and published on omni.events.connector.<channel>.<account>.
 */
import type { Bus } from '../core/bus.js';
import { ConnectorStateEvent, type ConnectorState } from '../core/schema.js';
import { Subjects } from '../core/subjects.js';
import { errorMessage } from '../core/errors.js';
import type { LoopStatus } from '../core/supervisor.js';
import type { ConnectorHealth } from './contract.js';
import type { Hosted } from './hosted.js';

/** States that are not a problem: they do not replace the last error shown to ops. */
export const QUIET_STATES: ReadonlySet<ConnectorState> = new Set(['connected', 'starting', 'standby', 'stopped']);

/** A connector loop ended or threw (restarting/failed), or runs again: mirror it into the connector's state. */
export function loopChanged(bus: Bus, hosted: Hosted, s: LoopStatus, what: string): void {
  if (s.state === 'running') return; // cleared when the connector reports again (see clearFault)
  const retry = s.nextRunAt ? `; retrying at ${s.nextRunAt}` : '';
  const detail = `${what}: ${s.lastError ?? 'unknown error'}${retry} (${s.restarts} restart${s.restarts === 1 ? '' : 's'})`;
  noteFault(bus, hosted, s.name, { state: s.state === 'failed' ? 'failed' : 'stalled', detail, since: new Date().toISOString() });
}

export function noteFault(bus: Bus, hosted: Hosted, loop: string, h: ConnectorHealth): void {
  hosted.faults.set(loop, h);
  const worst = [...hosted.faults.values()].find((f) => f.state === 'failed') ?? h;
  hosted.fault = worst;
  announce(bus, hosted, worst);
}

export function clearFault(bus: Bus, hosted: Hosted, loop: string, quiet = false): void {
  if (!hosted.faults.delete(loop)) return;
  const rest = [...hosted.faults.values()];
  hosted.fault = rest.find((f) => f.state === 'failed') ?? rest[0];
  if (!quiet) announce(bus, hosted, hosted.fault ?? hosted.stall ?? { ...hosted.state, since: new Date().toISOString() });
}

export function announce(bus: Bus, hosted: Hosted, h: ConnectorHealth): void {
  const { channel, account, log } = hosted;
  const event = ConnectorStateEvent.parse({ v: 1, type: 'connector.state', channel, account, state: h.state, detail: h.detail, at: h.since });
  const level = h.state === 'connected' || h.state === 'starting' || h.state === 'stopped' || h.state === 'standby' ? 'info' : 'warn';
  log[level]({ state: h.state, detail: h.detail }, 'connector state');
  bus.publishJson(Subjects.connectorEvent(channel, account), event).catch((err) => log.warn({ err: errorMessage(err) }, 'could not publish connector state'));
}
