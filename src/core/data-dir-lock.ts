/**
 * One owner per data directory, for the life of the process: a listening Unix socket whose name
 * is derived from the directory. Binding is atomic and exclusive, and the kernel releases the
 * socket when the process dies however it dies (kill -9, OOM killer), so there is no stale lock
 * to guess about. On Linux the socket lives in the abstract namespace (no file at all); elsewhere
 * it is a socket file in the directory, and a file nobody answers on is stale and replaced.
 *
 * The holder answers a connection with its pid, so the refusal can say who holds the directory.
 * Limit: abstract sockets are per network namespace; two containers that mount one volume do not
 * see each other's lock (docs/operating.md).
 */
import { createHash } from 'node:crypto';
import { realpath, stat, unlink } from 'node:fs/promises';
import { connect, createServer, type Server } from 'node:net';
import { join } from 'node:path';

export class DataDirLockedError extends Error {
  constructor(
    readonly dataDir: string,
    readonly holderPid: number | null,
    /** The setting that names the directory, for the refusal's advice. */
    readonly field = 'nats.embedded.dataDir',
  ) {
    super(
      `data directory ${dataDir} (${field}) is in use by another omnigate process${holderPid ? ` (pid ${holderPid})` : ''}: ` +
        `one gateway per ${field}. Stop that process first, or give this one its own ${field}.`,
    );
    this.name = 'DataDirLockedError';
  }
}

export interface DataDirLock {
  readonly dataDir: string;
  release(): Promise<void>;
}

/**
 * The socket address for a directory (exported for tests). On Linux it is named after the
 * directory's device and inode, not its path: a bind mount (or any other second path to the same
 * directory) has another real path, and two gateways, each with its own nats-server, ran on one
 * JetStream store and damaged it for good. Elsewhere the socket file is in the directory itself,
 * which every path to it reaches.
 */
export async function lockAddress(dataDir: string): Promise<string> {
  const real = await realpath(dataDir);
  if (process.platform === 'linux') {
    const { dev, ino } = await stat(real, { bigint: true });
    return `\0omnigate-data:${createHash('sha256').update(`${dev}:${ino}`).digest('hex').slice(0, 40)}`;
  }
  return join(real, '.omnigate.lock');
}

/**
 * The address versions before the device-and-inode key used (named after the real path): held
 * too, so an upgraded gateway started while an older one still runs on the directory is refused
 * rather than taking the older one for dead (and stopping its nats-server as a leftover).
 */
async function pathKeyedAddress(dataDir: string): Promise<string | undefined> {
  if (process.platform !== 'linux') return undefined;
  return `\0omnigate-data:${createHash('sha256').update(await realpath(dataDir)).digest('hex').slice(0, 40)}`;
}

export async function acquireDataDirLock(dataDir: string, field?: string): Promise<DataDirLock> {
  const addresses = [await lockAddress(dataDir), await pathKeyedAddress(dataDir)].filter((a): a is string => a !== undefined);
  const held: Array<{ server: Server; address: string }> = [];
  try {
    for (const address of addresses) held.push({ server: await hold(address, dataDir, field), address });
  } catch (err) {
    await Promise.all(held.map(({ server }) => new Promise<void>((r) => server.close(() => r()))));
    throw err;
  }
  let released = false;
  return {
    dataDir,
    async release() {
      if (released) return;
      released = true;
      for (const { server, address } of held) {
        await new Promise<void>((r) => server.close(() => r()));
        if (!address.startsWith('\0')) await unlink(address).catch(() => {});
      }
    },
  };
}

/** Listens on one lock address, or says who holds it. */
async function hold(address: string, dataDir: string, field: string | undefined): Promise<Server> {
  const abstract = address.startsWith('\0');
  let server: Server;
  try {
    server = await listen(address);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EADDRINUSE') throw err;
    const holder = await askHolder(address);
    if (holder.alive || abstract) throw new DataDirLockedError(dataDir, holder.pid, field);
    // A socket file nobody listens on: its owner died. Replace it once; a second loser is refused.
    await unlink(address).catch(() => {});
    try {
      server = await listen(address);
    } catch (again) {
      if ((again as NodeJS.ErrnoException).code === 'EADDRINUSE') throw new DataDirLockedError(dataDir, (await askHolder(address)).pid, field);
      throw again;
    }
  }
  // The lock must not keep the process alive on its own.
  server.unref();
  return server;
}

function listen(address: string): Promise<Server> {
  return new Promise((resolve, reject) => {
    const server = createServer((socket) => socket.end(JSON.stringify({ pid: process.pid })));
    // A prober that hangs up early is not our problem.
    server.on('connection', (s) => s.on('error', () => {}));
    server.once('error', reject);
    server.listen(address, () => {
      server.off('error', reject);
      resolve(server);
    });
  });
}

function askHolder(address: string): Promise<{ alive: boolean; pid: number | null }> {
  return new Promise((resolve) => {
    const socket = connect(address);
    let data = '';
    const done = (r: { alive: boolean; pid: number | null }) => {
      clearTimeout(timer);
      socket.destroy();
      resolve(r);
    };
    const timer = setTimeout(() => done({ alive: true, pid: null }), 2000);
    socket.on('data', (d) => (data += d.toString()));
    socket.on('end', () => {
      try {
        const pid = (JSON.parse(data) as { pid?: unknown }).pid;
        done({ alive: true, pid: typeof pid === 'number' ? pid : null });
      } catch {
        done({ alive: true, pid: null });
      }
    });
    socket.on('error', (err: NodeJS.ErrnoException) => done({ alive: err.code !== 'ECONNREFUSED' && err.code !== 'ENOENT', pid: null }));
  });
}
