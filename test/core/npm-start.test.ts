/**
 * `npm start` (the README's command) and SIGTERM sent to npm alone (a `kill` of its pid, a
 * container whose PID 1 is npm): npm passes the signal to its child, which was the `sh -c` of the
 * script; the shell died and the gateway ran on, orphaned and never told to stop. The script
 * execs the gateway, so the signal reaches it: a graceful stop, and npm exits with it.
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { writeConfig } from '../helpers/process.js';
import { natsServerBinary } from '../helpers/nats-server.js';
import { freePort } from '../helpers/ports.js';

const root = new URL('../..', import.meta.url).pathname;
const dataDir = mkdtempSync(join(tmpdir(), 'omnigate-npm-start-'));
let configFile = '';

/** Processes started with this test's config (the gateway, if npm left it behind). */
function ours(): number[] {
  if (!configFile) return [];
  return readdirSync('/proc').filter((d) => /^\d+$/.test(d)).map(Number).filter((pid) => {
    try {
      return readFileSync(`/proc/${pid}/environ`, 'latin1').split('\0').includes(`OMNIGATE_CONFIG=${configFile}`);
    } catch {
      return false; // gone, or not ours to read
    }
  });
}

afterAll(async () => {
  // With the old script the gateway outlives npm: stopped here, not left running.
  for (const pid of ours()) process.kill(pid, 'SIGTERM');
  for (let i = 0; i < 100 && ours().length; i++) await new Promise((r) => setTimeout(r, 100));
  rmSync(dataDir, { recursive: true, force: true });
});

describe('npm start', () => {
  it('passes a SIGTERM sent to npm to the gateway, which stops gracefully; npm exits 0 with it', async () => {
    const port = await freePort();
    const file = (configFile = writeConfig({ nats: { embedded: { dataDir, binary: natsServerBinary() } }, http: { host: '127.0.0.1', port } }));
    const npm = spawn('npm', ['start', '--silent'], { cwd: root, env: { ...process.env, OMNIGATE_CONFIG: file, NPM_CONFIG_UPDATE_NOTIFIER: 'false' }, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    npm.stdout.on('data', (d: Buffer) => (out += d.toString()));
    npm.stderr.on('data', (d: Buffer) => (out += d.toString()));
    const exited = new Promise<number | null>((r) => npm.once('exit', (code) => r(code)));
    const deadline = Date.now() + 120_000;
    while (!out.includes('omnigate started')) {
      if (Date.now() > deadline) throw new Error(`not started:\n${out.slice(-2000)}`);
      await new Promise((r) => setTimeout(r, 100));
    }
    npm.kill('SIGTERM');
    const code = await exited;
    // npm may exit before the gateway's last line when it does not wait for it: give it a moment.
    await new Promise((r) => setTimeout(r, 200));
    expect(out).toContain('"msg":"signal received"');
    expect(out).toContain('"msg":"shutdown complete"');
    expect(code).toBe(0);
    expect(ours()).toEqual([]);
  }, 180_000);
});
