/** Runs the real CLI (`omnigate start`) as a child process, as the container's entry command would. */
import { testTempDir } from './temp-dirs.js';
import { spawn, type ChildProcess } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { createRequire } from 'node:module';
import { pathToFileURL } from 'node:url';
import { stringify } from 'yaml';

export interface GatewayProcess {
  child: ChildProcess;
  output: () => string;
  /** Resolves once the log says "omnigate started". */
  started: Promise<void>;
  exited: Promise<number | null>;
  kill(signal?: NodeJS.Signals): Promise<number | null>;
}

/**
 * A read-only API token for gateways whose probes a test reads in detail: /readyz and /healthz
 * show connector states, loops and the read model only to a token (http.probeDetails).
 */
export const MONITOR_TOKEN = 'monitor-token-0123456789abcdef';
export const monitorApi = { tokens: [{ name: 'monitor', token: MONITOR_TOKEN, readOnly: true }] };
export const monitorHeaders = { authorization: `Bearer ${MONITOR_TOKEN}` };

export function writeConfig(config: Record<string, unknown>): string {
  const dir = testTempDir('omnigate-cfg-');
  const file = join(dir, 'omnigate.yaml');
  writeFileSync(file, stringify(config));
  return file;
}

/** Gateways started here and not yet exited: killed by killTestGateways (a bench stopped by a signal). */
const running = new Set<ChildProcess>();

/**
 * Kills (SIGKILL) every gateway started by this process that is still running. For a run being
 * abandoned: a gateway whose parent is gone is not told by its stdin (it has none), and one
 * that got the signal too could wait on a stdout pipe no one reads any more. What a gateway
 * itself started (an embedded nats-server) is not killed with it: the bench's gateways connect
 * to the bench's own nats-server, which the bench stops.
 */
export function killTestGateways(): void {
  for (const child of running) child.kill('SIGKILL');
  running.clear();
}

/** `entry` 'dist' runs node dist/cli.js (the Docker CMD); 'src' runs the TypeScript through tsx. */
/** `node`: the node binary (default: this process's). */
export function spawnGateway(configFile: string, opts: { entry?: 'dist' | 'src'; env?: Record<string, string>; cwd?: string; nodeArgs?: string[]; root?: string; node?: string } = {}): GatewayProcess {
  const root = opts.root ?? new URL('../..', import.meta.url).pathname;
  // tsx by its path: the child runs in the config's directory, where a bare 'tsx' does not resolve.
  const tsx = pathToFileURL(createRequire(join(root, 'package.json')).resolve('tsx')).href;
  const args = opts.entry === 'dist' ? [join(root, 'dist/cli.js')] : ['--import', tsx, join(root, 'src/cli.ts')];
  const child = spawn(opts.node ?? process.execPath, [...(opts.nodeArgs ?? []), ...args, 'start', '--config', configFile], {
    // The config's own temp directory: a relative ./data (the embedded NATS store, PGlite) is this gateway's alone.
    cwd: opts.cwd ?? dirname(configFile),
    env: { ...process.env, ...opts.env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  running.add(child);
  let out = '';
  let onStarted!: () => void;
  let onFailed!: (e: Error) => void;
  const started = new Promise<void>((res, rej) => {
    onStarted = res;
    onFailed = rej;
  });
  started.catch(() => {}); // a test that expects the process to fail need not await it
  const onData = (d: Buffer) => {
    out += d.toString();
    if (out.includes('"omnigate started"')) onStarted();
  };
  child.stdout!.on('data', onData);
  child.stderr!.on('data', onData);
  const exited = new Promise<number | null>((r) =>
    child.once('exit', (code) => {
      running.delete(child);
      onFailed(new Error(`gateway exited (${code}) before starting:\n${out.slice(-3000)}`));
      r(code);
    }),
  );
  return {
    child,
    output: () => out,
    started,
    exited,
    async kill(signal: NodeJS.Signals = 'SIGTERM') {
      if (child.exitCode === null && child.signalCode === null) child.kill(signal);
      return exited;
    },
  };
}
