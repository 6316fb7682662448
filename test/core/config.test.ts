import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { Writable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { ConfigError, loadConfig, loadNatsSection } from '../../src/core/config.js';
import { loadAll } from '../../src/cli.js';
import { createLogger, registerSecret } from '../../src/core/logger.js';
import { writeConfig } from '../helpers/process.js';
import { DEFAULT_MAX_TAKEOVERS } from '../../src/connectors/outbound-marker.js';

const run = promisify(execFile);
const root = new URL('../..', import.meta.url).pathname;

function errorOf(fn: () => unknown): ConfigError {
  try {
    fn();
  } catch (err) {
    if (err instanceof ConfigError) return err;
    throw err;
  }
  throw new Error('expected a ConfigError');
}

describe('config', () => {
  it('applies defaults with no file and reads durations and sizes', () => {
    const { config } = loadConfig(undefined, {});
    expect(config.nats.url).toBe('');
    expect(config.nats.embedded.dataDir).toBe('./data');
    expect(config.router.reopenWindow).toBe(7 * 86_400_000);
    expect(config.media.maxBytes).toBe(25 * 1024 * 1024);
  });

  it('outbound.maxTakeovers: 3 by default; 0 (a reply never taken over after a crash) is refused naming the field', () => {
    expect(loadConfig(undefined, {}).config.outbound.maxTakeovers).toBe(3);
    expect(DEFAULT_MAX_TAKEOVERS).toBe(3); // the runner's own default, for runners built without the config
    expect(loadConfig(writeConfig({ outbound: { maxTakeovers: 5 } }), {}).config.outbound.maxTakeovers).toBe(5);
    expect(errorOf(() => loadConfig(writeConfig({ outbound: { maxTakeovers: 0 } }), {})).message).toMatch(/outbound\.maxTakeovers/);
  });

  it('a whole ${VAR} where a number or a boolean is expected is read as one; a numeric secret or id stays text', async () => {
    const file = writeConfig({ http: { port: '${GW_PORT}' }, router: { csat: { enabled: '${CSAT_ON:-false}' } }, nats: { token: '${NATS_TOKEN}' } });
    const { config } = loadConfig(file, { GW_PORT: '9099', CSAT_ON: 'true', NATS_TOKEN: '9081726354' });
    expect(config.http.port).toBe(9099);
    expect(config.router.csat.enabled).toBe(true);
    expect(config.nats.token).toBe('9081726354');
    // Still wrong after reading it as YAML: the problem names the variable it came from.
    const err = errorOf(() => loadConfig(file, { GW_PORT: 'восемь', CSAT_ON: 'true', NATS_TOKEN: 'x' }));
    expect(err.message).toMatch(/http\.port: .*number.* \(the value of \$\{GW_PORT\}\)/);
    // A size or a duration takes a number as well (its refusal said so in other words).
    const sized = writeConfig({ media: { maxBytes: '${MAX_BYTES}' }, tickets: { evictClosedAfter: '${EVICT}' } });
    const typed = loadConfig(sized, { MAX_BYTES: '1048576', EVICT: '0' }).config;
    expect(typed.media.maxBytes).toBe(1_048_576);
    expect(typed.tickets.evictClosedAfter).toBe(0);
    expect(loadConfig(sized, { MAX_BYTES: '20MB', EVICT: '30d' }).config.media.maxBytes).toBe(20 * 1024 * 1024);
    // `omnigate dlq` reads the nats section alone, typed the same way as start does.
    expect(loadNatsSection(writeConfig({ nats: { embedded: { port: '${NATS_PORT}' } } }), { NATS_PORT: '14999' }).embedded.port).toBe(14999);
    // A secret that is all digits and too short stays text: its refusal is the secret's, not "expected string".
    const short = writeConfig({ connectors: [{ type: 'webhook', account: 'site', secret: '${SHORT_SECRET}' }] });
    await expect(loadAll(short, { SHORT_SECRET: '12345' })).rejects.toThrow(/connectors\[0\]\.secret: .*16.*\(the value of \$\{SHORT_SECRET\}\)/);
    // An override of a text key keeps its text, whatever it looks like (a numeric password).
    const { config: withOverrides } = loadConfig(undefined, { OMNIGATE_NATS__URL: 'nats://127.0.0.1:4222', OMNIGATE_NATS__USER: '1001', OMNIGATE_NATS__PASS: '5647382910', OMNIGATE_HTTP__PORT: '9098' });
    expect(withOverrides.nats.user).toBe('1001');
    expect(withOverrides.nats.pass).toBe('5647382910');
    expect(withOverrides.http.port).toBe(9098);
    // A reference inside a value: typed the same way, and a wrong one names the variable.
    expect(loadConfig(writeConfig({ http: { port: '90${PORT_TAIL}' } }), { PORT_TAIL: '97' }).config.http.port).toBe(9097);
    expect(errorOf(() => loadConfig(writeConfig({ http: { port: 'x${PORT_TAIL}' } }), { PORT_TAIL: '97' })).message).toMatch(/http\.port: .*\(the value of \$\{PORT_TAIL\}\)/);
    // In a connector's own options too (checked by its module's schema).
    const entry = writeConfig({ connectors: [{ type: 'webhook', account: 'site', secret: '${SITE_SECRET}', timeoutMs: '${HOOK_TIMEOUT}' }] });
    const { loaded } = await loadAll(entry, { SITE_SECRET: '9081726354453627', HOOK_TIMEOUT: '7000' });
    expect(loaded.connectors[0]!.options).toMatchObject({ secret: '9081726354453627', timeoutMs: 7000 });
  });

  it('a variable is its text where text is expected; a boolean or plain decimal number only where one is', () => {
    // YAML read 0x1F90 as 8080, 9e3 as 9000, .5 as 0.5, and "x #1" lost its " #1" as a comment.
    const looksLikeNumbers = ['0x1F90', '9e3', '0o17', '1_000', '.5', '007', '+5', '.inf', 'yes', 'Off', 'null', "'quoted'", 'pass #1', '[a]', 'a: b'];
    const file = writeConfig({ nats: { url: 'nats://127.0.0.1:4222', user: '${NATS_USER}', token: '${NATS_TOKEN}' }, database: { user: 'omni', password: '${DB_PASSWORD}' } });
    for (const text of looksLikeNumbers) {
      const { config } = loadConfig(file, { NATS_USER: text, NATS_TOKEN: text, DB_PASSWORD: text, OMNIGATE_NATS__PASS: text });
      expect([config.nats.user, config.nats.token, config.database.password, config.nats.pass]).toEqual([text, text, text, text]);
      // `omnigate dlq` reads the nats section alone, the same way.
      expect(loadNatsSection(file, { NATS_USER: text, NATS_TOKEN: text, OMNIGATE_NATS__PASS: text }).pass).toBe(text);
    }

    const flags = writeConfig({ router: { csat: { enabled: '${CSAT_ON}' }, autoAcknowledge: { enabled: '${ACK_ON}' } } });
    for (const [text, value] of [['yes', true], ['No', false], ['ON', true], ['off', false], ['TRUE', true], ['false', false], ['1', true], ['0', false]] as const) {
      const { config } = loadConfig(flags, { CSAT_ON: text, ACK_ON: text });
      expect([config.router.csat.enabled, config.router.autoAcknowledge.enabled]).toEqual([value, value]);
      expect(loadConfig(undefined, { OMNIGATE_ROUTER__CSAT__ENABLED: text }).config.router.csat.enabled).toBe(value);
    }
    expect(errorOf(() => loadConfig(flags, { CSAT_ON: 'y', ACK_ON: 'no' })).message).toMatch(/router\.csat\.enabled: .*boolean.*\(the value of \$\{CSAT_ON\}\)/);

    const port = writeConfig({ http: { port: '${GW_PORT}' } });
    expect(loadConfig(port, { GW_PORT: '8080' }).config.http.port).toBe(8080);
    for (const text of ['0x1F90', '9e3', '0o17', '1_000', '.5', '007', '8080.0x', '']) {
      const err = errorOf(() => loadConfig(port, { GW_PORT: text }));
      expect(err.key).toBe('http.port');
      expect(err.message).toContain('(the value of ${GW_PORT})');
      if (text) expect(err.message).not.toContain(text);
      const fromOverride = errorOf(() => loadConfig(undefined, { OMNIGATE_HTTP__PORT: text }));
      expect(fromOverride.key).toBe('http.port');
      expect(fromOverride.message).toContain('OMNIGATE_HTTP__PORT');
    }
    expect(errorOf(() => loadConfig(port, { GW_PORT: '0x1F90' })).message).toContain('plain decimal digits only');
    expect(errorOf(() => loadConfig(undefined, { OMNIGATE_HTTP__PORT: '9e3' })).message).toMatch(/plain decimal digits only.*OMNIGATE_HTTP__PORT/);
  });

  it('refuses an unquoted number or boolean in the file where text is expected, saying to quote it and not echoing it', () => {
    const file = writeConfig({});
    writeFileSync(file, 'nats:\n  url: nats://127.0.0.1:4222\n  token: 0x1F90\n  user: yes\ndatabase:\n  user: omni\n  password: 9e3\n');
    const err = errorOf(() => loadConfig(file, {}));
    const problems = Object.fromEntries(err.problems.map((p) => [p.key, p.problem]));
    expect(problems['nats.token']).toMatch(/YAML reads this unquoted value as a number: put it in quotes \(token: "…"\)/);
    expect(problems['database.password']).toMatch(/as a number: put it in quotes \(password: "…"\)/);
    expect(err.message).not.toMatch(/8080|9000|0x1F90|9e3/);
    // `user: yes` is text to YAML 1.2: taken as written.
    expect(problems['nats.user']).toBeUndefined();
    writeFileSync(file, 'nats:\n  url: nats://127.0.0.1:4222\n  token: "0x1F90"\n');
    expect(loadConfig(file, {}).config.nats.token).toBe('0x1F90');
  });

  it('refuses a data directory under /proc, /sys or /dev, naming the field', () => {
    for (const [config, key] of [
      [{ nats: { embedded: { dataDir: '/proc/self/cwd/..' } } }, 'nats.embedded.dataDir'],
      [{ database: { dataDir: '/sys/fs/omnigate' } }, 'database.dataDir'],
      [{ database: { dataDir: '/dev/shm/omnigate' } }, 'database.dataDir'],
    ] as const) {
      const err = errorOf(() => loadConfig(writeConfig(config), {}));
      expect(err.key).toBe(key);
      expect(err.message).toMatch(/is under \/(proc|sys|dev), a kernel pseudo file system that stores nothing/);
    }
    expect(loadConfig(writeConfig({ database: { dataDir: './devices/sql' } }), {}).config.database.dataDir).toBe('./devices/sql');
  });

  it('names the key, the file and what is expected', () => {
    const file = writeConfig({ http: { port: 'восемь' } });
    const err = errorOf(() => loadConfig(file, {}));
    expect(err.message).toContain(file);
    expect(err.key).toBe('http.port');
    expect(err.message).toMatch(/http\.port: .*number/i);

    const dur = writeConfig({ router: { reopenWindow: 'a week' } });
    expect(errorOf(() => loadConfig(dur, {})).message).toMatch(/router\.reopenWindow: .*duration such as/);
    // A bare number was read as milliseconds: `reopenWindow: 3` reopened tickets for 3 ms. Now
    // refused with the unit to write, from the file and from the environment alike; 0 needs none.
    expect(errorOf(() => loadConfig(writeConfig({ router: { reopenWindow: 3 } }), {})).message).toMatch(/router\.reopenWindow: 3 has no unit: write "3s", "3m", "3h", "3d" or "3ms"/);
    const fromEnv = errorOf(() => loadConfig(undefined, { OMNIGATE_ROUTER__REOPEN_WINDOW: '3' }));
    expect(fromEnv.key).toBe('router.reopenWindow');
    expect(fromEnv.message).toContain('OMNIGATE_ROUTER__REOPEN_WINDOW');
    expect(errorOf(() => loadConfig(writeConfig({ nats: { leaseTtl: -5 } }), {})).message).toMatch(/nats\.leaseTtl: .*duration such as/);
    expect(loadConfig(writeConfig({ retention: { tickets: 0 } }), {}).config.retention.tickets).toBe(0);
    // Years, as retention is set by those who answer for personal data (docs/data.md writes 3y).
    expect(loadConfig(writeConfig({ retention: { tickets: '3y' } }), {}).config.retention.tickets).toBe(3 * 365 * 86_400_000);

    // Not a NATS address at all: a config error at start (exit 78), not a start that waits on it.
    for (const url of ['http://nats:4222', 'nats://nats:4222/x y', 'nats://a:4222;nats://b:4222']) {
      const bad = writeConfig({ nats: { url } });
      expect(errorOf(() => loadConfig(bad, {})).key).toBe('nats.url');
    }
    expect(loadConfig(writeConfig({ nats: { url: 'nats://a:4222, tls://b.example.ru:4222,nats:4222' } }), {}).config.nats.url).toContain('tls://');

    // A password in the database URL's query is a password too (pg reads it), and never echoed.
    const query = errorOf(() => loadConfig(writeConfig({ database: { url: 'postgres://127.0.0.1/omni?sslmode=disable&password=Секрет-42' } }), {}));
    expect(query.key).toBe('database.url');
    expect(query.message).toMatch(/password in its query/);
    expect(query.message).not.toContain('Секрет-42');
  });

  it('refuses two API tokens with one value (the last one\'s role silently won), naming both and neither value', () => {
    const value = 'shared-token-0123456789';
    const err = errorOf(() => loadConfig(writeConfig({ api: { tokens: [{ name: 'helpdesk', token: value }, { name: 'dashboards', token: 'other-token-0123456789', readOnly: true }, { name: 'dpo', token: value, admin: true }] } }), {}));
    expect(err.key).toBe('api.tokens[2].token');
    expect(err.message).toContain('the same value as api.tokens[0] ("helpdesk")');
    expect(err.message).not.toContain(value);
  });

  it('refuses an API token outside printable ASCII (a Cyrillic one passed check-config and matched no request), never echoing it', () => {
    const err = errorOf(() => loadConfig(writeConfig({ api: { tokens: [{ name: 'crm', token: 'apitok-Секрет-0001' }] } }), {}));
    expect(err.key).toBe('api.tokens[0].token');
    expect(err.message).toMatch(/printable ASCII/);
    expect(err.message).not.toContain('Секрет');
  });

  it('reports invalid YAML with the line', () => {
    const file = writeConfig({});
    writeFileSync(file, 'http:\n  port: [1, 2\n');
    const err = errorOf(() => loadConfig(file, {}));
    expect(err.message).toMatch(/not valid YAML at line \d/);
  });

  it('names an unset variable together with every other problem of the file, not alone (outside trial t10)', () => {
    const file = writeConfig({
      api: { tokens: [{ name: 'desk', token: '${DESK_TOKEN}' }] },
      router: { csta: 1 },
      shutdownTimeout: 7,
      connectors: [{ type: 'webhook', account: 'site', secret: '${SITE_SECRET}' }],
    });
    const err = errorOf(() => loadConfig(file, {}));
    const keys = err.problems.map((p) => p.key);
    expect(keys).toEqual(expect.arrayContaining(['api.tokens[0].token', 'connectors[0].secret', 'router.csta', 'shutdownTimeout']));
    expect(err.problems.find((p) => p.key === 'api.tokens[0].token')!.problem).toBe('environment variable DESK_TOKEN is not set (referenced as ${DESK_TOKEN})');
    // What the schema would say of the reference's own text is not reported beside it.
    expect(err.problems.filter((p) => p.key.startsWith('api.tokens[0].token'))).toHaveLength(1);
  });

  it('interpolates ${VAR} secrets and names the key when one is missing', () => {
    const file = writeConfig({ connectors: [{ type: 'webhook', account: 'site', secret: '${SITE_SECRET}' }] });
    const err = errorOf(() => loadConfig(file, {}));
    expect(err.key).toBe('connectors[0].secret');
    expect(err.message).toMatch(/environment variable SITE_SECRET is not set/);
    const ok = loadConfig(file, { SITE_SECRET: 'a-long-enough-secret-value' });
    expect(ok.config.connectors[0]!.secret).toBe('a-long-enough-secret-value');
  });

  it('sets top-level values from OMNIGATE_<KEY> and names the variable, not the file, when its value is wrong', () => {
    const file = writeConfig({});
    expect(loadConfig(file, { OMNIGATE_SHUTDOWN_TIMEOUT: '20s' }).config.shutdownTimeout).toBe(20_000);
    expect(loadConfig(file, { OMNIGATE__SHUTDOWN_DRAIN: '3s' }).config.shutdownDrain).toBe(3_000);
    // A secret referenced as ${OMNIGATE_API_TOKEN} is not a key: left alone.
    expect(() => loadConfig(file, { OMNIGATE_API_TOKEN: 'x' })).not.toThrow();
    const err = errorOf(() => loadConfig(file, { OMNIGATE_HTTP__PORT: 'abc' }));
    expect(err.key).toBe('http.port');
    expect(err.message).toContain('set by the environment variable OMNIGATE_HTTP__PORT');
    expect(errorOf(() => loadConfig(file, { OMNIGATE_SHUTDOWN_TIMEOUT: 'soon' })).message).toContain('OMNIGATE_SHUTDOWN_TIMEOUT');
  });

  it('applies OMNIGATE_SECTION__KEY overrides', () => {
    const { config } = loadConfig(undefined, { OMNIGATE_HTTP__PORT: '9191', OMNIGATE_NATS__URL: 'nats://nats:4222', OMNIGATE_ROUTER__TICKET_PREFIX: 'SUP-' });
    expect(config.http.port).toBe(9191);
    expect(config.nats.url).toBe('nats://nats:4222');
    expect(config.router.ticketPrefix).toBe('SUP-');
  });

  it('refuses an OMNIGATE_ variable with single underscores that spells a key, naming the variable meant; a ${…} secret is left alone', () => {
    const file = writeConfig({});
    for (const [name, key, meant] of [
      ['OMNIGATE_NATS_URL', 'nats.url', 'OMNIGATE_NATS__URL'],
      ['OMNIGATE_HTTP_PORT', 'http.port', 'OMNIGATE_HTTP__PORT'],
      ['OMNIGATE_ROUTER_PARTITIONS', 'router.partitions', 'OMNIGATE_ROUTER__PARTITIONS'],
      ['OMNIGATE_NATS_EMBEDDED_DATA_DIR', 'nats.embedded.dataDir', 'OMNIGATE_NATS__EMBEDDED__DATA_DIR'],
      ['OMNIGATE__NATS_URL', 'nats.url', 'OMNIGATE_NATS__URL'],
    ] as const) {
      const err = errorOf(() => loadConfig(file, { [name]: '1' }));
      expect(err.key).toBe(key);
      expect(err.message).toContain(`the environment variable ${name} is not read`);
      expect(err.message).toContain(`name it ${meant}`);
    }
    // Found with the file's own problems, in one pass.
    const both = errorOf(() => loadConfig(writeConfig({ log: { level: 'loud' } }), { OMNIGATE_NATS_URL: 'nats://127.0.0.1:14310' }));
    expect(both.problems.map((p) => p.key)).toEqual(['nats.url', 'log.level']);
    // Referenced as ${…} in the file, it is a secret (here for another key): not refused.
    const referenced = writeConfig({ nats: { url: 'nats://127.0.0.1:4222', token: '${OMNIGATE_NATS_TOKEN}' } });
    expect(loadConfig(referenced, { OMNIGATE_NATS_TOKEN: 's3cret' }).config.nats.token).toBe('s3cret');
    expect(errorOf(() => loadConfig(file, { OMNIGATE_NATS_TOKEN: 's3cret' })).key).toBe('nats.token');
    // Words that spell no key are not ours (OMNIGATE_CONFIG is the CLI's; OMNIGATE_API_TOKEN a secret).
    expect(() => loadConfig(file, { OMNIGATE_CONFIG: file, OMNIGATE_API_TOKEN: 'x', OMNIGATE_TEST_NATS_SERVER: '/bin/true' })).not.toThrow();
    // What Kubernetes sets for a Service named omnigate-http / omnigate-nats-embedded is not ours either.
    expect(() => loadConfig(file, {
      OMNIGATE_HTTP_PORT: 'tcp://10.96.0.7:80', OMNIGATE_HTTP_SERVICE_HOST: '10.96.0.7', OMNIGATE_HTTP_SERVICE_PORT: '80',
      OMNIGATE_HTTP_PORT_80_TCP: 'tcp://10.96.0.7:80', OMNIGATE_HTTP_PORT_80_TCP_PORT: '80', OMNIGATE_NATS_EMBEDDED_PORT: 'tcp://10.96.0.8:4222',
    })).not.toThrow();
    // The dlq command reads the nats section alone: the same refusal.
    expect(() => loadNatsSection(file, { OMNIGATE_NATS_URL: 'nats://127.0.0.1:14310' })).toThrow(/OMNIGATE_NATS_URL is not read.*OMNIGATE_NATS__URL/);
  });

  it('omnigate check-config and start exit 78 on OMNIGATE_NATS_URL (one underscore) instead of starting an island', async () => {
    const file = writeConfig({ nats: { embedded: { dataDir: join(dirname(writeConfig({})), 'data') } } });
    const env = { ...process.env, OMNIGATE_NATS_URL: 'nats://127.0.0.1:14310' };
    for (const command of ['check-config', 'start']) {
      const failed = await run(process.execPath, ['--import', 'tsx', 'src/cli.ts', command, '--config', file], { cwd: root, env, timeout: 30_000 }).catch((e) => e);
      expect(failed.code, command).toBe(78);
      expect(failed.stderr).toContain(`config error in ${file}: nats.url: the environment variable OMNIGATE_NATS_URL is not read`);
      expect(failed.stderr).toContain('OMNIGATE_NATS__URL');
    }
    const referenced = writeConfig({ nats: { url: '${OMNIGATE_NATS_URL}' } });
    const ok = await run(process.execPath, ['--import', 'tsx', 'src/cli.ts', 'check-config', '--config', referenced], { cwd: root, env });
    expect(ok.stdout).toMatch(/NATS {8}nats:\/\/127\.0\.0\.1:14310/);
  });

  it('validates each connector against its own schema, and rejects unknown types', async () => {
    const short = writeConfig({ connectors: [{ type: 'webhook', account: 'site', secret: 'short' }] });
    await expect(loadAll(short, {})).rejects.toThrow(/connectors\[0\]\.secret: .*16/);
    const unknown = writeConfig({ connectors: [{ type: 'fax', account: 'x' }] });
    await expect(loadAll(unknown, {})).rejects.toThrow(/connectors\[0\]\.type: unknown connector type "fax"; expected one of: .*webhook/);
    const badAccount = writeConfig({ connectors: [{ type: 'webhook', account: 'my site', secret: '0123456789abcdef' }] });
    await expect(loadAll(badAccount, {})).rejects.toThrow(/connectors\[0\]\.account: Latin letters, digits/);
    // A Cyrillic name is letters too: the message must say which letters.
    const cyrillic = writeConfig({ connectors: [{ type: 'webhook', account: 'сайт', secret: '0123456789abcdef' }] });
    await expect(loadAll(cyrillic, {})).rejects.toThrow(/connectors\[0\]\.account: Latin letters, digits, "_" and "-" only/);
  });

  it('masks secrets wherever they appear in a log line', () => {
    const lines: string[] = [];
    const log = createLogger({ level: 'info', destination: new Writable({ write: (c, _e, cb) => (lines.push(c.toString()), cb()) }) });
    registerSecret('123456:AAE-telegram-token-value');
    log.info({ url: 'https://api.telegram.org/bot123456:AAE-telegram-token-value/getMe', token: 'x', nested: { password: 'p' } }, 'calling');
    log.error(new Error('request to /bot123456:AAE-telegram-token-value/getUpdates failed'));
    const all = lines.join('');
    expect(all).not.toContain('AAE-telegram-token-value');
    expect(all).toContain('[REDACTED]');
    expect(all).not.toContain('"password":"p"');
  });

  it('omnigate check-config exits non-zero with the key and file, and 0 when valid', async () => {
    const bad = writeConfig({ log: { level: 'loud' } });
    const failed = await run(process.execPath, ['--import', 'tsx', 'src/cli.ts', 'check-config', '--config', bad], { cwd: root }).catch((e) => e);
    expect(failed.code).toBe(78);
    expect(failed.stderr).toContain(`config error in ${bad}: log.level:`);
    const good = writeConfig({ connectors: [{ type: 'webhook', account: 'site', secret: '${S}' }] });
    const ok = await run(process.execPath, ['--import', 'tsx', 'src/cli.ts', 'check-config', '--config', good], { cwd: root, env: { ...process.env, S: '0123456789abcdef' } });
    expect(ok.stdout).toMatch(/is valid/);
    expect(ok.stdout).toMatch(/webhook\/site \(webhook\)/);
  });
});

describe('shipped configs', () => {
  it('config/omnigate.example.yaml is valid as shipped (the Docker image uses it as its default)', async () => {
    const { loaded } = await loadAll(`${root}config/omnigate.example.yaml`, {});
    expect(loaded.config.router.autoAcknowledge.enabled).toBe(false);
    expect(loaded.connectors).toEqual([]);
  });

  it('every config/examples/*.yaml snippet is valid once its ${VARS} are set', async () => {
    const { readdirSync, readFileSync } = await import('node:fs');
    const dir = `${root}config/examples/`;
    let files: string[] = [];
    try {
      files = readdirSync(dir).filter((f) => f.endsWith('.yaml'));
    } catch {
      return; // no channel snippets yet
    }
    for (const f of files) {
      const text = readFileSync(dir + f, 'utf8');
      const env: Record<string, string> = {};
      // Plausible values: Telegram bot tokens have their own shape, everything else is a long secret.
      for (const [, name] of text.matchAll(/\$\{([A-Za-z_][A-Za-z0-9_]*)/g)) {
        env[name!] = /TELEGRAM.*BOT_TOKEN/.test(name!)
          ? '123456:ABCdefGHIjklMNOpqrSTUvwxYZ012'
          : /SLACK.*BOT_TOKEN/.test(name!)
            ? 'xoxb-1-abcdefghijklmnop'
            : /SLACK.*APP_TOKEN/.test(name!)
              ? 'xapp-1-abcdefghijklmnop'
              : 'Abcdefghijklmnop0123456789_-';
      }
      await expect(loadAll(dir + f, env), f).resolves.toBeTruthy();
    }
  });
});

describe('accounts across transports of one channel', () => {
  it('refuses the same account name for whatsapp and whatsapp-cloud (they share subjects and state)', async () => {
    const file = writeConfig({
      connectors: [
        { type: 'whatsapp', account: 'sales' },
        { type: 'whatsapp-cloud', account: 'sales', phoneNumberId: '123', accessToken: '${T}', appSecret: '${S}', verifyToken: '${V}' },
      ],
    });
    await expect(loadAll(file, { T: 'a'.repeat(30), S: 'b'.repeat(30), V: 'c'.repeat(30) })).rejects.toThrow(/connectors\[1\]\.account: account "sales" is already used on channel whatsapp by a whatsapp connector/);
  });
});
