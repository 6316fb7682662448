/**
 * Delivery outcomes a connector's send() reports by throwing. The outbound runner retries the
 * transient kind with backoff (or exactly after retryAfterMs when the platform said so) and
 * turns the permanent kind into a failed delivery with the reason, never retrying it.
 */
export class TransientDeliveryError extends Error {
  constructor(
    message: string,
    /** The platform's own wait (Telegram retry_after, Slack Retry-After), in ms. */
    readonly retryAfterMs?: number,
  ) {
    super(message);
    this.name = 'TransientDeliveryError';
  }
}

export class PermanentDeliveryError extends Error {
  constructor(
    message: string,
    /** Stable machine-readable reason: "blocked_by_user", "chat_not_found", "channel_not_found"... */
    readonly reason: string = 'permanent_failure',
  ) {
    super(message);
    this.name = 'PermanentDeliveryError';
  }
}

/**
 * This process cannot send for the account at all, while another replica can (a WhatsApp Web
 * session lives in the one process holding its lease). The message is handed back to the
 * shared queue for a replica that can, without counting an attempt.
 */
export class SendElsewhereError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'SendElsewhereError';
  }
}

export function errorMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

/** NATS or JetStream could not be reached, or did not answer in time: the same call may succeed later. */
export class NatsUnavailableError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'NatsUnavailableError';
  }
}

/** The client's own names for "not reached / no answer" (nats.js names NoRespondersError "NoResponders"). */
const UNAVAILABLE = new Set(['NatsUnavailableError', 'TimeoutError', 'NoResponders', 'NoRespondersError', 'ClosedConnectionError', 'DrainingConnectionError', 'ConnectionError']);
/** Wrappers: what they wrap decides (a RequestError wraps a permission violation as well as a timeout). */
const WRAPPERS = new Set(['RequestError', 'JetStreamNotEnabled']);
/** A refusal a retry cannot cure, wherever it sits in the chain: a config mistake, not an outage. */
const REFUSED = new Set(['PermissionViolationError', 'AuthorizationError', 'UserAuthenticationExpiredError']);

/**
 * Whether `err` (or what caused it) says NATS was unreachable or silent, rather than that the
 * request itself was wrong: an HTTP caller gets 503 and retries, not a 500 that reads as a bug.
 * A missing permission is never "unavailable" (clients would retry a config mistake for ever).
 */
export function isNatsUnavailable(err: unknown, depth = 0): boolean {
  if (!err || typeof err !== 'object' || depth > 5) return false;
  const name = (err as { name?: unknown }).name;
  const cause = (err as { cause?: unknown }).cause;
  if (typeof name !== 'string' || REFUSED.has(name)) return false;
  // A bare RequestError is the client giving up on a request; a wrapped one is its cause's kind.
  if (WRAPPERS.has(name)) return cause === undefined ? name === 'RequestError' : isNatsUnavailable(cause, depth + 1);
  if (UNAVAILABLE.has(name)) return true;
  // JetStream's own 503: no stream leader (an election, a server restarting); not "JetStream is
  // not enabled" (10039 for the account, 10076 on the server), which no wait cures.
  if (name === 'JetStreamApiError' && (err as { status?: unknown }).status === 503) return ![10039, 10076].includes((err as { code?: number }).code ?? 0);
  return isNatsUnavailable(cause, depth + 1);
}

/**
 * Whether JetStream itself answered that it cannot serve now (anywhere in the chain): 503 from its
 * API (no leader for the stream or the cluster, JetStream off for the server or the account, its
 * resources exhausted), or no responders on its API (nobody serves `$JS.API.>`: JetStream off).
 * The request reached the server and the answer came back: the client works, and a restarted
 * process would get the same answer (probes.ts liveness does not count a loop failing so). Not a
 * pull without responders (`$JS.API.CONSUMER.MSG.NEXT.…`): that is a consumer gone, which the
 * loop's restart or the provisioning of a restarted process makes again.
 */
export function isJetStreamRefusal(err: unknown, depth = 0): boolean {
  if (!err || typeof err !== 'object' || depth > 5) return false;
  const e = err as { name?: unknown; status?: unknown; subject?: unknown; cause?: unknown };
  if (e.name === 'JetStreamApiError' && e.status === 503) return true;
  if ((e.name === 'NoResponders' || e.name === 'NoRespondersError') && typeof e.subject === 'string') {
    return e.subject.startsWith('$JS.API.') && !e.subject.startsWith('$JS.API.CONSUMER.MSG.NEXT.');
  }
  return isJetStreamRefusal(e.cause, depth + 1);
}

/** Whether NATS refused the request for want of a permission (anywhere in the chain): a config mistake no wait cures. */
export function isPermissionRefusal(err: unknown, depth = 0): boolean {
  if (!err || typeof err !== 'object' || depth > 5) return false;
  const name = (err as { name?: unknown }).name;
  if (typeof name === 'string' && REFUSED.has(name)) return true;
  return isPermissionRefusal((err as { cause?: unknown }).cause, depth + 1);
}

/**
 * Whether a database call failed because the database is away (refused, reset, timed out,
 * shutting down, out of connections or other resources), not because of the call: a retry later
 * can succeed, a restart of this process cannot help. By SQLSTATE:
 * - class 08, a connection exception;
 * - class 53, insufficient resources: too many connections (53300), disk full, out of memory,
 *   a configuration limit (53400);
 * - 57P01–57P05: an administrator or crash shutdown, not accepting connections yet (starting up,
 *   in recovery), the database dropped under the session, the session ended for idling;
 * - 55000 only as the refusal at connect of a database set ALLOW_CONNECTIONS false ("is not
 *   currently accepting connections", raised by CheckMyDatabase): 55000 as such is any object not
 *   in the state a statement needs, which is the statement's fault;
 * - 54000 only as the wraparound guard ("not accepting commands … to avoid wraparound data
 *   loss"), which an administrator's VACUUM lifts;
 * - 3D000, a database that does not exist (dropped, not created yet); 42P01 a table that does not
 *   exist (the schema dropped for a rebuild: the read model creates it again); class 28 the role
 *   refused at login (NOLOGIN, a changed password) and 42501 a privilege revoked: an
 *   administrator's change that an administrator undoes (an outside trial saw those answer 500).
 * A statement's own faults (syntax 42601, constraint 23xxx, a cancelled statement 57014) stay ours.
 */
export function isDatabaseUnavailable(err: unknown): boolean {
  const code = (err as { code?: unknown })?.code;
  if (typeof code === 'string') {
    if (/^(08[0-9A-Z]{3}|28[0-9A-Z]{3}|53[0-9A-Z]{3}|57P0[1-5]|3D000|42P01|42501)$/.test(code) || NETWORK_CODES.has(code)) return true;
    const routine = (err as { routine?: unknown }).routine;
    if (code === '55000' && (routine === 'CheckMyDatabase' || /is not currently accepting connections/i.test(errorMessage(err)))) return true;
    if (code === '54000' && /to avoid wraparound data loss/i.test(errorMessage(err))) return true;
  }
  return /Connection terminated|timeout exceeded when trying to connect|Client has encountered a connection error/i.test(errorMessage(err));
}

const NETWORK_CODES = new Set(['ECONNREFUSED', 'ECONNRESET', 'ETIMEDOUT', 'EHOSTUNREACH', 'ENETUNREACH', 'ENOTFOUND', 'EAI_AGAIN', 'EPIPE']);

/**
 * A failure reason's leading code (`retries_exhausted`, `outside_24h_window`, `bounced`): what
 * metric labels and dead-letter codes carry, so a reason's free text (attempt counts, server
 * replies) never becomes a label value of its own; `fallback` when it starts with no code.
 */
export function reasonCode(reason: string | undefined, fallback = 'delivery_failed'): string {
  return /^([a-z][a-z0-9_]{0,39})(?:[:\s]|$)/.exec(reason ?? '')?.[1] ?? fallback;
}
