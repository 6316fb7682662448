/**
 * The gateway process: wires core, router, connectors and the HTTP surface together and owns
 * their lifecycle (the router side is started in routing.ts). Shutdown order: stop intake (HTTP
 * readiness, connectors), drain in-flight routing and sends, close the bus, stop the embedded
 * nats-server, each step bounded (shutdown.ts).
 */
import type { LoadedConfig } from './core/config.js';
import { natsAccess, type GatewayConfig } from './core/config-schema.js';
import { Bus } from './core/bus.js';
import { EmbeddedNats } from './core/embedded-nats.js';
import { superviseEmbeddedJetStream } from './core/jetstream-watchdog.js';
import { JetStreamAvailability, superviseJetStreamAvailability } from './core/jetstream-availability.js';
import type { Logger } from './core/logger.js';
import { errorMessage } from './core/errors.js';
import { metrics } from './core/metrics.js';
import { Supervisor } from './core/supervisor.js';
import { sleep } from './core/sleep.js';
import { Streams } from './core/subjects.js';
import { liveness, readiness, sampleConnectors, type ProbeDeps } from './probes.js';
import type { Router } from './router/router.js';
import type { CommandHandler } from './router/commands.js';
import type { LifecycleWatcher } from './router/lifecycle.js';
import { startRouting } from './routing.js';
import { stopWithin } from './shutdown.js';
import { holderOf, newInstanceId } from './core/holder.js';
import { releaseLeasesOf } from './core/lease.js';
import { ConnectorHost } from './connectors/host.js';
import { sampleOutboundLag, warnStrandedReplies } from './connectors/outbound-backlog.js';
import type { ConnectorFactory } from './connectors/contract.js';
import { templateSupportOf } from './connectors/reply-templates.js';
import { HttpServer, type Readiness } from './api/server.js';
import { HelpdeskSurface } from './api/surface.js';
import { RetentionSweeper } from './core/retention.js';
import { registerDataApi } from './api/data-routes.js';
import { eraseRows, fileReferencedElsewhere, ticketsClosedBefore, ticketsToEvict } from './read-model/erasure.js';
import { assertPortFree } from './core/port-check.js';
import { TicketEvictor } from './router/eviction.js';
import { ReadModel } from './read-model/read-model.js';
import { join } from 'node:path';
import { HelpdeskHost } from './helpdesks/host.js';
import type { HelpdeskFactory } from './helpdesks/contract.js';
import { ReplicaService } from './console/replica-service.js';

export interface GatewayDeps {
  loaded: LoadedConfig;
  factories: Map<string, ConnectorFactory<any>>;
  /** Adapters for the configured `helpdesks` (absent: none). */
  helpdeskFactories?: Map<string, HelpdeskFactory<any>>;
  log: Logger;
}

export class Gateway {
  embedded?: EmbeddedNats;
  bus!: Bus;
  router?: Router;
  commands?: CommandHandler;
  connectors!: ConnectorHost;
  helpdesks?: HelpdeskHost;
  http!: HttpServer;
  private readonly config: GatewayConfig;
  private helpdesk?: HelpdeskSurface;
  private replica?: ReplicaService;
  sla?: LifecycleWatcher;
  retention?: RetentionSweeper;
  /** Closed tickets leave KV after tickets.evictClosedAfter (src/router/eviction.ts). */
  evictor?: TicketEvictor;
  /** The SQL read model (lists, search, contacts, due work); opened by every process that runs the router. */
  readModel?: ReadModel;
  /** Owner of every long-running loop of this gateway: their states feed the probes. */
  readonly loops: Supervisor;
  /** Names this gateway in every lease it holds (holder.ts). */
  readonly instance = newInstanceId();
  private readonly probes: ProbeDeps;
  /** Whether JetStream is away for any client (src/core/jetstream-availability.ts), for liveness. */
  private jetStream?: JetStreamAvailability;

  constructor(private readonly deps: GatewayDeps) {
    this.config = deps.loaded.config;
    this.loops = new Supervisor(deps.log.child({ component: 'supervisor' }), { stallAfterMs: this.config.router.stallAfter });
    const self = this;
    this.probes = {
      get bus() {
        return self.bus;
      },
      supervisor: this.loops,
      connectors: () => this.connectors?.health() ?? [],
      readModel: () => this.readModel?.sample(),
      helpdesks: () => this.helpdesks?.health() ?? [],
      get jetStream() {
        return self.jetStream;
      },
    };
  }

  /**
   * The gateway that used the embedded data directory before us is dead (we hold its lock): its
   * leases (partitions, connector accounts, webhook dispatchers) are freed now, instead of holding
   * routing and sends for up to nats.leaseTtl after a kill -9 and a restart. What they guarded is
   * recovered as after any holder's death (the partitions' ack floor, the webhook terms).
   */
  private async releasePredecessorLeases(): Promise<void> {
    const embedded = this.embedded;
    if (!embedded) return;
    const predecessor = embedded.predecessor;
    if (predecessor) {
      try {
        const freed = await releaseLeasesOf(this.bus.kv.leases, predecessor);
        if (freed.length) this.deps.log.info({ predecessor, leases: freed.length, keys: freed.slice(0, 8) }, 'freed the leases of the previous gateway on this data directory (it is dead: its lock was free)');
      } catch (err) {
        // Not fatal: the leases expire after nats.leaseTtl as after any holder's death.
        this.deps.log.warn({ predecessor, err: errorMessage(err) }, 'could not free the leases of the previous gateway on this data directory; they expire after nats.leaseTtl');
      }
    }
    // Before any lease is taken: a gateway that dies from here on is found by the next one.
    await embedded.recordInstance(this.instance).catch((err: unknown) =>
      this.deps.log.warn({ err: errorMessage(err) }, 'could not record this gateway in the data directory: after a crash, the next start waits nats.leaseTtl for its leases'));
  }

  async start(): Promise<void> {
    const { log } = this.deps;
    const c = this.config;
    await assertPortFree(c.http.host, c.http.port);
    let url = c.nats.url;
    if (!url) {
      if (c.nats.tls || c.nats.credsFile || c.nats.nkey) log.warn('nats.tls, nats.credsFile or nats.nkey is set but nats.url is empty: they are not used for the embedded server');
      this.embedded = new EmbeddedNats(c.nats.embedded, log.child({ component: 'nats-server' }));
      url = await this.embedded.start();
    }
    this.bus = await Bus.connect(
      {
        // TLS and credentials are for the configured deployment; our own local server has its own.
        ...(this.embedded ? this.embedded.access : natsAccess(c)),
        url,
        replicas: c.nats.replicas,
        unsafeCas: c.nats.unsafeCas,
        duplicateWindowMs: c.nats.duplicateWindow,
        retentionMs: c.nats.retention,
        eventsRetentionMs: c.retention.events,
        dedupTtlMs: c.nats.dedupTtl,
        leaseTtlMs: c.nats.leaseTtl,
        partitions: c.router.partitions,
        deadLetters: c.deadLetters && {
          maxAgeMs: c.deadLetters.maxAge,
          maxBytes: c.deadLetters.maxBytes,
          maxPayloadBytes: c.deadLetters.maxPayloadBytes,
          perMinute: c.deadLetters.perMinute,
          burst: c.deadLetters.burst,
        },
      },
      log.child({ component: 'bus' }),
    );
    log.info({ server: this.bus.serverVersion }, 'connected to NATS');
    await this.bus.provisionWhenReady();
    await this.releasePredecessorLeases();

    if (c.router.enabled) {
      const db = c.database;
      this.readModel = new ReadModel(this.bus, {
        url: db.url || undefined,
        user: db.user,
        password: db.password,
        dataDir: db.dataDir ?? join(c.nats.embedded.dataDir, 'sql'),
        poolSize: db.poolSize,
        batchSize: db.batchSize,
      }, log.child({ component: 'read-model' }), this.loops);
      this.readModel.start();
    }

    const specs = this.deps.loaded.connectors.map(({ entry, options }) => ({ factory: this.deps.factories.get(entry.type)!, account: entry.account, options, required: entry.required }));
    if (c.router.enabled) {
      await startRouting(this, { bus: this.bus, config: c, log, loops: this.loops, instance: this.instance, readModel: this.readModel, templates: templateSupportOf(specs) });
    }

    this.http = new HttpServer({ host: c.http.host, port: c.http.port, bodyLimit: c.http.bodyLimit, requestTimeout: c.http.requestTimeout, metricsRequireToken: c.api.metricsRequireToken, probeDetails: c.http.probeDetails, log, readiness: () => this.readiness(), liveness: () => liveness(this.probes) });
    this.helpdesk = new HelpdeskSurface(this.bus, this.http, c, this.router?.store ?? null, log.child({ component: 'api' }), { holder: holderOf(this.instance, 'webhooks'), ttlMs: c.nats.leaseTtl }, this.loops, this.readModel);
    await this.helpdesk.start();
    this.connectors = new ConnectorHost({
      instanceId: holderOf(this.instance, 'connectors'),
      bus: this.bus,
      log,
      http: this.http,
      mediaMaxBytes: c.media.maxBytes,
      leaseTtlMs: c.nats.leaseTtl,
      supervisor: this.loops,
      outbound: {
        maxAttempts: c.outbound.maxAttempts,
        backoffBaseMs: c.outbound.backoffBase,
        backoffMaxMs: c.outbound.backoffMax,
        maxTakeovers: c.outbound.maxTakeovers,
        ackWaitMs: 30_000,
        concurrency: 32,
        deadReplicas: this.embedded?.predecessor ? [holderOf(this.embedded.predecessor, 'connectors')] : [],
      },
    });
    await this.connectors.start(specs);
    // Said once at start; the backlog itself is a metric from then on (sampleLag).
    await warnStrandedReplies(this.bus, log, this.connectors.health()).catch((err: unknown) => log.warn({ err: errorMessage(err) }, 'could not list the outbound queues'));
    const readModel = this.readModel;
    if (readModel) {
      const hours = c.router.sla.businessHours;
      registerDataApi(this.http.app, {
        bus: this.bus,
        readModel,
        // The surface's: a throttled address is refused here too, and wrong tokens here count.
        auth: this.helpdesk.auth,
        log: log.child({ component: 'data-api' }),
        businessHours: hours,
        timezone: c.reports.timezone ?? hours?.timezone ?? 'UTC',
        repeatWindowMs: c.reports.repeatContactWindow,
        forget: (ids) => ids.forEach((id) => this.router?.store.invalidate(undefined, id)),
      });
    }
    if (this.deps.loaded.helpdesks.length) {
      this.helpdesks = new HelpdeskHost({ bus: this.bus, log: log.child({ component: 'helpdesks' }), http: this.http, mediaMaxBytes: c.media.maxBytes, leaseTtlMs: c.nats.leaseTtl, holder: holderOf(this.instance, 'helpdesks'), supervisor: this.loops, language: c.router.language });
      // Adapters mount their webhook receivers now, before the server listens.
      this.helpdesks.start(
        this.deps.loaded.helpdesks.map(({ entry, options }) => ({
          factory: this.deps.helpdeskFactories!.get(entry.type)!,
          id: entry.id,
          options,
          retryForMs: entry.retryFor,
          backoffBaseMs: entry.backoffBase,
          backoffMaxMs: entry.backoffMax,
          redeliverAfterMs: entry.redeliverAfter,
        })),
      );
    }
    this.replica = new ReplicaService(this.bus, this.connectors, log.child({ component: 'console' }));
    this.replica.start();
    await this.http.listen();
    this.retention = new RetentionSweeper(this.bus, {
      ticketsMs: c.retention.tickets,
      attachmentsMs: c.retention.attachments,
      sweepIntervalMs: c.retention.sweepInterval,
      leaseTtlMs: c.nats.leaseTtl,
      holder: holderOf(this.instance, 'retention'),
      ...(readModel && {
        expiredTickets: async (cutoff: Date, limit: number) => ticketsClosedBefore(await readModel.database(), cutoff, limit),
        eraseRows: async (ticketIds: string[]) => {
          const erased = await eraseRows(await readModel.database(), { ticketIds, contactsLeftWithNothing: true });
          await readModel.rowsErased();
          return erased;
        },
        sharedElsewhere: async (key: string, erasing: ReadonlySet<string>) => fileReferencedElsewhere(await readModel.database(), key, erasing),
      }),
    }, log.child({ component: 'retention' }));
    this.retention.start(this.loops);
    if (this.router) {
      this.evictor = new TicketEvictor(this.bus, this.router.store, {
        evictClosedAfterMs: c.tickets.evictClosedAfter,
        sweepIntervalMs: c.retention.sweepInterval,
        leaseTtlMs: c.nats.leaseTtl,
        holder: holderOf(this.instance, 'eviction'),
        ...(readModel && {
          candidates: async (cursor, cutoff, limit) => ticketsToEvict(await readModel.database(), cursor, cutoff, limit),
          caughtUp: () => readModel.openAndCaughtUp(5000),
        }),
      }, log.child({ component: 'eviction' }));
      this.evictor.start(this.loops);
    }
    this.loops.run('gateway.sampler', async ({ signal, progress }) => {
      while (!signal.aborted) {
        await this.sampleLag();
        progress();
        await sleep(5000, signal);
      }
    });
    // A full disk leaves the embedded server's JetStream unusable until it restarts. Whether
    // JetStream is away for any client (liveness does not count what fails for it): an external
    // server's is looked at from here and from a new connection; the embedded server's watchdog
    // says it of its own (without the watchdog, a restart of the gateway restarts its server).
    if (this.embedded && c.nats.embedded.restartStuckJetStream > 0) {
      this.jetStream = new JetStreamAvailability(log.child({ component: 'nats-server' }));
      superviseEmbeddedJetStream(this.embedded, this.bus, this.loops, log.child({ component: 'nats-server' }), c.nats.embedded.restartStuckJetStream, this.jetStream);
    } else if (!this.embedded) {
      this.jetStream = superviseJetStreamAvailability(this.bus, this.loops, log.child({ component: 'bus' }));
    }
    log.info({ http: `${c.http.host}:${this.http.port}`, nats: url, connectors: this.deps.loaded.connectors.length }, 'omnigate started');
  }

  /** /readyz: see src/probes.ts for what makes a replica ready. */
  async readiness(): Promise<Readiness> {
    return readiness(this.probes);
  }

  private async sampleLag(o: { force?: boolean } = {}): Promise<void> {
    try {
      // omnigate_tickets{status} and omnigate_read_model_lag come from the read model. A database
      // outage is the read model's own (its lag gauge still moves, /readyz says why): the gauges
      // below must not freeze with it.
      await this.readModel?.sample(o).catch(() => undefined);
      sampleConnectors(this.connectors?.health() ?? []);
      await this.helpdesk?.sampleLag();
      await this.helpdesks?.sampleLag();
      metrics.deadLetterBytes.set((await this.bus.jsm.streams.info(Streams.deadLetter)).state.bytes);
      await sampleOutboundLag(this.bus);
      if (!this.router) return;
      metrics.consumerLag.set({ consumer: 'router' }, await this.router.lag());
    } catch {
      /* NATS away: readiness reports it */
    }
  }

  /** Refresh the sampled gauges now (tests and the first scrape need not wait 5 s). */
  async sampleNow(): Promise<void> {
    await this.readModel?.caughtUp(5000).catch(() => false);
    await this.sampleLag({ force: true });
  }

  /**
   * Bounded stop, within `shutdownTimeout`: readiness 503 at once; HTTP (drain, then close) and
   * intake (connectors: pollers stop, in-flight sends finish) stop in parallel; then routing,
   * commands and the API's background work finish what they hold; NATS is drained; the embedded
   * server stops last with the time kept for it. A step still running at its deadline is
   * abandoned and named in the log: the connection is then closed without draining, and
   * JetStream redelivers what was not acknowledged (nothing is lost, some work is redone).
   * Resolves to whether every step finished in time (the CLI exits 1 when one did not).
   */
  async stop(): Promise<boolean> {
    const { log } = this.deps;
    const c = this.config;
    const started = Date.now();
    const total = c.shutdownTimeout;
    // The embedded server flushes its store on SIGTERM: keep it a share of the budget.
    const natsReserve = this.embedded ? Math.min(3000, Math.floor(total / 3)) : 0;
    const deadline = started + total - natsReserve;
    this.http?.beginDrain();
    // Routing goes on with what it holds while intake drains, but claims no partition from now
    // on: one claimed here was given back moments later, in the router's stop below.
    this.router?.beginShutdown();
    log.info({ timeoutMs: total }, 'shutting down: readiness 503, stopping intake');
    const drainMs = Math.min(c.shutdownDrain, Math.floor(total / 4));
    const graceMs = Math.max(500, Math.floor((deadline - Date.now() - drainMs) / 2));
    // Intake ends a quarter of the budget (at most 2 s) before the deadline, so that routing is
    // always stopped and gives its partitions back. Before, a connector send waiting on a slow
    // reply callback (its 10 s timeout equals the default budget) used the whole budget, the
    // router's stop was skipped, and its partitions waited out the lease TTL (t13: 12 units,
    // ~20 s without routing for their conversations after a SIGTERM during a burst).
    const handBackMs = Math.min(2000, Math.floor((deadline - Date.now()) / 4));
    const intakeStopped = await stopWithin(log, deadline - handBackMs, {
      http: () => this.http?.shutdown(drainMs, graceMs),
      connectors: async () => {
        await this.replica?.stop();
        await this.connectors?.stop();
      },
    });
    // Past the drain the modules stop their loops: one that ends from now on (NATS gone
    // meanwhile) is not restarted. During the drain a loop cut by a NATS blip still is.
    this.loops.beginShutdown();
    // Run even when intake was abandoned: what routing and commands hold is handed back now
    // instead of after a lease TTL; the stop still counts as not graceful.
    const handedBack = await stopWithin(log, deadline, {
      api: () => this.helpdesk?.stop(),
      helpdesks: () => this.helpdesks?.stop(),
      sla: () => this.sla?.stop(),
      commands: () => this.commands?.stop(),
      router: () => this.router?.stop(),
    });
    const graceful =
      intakeStopped &&
      handedBack &&
      (await stopWithin(log, deadline, { readModel: () => this.readModel?.stop() })) &&
      // What is left: the sampler, and anything a module did not stop.
      (await stopWithin(log, deadline, { loops: () => this.loops.stop() })) &&
      (await stopWithin(log, deadline, { nats: () => this.bus?.close() }));
    if (!graceful) await this.bus?.nc.close().catch((err) => log.warn({ err: errorMessage(err) }, 'closing the NATS connection failed'));
    await this.embedded?.stop(Math.max(1000, started + total - Date.now()));
    log.info({ ms: Date.now() - started, graceful }, 'shutdown complete');
    return graceful;
  }
}
