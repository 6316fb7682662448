/**
 * URLs with credentials: refused by config validation and `omnigate check-config` (naming the key
 * and saying where the credential belongs), and masked in every log line whatever their source.
 */
import { execFile } from 'node:child_process';
import { Writable } from 'node:stream';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import { loadAll } from '../../src/cli.js';
import { ConfigError, loadConfig } from '../../src/core/config.js';
import { createLogger } from '../../src/core/logger.js';
import { maskUrlCredentials } from '../../src/core/url-credentials.js';
import { writeConfig } from '../helpers/process.js';

const run = promisify(execFile);
const root = new URL('../..', import.meta.url).pathname;
const SECRET = '0123456789abcdef';

describe('config refuses URLs with credentials', () => {
  it('a webhook url, naming the key and telling to use a header', () => {
    const file = writeConfig({ webhooks: [{ name: 'crm', url: 'https://bot:Пароль-123@crm.example.ru/hook', secret: SECRET }] });
    let err: unknown;
    try {
      loadConfig(file, {});
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(ConfigError);
    expect((err as ConfigError).key).toBe('webhooks[0].url');
    expect((err as Error).message).toMatch(/user name or password.*header/);
    expect((err as Error).message).not.toContain('Пароль-123');
  });

  it('a connector callbackUrl, also when the password comes from ${VAR}', async () => {
    const file = writeConfig({ connectors: [{ type: 'webhook', account: 'site', secret: SECRET, callbackUrl: 'https://site:${CB_PASS}@shop.example.ru/omnigate' }] });
    await expect(loadAll(file, { CB_PASS: 'hunter2-secret' })).rejects.toThrow(/connectors\[0\]\.callbackUrl: URL contains a user name or password/);
  });

  it('nats.url points at nats.user / nats.pass', () => {
    const file = writeConfig({ nats: { url: 'nats://omni:s3cret@127.0.0.1:4222' } });
    expect(() => loadConfig(file, {})).toThrow(/nats\.url: .*nats\.user \/ nats\.pass/);
  });

  it('omnigate check-config exits 78 with the key', async () => {
    const file = writeConfig({ connectors: [{ type: 'webhook', account: 'site', secret: SECRET, callbackUrl: 'http://u:p@127.0.0.1:59/cb' }] });
    const failed = await run(process.execPath, ['--import', 'tsx', 'src/cli.ts', 'check-config', '--config', file], { cwd: root }).catch((e) => e);
    expect(failed.code).toBe(78);
    expect(failed.stderr).toContain('connectors[0].callbackUrl: URL contains a user name or password');
    expect(failed.stderr).not.toContain('u:p@');
  });

  it('accepts plain URLs and e-mail addresses', () => {
    const file = writeConfig({ webhooks: [{ name: 'crm', url: 'https://crm.example.ru/hook?from=support@example.ru', secret: SECRET }] });
    expect(loadConfig(file, {}).config.webhooks[0]!.url).toContain('crm.example.ru');
  });
});

describe('logs mask URL userinfo from any source', () => {
  it('in the message, in fields, nested, and in errors', () => {
    const lines: string[] = [];
    const log = createLogger({ level: 'info', destination: new Writable({ write: (c, _e, cb) => (lines.push(c.toString()), cb()) }) });
    log.warn({ url: 'https://admin:topsecret1@hooks.example.ru/x', nested: { list: ['ftp://a:topsecret2@h/'] } }, 'POST https://u:topsecret3@h.example.ru failed');
    log.error({ err: new Error('fetch https://u:topsecret4@h/ refused') }, 'delivery failed');
    log.error(new TypeError('Request cannot be constructed from a URL that includes credentials: https://x:topsecret5@y/'));
    const all = lines.join('');
    for (let i = 1; i <= 5; i++) expect(all).not.toContain(`topsecret${i}`);
    expect(all).toContain('https://[REDACTED]@hooks.example.ru/x');
  });

  it('leaves e-mail addresses and URLs without userinfo alone', () => {
    expect(maskUrlCredentials('from ольга@example.ru via https://example.ru/a@b')).toBe('from ольга@example.ru via https://example.ru/a@b');
    expect(maskUrlCredentials('smtp://user%40corp:p%3Ass@mail.example.ru:587')).toBe('smtp://[REDACTED]@mail.example.ru:587');
  });
});
