/** Retry-After as every HTTP client of the gateway reads it (webhook callbacks, WhatsApp Graph, Zammad, outgoing webhooks). */
import { describe, expect, it } from 'vitest';
import { retryAfterMs } from '../../src/core/http.js';

describe('retryAfterMs', () => {
  it('reads seconds and HTTP dates', () => {
    expect(retryAfterMs('2')).toBe(2000);
    expect(retryAfterMs('0.5')).toBe(500);
    const ms = retryAfterMs(new Date(Date.now() + 30_000).toUTCString())!;
    expect(ms).toBeGreaterThan(28_000);
    expect(ms).toBeLessThanOrEqual(30_000);
  });

  it('is undefined when absent, unreadable, zero or past: the caller backs off on its own (a bare 429 retried at once spent every attempt in milliseconds)', () => {
    for (const v of [null, undefined, '', 'soon', '0', '-5', new Date(Date.now() - 60_000).toUTCString()]) expect(retryAfterMs(v)).toBeUndefined();
  });
});
