/**
 * The image's entry command as a plain process: `node dist/cli.js start` with no NATS URL runs
 * its own nats-server under the data directory, serves health, takes a message, and on SIGTERM
 * drains and stops everything, nats-server included.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync } from 'node:fs';
import { createServer, type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { monitorApi, monitorHeaders, spawnGateway, writeConfig } from '../helpers/process.js';
import { natsServerBinary } from '../helpers/nats-server.js';
import { freePort } from '../helpers/ports.js';
import { silentServer } from '../helpers/silent-server.js';

const root = new URL('../..', import.meta.url).pathname;
const dataDir = mkdtempSync(join(tmpdir(), 'omnigate-data-'));


beforeAll(() => {
  if (!existsSync(join(root, 'dist/cli.js'))) execFileSync('npx', ['tsc', '-p', 'tsconfig.build.json'], { cwd: root, stdio: 'inherit' });
}, 300_000); // a cold tsc on a loaded 2-core machine can take minutes
afterAll(() => rmSync(dataDir, { recursive: true, force: true }));

describe('embedded default (the Docker entry command)', () => {
  it('starts nats-server under the data dir, serves health, routes a message and stops cleanly on SIGTERM', async () => {
    const port = await freePort();
    const secret = '0123456789abcdef-secret';
    const file = writeConfig({
      // The same binary as the other tests (OMNIGATE_TEST_NATS_SERVER, else nats-server on PATH).
      nats: { embedded: { dataDir, binary: natsServerBinary() } },
      http: { host: '127.0.0.1', port },
      api: monitorApi,
      connectors: [{ type: 'webhook', account: 'form', secret: '${FORM_SECRET}' }],
    });
    const gw = spawnGateway(file, { entry: 'dist', env: { FORM_SECRET: secret } });
    await gw.started;
    expect(existsSync(join(dataDir, 'jetstream'))).toBe(true);
    // The URL carries the embedded server's credential (the file is the service user's alone).
    const natsUrl = readFileSync(join(dataDir, 'nats.url'), 'utf8').trim();
    expect(natsUrl).toMatch(/^nats:\/\/omnigate:[0-9a-f]{48}@127\.0\.0\.1:\d+$/);

    expect(await (await fetch(`http://127.0.0.1:${port}/healthz`)).json()).toEqual({ status: 'ok', reasons: [] });
    const ready = await fetch(`http://127.0.0.1:${port}/readyz`, { headers: monitorHeaders });
    expect(ready.status).toBe(200);
    const body = (await ready.json()) as { nats: { connected: boolean }; connectors: unknown[] };
    expect(body.nats.connected).toBe(true);
    expect(body.connectors[0]).toMatchObject({ channel: 'webhook', account: 'form', state: 'connected' });

    const posted = await fetch(`http://127.0.0.1:${port}/connectors/webhook/form/messages`, {
      method: 'POST',
      headers: { authorization: `Bearer ${secret}` },
      body: JSON.stringify({ messageId: 'f-1', sender: { id: 'client-7', name: 'Ольга' }, text: 'Добрый день' }),
    });
    expect(posted.status).toBe(202);

    const code = await gw.kill('SIGTERM');
    const out = gw.output();
    expect(code, out.slice(-3000)).toBe(0);
    expect(out).toContain('stopping embedded nats-server');
    expect(out).toContain('shutdown complete');
    expect(out).not.toContain(secret);
    // nats-server removed its ports file on exit: nothing left running.
    expect(readdirSync(dataDir).filter((f) => f.endsWith('.ports'))).toEqual([]);
  });

  it('keeps everything under a data directory it creates private to its user (umask 0022 around it), and `omnigate dlq` finds the server through nats.url', async () => {
    // As the trial ran it: the default ./data made by the gateway, under umask 0022. The data dir
    // was 0755, PGlite's 968 files 0666 (pg_wal with customer names), nats.url 0644.
    const fresh = join(mkdtempSync(join(tmpdir(), 'omnigate-umask-')), 'data');
    try {
      const file = writeConfig({ nats: { embedded: { dataDir: fresh, binary: natsServerBinary() } }, http: { host: '127.0.0.1', port: await freePort() } });
      const gw = spawnGateway(file, { entry: 'dist' });
      await gw.started;
      const deadline = Date.now() + 90_000;
      while (!gw.output().includes('read model database ready') && Date.now() < deadline) await new Promise((r) => setTimeout(r, 200));
      expect(gw.output()).toContain('read model database ready');
      expect(execFileSync('find', [fresh, '-perm', '/077', '-printf', '%p %m\n'], { encoding: 'utf8' })).toBe('');
      expect(statSync(fresh).mode & 0o777).toBe(0o700);
      expect(statSync(join(fresh, 'nats.url')).mode & 0o777).toBe(0o600);
      expect(readdirSync(join(fresh, 'sql')).length).toBeGreaterThan(5);

      const dlq = spawnSync(process.execPath, [join(root, 'dist/cli.js'), 'dlq', '--config', file], { cwd: dirname(file), encoding: 'utf8', timeout: 60_000 });
      expect(dlq.status, dlq.stderr).toBe(0);
      expect(dlq.stderr).toContain('0 dead letter(s)');
      const password = readFileSync(join(fresh, 'nats.url'), 'utf8').match(/:([0-9a-f]{48})@/)![1]!;
      expect(gw.output()).not.toContain(password);

      expect(await gw.kill('SIGTERM')).toBe(0);
    } finally {
      rmSync(dirname(fresh), { recursive: true, force: true });
    }
  });

  it('stops gracefully on SIGHUP, saying why (Node\'s default was to die at once without a line)', async () => {
    const port = await freePort();
    const file = writeConfig({ nats: { embedded: { dataDir, binary: natsServerBinary() } }, http: { host: '127.0.0.1', port } });
    const gw = spawnGateway(file, { entry: 'dist' });
    await gw.started;
    const code = await gw.kill('SIGHUP');
    const out = gw.output();
    expect(code, out.slice(-3000)).toBe(0);
    expect(out).toContain('SIGHUP: stopping gracefully');
    expect(out).toContain('shutdown complete');
    expect(readdirSync(dataDir).filter((f) => f.endsWith('.ports'))).toEqual([]);
  });

  it('ends a first start\'s PGlite initdb on SIGTERM instead of waiting for it', async () => {
    // A new data directory: the read model's first open is an initdb of seconds, which the
    // gateway does not wait for before "omnigate started". A stop then used to wait for the
    // whole initdb (the projection's run waited for the open, and the open was only ended after
    // that run stopped), or for shutdownTimeout on a slower machine.
    const fresh = mkdtempSync(join(tmpdir(), 'omnigate-data-'));
    try {
      const file = writeConfig({ nats: { embedded: { dataDir: fresh, binary: natsServerBinary() } }, http: { host: '127.0.0.1', port: await freePort() }, log: { level: 'debug' } });
      const gw = spawnGateway(file, { entry: 'dist' });
      await gw.started;
      const code = await gw.kill('SIGTERM');
      const out = gw.output();
      expect(code, out.slice(-3000)).toBe(0);
      expect(out).toContain('"graceful":true');
      const afterSignal = out.slice(out.indexOf('"signal received"'));
      // On a machine fast enough to finish initdb before the signal there is nothing to end.
      if (!out.slice(0, out.indexOf('"signal received"')).includes('read model database ready')) {
        expect(afterSignal).not.toContain('read model database ready');
        expect(afterSignal).toContain('read model database open ended by the stop');
        expect(afterSignal).not.toContain('read model database not opened; retrying');
      }
      // The initdb's own process went with it: nothing of it still holds the directory.
      expect(execFileSync('ps', ['-eo', 'args']).toString()).not.toContain(fresh);
    } finally {
      rmSync(fresh, { recursive: true, force: true });
    }
  });

  it('stops gracefully while its PostgreSQL accepts the connection and never answers', async () => {
    // A connect that cannot be cut short: every loop waiting for the database (the projection,
    // the evictor) used to hold the stop until shutdownTimeout ("pending": ["readModel"]).
    const silent = await silentServer();
    const fresh = mkdtempSync(join(tmpdir(), 'omnigate-data-'));
    try {
      const file = writeConfig({
        nats: { embedded: { dataDir: fresh, binary: natsServerBinary() } },
        http: { host: '127.0.0.1', port: await freePort() },
        database: { url: `postgres://127.0.0.1:${silent.port}/omnigate` },
      });
      const gw = spawnGateway(file, { entry: 'dist' });
      await gw.started;
      const code = await gw.kill('SIGTERM');
      const out = gw.output();
      expect(code, out.slice(-3000)).toBe(0);
      expect(out).not.toContain('shutdownTimeout reached');
      expect(out).toContain('"graceful":true');
    } finally {
      await silent.close();
      rmSync(fresh, { recursive: true, force: true });
    }
  });

  it('refuses to start, before touching NATS, when its HTTP port is taken (a second start with the same config)', async () => {
    const taken = createServer();
    await new Promise<void>((r) => taken.listen(0, '127.0.0.1', r));
    const port = (taken.address() as AddressInfo).port;
    const fresh = mkdtempSync(join(tmpdir(), 'omnigate-data-'));
    try {
      const gw = spawnGateway(writeConfig({ nats: { embedded: { dataDir: fresh, binary: natsServerBinary() } }, http: { host: '127.0.0.1', port } }), { entry: 'dist' });
      expect(await gw.exited).toBe(1);
      expect(gw.output()).toContain(`http.port ${port} on 127.0.0.1 is in use`);
      expect(existsSync(join(fresh, 'jetstream'))).toBe(false); // no nats-server was started
    } finally {
      await new Promise((r) => taken.close(r));
      rmSync(fresh, { recursive: true, force: true });
    }
  });

  it('says how to install nats-server when the binary is missing', async () => {
    const file = writeConfig({ nats: { embedded: { dataDir, binary: '/nonexistent/nats-server' } }, http: { port: await freePort() } });
    const gw = spawnGateway(file, { entry: 'dist' });
    const code = await gw.exited;
    expect(code).toBe(1);
    expect(gw.output()).toMatch(/nats-server not found .*apt-get install -y nats-server/);
  });
});
