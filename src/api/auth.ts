/**
 * Bearer-token auth for the /v1 API, the console's routes and authenticated connector routes.
 * Tokens come from config (`api.tokens`), are compared in constant time, and are never logged.
 * Wrong tokens are counted per client address (auth-throttle.ts): an address past the limit is
 * refused with 429 before its token is looked at. Routes that check a secret of their own (the
 * web-form channel's) are throttled by the same counts (CredentialThrottle, used by server.ts).
 */
import type { FastifyRequest } from 'fastify';
import { safeEqual } from '../core/signature.js';
import { metrics } from '../core/metrics.js';
import type { AuthThrottle } from './auth-throttle.js';
import type { ApiError } from './errors.js';
import { clientAddress } from './client-address.js';

export interface ApiToken {
  name: string;
  token: string;
  readOnly: boolean;
  /** May erase a person's data; an ordinary token may not. */
  admin?: boolean;
  /** `attachments`: may only download files (a web site fetching its replies' attachments); absent or `all`: every route its other flags allow. */
  scope?: TokenScope;
}

export type TokenScope = 'all' | 'attachments';

export type AuthResult = { ok: true; name: string; readOnly: boolean; admin: boolean; scope: TokenScope } | { ok: false; error: ApiError };

type AuthHeader = string | string[] | undefined;

/** Methods a read-only token may use. */
const READ_METHODS = new Set(['GET', 'HEAD', 'OPTIONS']);

/** The one route (its pattern as mounted) an attachments-scoped token may use: the download. */
const ATTACHMENT_DOWNLOAD = '/v1/attachments/*';

export { clientAddress } from './client-address.js';

/** The failed-credential throttle as routes with a credential of their own use it (core/http.ts RouteOptions.ownCredential). */
export interface CredentialThrottle {
  /** The 429 for `client` when its address is throttled (it presented too many wrong `credentials`), else undefined. */
  throttled(client: string, credentials: string): ApiError | undefined;
  /** `client` presented a wrong credential: counted against its address. */
  refused(client: string): void;
}

/** A request as the request-level methods read it: its token, method, route and client address. */
export type AuthRequest = Pick<FastifyRequest, 'headers' | 'method' | 'url' | 'routeOptions' | 'socket'>;

export class TokenAuth implements CredentialThrottle {
  /**
   * Who each request's token is, as its auth step found it: kept on the request (weakly: gone
   * with it), so whatever asks later in the same request (the access log, a route naming its
   * caller) reuses it instead of comparing the token against every configured one again.
   */
  private readonly identities = new WeakMap<object, AuthResult>();

  constructor(
    private readonly tokens: ApiToken[],
    /** Absent: no throttling (tools and tests that make a TokenAuth of their own). */
    private readonly throttle?: AuthThrottle,
  ) {}

  /**
   * Authenticates a request from `client`, counting a wrong token against its address; with
   * `request`, who its token is is kept for identified().
   */
  check(header: AuthHeader, client: string, request?: object): AuthResult {
    const throttled = this.throttled(client, 'tokens');
    if (throttled) return { ok: false, error: throttled };
    const result = this.identify(header);
    if (request) this.identities.set(request, result);
    // No Authorization header at all is not a guess (a browser opening the console, a probe):
    // only a credential presented and refused counts.
    if (!result.ok && present(header)) this.refused(client);
    return result;
  }

  throttled(client: string, credentials: string): ApiError | undefined {
    const waitMs = this.throttle?.retryAfterMs(client) ?? 0;
    if (waitMs <= 0) return undefined;
    metrics.apiAuthFailures.inc({ outcome: 'throttled' });
    const retryAfterS = Math.ceil(waitMs / 1000);
    return { code: 'too_many_auth_failures', message: `too many wrong ${credentials} from this address: refused without checking for ${retryAfterS} s (api.authThrottle)`, retryAfterS };
  }

  refused(client: string): void {
    metrics.apiAuthFailures.inc({ outcome: 'refused' });
    this.throttle?.failed(client);
  }

  /**
   * Who a header's token is, without counting or throttling: for a route's own use after its
   * guard has let the request in (the token is then known to be valid).
   */
  identify(header: AuthHeader): AuthResult {
    const value = Array.isArray(header) ? header[0] : header;
    const match = /^Bearer\s+(\S+)\s*$/i.exec(value ?? '');
    if (!match) return { ok: false, error: { code: 'unauthorized', message: 'missing bearer token (Authorization: Bearer <token>)' } };
    let found: ApiToken | undefined;
    // Compare against every token so the time taken does not reveal which one matched.
    for (const t of this.tokens) if (safeEqual(match[1]!, t.token)) found = t;
    if (!found) return { ok: false, error: { code: 'unauthorized', message: 'invalid bearer token' } };
    return { ok: true, name: found.name, readOnly: found.readOnly, admin: found.admin === true, scope: found.scope ?? 'all' };
  }

  /**
   * Who a request's token is: as its auth step (authorizeRequest, authorizeAdminRequest) found
   * it, else looked up now (a request refused before its token was looked at: throttled).
   */
  identified(request: AuthRequest): AuthResult {
    return this.identities.get(request) ?? this.identify(request.headers.authorization);
  }

  /** authorize() for a Fastify request to the route it was mounted as; who it is is kept for identified(). */
  authorizeRequest(req: AuthRequest): ApiError | undefined {
    return this.authorize(req.headers.authorization, req.method, clientAddress(req), req.routeOptions.url ?? req.url, req);
  }

  /** authorizeAdmin() for a Fastify request, as authorizeRequest. */
  authorizeAdminRequest(req: AuthRequest): { name: string } | { error: ApiError } {
    return this.authorizeAdmin(req.headers.authorization, req.method, clientAddress(req), req.routeOptions.url ?? req.url, req);
  }

  /**
   * Auth for one request to `route` (the pattern the route was mounted with, as Fastify's
   * routeOptions.url names it): undefined when allowed, else the error to answer with (401, 403 or 429).
   */
  authorize(header: AuthHeader, method: string, client: string, route: string, request?: object): ApiError | undefined {
    const result = this.check(header, client, request);
    if (!result.ok) return result.error;
    const scoped = scopeRefusal(result, method, route);
    if (scoped) return scoped;
    if (result.readOnly && !READ_METHODS.has(method.toUpperCase())) {
      return { code: 'forbidden', message: `token "${result.name}" is read-only` };
    }
    return undefined;
  }

  /** Auth for an admin-only route: the token's name when allowed, else the error (401, 403 or 429). */
  authorizeAdmin(header: AuthHeader, method: string, client: string, route: string, request?: object): { name: string } | { error: ApiError } {
    const result = this.check(header, client, request);
    if (!result.ok) return { error: result.error };
    // The schema refuses admin with scope attachments; checked here too, so no route relies on that alone.
    const scoped = scopeRefusal(result, method, route);
    if (scoped) return { error: scoped };
    if (!result.admin) return { error: { code: 'forbidden', message: `token "${result.name}" is not an admin token (api.tokens[].admin: true)` } };
    return { name: result.name };
  }
}

/**
 * Why a scoped token may not use `route`, or undefined. A web site's token fetches its replies'
 * files; with an unscoped one, whoever read the site's configuration could read every customer's
 * tickets. Refused by route pattern, not by URL, so no spelling of a path gets past it.
 */
function scopeRefusal(result: { name: string; scope: TokenScope }, method: string, route: string): ApiError | undefined {
  if (result.scope !== 'attachments') return undefined;
  if (route === ATTACHMENT_DOWNLOAD && READ_METHODS.has(method.toUpperCase())) return undefined;
  return { code: 'forbidden', message: `token "${result.name}" has scope attachments (api.tokens[].scope): it may only download files (GET ${ATTACHMENT_DOWNLOAD}), not ${method.toUpperCase()} ${route}` };
}

function present(header: AuthHeader): boolean {
  const value = Array.isArray(header) ? header[0] : header;
  return value !== undefined && value.trim() !== '';
}
