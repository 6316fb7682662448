/**
 * The signature omnigate puts on every HTTP body it sends (helpdesk webhooks, webhook-channel
 * callbacks) and accepts on the generic webhook channel:
 *   X-Omnigate-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<raw body>")>
 * Receivers recompute the HMAC over the exact bytes and reject timestamps older than 5 minutes.
 */
import { createHash, createHmac, timingSafeEqual } from 'node:crypto';

export const SIGNATURE_HEADER = 'x-omnigate-signature';
export const DEFAULT_TOLERANCE_S = 300;

export function sign(secret: string, body: string | Buffer, nowS = Math.floor(Date.now() / 1000)): string {
  const mac = createHmac('sha256', secret).update(`${nowS}.`).update(body).digest('hex');
  return `t=${nowS},v1=${mac}`;
}

export function verify(
  secret: string,
  body: string | Buffer,
  header: string | undefined,
  toleranceS = DEFAULT_TOLERANCE_S,
  nowS = Math.floor(Date.now() / 1000),
): { ok: true } | { ok: false; reason: string } {
  if (!header) return { ok: false, reason: 'missing signature header' };
  const parts = Object.fromEntries(header.split(',').map((p) => p.trim().split('=', 2) as [string, string]));
  const t = Number(parts.t);
  if (!Number.isInteger(t) || !parts.v1) return { ok: false, reason: 'malformed signature header' };
  if (Math.abs(nowS - t) > toleranceS) return { ok: false, reason: 'signature timestamp outside tolerance' };
  const expected = createHmac('sha256', secret).update(`${t}.`).update(body).digest();
  const given = Buffer.from(parts.v1, 'hex');
  if (given.length !== expected.length || !timingSafeEqual(given, expected)) return { ok: false, reason: 'signature mismatch' };
  return { ok: true };
}

/**
 * Constant-time string comparison for bearer tokens. Both sides are hashed first, so the time
 * taken does not even tell whether the lengths matched (comparing the raw bytes had to stop early
 * on a length mismatch).
 */
export function safeEqual(a: string, b: string): boolean {
  return timingSafeEqual(createHash('sha256').update(a).digest(), createHash('sha256').update(b).digest());
}
