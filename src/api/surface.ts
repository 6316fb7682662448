/**
 * The helpdesk surface as one unit for the gateway to start and stop: bearer auth (for /v1 and
 * for connector routes mounted with { auth: true }), the /v1 routes (lists, search and contacts
 * from the SQL read model), and one webhook dispatcher per configured webhook.
 */
import type { Bus } from '../core/bus.js';
import type { GatewayConfig } from '../core/config-schema.js';
import { errorMessage } from '../core/errors.js';
import type { Logger } from '../core/logger.js';
import { setTrustedProxies } from './client-address.js';
import { MediaStore } from '../core/media.js';
import { metrics } from '../core/metrics.js';
import { Supervisor } from '../core/supervisor.js';
import type { TicketStore } from '../router/tickets.js';
import type { ReadModel } from '../read-model/read-model.js';
import { Attachments } from './attachments.js';
import { AttachmentExpiry } from './attachment-expiry.js';
import { TokenAuth } from './auth.js';
import { AuthThrottle } from './auth-throttle.js';
import { registerAccessLog } from './access-log.js';
import { registerApi } from './routes.js';
import { registerExportApi } from './export-route.js';
import { registerConsole } from '../console/routes.js';
import type { HttpServer } from './server.js';
import { WebhookDispatcher, type DispatchLease } from './webhooks.js';

export class HelpdeskSurface {
  private readonly webhooks: WebhookDispatcher[];
  /** The one bearer-token check of this server: every token route shares its failed-attempt counts. */
  readonly auth: TokenAuth;

  constructor(
    private readonly bus: Bus,
    private readonly http: HttpServer,
    private readonly config: Pick<GatewayConfig, 'api' | 'webhooks' | 'media'> & { router?: Pick<GatewayConfig['router'], 'ticketPrefix'>; nats?: Pick<GatewayConfig['nats'], 'leaseTtl'>; retention?: Pick<GatewayConfig['retention'], 'attachments'> },
    /** Null when this process runs no router (the API needs the ticket store). */
    private readonly store: TicketStore | null,
    private readonly log: Logger,
    lease: DispatchLease,
    supervisor = new Supervisor(log),
    /** The SQL read model behind lists, search and contacts (opened by the gateway); without it, no /v1 ticket routes. */
    private readonly readModel?: ReadModel,
  ) {
    const { failures, window: windowMs, trackedAddresses } = config.api.authThrottle;
    setTrustedProxies(config.api.trustedProxies);
    this.auth = new TokenAuth(config.api.tokens, new AuthThrottle({ failures, windowMs, trackedAddresses }, log.child({ component: 'api-auth' })));
    this.webhooks = config.webhooks.map((w) => new WebhookDispatcher(bus, w, log.child({ component: 'webhooks', webhook: w.name }), lease, supervisor));
  }

  /** Mounts routes (before the server listens) and starts the index and the dispatchers. */
  async start(): Promise<void> {
    const auth = this.auth;
    this.http.authorize = (headers, method, client, route) => auth.authorize(headers.authorization, method, client, route);
    this.http.credentialThrottle = auth;
    if (this.config.api.tokens.length === 0) this.log.warn('api.tokens is empty: /v1 and authenticated connector routes refuse every request');
    if (this.config.api.accessLog) registerAccessLog(this.http.app, auth, this.log.child({ component: 'api-access' }));
    registerConsole(this.http.app, { bus: this.bus, auth, log: this.log.child({ component: 'console' }), ticketPrefix: this.config.router?.ticketPrefix ?? '', leaseTtlMs: this.config.nats?.leaseTtl ?? 30_000 });
    if (this.store && this.readModel) {
      const expiry = new AttachmentExpiry(this.bus.media, this.config.retention?.attachments ?? 0);
      const attachments = new Attachments(new MediaStore(this.bus.media, this.config.media.maxBytes), this.bus.media, expiry);
      registerApi(this.http.app, { nc: this.bus.nc, store: this.store, readModel: this.readModel, attachments, auth });
      registerExportApi(this.http.app, { bus: this.bus, store: this.store, readModel: this.readModel, auth, log: this.log.child({ component: 'export' }), expiry });
    }
    for (const w of this.webhooks) await w.start();
  }

  async stop(): Promise<void> {
    await Promise.all(this.webhooks.map((w) => w.stop()));
  }

  /** Consumer lag of each webhook (events not yet taken by its receiver), for /metrics. */
  async sampleLag(): Promise<void> {
    for (const w of this.webhooks) {
      try {
        metrics.consumerLag.set({ consumer: `webhook:${w.name}` }, await w.lag());
      } catch (err) {
        this.log.debug({ webhook: w.name, err: errorMessage(err) }, 'webhook lag not sampled');
      }
    }
  }
}
