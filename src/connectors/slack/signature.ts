/**
 * Slack request signing (https://api.slack.com/authentication/verifying-requests-from-slack),
 * checked here rather than with Bolt's verifySlackRequest for two reasons: Bolt only refuses
 * timestamps in the past, so a request dated in the future (a replay prepared ahead, or a clock
 * far off) passes; and it takes the body as a string, so the body had to be decoded as UTF-8
 * first, which replaces invalid byte sequences and signs something other than what Slack sent.
 * Here the HMAC runs over the raw bytes and the timestamp may be at most 5 minutes off either way.
 */
import { createHmac, timingSafeEqual } from 'node:crypto';

export const MAX_CLOCK_SKEW_S = 5 * 60;

export type SignatureVerdict = { ok: true } | { ok: false; reason: string };

export function verifySlackSignature(o: {
  signingSecret: string;
  rawBody: Buffer;
  signature: string | undefined;
  timestamp: string | undefined;
  nowMs?: number;
}): SignatureVerdict {
  if (!o.timestamp || !/^\d{1,12}$/.test(o.timestamp)) return { ok: false, reason: 'x-slack-request-timestamp missing or not a number' };
  const ts = Number(o.timestamp);
  const now = Math.floor((o.nowMs ?? Date.now()) / 1000);
  if (Math.abs(now - ts) > MAX_CLOCK_SKEW_S) return { ok: false, reason: 'x-slack-request-timestamp more than 5 minutes off' };
  const m = /^v0=([0-9a-f]{64})$/.exec(o.signature ?? '');
  if (!m) return { ok: false, reason: 'x-slack-signature missing or not v0' };
  const expected = createHmac('sha256', o.signingSecret).update(`v0:${o.timestamp}:`).update(o.rawBody).digest();
  const given = Buffer.from(m[1]!, 'hex');
  if (!timingSafeEqual(expected, given)) return { ok: false, reason: 'signature mismatch' };
  return { ok: true };
}
