/**
 * The embedded nats-server on a shared host (an outside trial): any local user could read
 * data/nats.url (0644) and connect without a credential to every stream, and the store was 0750
 * under a directory 0755. Now: a credential made at start, required by the server, kept across
 * the watchdog's relaunch; the directory and what the gateway keeps in it private (0700/0600),
 * an older, looser directory tightened at start (and said so), what is not ours left alone.
 */
import { chmodSync, mkdirSync, readFileSync, readdirSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { connect } from '@nats-io/transport-node';
import pino from 'pino';
import { afterAll, describe, expect, it } from 'vitest';
import { readEmbeddedAccess } from '../../src/core/embedded-access.js';
import { EmbeddedNats } from '../../src/core/embedded-nats.js';
import { natsConnectionOptions } from '../../src/core/nats-access.js';
import { findLeftovers, processArgv } from '../../src/core/nats-leftovers.js';
import { natsServerBinary } from '../helpers/nats-server.js';
import { testTempDir } from '../helpers/temp-dirs.js';
import { sharedPaths } from '../helpers/file-modes.js';

const lines: string[] = [];
const log = pino({ level: 'debug' }, new Writable({ write: (chunk: Buffer, _enc, done) => (lines.push(chunk.toString()), done()) }));
const servers = (dataDir: string) => findLeftovers(join(dataDir, 'jetstream'), join(dataDir, 'nats-server.pid')).map((l) => l.pid);
const mode = (path: string) => statSync(path).mode & 0o777;

async function until(pred: () => boolean, timeoutMs: number, what: string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!pred()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

const started: EmbeddedNats[] = [];
afterAll(async () => {
  for (const e of started) await e.stop();
});

async function start(dataDir: string): Promise<{ embedded: EmbeddedNats; url: string }> {
  const embedded = new EmbeddedNats({ binary: natsServerBinary(), dataDir, host: '127.0.0.1', port: 0 }, log);
  started.push(embedded);
  return { embedded, url: await embedded.start() };
}

describe('embedded nats-server: credential and private data directory', () => {
  it('refuses a client without the credential made at start; the credential is in nats.url and survives the watchdog\'s relaunch; never in a log or command line', async () => {
    const dataDir = join(testTempDir('omnigate-auth-'), 'data');
    const { embedded, url } = await start(dataDir);
    // Still only on the loopback address.
    expect(url).toMatch(/^nats:\/\/127\.0\.0\.1:\d+$/);
    const ports = readdirSync(dataDir).find((f) => f.endsWith('.ports'))!;
    expect(JSON.parse(readFileSync(join(dataDir, ports), 'utf8'))).toMatchObject({ nats: [url] });

    const refused = async () => {
      const err = await connect({ servers: url, timeout: 5000 }).then((nc) => nc.close().then(() => undefined), (e: unknown) => e as Error);
      expect(err?.message ?? 'connected without a credential').toMatch(/authorization/i);
      const wrong = await connect({ servers: url, user: 'omnigate', pass: 'guess', timeout: 5000 }).then((nc) => nc.close().then(() => undefined), (e: unknown) => e as Error);
      expect(wrong?.message ?? 'connected with a wrong password').toMatch(/authorization/i);
    };
    await refused();

    // nats.url carries the credential; a tool (omnigate dlq, the nats CLI) reads it from there.
    const access = readEmbeddedAccess(dataDir)!;
    expect(access).toEqual({ url, user: 'omnigate', pass: expect.stringMatching(/^[0-9a-f]{48}$/) });
    expect(readFileSync(join(dataDir, 'nats.url'), 'utf8').trim()).toBe(url.replace('nats://', `nats://omnigate:${access.pass}@`));
    const accepted = async () => {
      const nc = await connect({ ...natsConnectionOptions(access), timeout: 10_000, waitOnFirstConnect: true });
      await nc.flush();
      await nc.close();
    };
    await accepted();

    const [first] = servers(dataDir);
    expect(processArgv(first!)!.join(' ')).not.toContain(access.pass);
    process.kill(first!, 'SIGKILL');
    await until(() => servers(dataDir).length === 1 && servers(dataDir)[0] !== first, 30_000, 'the relaunched server');
    await accepted();
    await refused();
    expect(lines.join('')).not.toContain(access.pass);
    await embedded.stop();
    expect(servers(dataDir)).toEqual([]);
  }, 90_000);

  it('tightens a loose directory left by an older version (and says so), keeps it and what it writes private, leaves what is not its own', async () => {
    const dataDir = join(testTempDir('omnigate-private-'), 'data');
    // As an older version left it under umask 0022: the directory 0755, nats.url 0644, the store 0755.
    mkdirSync(join(dataDir, 'jetstream'), { recursive: true });
    chmodSync(dataDir, 0o755);
    chmodSync(join(dataDir, 'jetstream'), 0o755);
    for (const f of ['nats.url', 'gateway.instance']) {
      writeFileSync(join(dataDir, f), 'old\n');
      chmodSync(join(dataDir, f), 0o644);
    }
    // Not the gateway's: left as it is.
    writeFileSync(join(dataDir, 'README.txt'), 'ops notes\n');
    chmodSync(join(dataDir, 'README.txt'), 0o644);

    const { embedded } = await start(dataDir);
    await embedded.recordInstance('gw-test');
    expect(lines.join('')).toContain('removed group and other access in the data directory');
    expect(mode(dataDir)).toBe(0o700);
    expect(mode(join(dataDir, 'nats.url'))).toBe(0o600);
    expect(mode(join(dataDir, 'nats-server.conf'))).toBe(0o600);
    expect(mode(join(dataDir, 'gateway.instance'))).toBe(0o600);
    // The store nats-server made (its own modes are 0750/0640), the pid and ports files.
    expect(sharedPaths(dataDir)).toEqual([`${join(dataDir, 'README.txt')} 644`]);
    await embedded.stop();
  }, 90_000);
});
