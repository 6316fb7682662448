/**
 * What a replica tells the console about itself over NATS, so any replica's HTTP API can show
 * the whole cluster: every replica answers omni.console.connectors with the connectors it hosts
 * (state, last event and send, last error, standby), and the one hosting a connector answers
 * omni.console.restart.<channel>.<account> by restarting it. Core request/reply, no queue group.
 */
import type { Msg, Subscription } from '@nats-io/transport-node';
import type { Bus } from '../core/bus.js';
import { errorMessage } from '../core/errors.js';
import type { Logger } from '../core/logger.js';
import { Subjects } from '../core/subjects.js';
import type { HostedHealth } from '../connectors/host.js';

/** One replica's answer to omni.console.connectors. */
export interface ReplicaConnectors {
  replica: string;
  connectors: HostedHealth[];
}

export interface RestartAnswer {
  replica: string;
  restarted: boolean;
  error?: string;
}

export interface HostedConnectors {
  readonly instanceId: string;
  health(): HostedHealth[];
  restart(channel: string, account: string): Promise<boolean>;
}

export class ReplicaService {
  private readonly subs: Subscription[] = [];

  constructor(
    private readonly bus: Bus,
    private readonly host: HostedConnectors,
    private readonly log: Logger,
  ) {}

  start(): void {
    const { nc } = this.bus;
    this.subs.push(
      nc.subscribe(Subjects.consoleConnectors, {
        callback: (err, m) => {
          if (err) return this.log.warn({ err: errorMessage(err) }, 'console connector subscription ended');
          const answer: ReplicaConnectors = { replica: this.host.instanceId, connectors: this.host.health() };
          m.respond(JSON.stringify(answer));
        },
      }),
      nc.subscribe(Subjects.consoleRestart('*', '*'), {
        callback: (err, m) => {
          if (err) return this.log.warn({ err: errorMessage(err) }, 'console restart subscription ended');
          this.restart(m).catch((e: unknown) => this.log.error({ err: errorMessage(e) }, 'connector restart failed'));
        },
      }),
    );
  }

  private async restart(m: Msg): Promise<void> {
    const [, , , channel, account] = m.subject.split('.');
    if (!this.host.health().some((h) => h.channel === channel && h.account === account)) return; // not hosted here: stay silent
    let answer: RestartAnswer;
    try {
      answer = { replica: this.host.instanceId, restarted: await this.host.restart(channel!, account!) };
    } catch (err) {
      answer = { replica: this.host.instanceId, restarted: false, error: errorMessage(err) };
    }
    m.respond(JSON.stringify(answer));
  }

  async stop(): Promise<void> {
    await Promise.all(this.subs.map((s) => s.drain().catch(() => s.unsubscribe())));
  }
}
