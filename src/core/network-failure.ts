/**
 * A call that never got an answer, said as the network said it: `ECONNREFUSED (connection refused:
 * nothing listens there) at crm.internal:8443`, not undici's bare "fetch failed", grammY's "Network
 * request for 'sendMessage' failed!" or the Slack client's "A request error occurred". What an
 * agent reads on a failed reply and an operator reads in a log, for every connector and helpdesk
 * adapter that calls out. Only a URL's host and port are named: never its user, password, path or
 * query (a token in a query string stays out of reasons and logs).
 */
import { errorMessage } from './errors.js';

/** What the network said, by its code. */
const NETWORK_FAILURES: Record<string, string> = {
  ECONNREFUSED: 'connection refused: nothing listens there',
  ECONNRESET: 'connection reset',
  ETIMEDOUT: 'connect timed out',
  UND_ERR_CONNECT_TIMEOUT: 'connect timed out',
  ENOTFOUND: 'host name not found (DNS)',
  EAI_AGAIN: 'DNS lookup failed for now',
  EHOSTUNREACH: 'host unreachable',
  ENETUNREACH: 'network unreachable',
  EPIPE: 'connection closed while sending',
  UND_ERR_SOCKET: 'connection closed by the other side',
  UND_ERR_HEADERS_TIMEOUT: 'no answer headers in time',
  UND_ERR_BODY_TIMEOUT: 'answer body stalled',
  CERT_HAS_EXPIRED: 'TLS certificate expired',
  DEPTH_ZERO_SELF_SIGNED_CERT: 'TLS certificate self-signed',
  SELF_SIGNED_CERT_IN_CHAIN: 'TLS certificate chain self-signed',
  UNABLE_TO_VERIFY_LEAF_SIGNATURE: 'TLS certificate not verifiable',
  ERR_TLS_CERT_ALTNAME_INVALID: 'TLS certificate is for another host name',
  HPE_INVALID_CONSTANT: 'the answer is not HTTP',
  HPE_INVALID_STATUS: 'the answer is not HTTP',
  HPE_INVALID_HEADER_TOKEN: 'the answer has a header that is not HTTP',
  UND_ERR_INVALID_ARG: 'the request could not be made',
};

/** Where a library keeps the error it wraps: `cause` (undici), `errors` (AggregateError), `error` (grammY's HttpError), `original` (the Slack client). */
const WRAPPED = ['cause', 'error', 'original'] as const;

/** The first network error code in the cause chain, or undefined. */
function causeCode(err: unknown, depth = 0): string | undefined {
  if (!err || typeof err !== 'object' || depth > 5) return undefined;
  const code = (err as { code?: unknown }).code;
  if (typeof code === 'string' && /^[A-Z][A-Z0-9_]+$/.test(code)) return code;
  const record = err as Record<string, unknown>;
  const nested = [...WRAPPED.map((k) => record[k]), ...(record.errors instanceof Array ? record.errors : [])];
  for (const e of nested) {
    const found = causeCode(e, depth + 1);
    if (found) return found;
  }
  return undefined;
}

/** Whether the error is a timeout of our own (AbortSignal.timeout), anywhere in the chain. */
function timedOut(err: unknown, depth = 0): boolean {
  if (!err || typeof err !== 'object' || depth > 5) return false;
  if ((err as { name?: unknown }).name === 'TimeoutError') return true;
  const record = err as Record<string, unknown>;
  return WRAPPED.some((k) => timedOut(record[k], depth + 1));
}

/** The network's cause alone (`ECONNREFUSED (connection refused: nothing listens there)`), or undefined when the error carries none. */
export function networkCause(err: unknown, timeoutMs?: number): string | undefined {
  if (timedOut(err)) return `ETIMEDOUT (no answer within ${timeoutMs ?? '?'} ms)`;
  const code = causeCode(err);
  return code ? `${code}${NETWORK_FAILURES[code] ? ` (${NETWORK_FAILURES[code]})` : ''}` : undefined;
}

/** A call to `url` that got no answer, as its cause and where. `timeoutSetting` names the setting a timeout comes from. */
export function describeFetchFailure(err: unknown, url: string, timeoutMs?: number, timeoutSetting = 'timeoutMs'): string {
  const where = hostPort(url);
  if (timedOut(err)) return `ETIMEDOUT (no answer within ${timeoutMs ?? '?'} ms, ${timeoutSetting}) at ${where}`;
  const cause = networkCause(err);
  if (cause) return `${cause} at ${where}`;
  // undici says only "fetch failed"; why is in its cause ("bad port": a port fetch never calls).
  const innermost = innermostMessage(err);
  if (innermost === 'bad port') return `bad port (HTTP clients refuse to call this port: it belongs to another protocol; use another) at ${where}`;
  return `${withoutUrls(innermost ?? errorMessage(err))} at ${where}`;
}

/** The message of the innermost error a library wrapped, or undefined. */
function innermostMessage(err: unknown, depth = 0): string | undefined {
  if (!err || typeof err !== 'object' || depth > 5) return undefined;
  const inner = (err as { cause?: unknown }).cause;
  return innermostMessage(inner, depth + 1) ?? (depth > 0 ? errorMessage(err) : undefined);
}

/** A message with every URL in it replaced, cut to 200 characters: a library's message may quote the URL it called, password and all. */
export function withoutUrls(message: string): string {
  return message.replace(/[a-z][a-z0-9+.-]*:\/\/\S*/gi, '<url>').slice(0, 200);
}

function hostPort(url: string): string {
  try {
    return hostAndPort(new URL(url));
  } catch {
    return '(the configured URL)';
  }
}

/** `host:port` of a URL, the port its scheme implies when none is written: all of it a reason may name. */
export function hostAndPort(u: URL): string {
  const host = u.hostname.includes(':') && !u.hostname.startsWith('[') ? `[${u.hostname}]` : u.hostname;
  return `${host}:${u.port || (u.protocol === 'https:' ? '443' : '80')}`;
}
