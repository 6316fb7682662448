/**
 * Which Graph refusals are Meta's throughput limits, and whose: the number's (130429 throughput,
 * 80007 account, 4 and 613 application/call limits, or a bare 429) holds every send of the
 * account; 131056, the pair rate limit (too many messages to one customer), holds only sends to
 * that customer. https://developers.facebook.com/docs/whatsapp/cloud-api/support/error-codes
 */
import { GraphCallError } from './graph.js';

export interface ThrottlePacing {
  /** The wait when Graph gives no Retry-After (it does not) for a limit on the number. */
  rateLimitWaitMs: number;
  /** The same for the pair rate limit (131056): Meta allows about one message every 6 s to one customer. */
  pairRateLimitWaitMs: number;
}

export interface Throttle {
  scope: 'account' | 'recipient';
  waitMs: number;
  code?: number;
}

/** Meta's codes for a limit on the number (or app) as a whole. */
const ACCOUNT_LIMIT_CODES: ReadonlySet<number> = new Set([4, 613, 80007, 130429]);
const PAIR_LIMIT_CODE = 131056;
/** Spam rate limit: a quality restriction, not throughput; waiting it out would not help soon. */
const SPAM_LIMIT_CODE = 131048;

/** The throttle a Graph refusal stands for, or undefined when it is not a throughput limit. */
export function throttleOf(err: unknown, pacing: ThrottlePacing): Throttle | undefined {
  if (!(err instanceof GraphCallError)) return undefined;
  const code = err.error?.code;
  if (code === PAIR_LIMIT_CODE) return { scope: 'recipient', waitMs: err.retryAfterMs ?? pacing.pairRateLimitWaitMs, code };
  if ((code !== undefined && ACCOUNT_LIMIT_CODES.has(code)) || (err.status === 429 && code !== SPAM_LIMIT_CODE)) {
    return { scope: 'account', waitMs: err.retryAfterMs ?? pacing.rateLimitWaitMs, code };
  }
  return undefined;
}
