/**
 * A throwaway three-node JetStream cluster on 127.0.0.1: free client and route ports, one store
 * directory per node, SIGTERM (then SIGKILL) and removal on stop. Uses OMNIGATE_TEST_NATS_SERVER
 * or nats-server from PATH, like nats-server.ts.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect } from '@nats-io/transport-node';
import { jetstreamManager } from '@nats-io/jetstream';
import { natsServerBinary } from './nats-server.js';

export interface ClusterNode {
  name: string;
  port: number;
  url: string;
  process: ChildProcess;
  stderrTail(): string;
}

export interface TestCluster {
  nodes: ClusterNode[];
  /** All client URLs, comma-separated (what `nats.url` takes). */
  urls: string;
  dir: string;
  stop(): Promise<void>;
}

/** Ports the OS says are free now; the servers bind them a moment later. */
async function freePorts(n: number): Promise<number[]> {
  const servers = await Promise.all(
    Array.from({ length: n }, () =>
      new Promise<import('node:net').Server>((resolve, reject) => {
        const s = createServer();
        s.once('error', reject);
        s.listen(0, '127.0.0.1', () => resolve(s));
      }),
    ),
  );
  const ports = servers.map((s) => (s.address() as { port: number }).port);
  await Promise.all(servers.map((s) => new Promise((r) => s.close(r))));
  return ports;
}

export async function startCluster(size = 3): Promise<TestCluster> {
  const dir = await mkdtemp(join(tmpdir(), 'omnigate-cluster-'));
  const ports = await freePorts(size * 2);
  const clientPorts = ports.slice(0, size);
  const routePorts = ports.slice(size);
  const nodes: ClusterNode[] = [];
  for (let i = 0; i < size; i++) {
    const name = `n${i + 1}`;
    const routes = routePorts.map((p) => `"nats-route://127.0.0.1:${p}"`).join(', ');
    const conf = join(dir, `${name}.conf`);
    await writeFile(
      conf,
      [
        `server_name: ${name}`,
        `listen: 127.0.0.1:${clientPorts[i]}`,
        `jetstream { store_dir: "${join(dir, name)}" }`,
        `cluster { name: omnitest, listen: 127.0.0.1:${routePorts[i]}, routes: [${routes}] }`,
      ].join('\n'),
    );
    const child = spawn(natsServerBinary(), ['-c', conf], { stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr?.on('data', (d: Buffer) => (stderr = (stderr + d.toString()).slice(-4000)));
    child.once('error', (err) => (stderr += String(err)));
    nodes.push({ name, port: clientPorts[i]!, url: `nats://127.0.0.1:${clientPorts[i]}`, process: child, stderrTail: () => stderr });
  }
  const cluster: TestCluster = {
    nodes,
    urls: nodes.map((n) => n.url).join(','),
    dir,
    async stop() {
      await Promise.all(nodes.map((n) => terminate(n.process)));
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
    await new Promise((r) => setTimeout(r, 250));
  }
  throw new Error(`cluster JetStream not ready within 60 s: ${String(last)}`);
}

async function terminate(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((r) => child.once('exit', () => r()));
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), 5000);
  await exited;
  clearTimeout(timer);
}
