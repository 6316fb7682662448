/**
 * The embedded default: with no NATS URL configured, omnigate runs its own nats-server with
 * JetStream under the data directory, restarts it if it dies, and stops it on shutdown.
 * Crash safety: the data directory is locked for the process's life (data-dir-lock.ts), a server
 * left by a dead gateway is stopped before ours starts (nats-leftovers.ts), and a watchdog stops
 * ours soon after the gateway dies (WATCHDOG below).
 * Privacy: the server takes only clients with the credential made at start (embedded-access.ts),
 * and the directory with everything in it is the service user's alone (private-files.ts).
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, readFile, readdir, rm, statfs } from 'node:fs/promises';
import { delimiter, join, resolve } from 'node:path';
import type { Logger } from 'pino';
import { acquireDataDirLock, type DataDirLock } from './data-dir-lock.js';
import { ensureDataDir } from './data-dir.js';
import { newCredential, writeServerConfig, writeUrlFile, SERVER_CONFIG_FILE, URL_FILE, type EmbeddedCredential } from './embedded-access.js';
import { isInstanceId } from './holder.js';
import { findLeftovers, stopLeftover } from './nats-leftovers.js';
import { describeTightening, PRIVATE_DIR, tightenTree, writePrivateFile } from './private-files.js';
import { backoffMs, sleep } from './sleep.js';

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

/**
 * The watchdog: nats-server runs under sh, whose stdin is a pipe from the gateway. When the
 * gateway dies for any reason the kernel closes that pipe, `cat` sees EOF and the server gets
 * SIGTERM (SIGKILL 15 s later), so it does not outlive us for long. A normal stop closes the pipe
 * the same way: one stop path. The server itself never sees the pipe (fd 3 is closed for it).
 * Once the server has exited, the rest of the watchdog's own process group (it is started
 * detached) is told to end, the shell itself excepted: a bare `sleep 15` outlived every stop by
 * 15 s (an orphan in the gateway's unit or container, holding the gateway's stderr pipe). The
 * group, not the watcher alone: a TERM that reached the watcher between its `sleep 15 &` and
 * `grace=$!` left the sleep behind on a loaded CI machine. And twice, the second time once the
 * watcher has ended (`wait`): a sleep it forked just after the first signal was not yet in the
 * group when that was sent (seen again under load: `sleep 15` left, the shell defunct).
 * The umask keeps its store private whatever the gateway's own (private-files.ts).
 */
const WATCHDOG = `umask 077
exec 3<&0 </dev/null
"$@" 3<&- &
server=$!
{ trap 'kill "$grace" 2>/dev/null; exit 0' TERM; cat <&3 >/dev/null; kill -TERM "$server" 2>/dev/null; sleep 15 & grace=$!; wait "$grace"; kill -KILL "$server" 2>/dev/null; } &
exec 3<&-
wait "$server"
code=$?
trap '' TERM
kill -TERM 0 2>/dev/null
wait
kill -TERM 0 2>/dev/null
exit "$code"`;

/** In the data directory: the instance id (holder.ts) of the gateway that holds, or last held, it. */
const INSTANCE_FILE = 'gateway.instance';

/** What this module keeps in the data directory, made private at start (the rest is not ours to change). */
const OWN_ENTRIES = ['jetstream', URL_FILE, SERVER_CONFIG_FILE, 'nats-server.pid', INSTANCE_FILE, '.omnigate.lock'];

export class EmbeddedNats {
  private child?: ChildProcess;
  private binary = '';
  private stopping = false;
  /** A restart asked for (restart()) is under way: the child's exit is expected, and restart() starts the next one. */
  private restarting = false;
  /** The launch in progress, if any (launchOnce). */
  private launching?: Promise<void>;
  private port: number;
  private restarts = 0;
  private restartTimer?: NodeJS.Timeout;
  private lock?: DataDirLock;
  private storeDir = '';
  private dataDir = '';
  private pidFile = '';
  private configFile = '';
  /** Made at start and kept for the process's life: a relaunch by the watchdog uses the same. */
  private credential?: EmbeddedCredential;
  /** The URL clients connect to; the credential is not in it (see access). */
  url = '';
  version = '';
  /**
   * The instance id of the gateway that used this data directory before us, if it recorded one.
   * It is dead: we hold the directory's lock, and the kernel frees it only when its holder dies.
   */
  predecessor?: string;

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
    this.storeDir = join(dataDir, 'jetstream');
    this.pidFile = join(dataDir, 'nats-server.pid');
    await ensureDataDir(dataDir, 'nats.embedded.dataDir');
    await mkdir(this.storeDir, { recursive: true, mode: PRIVATE_DIR });
    // Held until stop() or process death: no second gateway, so no second server, on this store.
    this.lock = await acquireDataDirLock(dataDir);
    this.dataDir = dataDir;
    const credential = (this.credential = newCredential());
    try {
      await this.makePrivate();
      this.configFile = await writeServerConfig(dataDir, credential);
      this.predecessor = await this.recordedInstance();
    } catch (err) {
      // Nothing launched yet: free the directory for a retry in this process.
      await this.lock.release();
      this.lock = undefined;
      throw err;
    }
    this.binary = binary;
    try {
      await this.launchOnce();
    } catch (err) {
      // A server that never reported its port may still run: stop it, then free the directory.
      await this.stop();
      throw err;
    }
    this.url = `nats://${this.o.host === '0.0.0.0' ? '127.0.0.1' : this.o.host}:${this.port}`;
    await writeUrlFile(dataDir, this.url, credential);
    this.log.info({ url: this.url, dataDir, version: this.version }, 'embedded nats-server started');
    return this.url;
  }

  /** The user and password of the running server, for the gateway's own connection. */
  get access(): { user: string; pass: string } {
    if (!this.credential) throw new Error('embedded nats-server: not started');
    return { user: this.credential.user, pass: this.credential.pass };
  }

  /**
   * Group and other access off the directory and what we keep in it: an older version, a looser
   * umask or a volume's owner left them open (the store and nats.url readable by every local
   * user). Said in the log; what cannot be changed is a warning, not a failed start.
   */
  private async makePrivate(): Promise<void> {
    const ports = (await readdir(this.dataDir)).filter((f) => f.endsWith('.ports'));
    const said = describeTightening(this.dataDir, await tightenTree(this.dataDir, [...OWN_ENTRIES, ...ports]));
    if (said) this.log[said.level](said.fields, said.message);
  }

  /** The instance recorded by the gateway that held the directory before us (this one records its own later). */
  private async recordedInstance(): Promise<string | undefined> {
    const previous = (await readFile(join(this.dataDir, INSTANCE_FILE), 'utf8').catch(() => '')).trim();
    return isInstanceId(previous) ? previous : undefined;
  }

  /**
   * Records this gateway's instance for the next one on the directory. Call it once the
   * predecessor's leases were dealt with and before taking any: until then the file still names
   * the predecessor, so a start that dies on the way leaves it for the next one. Written to a
   * temporary file and renamed, so a crash never leaves a cut-short id.
   */
  async recordInstance(instance: string): Promise<void> {
    await writePrivateFile(join(this.dataDir, INSTANCE_FILE), `${instance}\n`);
  }

  /**
   * A server still running on our store belongs to a dead gateway (we hold the lock), or is our
   * own one that restart() killed and the kernel has not reaped yet: stop it first.
   */
  private async stopLeftovers(): Promise<void> {
    for (const l of findLeftovers(this.storeDir, this.pidFile)) {
      if (this.restarting) this.log.info({ leftoverPid: l.pid }, 'waiting for the nats-server being restarted to exit');
      else this.log.warn({ leftoverPid: l.pid, storeDir: this.storeDir }, 'found a nats-server left by a previous gateway process on this data directory; stopping it before starting ours');
      const how = await stopLeftover(l, this.storeDir, 15_000);
      this.log.info({ leftoverPid: l.pid, how }, 'leftover nats-server stopped');
    }
  }

  /** One launch at a time (the start, a relaunch after an exit, a restart): a second caller waits for the first. */
  private launchOnce(): Promise<void> {
    this.launching ??= this.launch(this.binary, this.dataDir).finally(() => {
      this.launching = undefined;
    });
    return this.launching;
  }

  private async launch(binary: string, dataDir: string): Promise<void> {
    // The child being replaced exits from here on (stopLeftovers ends its server): not a crash.
    this.child = undefined;
    await this.stopLeftovers();
    // A stop that came meanwhile found no child to stop: starting one now would outlive the gateway.
    if (this.stopping) throw new Error('embedded nats-server: stopping, not launched');
    for (const f of await readdir(dataDir)) if (f.endsWith('.ports')) await rm(join(dataDir, f), { force: true });
    const args = ['-c', this.configFile, '-js', '-sd', this.storeDir, '-a', this.o.host, '-p', String(this.port || -1), '--ports_file_dir', dataDir, '-P', this.pidFile];
    // detached: a Ctrl-C on the terminal must not stop the server under a gateway that is still draining.
    const child = spawn('/bin/sh', ['-c', WATCHDOG, 'omnigate-nats-watchdog', binary, ...args], { stdio: ['pipe', 'ignore', 'pipe'], detached: true });
    this.child = child;
    // EPIPE after the watchdog is gone is expected; the exit handler reports the exit.
    child.stdin?.on('error', () => {});
    let tail = '';
    child.stderr?.on('data', (d: Buffer) => {
      tail = (tail + d.toString()).slice(-2000);
    });
    // Only a server that was serving is relaunched on its exit; one that dies while launching is
    // the launch's failure, handled by its caller, and one replaced or stopped on purpose is not
    // this.child any more. (Relaunching every exit let launches kill each other's servers for ever.)
    let serving = false;
    child.once('exit', (code, signal) => {
      child.stdin?.destroy();
      if (!serving || child !== this.child || this.stopping || this.restarting) return;
      this.child = undefined;
      this.log.error({ code, signal, stderr: tail.trim().split('\n').slice(-3).join(' | ') }, 'embedded nats-server exited; restarting');
      this.relaunchLater();
    });
    const deadline = Date.now() + 20_000;
    let failure = 'did not become ready within 20 s';
    while (Date.now() < deadline && !this.stopping) {
      if (child.exitCode !== null) {
        failure = `exited with code ${child.exitCode}: ${tail.trim()}`;
        break;
      }
      const file = (await readdir(dataDir)).find((f) => f.endsWith('.ports'));
      if (file) {
        try {
          const ports = JSON.parse(await readFile(join(dataDir, file), 'utf8')) as { nats: string[] };
          // Keep the same port across restarts so clients reconnect to the same URL.
          this.port = Number(new URL(ports.nats[0]!).port);
          this.restarts = 0;
          serving = true;
          return;
        } catch {
          /* being written */
        }
      }
      await sleep(25);
    }
    // A stop came while it started: stop() stops it the usual way (SIGTERM, SIGKILL after its
    // grace) and waits for it, once this launch has ended. Killed here without waiting, a server
    // was still there when stop() returned.
    if (this.stopping) throw new Error('embedded nats-server: stopping while it started');
    // Not left running behind our back: the next launch would find it and kill it anyway.
    this.child = undefined;
    this.killNow(child);
    await this.gone(child, 5_000);
    throw new Error(`embedded nats-server ${failure}`);
  }

  /** Waits (at most `ms`) until the watchdog shell has exited and no server runs on our store. */
  private async gone(child: ChildProcess, ms: number): Promise<void> {
    const deadline = Date.now() + ms;
    while (Date.now() < deadline && ((child.exitCode === null && child.signalCode === null) || findLeftovers(this.storeDir, this.pidFile).length > 0)) await sleep(25);
  }

  /** SIGKILL for the server on our store and its watchdog shell. */
  private killNow(child: ChildProcess): void {
    for (const l of findLeftovers(this.storeDir, this.pidFile)) {
      try {
        process.kill(l.pid, 'SIGKILL');
      } catch {
        /* gone meanwhile */
      }
    }
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  }

  /** Starts the server again after a backoff (it exited, or a restart or relaunch could not start it), until one starts. */
  private relaunchLater(): void {
    clearTimeout(this.restartTimer);
    const delay = backoffMs(this.restarts++, 250, 10_000);
    this.restartTimer = setTimeout(() => {
      if (this.stopping || this.restarting) return;
      this.launchOnce().catch((err: unknown) => {
        this.log.error({ err: String(err) }, 'embedded nats-server restart failed; trying again');
        if (!this.stopping && !this.restarting) this.relaunchLater();
      });
    }, delay);
    this.restartTimer.unref();
  }

  /**
   * Stops the running server and starts it again on the same port and store (JetStreamWatchdog:
   * a full disk leaves JetStream unusable until the server restarts). A 2.9 server wedged that
   * way ignores SIGTERM: it is killed after `graceMs`. Clients reconnect to the same URL.
   */
  async restart(reason: string, graceMs = 5_000): Promise<boolean> {
    if (this.stopping || this.restarting) return false;
    this.restarting = true;
    clearTimeout(this.restartTimer);
    try {
      // A relaunch already under way finishes first: two launches would kill each other's server.
      await this.launching?.catch(() => undefined);
      this.log.warn({ reason }, 'restarting embedded nats-server');
      await this.stopChild(graceMs);
      if (this.stopping) return false;
      await this.launchOnce();
      this.log.info({ url: this.url }, 'embedded nats-server restarted');
      return true;
    } catch (err) {
      // Not left without a server: the next attempt follows the backoff of an exited one.
      if (!this.stopping) this.relaunchLater();
      throw err;
    } finally {
      this.restarting = false;
    }
  }

  /** Closes the watchdog's pipe (the server gets SIGTERM); after `graceMs` kills what is left. */
  async stop(graceMs = 10_000): Promise<void> {
    this.stopping = true;
    clearTimeout(this.restartTimer);
    // A launch in progress sees `stopping` and ends (killing what it started) before the lock goes.
    await this.launching?.catch(() => undefined);
    await this.stopChild(graceMs);
    await this.lock?.release();
  }

  private async stopChild(graceMs: number): Promise<void> {
    const child = this.child;
    if (!child || child.exitCode !== null || child.signalCode !== null) return;
    this.child = undefined; // its exit is ours: not relaunched
    const exited = new Promise<void>((r) => child.once('exit', () => r()));
    this.log.info('stopping embedded nats-server');
    child.stdin?.end();
    const timer = setTimeout(() => {
      this.log.warn({ graceMs }, 'embedded nats-server did not stop in time; killing it');
      this.killNow(child);
    }, graceMs);
    await exited;
    clearTimeout(timer);
  }

  /** Bytes free on the volume of the server's store (JetStreamWatchdog waits for room before a restart). */
  async freeBytes(): Promise<number> {
    const s = await statfs(this.storeDir);
    return s.bavail * s.bsize;
  }
}
