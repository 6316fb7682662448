/**
 * The gateway's one HTTP server (fastify): health, readiness, metrics, the connectors' webhook
 * routes (mounted through the framework-neutral HttpMount), and the /v1 helpdesk API.
 * Bodies are kept raw so connectors can verify platform signatures over the exact bytes.
 */
import Fastify, { type FastifyInstance, type FastifyReply, type FastifyRequest } from 'fastify';
import type { HttpMount, RawRequest, RouteHandler, RouteOptions } from '../core/http.js';
import type { Logger } from '../core/logger.js';
import { registry } from '../core/metrics.js';
import { errorMessage, isDatabaseUnavailable, isNatsUnavailable } from '../core/errors.js';
import { nulAt } from '../core/json-input.js';
import { sleep } from '../core/sleep.js';
import { refuseUnparsable } from './client-errors.js';
import { clientAddress, type CredentialThrottle } from './auth.js';
import { HttpError, STATUS_OF, fail, failAuth, type ApiError, type ErrorCode } from './errors.js';
import { ReadModelUnavailable } from '../read-model/read-model.js';

export interface Readiness {
  ready: boolean;
  checks: Record<string, unknown>;
  /**
   * Why not ready (or not alive), in words fit for any caller: fixed texts and config names, no
   * address, login, host or error text (the answer without a token: http.probeDetails).
   */
  reasons?: string[];
}

export interface HttpServerOptions {
  host: string;
  port: number;
  bodyLimit: number;
  /** ms a request may take to arrive (http.requestTimeout, default 2 minutes); then 408. */
  requestTimeout?: number;
  /** /metrics answers only requests with a valid token. */
  metricsRequireToken?: boolean;
  /** Whether /healthz and /readyz give their details to callers without a token (http.probeDetails, default `token`). */
  probeDetails?: 'token' | 'open';
  log: Logger;
  readiness: () => Promise<Readiness>;
  /** /healthz: false when a supervised loop has failed (src/probes.ts). Absent: always alive. */
  liveness?: () => Readiness;
}

/** http.requestTimeout's default (core/config-schema.ts), for servers made without a config (tests). */
const DEFAULT_REQUEST_TIMEOUT_MS = 120_000;

export class HttpServer implements HttpMount {
  readonly app: FastifyInstance;
  private closing = false;

  constructor(private readonly o: HttpServerOptions) {
    const requestTimeout = o.requestTimeout ?? DEFAULT_REQUEST_TIMEOUT_MS;
    // Not Fastify's own 503 while closing: it answers before the hooks, in its own body shape,
    // where every route documents ours (the refusal below, flat on channel routes).
    this.app = Fastify({
      logger: false,
      bodyLimit: o.bodyLimit,
      requestTimeout,
      // Node looks for late requests every 30 s by default: a quarter of the limit is as exact.
      http: { connectionsCheckingInterval: Math.min(30_000, Math.ceil(requestTimeout / 4)) },
      return503OnClosing: false,
      clientErrorHandler: (err, socket) => refuseUnparsable(err, socket, (path) => this.flatRoutes.has(path) || this.flatShapes.has(shapeOf(path))),
      // What the router refuses before any route (a path parameter over 100 characters, a URL it
      // cannot decode) in the route's own error shape, not Fastify's.
      frameworkErrors: (err, req, reply) => {
        const tooLong = err.code === 'FST_ERR_MAX_PARAM_LENGTH';
        void this.refuse(req, reply, 'invalid_request', tooLong ? 'a path parameter is longer than 100 characters' : `the URL cannot be decoded (${err.message})`, tooLong ? 'path' : 'url');
      },
    });
    // Node swaps the two when the headers may take longer than the whole request: with its
    // 60 s default and a shorter requestTimeout, the request got 60 s.
    this.app.server.headersTimeout = Math.min(60_000, requestTimeout);
    this.app.removeAllContentTypeParsers();
    this.app.addContentTypeParser('*', { parseAs: 'buffer' }, (_req, body, done) => done(null, body));
    // Once draining, only the probes and metrics are served: intake and the API answer 503 so
    // clients retry on another replica, and every response closes its connection, so a
    // keep-alive client does not pin a socket to a server that is going away.
    const probes = new Set(['/healthz', '/readyz', '/metrics']);
    this.app.addHook('onRequest', async (req, reply) => {
      if (this.closing && !probes.has(req.url.split('?')[0]!)) return this.refuse(req, reply.header('retry-after', '1'), 'unavailable', 'shutting down; retry on another replica');
    });
    // A NUL in a query or path parameter reached PostgreSQL and came back as a 500 (every route).
    this.app.addHook('preHandler', async (req, reply) => {
      const undecodable = undecodableQueryParameter(req.url);
      if (undecodable) return this.refuse(req, reply, 'invalid_request', `${undecodable}: is not valid percent-encoded UTF-8 (write a literal % as %25)`, undecodable);
      const repeated = repeatedQueryParameter(req.query);
      if (repeated) return this.refuse(req, reply, 'invalid_request', `${repeated}: given more than once; no parameter takes a list, give it once`, repeated);
      const field = nulAt(req.query, '') ?? nulAt(req.params, '');
      if (field) return this.refuse(req, reply, 'invalid_request', `${field}: contains a NUL character (U+0000)`, field);
    });
    this.app.addHook('onSend', async (_req, reply) => {
      if (this.closing) reply.header('connection', 'close');
    });
    this.app.get('/healthz', async (req, reply) => {
      const r = o.liveness?.() ?? { ready: true, checks: {} };
      return this.probeAnswer(req, reply, r, r.ready ? 'ok' : 'failing');
    });
    this.app.get('/readyz', async (req, reply) => {
      const r = this.closing ? { ready: false, checks: { shutdown: 'in progress' }, reasons: ['shutting down'] } : await o.readiness();
      return this.probeAnswer(req, reply, r, r.ready ? 'ready' : 'not ready');
    });
    // Open by default (docs/api.md): scrapers sit inside the network; no ticket data here.
    // api.metricsRequireToken closes it to callers without a token.
    this.app.get('/metrics', {
      onRequest: async (req, reply) => {
        const refused = o.metricsRequireToken ? this.authorize(req.headers, 'GET', clientAddress(req), '/metrics') : undefined;
        if (refused) return failAuth(reply, refused);
      },
    }, async (_req, reply) => {
      return reply.header('content-type', registry.contentType).send(await registry.metrics());
    });
    this.app.setNotFoundHandler((req, reply) => this.refuse(req, reply, 'not_found', `no route ${req.method} ${req.url.split('?')[0]}`));
    this.app.setErrorHandler((err, req, reply) => {
      if (err instanceof HttpError) return this.refuse(req, reply, err.code, err.message, err.field);
      if (err instanceof ReadModelUnavailable) return this.refuse(req, reply, 'unavailable', `${err.message}; retry shortly`);
      // The SQL database went away after it opened (stopped, restarted, out of connections): lists
      // and search answered 500 for it. Its host and names are for the log, not the caller.
      // Fastify tags a client's own broken upload (ECONNRESET too) with a 4xx: only untagged ones can be pg's.
      if ((err as { statusCode?: number }).statusCode === undefined && isDatabaseUnavailable(err)) {
        o.log.warn({ method: req.method, route: req.routeOptions.url, err: errorMessage(err) }, 'request refused: the read model database did not answer');
        if (req.method === 'GET' || req.method === 'HEAD') reply.header('retry-after', '5');
        return this.refuse(req, reply, 'unavailable', 'the read model database did not answer (the cause is in the gateway log, and in /readyz under the read-model loop and readModel); retry shortly');
      }
      // NATS away or silent (an outage, a leader election): the caller's retry can succeed; not a bug.
      if (isNatsUnavailable(err)) {
        o.log.warn({ method: req.method, route: req.routeOptions.url, err: errorMessage(err) }, 'request refused: NATS unavailable');
        // Retry-After only where a retry cannot do a thing twice: a read, or a write with its Idempotency-Key.
        const safe = req.method === 'GET' || req.method === 'HEAD' || req.headers['idempotency-key'] !== undefined;
        if (safe) reply.header('retry-after', '5');
        return this.refuse(req, reply, 'unavailable', `NATS did not answer (${errorMessage(err)})${safe ? '; retry shortly' : ': check whether it took effect before retrying'}`);
      }
      const status = (err as { statusCode?: number }).statusCode ?? 500;
      if (status === 413) return this.refuse(req, reply, 'payload_too_large', `body larger than http.bodyLimit (${o.bodyLimit} bytes)`, 'body');
      // A Content-Type the server cannot even read (`;;;`, `a, b`): the same refusal as one it reads and does not take.
      if (status === 415 || (err as { code?: string }).code === 'FST_ERR_CTP_INVALID_MEDIA_TYPE') {
        return this.refuse(req, reply, 'unsupported_media_type', 'Content-Type is not a media type this server reads: send the body as application/json (curl: -H \'content-type: application/json\')', 'Content-Type');
      }
      if (status >= 400 && status < 500) return this.refuse(req, reply, 'invalid_request', (err as Error).message);
      // Only the route and the error text: bodies and headers may carry customer data or tokens.
      o.log.error({ method: req.method, route: req.routeOptions.url, err: errorMessage(err) }, 'request failed');
      return this.refuse(req, reply, 'internal', 'internal error');
    });
  }

  /**
   * Bearer-token check for routes mounted with { auth: true }: undefined when allowed, else the
   * error (401/403/429). Set by the API module to the same tokens as /v1; refuses everything until then.
   */
  authorize: (headers: Record<string, string | string[] | undefined>, method: string, client: string, route: string) => ApiError | undefined = () => ({
    code: 'unauthorized',
    message: 'a valid API bearer token is required',
  });

  /**
   * For routes mounted with { ownCredential }: the API's failed-authentication counts, so a wrong
   * channel secret and a wrong token count alike. Set by the API module; none until then.
   */
  credentialThrottle: CredentialThrottle = { throttled: () => undefined, refused: () => undefined };

  /**
   * A probe's answer: its status code for everyone; the details (mailbox addresses, logins,
   * upstream hosts, error texts) only with a valid token, counted and throttled as on /v1, unless
   * http.probeDetails is `open`. No token is not a refusal: a kubelet or a load balancer sends none.
   */
  private probeAnswer(req: FastifyRequest, reply: FastifyReply, r: Readiness, status: string): FastifyReply {
    reply.code(r.ready ? 200 : 503);
    const full = { status, ...r.checks };
    if (this.o.probeDetails === 'open') return reply.send(full);
    const short = { status, reasons: r.reasons ?? [] };
    if (!req.headers.authorization?.trim()) return reply.send(short);
    const refused = this.authorize(req.headers, 'GET', clientAddress(req), req.routeOptions.url ?? req.url);
    // Said, so a monitor given a wrong token knows why it sees no details.
    return reply.send(refused ? { ...short, details: `not shown: ${refused.message}` } : full);
  }

  /** Handlers by "METHOD path": a restarted connector mounts its routes again and replaces its own. */
  private readonly mounted = new Map<string, RouteHandler>();

  /** Routes, and any path of their shape (another account, another method: shapeOf), whose server-made refusals are flat (RouteOptions.errors). */
  private readonly flatRoutes = new Set<string>();
  private readonly flatShapes = new Set<string>();

  /** A refusal the server makes itself, in the shape of the route asked for. */
  private refuse(req: FastifyRequest, reply: FastifyReply, code: ErrorCode, message: string, field?: string): FastifyReply {
    const path = req.url.split('?')[0]!;
    const flat = this.flatRoutes.has(req.routeOptions.url ?? '') || this.flatShapes.has(shapeOf(path));
    if (!flat) return fail(reply, code, message, field);
    return reply.code(STATUS_OF[code]).send({ error: code, message, ...(field ? { field } : {}) });
  }

  route(method: 'GET' | 'POST' | 'PUT' | 'DELETE', path: string, handler: RouteHandler, opts?: RouteOptions): void {
    const key = `${method} ${path}`;
    const known = this.mounted.has(key);
    this.mounted.set(key, handler);
    if (opts?.errors === 'flat') {
      this.flatRoutes.add(path);
      this.flatShapes.add(shapeOf(path));
    }
    if (known) return;
    this.app.route({
      method,
      url: path,
      // Refused before the body is read.
      onRequest: async (req: FastifyRequest, reply: FastifyReply) => {
        const client = opts?.auth || opts?.ownCredential ? clientAddress(req) : '';
        const refused = opts?.auth
          ? this.authorize(req.headers, req.method, client, path)
          : opts?.ownCredential
            ? this.credentialThrottle.throttled(client, opts.ownCredential)
            : undefined;
        if (refused?.retryAfterS !== undefined) reply.header('retry-after', String(refused.retryAfterS));
        if (refused) return this.refuse(req, reply, refused.code, refused.message);
      },
      handler: async (req: FastifyRequest, reply: FastifyReply) => {
        const raw: RawRequest = {
          method: req.method,
          path: req.url.split('?')[0]!,
          headers: req.headers as Record<string, string | undefined>,
          query: req.query as Record<string, string | undefined>,
          params: req.params as Record<string, string | undefined>,
          rawBody: Buffer.isBuffer(req.body) ? req.body : Buffer.alloc(0),
        };
        const res = await this.mounted.get(key)!(raw);
        if (opts?.ownCredential && res.credentialRefused) this.credentialThrottle.refused(clientAddress(req));
        reply.code(res.status);
        for (const [k, v] of Object.entries(res.headers ?? {})) reply.header(k, v);
        return reply.send(res.body ?? '');
      },
    });
  }

  async listen(): Promise<string> {
    return this.app.listen({ host: this.o.host, port: this.o.port });
  }

  get port(): number {
    const addr = this.app.server.address();
    return typeof addr === 'object' && addr ? addr.port : this.o.port;
  }

  /** /readyz answers 503 from now on; the listener stays open. */
  beginDrain(): void {
    this.closing = true;
  }

  /**
   * Bounded close: readiness 503 at once, the listener open for `drainMs` so probes see 503
   * rather than "connection refused", then no new connections and idle keep-alive sockets closed;
   * requests still running get `graceMs` to finish before every socket is closed.
   */
  async shutdown(drainMs: number, graceMs: number): Promise<void> {
    this.beginDrain();
    await sleep(drainMs);
    const closed = this.app.close();
    const force = setTimeout(() => {
      this.o.log.warn({ graceMs }, 'closing HTTP connections still open after the shutdown grace');
      this.app.server.closeAllConnections();
    }, graceMs);
    try {
      await closed;
    } finally {
      clearTimeout(force);
    }
  }

  /** For tests and tools: no drain, a short grace. */
  async close(): Promise<void> {
    await this.shutdown(0, 1000);
  }
}

/** A connector path with its account segment as `*` (/connectors/<channel>/<account>/…): other paths stay as they are. */
function shapeOf(path: string): string {
  const parts = path.split('/');
  if (parts[1] === 'connectors' && parts.length > 3) parts[3] = '*';
  return parts.join('/');
}

/**
 * The first query parameter whose value (or name) does not percent-decode to UTF-8 (`%ff`, `%E2%82`,
 * a bare `100%`). The query parser keeps such text as it came, so `q=%ff` searched for the three
 * characters "%ff" and answered as if that was meant: refused instead, naming the parameter.
 */
export function undecodableQueryParameter(url: string): string | undefined {
  const start = url.indexOf('?');
  if (start < 0 || url.indexOf('%', start) < 0) return undefined;
  for (const pair of url.slice(start + 1).split('&')) {
    if (!pair.includes('%')) continue;
    const eq = pair.indexOf('=');
    const name = eq < 0 ? pair : pair.slice(0, eq);
    const decodedName = decodeOrUndefined(name);
    if (decodedName === undefined) return 'query';
    if (eq >= 0 && decodeOrUndefined(pair.slice(eq + 1)) === undefined) return decodedName;
  }
  return undefined;
}

/** A parameter given twice (`status=open&status=closed`): its schema said "expected string, received array". */
function repeatedQueryParameter(query: unknown): string | undefined {
  if (typeof query !== 'object' || query === null) return undefined;
  for (const [name, value] of Object.entries(query)) if (Array.isArray(value)) return name;
  return undefined;
}

function decodeOrUndefined(part: string): string | undefined {
  try {
    return decodeURIComponent(part.replace(/\+/g, ' '));
  } catch {
    return undefined;
  }
}
