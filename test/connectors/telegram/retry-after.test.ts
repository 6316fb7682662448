import { describe, expect, it } from 'vitest';
import { MAX_RETRY_AFTER_MS, retryAfterMs, telegramRetryWaitMs } from '../../../src/connectors/telegram/sender.js';
import type { Logger } from '../../../src/core/logger.js';

const tooMany = (retryAfter: unknown) => ({ code: 429, description: 'Too Many Requests', parameters: { retry_after: retryAfter as number } });

describe('telegram retry_after', () => {
  it('honours a sane retry_after, backs off as usual on an unusable one, and caps a huge one at an hour, saying so', () => {
    const warned: string[] = [];
    const log = { warn: (_o: unknown, msg: string) => warned.push(msg) } as unknown as Logger;
    expect(retryAfterMs(tooMany(3))).toBe(3000);
    for (const unusable of [-5, 0, NaN, 'soon', undefined, null]) expect(retryAfterMs(tooMany(unusable))).toBeUndefined();
    expect(retryAfterMs(tooMany(0.0001))).toBe(1000); // never below the minimum wait
    expect(retryAfterMs(tooMany(3_000_000), log, 'getUpdates')).toBe(MAX_RETRY_AFTER_MS);
    expect(retryAfterMs(tooMany(Infinity), log, 'getUpdates')).toBe(MAX_RETRY_AFTER_MS); // JSON's 1e400
    expect(warned).toHaveLength(2);
    expect(warned[0]).toMatch(/^getUpdates: Telegram asked to wait 3000000 s \(retry_after\), longer than 3600 s; waiting 3600 s$/);
    expect(MAX_RETRY_AFTER_MS).toBe(3_600_000);

    // The loops that retry (getUpdates, setWebhook): Telegram's wait when usable, else their backoff.
    expect(telegramRetryWaitMs(tooMany(-5), 1)).toBe(1000);
    expect(telegramRetryWaitMs(tooMany(NaN), 3)).toBe(4000);
    expect(telegramRetryWaitMs(tooMany(7), 1)).toBe(7000);
    expect(telegramRetryWaitMs(tooMany(3_000_000), 1, log, 'setWebhook')).toBe(MAX_RETRY_AFTER_MS);
    expect(telegramRetryWaitMs({ code: 401 }, 1)).toBe(60_000);
    for (const v of [1e9, 3e6, -1, NaN, 1e-9, Infinity]) expect(telegramRetryWaitMs(tooMany(v), 5)).toBeLessThanOrEqual(2 ** 31 - 1);
  });
});
