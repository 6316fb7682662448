/**
 * A framework-neutral HTTP route, so connectors can receive webhooks (Telegram webhook mode,
 * Slack Events API, WhatsApp Cloud API) on the gateway's one server without depending on it.
 * Handlers get the raw body: signatures are computed over the exact bytes received.
 */
import { hostAndPort } from './network-failure.js';

export interface RawRequest {
  method: string;
  path: string;
  headers: Record<string, string | undefined>;
  query: Record<string, string | undefined>;
  params: Record<string, string | undefined>;
  rawBody: Buffer;
}

export interface RawResponse {
  status: number;
  headers?: Record<string, string>;
  body?: string | Buffer | object;
  /**
   * On a route mounted with `ownCredential`: the request presented the route's credential and it
   * was wrong. Counted against the client's address (api.authThrottle); not sent.
   */
  credentialRefused?: boolean;
}

export type RouteHandler = (req: RawRequest) => Promise<RawResponse>;

export interface HttpMount {
  /**
   * Path may contain :params (fastify syntax). Connector routes live under
   * /connectors/<channel>/<account>/. With `auth: true` the route requires an API bearer token
   * (ops endpoints such as a pairing QR code); platform webhooks verify their own signatures.
   * Routes must be mounted during Connector.start(), before the server listens.
   */
  route(method: 'GET' | 'POST' | 'PUT' | 'DELETE', path: string, handler: RouteHandler, opts?: RouteOptions): void;
}

export interface RouteOptions {
  /** Requires an API bearer token. */
  auth?: boolean;
  /**
   * The route checks a credential of its own (a channel's shared secret), named here for the
   * refusal ("secrets"). Wrong ones (the handler's `credentialRefused`) count against the client's
   * address together with wrong API tokens (api.authThrottle), and an address past the limit is
   * answered 429 before the handler runs, whatever it presents: without it the route let a
   * guesser try secrets without end.
   */
  ownCredential?: string;
  /**
   * `flat`: what the server refuses itself on this route (a body over http.bodyLimit, a missing
   * token, shutting down), and on any path of the same shape (/connectors/<channel>/<any
   * account>/<same rest>, any method), is answered as `{"error": "<code>",
   * "message": "…"}`, the shape the route's own refusals use, instead of the /v1 API's
   * `{"error": {"code", …}}`.
   */
  errors?: 'flat';
}

/**
 * A Retry-After header (seconds or an HTTP date) in ms; undefined when absent, unreadable or not
 * in the future, so the caller falls back to its own backoff (a bare 429 retried at once would
 * spend every attempt within milliseconds).
 */
export function retryAfterMs(value: string | null | undefined): number | undefined {
  if (!value) return undefined;
  const seconds = Number(value);
  const ms = Number.isFinite(seconds) ? seconds * 1000 : Date.parse(value) - Date.now();
  return ms > 0 ? ms : undefined;
}

/** An outgoing call's signal: its timeout, and the owner's stop when given (a slow peer must not hold a shutdown). */
export function callSignal(timeoutMs: number, stopping?: AbortSignal): AbortSignal {
  return stopping ? AbortSignal.any([AbortSignal.timeout(timeoutMs), stopping]) : AbortSignal.timeout(timeoutMs);
}

/**
 * Why a redirect answer to an outgoing call is not followed, or undefined when `res` is none.
 * Calls that send something (a reply, a ticket update) use `redirect: 'manual'`: fetch follows a
 * 301/302/303 as a GET without the body, and a 2xx at the end of it counted as sent, so every
 * reply to an http:// address that redirects to https:// was lost without a word; a 307/308 sends
 * the signed body on to whatever host the Location names.
 */
export function redirectRefusal(res: Response): string | undefined {
  return redirectAnswerRefusal(res.status, res.headers.get('location'), res.url);
}

/** redirectRefusal for an answer not read with fetch (node:http): its status, its Location and the URL that was asked. */
export function redirectAnswerRefusal(status: number, location: string | null | undefined, requested: string): string | undefined {
  if (status < 300 || status > 399) return undefined;
  return `answered ${status}, a redirect${location ? ` to ${whereTo(location, requested)}` : ''}: not followed (it would drop the body or send it to another address); set the URL to the final address`;
}

/**
 * A redirect's Location as a reason may carry it: another host by scheme, host and port only; on
 * the same host, only whether it is the same path with a slash added (the usual redirect). The
 * reason is stored on the ticket, in dead letters and in webhook events, and a Location may hold
 * a password (`https://user:pass@…`), a token in its query (`?ticket=…`) or in its path (a hook
 * URL `/hooks/<secret>/`).
 */
function whereTo(location: string, requested: string): string {
  let target: URL;
  try {
    target = new URL(location, requested || undefined);
  } catch {
    return 'an address that is not a URL';
  }
  let from: URL | undefined;
  try {
    from = requested ? new URL(requested) : undefined;
  } catch {
    from = undefined;
  }
  if (from && target.origin === from.origin) {
    return target.pathname === `${from.pathname}/` || `${target.pathname}/` === from.pathname
      ? 'the same path with its trailing slash added or taken off: write the URL that way'
      : 'another path on the same host (not shown: a path may hold a token)';
  }
  return `${target.protocol}//${hostAndPort(target)} (path, query and credentials not shown)`;
}

/**
 * The body of `res` as text, at most `maxBytes` of it (the rest is not read): a peer whose answer
 * we only glance at (an id) could otherwise make us hold a gigabyte in memory.
 */
export async function readCapped(res: Response, maxBytes: number): Promise<string> {
  if (!res.body) return '';
  const chunks: Uint8Array[] = [];
  let size = 0;
  const reader = res.body.getReader();
  try {
    while (size < maxBytes) {
      const { done, value } = await reader.read();
      if (done) break;
      chunks.push(value);
      size += value.byteLength;
    }
  } finally {
    await reader.cancel().catch(() => {});
  }
  return Buffer.concat(chunks).subarray(0, maxBytes).toString('utf8');
}
