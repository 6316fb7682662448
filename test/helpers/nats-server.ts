/**
 * A throwaway nats-server per test file: free port, own temp directory, SIGTERM on stop.
 * Uses OMNIGATE_TEST_NATS_SERVER or nats-server from PATH (/usr/sbin on Debian).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export interface TestNats {
  url: string;
  port: number;
  dir: string;
  process: ChildProcess;
  /** Stop the server (SIGTERM, then SIGKILL after 5 s) and remove its directory. */
  stop(): Promise<void>;
  /** Stop without removing the store, to restart on the same port and data. */
  kill(signal?: NodeJS.Signals): Promise<void>;
  restart(): Promise<void>;
}

/**
 * JetStream options for a test's own client: the default 5 s request timeout was reached on a
 * loaded 2-core CI machine while three gateways routed 10,000 messages against the same server.
 */
export const PATIENT = { timeout: 30_000 } as const;

export function natsServerBinary(): string {
  return process.env.OMNIGATE_TEST_NATS_SERVER ?? 'nats-server';
}

/** Servers startNats() started and nobody stopped yet. */
const running = new Set<TestNats>();

/** Stops every server this process started and has not stopped, removing their directories (a bench stopped by a signal). */
export async function stopTestNatsServers(): Promise<void> {
  await Promise.all([...running].map((s) => s.stop()));
}

export async function startNats(): Promise<TestNats> {
  const dir = await mkdtemp(join(tmpdir(), 'omnigate-nats-'));
  let port = 0;
  let child = await launch(dir, -1);
  port = await readPort(dir, child);
  const server: TestNats = {
    url: `nats://127.0.0.1:${port}`,
    port,
    dir,
    process: child,
    async kill(signal: NodeJS.Signals = 'SIGTERM') {
      await terminate(server.process, signal);
    },
    async restart() {
      child = await launch(dir, port);
      server.process = child;
      await readPort(dir, child);
    },
    async stop() {
      running.delete(server);
      await terminate(server.process, 'SIGTERM');
      await rm(dir, { recursive: true, force: true });
    },
  };
  running.add(server);
  return server;
}

async function launch(dir: string, port: number): Promise<ChildProcess> {
  for (const f of await readdir(dir)) if (f.endsWith('.ports')) await rm(join(dir, f), { force: true });
  const child = spawn(
    natsServerBinary(),
    ['-js', '-sd', join(dir, 'js'), '-a', '127.0.0.1', '-p', String(port), '--ports_file_dir', dir],
    { stdio: ['ignore', 'ignore', 'pipe'] },
  );
  let stderr = '';
  child.stderr?.on('data', (d: Buffer) => {
    stderr = (stderr + d.toString()).slice(-4000);
  });
  child.once('error', (err) => {
    stderr += String(err);
  });
  (child as ChildProcess & { stderrTail: () => string }).stderrTail = () => stderr;
  return child;
}

export async function readPort(dir: string, child: ChildProcess): Promise<number> {
  const deadline = Date.now() + 15_000;
  while (Date.now() < deadline) {
    if (child.exitCode !== null) {
      throw new Error(`nats-server exited (${child.exitCode}): ${(child as any).stderrTail?.()}`);
    }
    const file = (await readdir(dir)).find((f) => f.endsWith('.ports'));
    if (file) {
      try {
        const ports = JSON.parse(await readFile(join(dir, file), 'utf8')) as { nats: string[] };
        const url = ports.nats[0];
        if (url) return Number(new URL(url).port);
      } catch {
        /* file being written */
      }
    }
    await new Promise((r) => setTimeout(r, 25));
  }
  throw new Error('nats-server did not report its port within 15 s');
}

async function terminate(child: ChildProcess, signal: NodeJS.Signals): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((r) => child.once('exit', () => r()));
  child.kill(signal);
  const timer = setTimeout(() => child.kill('SIGKILL'), 5000);
  await exited;
  clearTimeout(timer);
}

/**
 * A throwaway nats-server from a config file (TLS, NKey users, operator mode). `conf` gets the
 * directory in `$DIR`; the server listens on a free port on 127.0.0.1 with JetStream under $DIR.
 */
export async function startNatsWithConfig(conf: (dir: string) => string): Promise<TestNats> {
  const dir = await mkdtemp(join(tmpdir(), 'omnigate-nats-conf-'));
  const file = join(dir, 'nats.conf');
  await writeFile(file, `host: 127.0.0.1\nport: -1\njetstream { store_dir: "${join(dir, 'js')}" }\n${conf(dir)}\n`);
  const child = spawn(natsServerBinary(), ['-c', file, '--ports_file_dir', dir], { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr?.on('data', (d: Buffer) => {
    stderr = (stderr + d.toString()).slice(-4000);
  });
  (child as ChildProcess & { stderrTail: () => string }).stderrTail = () => stderr;
  const port = await readPort(dir, child);
  const server: TestNats = {
    url: `nats://127.0.0.1:${port}`,
    port,
    dir,
    process: child,
    kill: (signal: NodeJS.Signals = 'SIGTERM') => terminate(server.process, signal),
    restart: () => Promise.reject(new Error('not supported for config-file servers')),
    async stop() {
      await terminate(server.process, 'SIGTERM');
      await rm(dir, { recursive: true, force: true });
    },
  };
  return server;
}
