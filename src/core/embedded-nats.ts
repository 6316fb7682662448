/**
 * The embedded default: with no NATS URL configured, omnigate runs its own nats-server with
 * JetStream under the data directory, restarts it if it dies, and stops it on shutdown.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { delimiter, join, resolve } from 'node:path';
import type { Logger } from 'pino';
import { backoffMs } from './sleep.js';

export interface EmbeddedNatsOptions {
  binary: string;
  dataDir: string;
  host: string;
  port: number;
}

export class NatsServerMissingError extends Error {
  constructor(binary: string) {
    super(
      `nats-server not found ("${binary}" is not on PATH or not executable). ` +
        'Install it (Debian/Ubuntu: apt-get install -y nats-server; or download a release from the NATS project), ' +
        'set nats.embedded.binary in the config to its path, or set nats.url to use an existing NATS server.',
    );
    this.name = 'NatsServerMissingError';
  }
}

export function findBinary(binary: string): string | null {
  if (binary.includes('/')) return existsSync(binary) ? resolve(binary) : null;
  const dirs = (process.env.PATH ?? '').split(delimiter).concat(['/usr/sbin', '/usr/local/bin', '/usr/bin']);
  for (const dir of dirs) {
    const candidate = join(dir, binary);
    if (dir && existsSync(candidate)) return candidate;
  }
  return null;
}

export class EmbeddedNats {
  private child?: ChildProcess;
  private stopping = false;
  private port: number;
  private restarts = 0;
  url = '';
  version = '';

  constructor(
    private readonly o: EmbeddedNatsOptions,
    private readonly log: Logger,
  ) {
    this.port = o.port;
  }

  async start(): Promise<string> {
    const binary = findBinary(this.o.binary);
    if (!binary) throw new NatsServerMissingError(this.o.binary);
    this.version = spawnSync(binary, ['--version'], { encoding: 'utf8' }).stdout.trim();
    const dataDir = resolve(this.o.dataDir);
    await mkdir(join(dataDir, 'jetstream'), { recursive: true });
    await this.launch(binary, dataDir);
    this.url = `nats://${this.o.host === '0.0.0.0' ? '127.0.0.1' : this.o.host}:${this.port}`;
    await writeFile(join(dataDir, 'nats.url'), `${this.url}\n`);
    this.log.info({ url: this.url, dataDir, version: this.version }, 'embedded nats-server started');
    return this.url;
  }

  private async launch(binary: string, dataDir: string): Promise<void> {
    for (const f of await readdir(dataDir)) if (f.endsWith('.ports')) await rm(join(dataDir, f), { force: true });
    const args = ['-js', '-sd', join(dataDir, 'jetstream'), '-a', this.o.host, '-p', String(this.port || -1), '--ports_file_dir', dataDir];
    const child = spawn(binary, args, { stdio: ['ignore', 'ignore', 'pipe'] });
    this.child = child;
    let tail = '';
    child.stderr?.on('data', (d: Buffer) => {
      tail = (tail + d.toString()).slice(-2000);
    });
    child.once('exit', (code, signal) => {
      if (this.stopping) return;
      this.log.error({ code, signal, stderr: tail.trim().split('\n').slice(-3).join(' | ') }, 'embedded nats-server exited; restarting');
      const delay = backoffMs(this.restarts++, 250, 10_000);
      setTimeout(() => {
        if (!this.stopping) this.launch(binary, dataDir).catch((err) => this.log.error({ err: String(err) }, 'embedded nats-server restart failed'));
      }, delay).unref();
    });
    const deadline = Date.now() + 20_000;
    while (Date.now() < deadline) {
      if (child.exitCode !== null) throw new Error(`nats-server exited with code ${child.exitCode}: ${tail.trim()}`);
      const file = (await readdir(dataDir)).find((f) => f.endsWith('.ports'));
      if (file) {
        try {
          const ports = JSON.parse(await readFile(join(dataDir, file), 'utf8')) as { nats: string[] };
          // Keep the same port across restarts so clients reconnect to the same URL.
          this.port = Number(new URL(ports.nats[0]!).port);
          this.restarts = 0;
          return;
        } catch {
          /* being written */
        }
      }
      await new Promise((r) => setTimeout(r, 25));
    }
    throw new Error('embedded nats-server did not become ready within 20 s');
  }

  async stop(): Promise<void> {
    this.stopping = true;
    const child = this.child;
    if (!child || child.exitCode !== null || child.signalCode !== null) return;
    const exited = new Promise<void>((r) => child.once('exit', () => r()));
    this.log.info('stopping embedded nats-server');
    child.kill('SIGTERM');
    const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
    await exited;
    clearTimeout(timer);
  }
}
