/**
 * A throwaway three-node JetStream cluster on 127.0.0.1: free client and route ports, one store
 * directory per node, SIGTERM (then SIGKILL) and removal on stop. Uses OMNIGATE_TEST_NATS_SERVER
 * or nats-server from PATH, like nats-server.ts.
 *
 * Faults: `kill(i, 'SIGKILL')` and `restart(i)` (same ports, same store directory: the node
 * rejoins and catches up); `partition(i)` restarts a node on a fresh route port with a route to nowhere, so
 * neither side can reach the other while its clients stay connected to it (the minority side of a
 * split), and `heal(i)` restarts it with its routes back. `streamLeader(name)` asks
 * $JS.API.STREAM.INFO which node leads a stream.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { jetstreamManager } from '@nats-io/jetstream';
import { natsServerBinary } from './nats-server.js';

export interface ClusterNode {
  name: string;
  port: number;
  url: string;
  /** The running process; replaced by restart(). */
  process: ChildProcess;
  stderrTail(): string;
}

export interface TestCluster {
  nodes: ClusterNode[];
  /** All client URLs, comma-separated (what `nats.url` takes). */
  urls: string;
  dir: string;
  /** Signals node i and waits for it to exit (SIGTERM: lame-duck-free clean shutdown; SIGKILL: a crash). */
  kill(i: number, signal?: NodeJS.Signals): Promise<void>;
  /** Starts node i again on its ports and store directory (stops it first if it runs). */
  restart(i: number): Promise<void>;
  /** Cuts node i off: restarted with a route port nobody dials and a route to nowhere. */
  partition(i: number): Promise<void>;
  /** Ends a partition: node i restarted with its routes. */
  heal(i: number): Promise<void>;
  /** Index of the node leading `stream` (polls until there is one). */
  streamLeader(stream: string, timeoutMs?: number): Promise<number>;
  /** Until every stream has a leader and all its peers are current. */
  waitHealthy(streams: string[], timeoutMs?: number): Promise<void>;
  stop(): Promise<void>;
}

/**
 * Ports free now, picked below the kernel's ephemeral range: a node restarted after a fault must
 * get its port back, and a port from listen(0) could meanwhile be the source port of some
 * outgoing connection (the tests open hundreds), making the restart fail with EADDRINUSE.
 */
export async function freePorts(n: number): Promise<number[]> {
  const low = ephemeralLow();
  const ports: number[] = [];
  while (ports.length < n) {
    const port = 10_000 + Math.floor(Math.random() * (low - 10_000));
    if (ports.includes(port)) continue;
    const free = await new Promise<boolean>((resolve) => {
      const s = createServer();
      s.once('error', () => resolve(false));
      s.listen(port, '127.0.0.1', () => s.close(() => resolve(true)));
    });
    if (free) ports.push(port);
  }
  return ports;
}

function ephemeralLow(): number {
  try {
    const low = Number(readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').trim().split(/\s+/)[0]);
    return Number.isFinite(low) && low > 11_000 ? low : 32_768;
  } catch {
    return 32_768;
  }
}

export async function startCluster(size = 3): Promise<TestCluster> {
  const dir = await mkdtemp(join(tmpdir(), 'omnigate-cluster-'));
  const ports = await freePorts(size * 2);
  const clientPorts = ports.slice(0, size);
  const routePorts = ports.slice(size);
  const nodes: ClusterNode[] = [];

  const launch = async (i: number, mode: 'routed' | 'isolated'): Promise<void> => {
    const name = `n${i + 1}`;
    // Isolated: a clustered JetStream server needs some route, so it gets one to a port nobody
    // listens on, and listens on another nobody dials.
    const [routeListen, nowhere] = mode === 'routed' ? [routePorts[i]!, 0] : await freePorts(2);
    const routes = (mode === 'routed' ? routePorts : [nowhere]).map((p) => `"nats-route://127.0.0.1:${p}"`).join(', ');
    const conf = join(dir, `${name}.${mode}.conf`);
    await writeFile(
      conf,
      [
        `server_name: ${name}`,
        `listen: 127.0.0.1:${clientPorts[i]}`,
        `jetstream { store_dir: "${join(dir, name)}" }`,
        `cluster { name: omnitest, listen: 127.0.0.1:${routeListen}, routes: [${routes}] }`,
      ].join('\n'),
    );
    const child = spawn(natsServerBinary(), ['-c', conf], { stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr?.on('data', (d: Buffer) => (stderr = (stderr + d.toString()).slice(-4000)));
    child.once('error', (err) => (stderr += String(err)));
    const node: ClusterNode = { name, port: clientPorts[i]!, url: `nats://127.0.0.1:${clientPorts[i]}`, process: child, stderrTail: () => stderr };
    nodes[i] = node;
    await waitForPort(node);
  };

  for (let i = 0; i < size; i++) await launch(i, 'routed');

  const cluster: TestCluster = {
    nodes,
    urls: nodes.map((n) => n.url).join(','),
    dir,
    async kill(i, signal = 'SIGTERM') {
      await terminate(nodes[i]!.process, signal);
    },
    async restart(i) {
      await terminate(nodes[i]!.process, 'SIGTERM');
      await launch(i, 'routed');
    },
    async partition(i) {
      await terminate(nodes[i]!.process, 'SIGTERM');
      await launch(i, 'isolated');
    },
    async heal(i) {
      await terminate(nodes[i]!.process, 'SIGTERM');
      await launch(i, 'routed');
    },
    async streamLeader(stream, timeoutMs = 30_000) {
      return withManager(cluster, async (jsm) => {
        const deadline = Date.now() + timeoutMs;
        for (;;) {
          const info = await jsm.streams.info(stream).catch(() => undefined);
          const leader = info?.cluster?.leader;
          const index = nodes.findIndex((n) => n.name === leader);
          if (index >= 0) return index;
          if (Date.now() > deadline) throw new Error(`stream ${stream} has no leader within ${timeoutMs} ms`);
          await sleep(250);
        }
      });
    },
    async waitHealthy(streams, timeoutMs = 60_000) {
      await withManager(cluster, async (jsm) => {
        const deadline = Date.now() + timeoutMs;
        for (const stream of streams) {
          for (;;) {
            const info = await jsm.streams.info(stream).catch(() => undefined);
            const c = info?.cluster;
            if (c?.leader && (c.replicas ?? []).every((r) => r.current && !r.offline)) break;
            if (Date.now() > deadline) throw new Error(`stream ${stream} not healthy within ${timeoutMs} ms: ${JSON.stringify(c)}`);
            await sleep(250);
          }
        }
      });
    },
    async stop() {
      await Promise.all(nodes.map((n) => terminate(n.process, 'SIGTERM')));
      await rm(dir, { recursive: true, force: true });
    },
  };
  try {
    await waitForJetStream(cluster);
  } catch (err) {
    await cluster.stop();
    throw err;
  }
  return cluster;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * Retries `fn` until it succeeds or the deadline passes: right after a node is killed, a stream
 * may have a leader while the meta group is still electing one, and requests time out meanwhile.
 * Only for idempotent steps (a publish with a message id, a read).
 */
export async function whileElecting<T>(fn: () => Promise<T>, timeoutMs = 60_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      return await fn();
    } catch (err) {
      if (Date.now() > deadline) throw err;
      await sleep(500);
    }
  }
}

/** A JetStream manager on whichever node answers (any node may be down during a fault test). */
async function withManager<T>(cluster: TestCluster, fn: (jsm: Awaited<ReturnType<typeof jetstreamManager>>) => Promise<T>): Promise<T> {
  const nc: NatsConnection = await connect({ servers: cluster.nodes.map((n) => n.url), timeout: 2000, maxReconnectAttempts: -1 });
  try {
    // No account-info check: during a meta leader election it times out; callers poll anyway.
    return await fn(await jetstreamManager(nc, { timeout: 5000, checkAPI: false }));
  } finally {
    await nc.close();
  }
}

async function waitForPort(node: ClusterNode): Promise<void> {
  const deadline = Date.now() + 20_000;
  for (;;) {
    if (node.process.exitCode !== null) throw new Error(`nats-server ${node.name} exited (${node.process.exitCode}): ${node.stderrTail().slice(-600)}`);
    try {
      const nc = await connect({ servers: node.url, timeout: 1000, reconnect: false });
      await nc.close();
      return;
    } catch (err) {
      if (Date.now() > deadline) throw new Error(`nats-server ${node.name} not accepting clients: ${String(err)} ${node.stderrTail()}`);
    }
    await sleep(100);
  }
}

/** Until the meta group has a leader, stream creation fails: poll account info with a deadline. */
async function waitForJetStream(cluster: TestCluster): Promise<void> {
  const deadline = Date.now() + 60_000;
  let last: unknown;
  while (Date.now() < deadline) {
    for (const n of cluster.nodes) {
      if (n.process.exitCode !== null) throw new Error(`nats-server ${n.name} exited (${n.process.exitCode}): ${n.stderrTail()}`);
    }
    try {
      const nc = await connect({ servers: cluster.nodes[0]!.url, timeout: 2000 });
      try {
        const jsm = await jetstreamManager(nc, { timeout: 20_000 });
        await jsm.getAccountInfo();
        // The first replicated stream of a fresh cluster can take seconds to place: do it here,
        // so tests' own timeouts measure their work, not the cluster settling.
        await jsm.streams.add({ name: 'WARMUP', subjects: ['warmup.>'], num_replicas: cluster.nodes.length });
        await jsm.streams.delete('WARMUP');
        return;
      } finally {
        await nc.close();
      }
    } catch (err) {
      last = err;
    }
    await sleep(250);
  }
  throw new Error(`cluster JetStream not ready within 60 s: ${String(last)}`);
}

async function terminate(child: ChildProcess, signal: NodeJS.Signals): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((r) => child.once('exit', () => r()));
  child.kill(signal);
  const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
  await exited;
  clearTimeout(timer);
}
