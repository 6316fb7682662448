/**
 * Request Tracker 5 through REST2 (`type: request-tracker`): see docs/helpdesks/request-tracker.md.
 * omnigate → RT in `adapter.ts` (driven by the helpdesk host), RT → omnigate in `poller.ts`.
 */
import { registerSecret } from '../../core/logger.js';
import type { HelpdeskAdapter, HelpdeskContext, HelpdeskFactory, HelpdeskHealth } from '../contract.js';
import { RtClient } from './client.js';
import { RtWriter } from './adapter.js';
import { RtPoller, validRtSignature } from './poller.js';
import { RequestTrackerOptions } from './options.js';

class RequestTrackerAdapter implements HelpdeskAdapter {
  private readonly client: RtClient;
  private readonly writer: RtWriter;
  private readonly poller: RtPoller;
  private state: HelpdeskHealth = { state: 'starting', since: new Date().toISOString() };

  constructor(
    o: RequestTrackerOptions,
    private readonly ctx: HelpdeskContext,
  ) {
    registerSecret(o.token);
    registerSecret(o.password);
    registerSecret(o.webhookSecret);
    this.client = new RtClient({ url: o.url, token: o.token, user: o.user, password: o.password, timeoutMs: o.requestTimeout, maxConcurrent: o.maxConcurrentRequests, signal: ctx.signal });
    this.writer = new RtWriter(this.client, o, ctx.media, ctx.log, (detail) => this.setHealth('auth_failed', detail), ctx.texts);
    this.poller = new RtPoller(this.client, o, ctx, ctx.media, (ok, detail) => {
      if (ok) this.setHealth('connected');
      else this.setHealth(detail?.includes('HTTP 401') ? 'auth_failed' : 'disconnected', detail);
    });
    if (o.webhookSecret) {
      const secret = o.webhookSecret;
      ctx.http.route('POST', `/helpdesks/${ctx.id}/webhook`, async (req) => {
        if (!validRtSignature(secret, req.rawBody, req.headers['x-rt-signature'])) {
          ctx.log.warn({ transaction: req.headers['x-rt-transaction-id'] }, 'RT webhook refused: bad or missing X-RT-Signature');
          return { status: 401, body: { error: 'bad signature' } };
        }
        // Answer first: RT runs this scrip holding its database lock, and the poll calls RT back.
        setImmediate(() => this.poller.nudge());
        return { status: 200, body: { ok: true } };
      });
    }
  }

  async start(): Promise<void> {
    this.poller.start();
  }

  async stop(): Promise<void> {
    await this.poller.stop();
    this.setHealth('standby');
  }

  ensureTicket: HelpdeskAdapter['ensureTicket'] = (event) => this.writer.ensureTicket(event);
  apply: HelpdeskAdapter['apply'] = (event, ctx) => this.writer.apply(event, ctx);
  erase: NonNullable<HelpdeskAdapter['erase']> = (ticket, ticketId) => this.writer.erase(ticket, ticketId);

  health(): HelpdeskHealth {
    return this.state;
  }

  private setHealth(state: HelpdeskHealth['state'], detail?: string): void {
    if (state === this.state.state && detail === this.state.detail) return;
    this.state = { state, detail, since: new Date().toISOString() };
    this.ctx.setHealth(state, detail);
  }
}

const factory: HelpdeskFactory<RequestTrackerOptions> = {
  type: 'request-tracker',
  options: RequestTrackerOptions,
  create: (options, ctx) => new RequestTrackerAdapter(options, ctx),
};
export default factory;
