import { describe, expect, it } from 'vitest';
import { PUBLIC_FILE_LIMIT, TelegramOptions, fileLimit } from '../../../src/connectors/telegram/index.js';

const token = '123456:ABCdefGHIjklMNOpqr';

describe('telegram options', () => {
  it('applies the 20 MB download limit on the public Bot API only', () => {
    expect(fileLimit(TelegramOptions.parse({ token }))).toBe(PUBLIC_FILE_LIMIT);
    expect(fileLimit(TelegramOptions.parse({ token, apiRoot: 'https://api.telegram.org/' }))).toBe(PUBLIC_FILE_LIMIT);
    expect(fileLimit(TelegramOptions.parse({ token, apiRoot: 'http://telegram-bot-api:8081' }))).toBe(Number.MAX_SAFE_INTEGER);
    expect(fileLimit(TelegramOptions.parse({ token, maxFileBytes: 1024 }))).toBe(1024);
  });

  it('fills defaults and refuses what cannot work', () => {
    expect(TelegramOptions.parse({ token })).toMatchObject({ mode: 'polling', groups: 'mention', pollTimeoutS: 25, pacing: { privateChatIntervalMs: 1000, groupIntervalMs: 3000, perSecond: 25 } });
    expect(TelegramOptions.safeParse({ token: 'not-a-token' }).success).toBe(false);
    expect(TelegramOptions.safeParse({ token, mode: 'webhook' }).success).toBe(false);
    expect(TelegramOptions.safeParse({ token, mode: 'webhook', webhook: { secretToken: 'short' } }).success).toBe(false);
    expect(TelegramOptions.safeParse({ token, mode: 'webhook', webhook: { secretToken: 'long-enough-secret-123' } }).success).toBe(true);
  });
});
