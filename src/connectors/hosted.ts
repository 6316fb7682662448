/**
 * What the connector host keeps for each configured connector across restarts of its instance,
 * and what /readyz and the metrics are shown of it.
 */
import type { Logger } from '../core/logger.js';
import type { ConnectorState } from '../core/schema.js';
import type { SupervisedLoop } from '../core/supervisor.js';
import type { Connector, ConnectorContext, ConnectorFactory, ConnectorHealth, ReplayHandler } from './contract.js';
import type { OutboundRunner } from './outbound-runner.js';

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

export interface Hosted {
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

/**
 * Every connector's state as it was last published on omni.events.connector.* (what the
 * connector reported, or `stalled` while intake cannot reach JetStream, or `standby` while
 * another replica holds its lease): probes and metrics show exactly what ops were told.
 */
export function healthOf(h: Hosted): HostedHealth {
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
}

/** A stable Connector for the outbound runner that forwards to the hosted connector of the moment. */
export function currentConnector(hosted: Hosted): Connector {
  return {
    start: () => hosted.connector.start(),
    stop: () => hosted.connector.stop(),
    health: () => hosted.connector.health(),
    canSend: () => hosted.connector.canSend?.() ?? true,
    get resendSafe() {
      return hosted.connector.resendSafe;
    },
    get marksWire() {
      return hosted.connector.marksWire;
    },
    async send(message, attempt) {
      const result = await hosted.connector.send(message, attempt);
      hosted.lastSendAt = new Date().toISOString();
      return result;
    },
    settled: (outboundId) => hosted.connector.settled?.(outboundId),
  };
}
