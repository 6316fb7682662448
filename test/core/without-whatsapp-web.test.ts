/**
 * A build without the WhatsApp Web connector's library (`npm ci --omit=optional` leaves out
 * @whiskeysockets/baileys and with it GPL-3.0 libsignal): the gateway starts when no `whatsapp`
 * connector is configured, and names the missing package when one is. The build is simulated
 * faithfully: a copy of dist/ beside a node_modules that links every installed package except
 * @whiskeysockets/* and libsignal, so Node's own resolution fails exactly as in such an image.
 */
import { spawnSync } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, symlinkSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { spawnGateway, writeConfig } from '../helpers/process.js';
import { startNats, type TestNats } from '../helpers/nats-server.js';

const root = new URL('../..', import.meta.url).pathname;
const build = mkdtempSync(join(tmpdir(), 'omnigate-no-wa-'));
const OMITTED = new Set(['@whiskeysockets', 'libsignal', '.bin']);
let nats: TestNats;

function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const s = createServer().listen(0, '127.0.0.1', () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => resolve(port));
    });
  });
}

beforeAll(async () => {
  if (!existsSync(join(root, 'dist/cli.js'))) spawnSync('npx', ['tsc', '-p', 'tsconfig.build.json'], { cwd: root, stdio: 'inherit' });
  cpSync(join(root, 'dist'), join(build, 'dist'), { recursive: true });
  cpSync(join(root, 'package.json'), join(build, 'package.json'));
  mkdirSync(join(build, 'node_modules'));
  for (const name of readdirSync(join(root, 'node_modules'))) {
    if (!OMITTED.has(name)) symlinkSync(join(root, 'node_modules', name), join(build, 'node_modules', name));
  }
  nats = await startNats();
}, 300_000);
afterAll(async () => {
  await nats?.stop();
  rmSync(build, { recursive: true, force: true });
});

describe('a build without @whiskeysockets/baileys', () => {
  it('really lacks the package', () => {
    const r = spawnSync(process.execPath, ['--input-type=module', '-e', "await import('@whiskeysockets/baileys')"], { cwd: build, encoding: 'utf8' });
    expect(r.status).not.toBe(0);
    expect(r.stderr).toContain('ERR_MODULE_NOT_FOUND');
  });

  it('starts and serves when no whatsapp connector is configured', async () => {
    const port = await freePort();
    const file = writeConfig({
      nats: { url: nats.url },
      http: { host: '127.0.0.1', port },
      connectors: [{ type: 'webhook', account: 'site', secret: '0123456789abcdef-secret' }],
    });
    const gw = spawnGateway(file, { entry: 'dist', root: build, cwd: build });
    await gw.started;
    const ready = await fetch(`http://127.0.0.1:${port}/readyz`);
    expect(ready.status).toBe(200);
    expect(await gw.kill('SIGTERM')).toBe(0);
  });

  it('refuses a whatsapp connector with a config error naming the missing package', async () => {
    const file = writeConfig({
      nats: { url: nats.url },
      connectors: [
        { type: 'webhook', account: 'site', secret: '0123456789abcdef-secret' },
        { type: 'whatsapp', account: 'main' },
      ],
    });
    const gw = spawnGateway(file, { entry: 'dist', root: build, cwd: build });
    expect(await gw.exited).toBe(78);
    expect(gw.output()).toMatch(/connectors\[1\]\.type: connector type "whatsapp" needs the package @whiskeysockets\/baileys.*whatsapp-cloud/);
  });
});
