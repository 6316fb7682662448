/**
 * Whether JetStream is away for any client, not only for this process's connection: what
 * liveness (probes.ts) asks before it counts loops that keep failing while the connection is up.
 *
 * A nats-server whose disk filled up (2.9.10 deadlocks its file store: every JetStream request
 * times out; newer servers turn JetStream off), a cluster without a meta leader, a server too
 * busy to answer: the connection stays up, JetStream does not answer, and every loop that needs
 * it fails and climbs to `failed`. /healthz counted those once the connection had been up a
 * minute, and flapped to 503 for as long as the disk stayed full (an outside trial: every 10–30 s
 * for minutes, while /readyz already named the cause): an orchestrator restarts a replica for
 * that, and a restart cannot mend the server; the new process cannot even start without
 * JetStream. What a restart does mend is this process's own client wedged. So a silence on the
 * gateway's connection is asked again on a connection made for the question (what a restart would
 * have): silent there too, JetStream is away; answering there, the fault is ours and is counted.
 *
 * With the embedded server the watchdog (jetstream-watchdog.ts) owns the server's restart and its
 * verdict feeds this instead: a volume still full is away (a restart onto it wedges again).
 */
import { connect, type NatsConnection } from '@nats-io/transport-node';
import type { Bus } from './bus.js';
import { errorMessage, isNatsUnavailable } from './errors.js';
import { jsonOrUndefined } from './json-input.js';
import type { Logger } from './logger.js';
import { natsConnectionOptions, type NatsAccess } from './nats-access.js';
import { sleep, untilAborted } from './sleep.js';
import type { Supervisor } from './supervisor.js';

/** What one request to JetStream's API got: an answer, none in time, or an answer that it cannot serve. */
export type JetStreamAnswer = 'answers' | 'silent' | 'refuses';

/** How long one look waits for JetStream (on each connection) and for a new connection to open. */
const LOOK_TIMEOUT_MS = 5_000;
/** How often JetStream is looked at. */
const LOOK_EVERY_MS = 5_000;

/**
 * One $JS.API.INFO request on `nc`: answered; silent past `timeoutMs`; or refused: answered 503
 * (no meta leader, JetStream off for the server or the account) or no responders (nobody serves
 * the API). Anything else (the connection closing) is thrown.
 */
export async function askJetStream(nc: NatsConnection, timeoutMs: number): Promise<JetStreamAnswer> {
  try {
    const m = await nc.request('$JS.API.INFO', '', { timeout: timeoutMs });
    const code = (jsonOrUndefined(m.data) as { error?: { code?: number } } | undefined)?.error?.code;
    return code === 503 ? 'refuses' : 'answers';
  } catch (err) {
    const name = (err as { name?: unknown }).name;
    if (name === 'TimeoutError') return 'silent';
    if (name === 'RequestError' && (err as { isNoResponders?: () => boolean }).isNoResponders?.()) return 'refuses';
    throw err;
  }
}

/** The same request on a connection of its own, opened for it and closed after: what a restarted process would get. */
export async function askJetStreamAnew(access: NatsAccess, timeoutMs: number): Promise<JetStreamAnswer> {
  const nc = await connect({ ...natsConnectionOptions(access), name: 'omnigate-jetstream-check', reconnect: false, maxReconnectAttempts: 0, timeout: timeoutMs, noAsyncTraces: true });
  try {
    return await askJetStream(nc, timeoutMs);
  } finally {
    await nc.close().catch(() => {});
  }
}

export interface JetStreamLook {
  /** False while the client is not connected: liveness holds then anyway, and there is nothing to ask. */
  connected: () => boolean;
  /** Asks on the gateway's own connection. */
  ask: () => Promise<JetStreamAnswer>;
  /** Asks on a new connection; throws when none could be opened. */
  askAnew: () => Promise<JetStreamAnswer>;
}

export class JetStreamAvailability {
  private awaySince?: number;
  private why = '';
  private backAt = -Infinity;
  private lastOursWarnAt = -Infinity;

  constructor(
    private readonly log?: Logger,
    private readonly now: () => number = Date.now,
  ) {}

  /** While JetStream is away: since when and why; undefined while it answers (or only this process gets no answer). */
  get away(): { since: string; why: string } | undefined {
    return this.awaySince === undefined ? undefined : { since: new Date(this.awaySince).toISOString(), why: this.why };
  }

  /**
   * Whether a failure at `atMs` came less than `graceMs` after JetStream answered again: still put
   * down to the outage (consumers finding their streams, a backoff of up to 30 s to run out).
   */
  recentlyBack(atMs: number, graceMs: number): boolean {
    return atMs < this.backAt + graceMs;
  }

  /** JetStream is away (`why`) for any client: a restart of this process would not bring it back. */
  markAway(why: string): void {
    if (this.awaySince === undefined) {
      this.awaySince = this.now();
      this.log?.warn({ why }, 'JetStream is not available to any client while NATS is connected: /healthz does not count the loops that fail for it (a restart would not help); /readyz says so');
    }
    this.why = why;
  }

  /** JetStream answers (again). */
  markBack(): void {
    if (this.awaySince === undefined) return;
    this.log?.info({ awaySeconds: Math.round((this.now() - this.awaySince) / 1000) }, 'JetStream answers again');
    this.awaySince = undefined;
    this.backAt = this.now();
  }

  /** Away no longer as far as liveness goes, without having answered: a silence that is this process's own, or one that the watchdog leaves to /healthz. */
  markNotAway(): void {
    if (this.awaySince === undefined) return;
    this.awaySince = undefined;
    this.backAt = this.now();
  }

  /** One look at an external server: asks on the gateway's connection and, when that is silent, on a new one. */
  async look(o: JetStreamLook): Promise<'answers' | 'away' | 'ours' | 'disconnected' | 'unknown'> {
    if (!o.connected()) return 'disconnected';
    let own: JetStreamAnswer;
    try {
      own = await o.ask();
    } catch {
      return 'unknown'; // the connection closing under the request: the next look sees how it ends
    }
    if (own === 'answers') {
      this.markBack();
      return 'answers';
    }
    if (own === 'refuses') {
      this.markAway('JetStream answers that it cannot serve (no leader, or JetStream off)');
      return 'away';
    }
    let anew: JetStreamAnswer;
    try {
      anew = await o.askAnew();
    } catch (err) {
      // The server not even taking a new connection in time is as away as it gets; refused
      // credentials or an unreadable creds file say nothing about JetStream.
      if (!isNatsUnavailable(err)) return 'unknown';
      this.markAway(`JetStream does not answer, and a new connection could not be opened (${errorMessage(err)})`);
      return 'away';
    }
    if (anew === 'answers') {
      this.markNotAway();
      const now = this.now();
      if (now - this.lastOursWarnAt >= 60_000) {
        this.lastOursWarnAt = now;
        this.log?.warn("JetStream answers a new connection but not this process's own: loops that keep failing with NATS timeouts fail /healthz (a restart is the cure)");
      }
      return 'ours';
    }
    this.markAway(anew === 'silent' ? 'JetStream does not answer, on this connection nor on a new one' : 'JetStream does not answer this connection, and answers a new one that it cannot serve');
    return 'away';
  }
}

/** Looks at an external server's JetStream as a supervised loop (`nats.jetstream-check`); its verdicts feed liveness. */
export function superviseJetStreamAvailability(bus: Bus, loops: Supervisor, log: Logger): JetStreamAvailability {
  const availability = new JetStreamAvailability(log);
  const look: JetStreamLook = {
    connected: () => bus.connected,
    ask: () => askJetStream(bus.nc, LOOK_TIMEOUT_MS),
    askAnew: () => askJetStreamAnew(bus.options, LOOK_TIMEOUT_MS),
  };
  loops.run('nats.jetstream-check', async ({ signal, progress }) => {
    while (!signal.aborted) {
      // A look at a silent JetStream takes up to three timeouts: a stop does not wait for it.
      await untilAborted(availability.look(look), signal);
      progress();
      await sleep(LOOK_EVERY_MS, signal);
    }
  });
  return availability;
}
