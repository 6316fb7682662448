/**
 * NATS for real deployments: TLS against a throwaway CA made with openssl (server certificate for
 * localhost, client certificate required), several server URLs, an NKey user, and a creds file
 * (user JWT + seed) against a server in operator mode. Each goes through Bus.connect and
 * provisioning, as the gateway does; secrets never reach the log.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { connect, nkeys } from '@nats-io/transport-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Bus, type BusOptions } from '../../src/core/bus.js';
import { loadConfig } from '../../src/core/config.js';
import { natsAccess } from '../../src/core/config-schema.js';
import { createLogger } from '../../src/core/logger.js';
import { NatsAccessError, natsConnectionOptions, type NatsAccess } from '../../src/core/nats-access.js';
import { Streams } from '../../src/core/subjects.js';
import { startNatsWithConfig, type TestNats } from '../helpers/nats-server.js';
import { operatorSetup } from '../helpers/nats-jwt.js';
import { writeConfig } from '../helpers/process.js';
import { loadAll } from '../../src/cli.js';
import { Gateway } from '../../src/app.js';

const pki = mkdtempSync(join(tmpdir(), 'omnigate-pki-'));
const f = (name: string) => join(pki, name);
const servers: TestNats[] = [];

function openssl(...args: string[]): void {
  execFileSync('openssl', args, { cwd: pki, stdio: 'pipe' });
}

/** A CA, a server certificate for localhost and 127.0.0.1, a client certificate. */
function makePki(): void {
  const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];
  openssl('req', '-x509', ...ec, '-keyout', 'ca.key', '-out', 'ca.pem', '-days', '2', '-subj', '/CN=omnigate test CA');
  for (const [name, ext] of [
    ['server', 'subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth'],
    ['client', 'extendedKeyUsage=clientAuth'],
  ] as const) {
    writeFileSync(f(`${name}.ext`), `${ext}\n`);
    openssl('req', ...ec, '-keyout', `${name}.key`, '-out', `${name}.csr`, '-subj', `/CN=omnigate test ${name}`);
    openssl('x509', '-req', '-in', `${name}.csr`, '-CA', 'ca.pem', '-CAkey', 'ca.key', '-CAcreateserial', '-out', `${name}.pem`, '-days', '2', '-extfile', `${name}.ext`);
  }
  // Another CA, to show a server it did not sign is refused.
  openssl('req', '-x509', ...ec, '-keyout', 'other.key', '-out', 'other.pem', '-days', '2', '-subj', '/CN=someone else');
}

const quiet = createLogger({ level: 'silent' });
const busOptions = (access: NatsAccess): BusOptions => ({ ...access, replicas: 1, duplicateWindowMs: 60_000, retentionMs: 3_600_000, dedupTtlMs: 3_600_000, leaseTtlMs: 5000 });

async function provisionAndClose(access: NatsAccess): Promise<string[]> {
  const bus = await Bus.connect(busOptions(access), quiet);
  try {
    await bus.provision();
    const names: string[] = [];
    for await (const s of bus.jsm.streams.names()) names.push(s);
    return names.filter((n) => n.startsWith('OMNI_')).sort();
  } finally {
    await bus.close();
  }
}

/** One attempt, no reconnect loop: for the refusals. */
async function tryOnce(access: NatsAccess): Promise<string> {
  try {
    const nc = await connect({ ...natsConnectionOptions(access), maxReconnectAttempts: 0, reconnect: false, timeout: 3000 });
    await nc.close();
    return 'connected';
  } catch (err) {
    return String((err as Error).message ?? err);
  }
}

let tlsServer: TestNats;
let tlsUrl: string;

beforeAll(async () => {
  makePki();
  tlsServer = await startNatsWithConfig(() => `tls {\n  cert_file: "${f('server.pem')}"\n  key_file: "${f('server.key')}"\n  ca_file: "${f('ca.pem')}"\n  verify: true\n  timeout: 5\n}`);
  servers.push(tlsServer);
  tlsUrl = `tls://localhost:${tlsServer.port}`;
}, 60_000);

afterAll(async () => {
  await Promise.all(servers.map((s) => s.stop()));
  rmSync(pki, { recursive: true, force: true });
});

const clientTls = () => ({ caFile: f('ca.pem'), certFile: f('client.pem'), keyFile: f('client.key') });

describe('TLS', () => {
  it('connects with the CA and a client certificate and provisions every stream', async () => {
    const names = await provisionAndClose({ url: tlsUrl, tls: clientTls() });
    expect(names).toEqual(Object.values(Streams).sort());
  }, 60_000);

  it('verifies the server certificate against tls.serverName when it is set', async () => {
    const byIp = `tls://127.0.0.1:${tlsServer.port}`;
    expect(await tryOnce({ url: byIp, tls: { ...clientTls(), serverName: 'nats.elsewhere.example' } })).not.toBe('connected');
    expect(await tryOnce({ url: byIp, tls: { ...clientTls(), serverName: 'localhost' } })).toBe('connected');
  }, 30_000);

  it('is refused without a client certificate, and refuses a server its CA did not sign', async () => {
    expect(await tryOnce({ url: tlsUrl, tls: { caFile: f('ca.pem') } })).not.toBe('connected');
    expect(await tryOnce({ url: tlsUrl, tls: { ...clientTls(), caFile: f('other.pem') } })).not.toBe('connected');
  }, 30_000);

  it('fails over across several URLs (the first is dead)', async () => {
    const dead = `tls://localhost:1`;
    const names = await provisionAndClose({ url: `${dead}, ${tlsUrl}`, tls: clientTls() });
    expect(names).toContain(Streams.inbound);
  }, 60_000);

  it('names the key of a missing file or half a client certificate, before connecting', () => {
    expect(() => natsConnectionOptions({ url: tlsUrl, tls: { caFile: f('nope.pem') } })).toThrow(/nats\.tls\.caFile: cannot read the file \(ENOENT\)/);
    expect(() => natsConnectionOptions({ url: tlsUrl, tls: { certFile: f('client.pem') } })).toThrow(/nats\.tls\.keyFile: a client certificate needs both/);
  });
});

describe('NKey user', () => {
  const user = nkeys.createUser();
  const seed = new TextDecoder().decode(user.getSeed());
  let server: TestNats;

  beforeAll(async () => {
    server = await startNatsWithConfig(() => `authorization {\n  users = [ { nkey: ${user.getPublicKey()} } ]\n}`);
    servers.push(server);
  }, 30_000);

  it('connects with the seed from ${VAR} and provisions; another seed and no seed are refused', async () => {
    const loaded = loadConfig(undefined, { OMNIGATE_NATS__URL: server.url, OMNIGATE_NATS__NKEY: '${NATS_SEED}', NATS_SEED: seed });
    expect(loaded.config.nats.nkey).toBe(seed);
    expect(await provisionAndClose(natsAccess(loaded.config))).toContain(Streams.log);
    const stranger = new TextDecoder().decode(nkeys.createUser().getSeed());
    expect(await tryOnce({ url: server.url, nkey: stranger })).toMatch(/authorization/i);
    expect(await tryOnce({ url: server.url })).toMatch(/authorization/i);
  }, 60_000);

  it('rejects a malformed or non-user seed without quoting it', () => {
    const accountSeed = new TextDecoder().decode(nkeys.createAccount().getSeed());
    for (const bad of ['SUnot-a-seed', accountSeed]) {
      let err: unknown;
      try {
        natsConnectionOptions({ url: server.url, nkey: bad });
      } catch (e) {
        err = e;
      }
      expect(err).toBeInstanceOf(NatsAccessError);
      expect((err as Error).message).toMatch(/^nats\.nkey: /);
      expect((err as Error).message).not.toContain(bad);
    }
  });

  it('a whole gateway on the NKey user never logs the seed', async () => {
    const logs: string[] = [];
    const log = createLogger({ level: 'debug', destination: new Writable({ write: (c, _e, cb) => (logs.push(c.toString()), cb()) }) });
    const file = writeConfig({ nats: { url: server.url, nkey: '${NATS_SEED}' }, http: { host: '127.0.0.1', port: 0 }, log: { level: 'debug' } });
    const { loaded, factories } = await loadAll(file, { ...process.env, NATS_SEED: seed });
    const gateway = new Gateway({ loaded, factories, log });
    try {
      await gateway.start();
      expect(gateway.bus.connected).toBe(true);
    } finally {
      await gateway.stop();
    }
    const text = logs.join('');
    expect(text).toContain('connected to NATS');
    expect(text).not.toContain(seed);
  }, 60_000);
});

describe('creds file (operator mode: user JWT + NKey seed)', () => {
  const setup = operatorSetup();
  const credsFile = f('gateway.creds');
  let server: TestNats;

  beforeAll(async () => {
    writeFileSync(credsFile, setup.creds, { mode: 0o600 });
    server = await startNatsWithConfig(() => setup.serverConf);
    servers.push(server);
  }, 30_000);

  it('connects with the creds file and provisions JetStream in the account; without it the server refuses', async () => {
    expect(await provisionAndClose({ url: server.url, credsFile })).toEqual(Object.values(Streams).sort());
    expect(await tryOnce({ url: server.url })).toMatch(/authorization|authentication/i);
  }, 60_000);

  it('says which key points at a file that is not a creds file, without quoting it', () => {
    const notCreds = f('not.creds');
    writeFileSync(notCreds, `just the seed ${setup.userSeed}\n`);
    expect(() => natsConnectionOptions({ url: server.url, credsFile: notCreds })).toThrow(/^nats\.credsFile: .* is not a NATS creds file/);
    try {
      natsConnectionOptions({ url: server.url, credsFile: notCreds });
    } catch (e) {
      expect((e as Error).message).not.toContain(setup.userSeed);
    }
    expect(() => natsConnectionOptions({ url: server.url, credsFile: f('missing.creds') })).toThrow(/nats\.credsFile: cannot read the file/);
  });
});

describe('config', () => {
  it('takes tls, credsFile and nkey under nats', () => {
    const c = loadConfig(undefined, {
      OMNIGATE_NATS__URL: 'tls://a:4222,tls://b:4222',
      OMNIGATE_NATS__TLS: '{caFile: /ca.pem, serverName: nats.internal}',
      OMNIGATE_NATS__CREDS_FILE: '/run/secrets/nats.creds',
    }).config;
    expect(natsAccess(c)).toMatchObject({ url: 'tls://a:4222,tls://b:4222', tls: { caFile: '/ca.pem', serverName: 'nats.internal', handshakeFirst: false }, credsFile: '/run/secrets/nats.creds' });
    expect(natsConnectionOptions({ url: c.nats.url }).servers).toEqual(['tls://a:4222', 'tls://b:4222']);
  });
});
