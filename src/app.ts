/**
 * The gateway process: wires core, router, connectors and the HTTP surface together and owns
 * their lifecycle. Shutdown order: stop intake (HTTP readiness, connectors), drain in-flight
 * routing and sends, close the bus, stop the embedded nats-server.
 */
import type { GatewayConfig, LoadedConfig } from './core/config.js';
import { Bus } from './core/bus.js';
import { EmbeddedNats } from './core/embedded-nats.js';
import type { Logger } from './core/logger.js';
import { errorMessage } from './core/errors.js';
import { metrics } from './core/metrics.js';
import { ConnectorState } from './core/schema.js';
import { Streams } from './core/subjects.js';
import { Router } from './router/router.js';
import { CommandHandler, autoAcknowledge } from './router/commands.js';
import { LifecycleWatcher, newHolderId } from './router/lifecycle.js';
import { ConnectorHost } from './connectors/host.js';
import type { ConnectorFactory } from './connectors/contract.js';
import { HttpServer, type Readiness } from './api/server.js';
import { HelpdeskSurface } from './api/surface.js';

export interface GatewayDeps {
  loaded: LoadedConfig;
  factories: Map<string, ConnectorFactory<any>>;
  log: Logger;
}

export class Gateway {
  embedded?: EmbeddedNats;
  bus!: Bus;
  router?: Router;
  commands?: CommandHandler;
  connectors!: ConnectorHost;
  http!: HttpServer;
  private readonly config: GatewayConfig;
  private lagTimer?: NodeJS.Timeout;
  private helpdesk?: HelpdeskSurface;
  sla?: LifecycleWatcher;

  constructor(private readonly deps: GatewayDeps) {
    this.config = deps.loaded.config;
  }

  async start(): Promise<void> {
    const { log } = this.deps;
    const c = this.config;
    let url = c.nats.url;
    if (!url) {
      this.embedded = new EmbeddedNats(c.nats.embedded, log.child({ component: 'nats-server' }));
      url = await this.embedded.start();
    }
    this.bus = await Bus.connect(
      {
        url,
        user: c.nats.user,
        pass: c.nats.pass,
        token: c.nats.token,
        replicas: c.nats.replicas,
        duplicateWindowMs: c.nats.duplicateWindow,
        retentionMs: c.nats.retention,
        dedupTtlMs: c.nats.dedupTtl,
        leaseTtlMs: c.nats.leaseTtl,
      },
      log.child({ component: 'bus' }),
    );
    log.info({ server: this.bus.serverVersion }, 'connected to NATS');
    await this.bus.provision();

    if (c.router.enabled) {
      this.router = new Router(this.bus, log.child({ component: 'router' }), {
        ticketPrefix: c.router.ticketPrefix,
        firstTicketNumber: c.router.firstTicketNumber,
        reopenWindowMs: c.router.reopenWindow,
        concurrency: c.router.concurrency,
        ackWaitMs: c.router.ackWait,
        csatWindowMs: c.router.csat.window,
        csatLowRating: c.router.csat.lowRating,
      });
      await this.router.start();
      const commands = new CommandHandler(this.bus, this.router.store, this.router.journal, log.child({ component: 'commands' }));
      this.commands = commands;
      commands.start();
      const ack = c.router.autoAcknowledge;
      const ackLog = log.child({ component: 'auto-ack' });
      this.router.onTicketOpened = (ticket, event) =>
        autoAcknowledge(this.bus, commands, ack, ticket, event.email?.from ?? event.sender.id, ackLog);
      const sla = c.router.sla;
      const csat = c.router.csat;
      this.sla = new LifecycleWatcher(this.bus, this.router.store, this.router.journal, {
        enabled: sla.enabled,
        csat: {
          enabled: csat.enabled,
          delayMs: csat.delay,
          send: async (t) => {
            const text = csat.text.replaceAll('{ticket}', t.id).replaceAll('{name}', t.contact.displayName ?? '');
            const r = await commands.reply({ ticketId: t.id, text, idempotencyKey: 'satisfaction-request', author: { id: 'omnigate', name: 'satisfaction-request' } }, { automated: true });
            if (!r.ok) log.warn({ ticketId: t.id, error: r.error }, 'satisfaction request failed');
          },
        },
        firstResponseMs: sla.firstResponse,
        noAnswerMs: sla.noAnswer,
        businessHours: sla.businessHours,
        checkIntervalMs: sla.checkInterval,
        escalate: sla.escalate && {
          channel: sla.escalate.channel,
          account: sla.escalate.account,
          conversation: { id: sla.escalate.conversationId, kind: sla.escalate.kind },
        },
      }, log.child({ component: 'sla' }), c.nats.leaseTtl, newHolderId());
      this.sla.start();
      const watcher = this.sla;
      this.router.onLowRating = (t, rating) => watcher.lowRating(t, rating);
    }

    this.http = new HttpServer({ host: c.http.host, port: c.http.port, bodyLimit: c.http.bodyLimit, metricsRequireToken: c.api.metricsRequireToken, log, readiness: () => this.readiness() });
    this.helpdesk = new HelpdeskSurface(this.bus, this.http, c, this.router?.store ?? null, log.child({ component: 'api' }), { holder: newHolderId(), ttlMs: c.nats.leaseTtl });
    await this.helpdesk.start();
    this.connectors = new ConnectorHost({
      bus: this.bus,
      log,
      http: this.http,
      mediaMaxBytes: c.media.maxBytes,
      leaseTtlMs: c.nats.leaseTtl,
      outbound: {
        maxAttempts: c.outbound.maxAttempts,
        backoffBaseMs: c.outbound.backoffBase,
        backoffMaxMs: c.outbound.backoffMax,
        ackWaitMs: 30_000,
        concurrency: 32,
      },
    });
    await this.connectors.start(
      this.deps.loaded.connectors.map(({ entry, options }) => ({ factory: this.deps.factories.get(entry.type)!, account: entry.account, options })),
    );
    await this.http.listen();
    this.lagTimer = setInterval(() => void this.sampleLag(), 5000); // eslint-disable-line @typescript-eslint/no-floating-promises -- sampleLag catches everything (NATS away shows in readiness)
    this.lagTimer.unref();
    log.info({ http: `${c.http.host}:${this.http.port}`, nats: url, connectors: this.deps.loaded.connectors.length }, 'omnigate started');
  }

  async readiness(): Promise<Readiness> {
    const checks: Record<string, unknown> = {};
    let ready = true;
    const natsOk = this.bus?.connected ?? false;
    checks.nats = { connected: natsOk, server: this.bus?.serverVersion };
    ready &&= natsOk;
    if (natsOk) {
      try {
        const names: string[] = [];
        for await (const s of this.bus.jsm.streams.names()) names.push(s);
        const missing = Object.values(Streams).filter((s) => !names.includes(s));
        checks.streams = missing.length ? { missing } : 'ok';
        ready &&= missing.length === 0;
      } catch (err) {
        checks.streams = { error: errorMessage(err) };
        ready = false;
      }
    }
    const connectors = this.sampleConnectors();
    checks.connectors = connectors;
    for (const h of connectors) {
      if (h.state !== 'connected' && h.state !== 'rate_limited') ready = false;
    }
    return { ready, checks };
  }

  /** omnigate_connector_up{channel,account} and the enum-style omnigate_connector_state{…,state}. */
  private sampleConnectors() {
    const connectors = this.connectors?.health() ?? [];
    for (const h of connectors) {
      const who = { channel: h.channel, account: h.account };
      metrics.connectorUp.set(who, h.state === 'connected' || h.state === 'rate_limited' ? 1 : 0);
      for (const state of ConnectorState.options) metrics.connectorState.set({ ...who, state }, state === h.state ? 1 : 0);
    }
    return connectors;
  }

  private async sampleLag(): Promise<void> {
    try {
      // omnigate_tickets{status} is kept current by the API's ticket index (src/api/ticket-index.ts).
      this.sampleConnectors();
      await this.helpdesk?.sampleLag();
      if (!this.router) return;
      metrics.consumerLag.set({ consumer: 'router' }, await this.router.lag());
    } catch {
      /* NATS away: readiness reports it */
    }
  }

  /** Refresh the sampled gauges now (tests and the first scrape need not wait 5 s). */
  async sampleNow(): Promise<void> {
    await this.sampleLag();
  }

  async stop(): Promise<void> {
    const { log } = this.deps;
    clearInterval(this.lagTimer);
    log.info('shutting down: stopping intake');
    await this.http?.close().catch((err) => log.warn({ err: errorMessage(err) }, 'http close failed'));
    await this.connectors?.stop();
    await this.helpdesk?.stop();
    await this.sla?.stop();
    await this.commands?.stop();
    await this.router?.stop();
    await this.bus?.close();
    await this.embedded?.stop();
    log.info('shutdown complete');
  }
}
