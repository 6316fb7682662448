/**
 * A connector waiting for its single-runner lease stands by and says so: whose lease it is and
 * until when (the holder's last renewal plus the TTL). Right after a crash that is the dead
 * holder's key, and nothing polls until it runs out. Once taken the state is `starting` until
 * the connector reports its own.
 */
import type { Bus } from '../core/bus.js';
import { errorMessage } from '../core/errors.js';
import { acquireLease, type Lease } from '../core/lease.js';
import type { Logger } from '../core/logger.js';
import { metrics } from '../core/metrics.js';
import type { ConnectorState } from '../core/schema.js';

export interface StandbyWait {
  bus: Bus;
  key: string;
  ttlMs: number;
  holder: string;
  signal: AbortSignal;
  log: Logger;
  /** Where the standby is shown (the host's record of the connector). */
  standby: { channel: string; account: string; standby?: { key: string; holder: string; until: Date } };
  isStandby: () => boolean;
  setState: (s: ConnectorState, detail?: string) => void;
}

export async function waitForLease(w: StandbyWait): Promise<Lease> {
  const { bus, key, ttlMs, standby: shown } = w;
  const who = { channel: shown.channel, account: shown.account };
  let waiting = true;
  const look = async () => {
    try {
      const e = await bus.kv.leases.get(key);
      if (!waiting || !e || e.operation !== 'PUT' || e.string() === w.holder) return;
      const first = !shown.standby;
      shown.standby = { key, holder: e.string(), until: new Date(e.created.getTime() + ttlMs) };
      metrics.connectorStandbyUntil.set(who, shown.standby.until.getTime() / 1000);
      if (first || !w.isStandby()) w.setState('standby', `waiting for lease ${key}`);
    } catch (err) {
      w.log.debug({ key, err: errorMessage(err) }, 'lease holder not read');
    }
  };
  // Bounded by the wait below (cleared in finally): it lives exactly as long as the standby.
  const timer = setInterval(() => void look(), Math.max(250, Math.floor(ttlMs / 3))); // eslint-disable-line @typescript-eslint/no-floating-promises -- look() catches its own errors
  void look(); // eslint-disable-line @typescript-eslint/no-floating-promises -- look() catches its own errors
  try {
    return await acquireLease(bus.kv.leases, key, { ttlMs, holder: w.holder, signal: w.signal, log: w.log });
  } finally {
    waiting = false;
    clearInterval(timer);
    metrics.connectorStandbyUntil.set(who, 0);
    const wasStandby = shown.standby !== undefined;
    shown.standby = undefined;
    if (wasStandby && w.isStandby() && !w.signal.aborted) w.setState('starting', `lease ${key} taken`);
  }
}
