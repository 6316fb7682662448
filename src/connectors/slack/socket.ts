/**
 * Socket Mode intake with our own reconnect loop. @slack/socket-mode reconnects by itself, but
 * when apps.connections.open fails during a reconnect with a network or HTTP error it gives up for
 * good (the rejection goes nowhere) and the account would go silent behind a firewall. So its
 * auto-reconnect is off and this loop owns the connection: a `disconnect` frame or a dropped socket
 * closes the connection and we open a new one at once, backing off while opening fails or while
 * connections die young (Slack closing right after hello, e.g. Socket Mode turned off for the app,
 * would otherwise make this a tight loop of apps.connections.open calls).
 *
 * Envelopes are acknowledged only after `onEvent` resolved (the event is in JetStream). An ack
 * that cannot be sent because the connection went away is harmless: Slack redelivers the
 * envelope on the next connection and the event id makes it a no-op.
 */
import { SocketModeClient } from '@slack/socket-mode';
import { sleep, backoffMs } from '../../core/sleep.js';
import { errorMessage } from '../../core/errors.js';
import type { Logger } from '../../core/logger.js';
import type { HealthTracker } from '../contract.js';
import { AUTH_ERRORS, slackErrorCode } from './errors.js';
import { slackLibraryLogger } from './library-logger.js';
import { eventIdOf, type RawEnvelope } from './shape.js';

export interface SocketSessionOptions {
  appToken: string;
  apiUrl: string;
  /** For apps.connections.open: a hung call would stop this loop. */
  apiTimeoutMs: number;
  signal: AbortSignal;
  log: Logger;
  health: HealthTracker;
  /** Resolves once the event is stored, parked or deliberately skipped; rejects to leave it unacked. */
  onEvent: (body: RawEnvelope, retryNum: number) => Promise<void>;
}

interface SlackEventArgs {
  ack: () => Promise<void>;
  type: string;
  body: RawEnvelope;
  envelope_id?: string;
  retry_num?: number;
}

/** A connection that closes sooner than this counts as a failure to connect. */
const MIN_HEALTHY_MS = 10_000;

export class SocketSession {
  private readonly client: SocketModeClient;
  private stopped = false;

  constructor(private readonly o: SocketSessionOptions) {
    this.client = new SocketModeClient({
      appToken: o.appToken,
      logger: slackLibraryLogger(o.log),
      autoReconnectEnabled: false,
      // Our loop retries apps.connections.open; the client's default is 100 retries per attempt.
      clientOptions: { slackApiUrl: o.apiUrl, retryConfig: { retries: 0 }, timeout: o.apiTimeoutMs },
    });
    this.client.on('slack_event', (args: SlackEventArgs) => void this.onEnvelope(args)); // eslint-disable-line @typescript-eslint/no-floating-promises -- onEnvelope catches and logs every failure; Slack redelivers what was not acked
  }

  /** Runs until stop(); never rejects. */
  async run(): Promise<void> {
    for (let failures = 0; !this.stopped && !this.o.signal.aborted; ) {
      try {
        let onClosed!: () => void;
        const closed = new Promise<void>((resolve) => (onClosed = resolve));
        this.client.once('disconnected', onClosed);
        await this.client.start().catch((err: unknown) => {
          this.client.removeListener('disconnected', onClosed);
          throw err;
        });
        const openedAt = Date.now();
        if (this.stopped || this.o.signal.aborted) {
          // stop() ran while apps.connections.open was in flight: close what start() just opened.
          await this.client.disconnect().catch(() => {});
          break;
        }
        this.o.health.set('connected');
        await closed;
        if (this.stopped || this.o.signal.aborted) break;
        this.o.health.set('disconnected', 'Socket Mode connection closed; reconnecting');
        if (Date.now() - openedAt >= MIN_HEALTHY_MS) failures = 0;
        else await sleep(backoff(++failures), this.o.signal);
      } catch (err) {
        failures++;
        const code = slackErrorCode(err);
        const auth = code !== undefined && AUTH_ERRORS.has(code);
        this.o.health.set(auth ? 'auth_failed' : 'disconnected', `Socket Mode: ${code ?? errorMessage(err)}`);
        // A refused app token will not heal in seconds: check it again every few minutes.
        await sleep(auth ? 300_000 : backoff(failures), this.o.signal);
      }
    }
  }

  async stop(): Promise<void> {
    this.stopped = true;
    await this.client.disconnect().catch(() => {});
  }

  private async onEnvelope({ ack, type, body, envelope_id, retry_num }: SlackEventArgs): Promise<void> {
    if (type !== 'events_api') {
      // hello/disconnect are handled by the client; interactive payloads are not ours to take.
      if (envelope_id) await ack().catch(() => {});
      return;
    }
    try {
      await this.o.onEvent(body, retry_num ?? 0);
    } catch (err) {
      this.o.log.warn({ err: errorMessage(err), eventId: eventIdOf(body) }, 'Slack event not stored; leaving it unacknowledged for redelivery');
      return;
    }
    try {
      await ack();
    } catch {
      this.o.log.debug({ eventId: eventIdOf(body) }, 'Slack event stored but the ack was lost with the connection; Slack redelivers it');
    }
  }
}

/** 1 s doubling to 60 s. */
function backoff(failures: number): number {
  return backoffMs(failures - 1, 1000, 60_000);
}
