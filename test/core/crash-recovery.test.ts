/**
 * Crash safety of the embedded default, through the real CLI (`node dist/cli.js start`):
 * kill -9 of the gateway with events flowing, then `start` again on the same data directory —
 * with a fixed NATS port and with a random one — starts, runs exactly one nats-server on the
 * store, and leaves every accepted event in exactly one ticket log. A second gateway on a
 * directory in use is refused; a nats-server orphaned without a watchdog is found and stopped.
 */
import { execFileSync, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect } from '@nats-io/transport-node';
import { jetstream, jetstreamManager } from '@nats-io/jetstream';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { readEmbeddedAccess } from '../../src/core/embedded-access.js';
import { natsConnectionOptions } from '../../src/core/nats-access.js';
import { findLeftovers } from '../../src/core/nats-leftovers.js';
import type { LogEntry } from '../../src/core/schema.js';
import { natsServerBinary, PATIENT } from '../helpers/nats-server.js';
import { spawnGateway, writeConfig, type GatewayProcess } from '../helpers/process.js';
import { routerBacklog } from '../helpers/events.js';
import { freePort } from '../helpers/ports.js';

const root = new URL('../..', import.meta.url).pathname;
const secret = 'crash-recovery-secret-0123456789';
const dirs: string[] = [];
const running: GatewayProcess[] = [];


function tempDir(): string {
  const d = mkdtempSync(join(tmpdir(), 'omnigate-crash-'));
  dirs.push(d);
  return d;
}

async function until<T>(fn: () => T | Promise<T>, timeoutMs: number, what: string): Promise<NonNullable<T>> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (v) return v as NonNullable<T>;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

function gateway(dataDir: string, natsPort: number, httpPort: number, nats: Record<string, unknown> = {}): GatewayProcess {
  const file = writeConfig({
    nats: { ...nats, embedded: { dataDir, port: natsPort } },
    http: { host: '127.0.0.1', port: httpPort },
    log: { level: 'info' },
    connectors: [{ type: 'webhook', account: 'form', secret: '${FORM_SECRET}' }],
  });
  const p = spawnGateway(file, { entry: 'dist', env: { FORM_SECRET: secret } });
  running.push(p);
  return p;
}

/** Posts messages from 4 clients until stopped; returns the ids the gateway accepted (202). */
function posting(httpPort: number, prefix: string) {
  const accepted: string[] = [];
  let n = 0;
  let stop = false;
  const client = async () => {
    while (!stop) {
      const id = `${prefix}-${n++}`;
      try {
        const r = await fetch(`http://127.0.0.1:${httpPort}/connectors/webhook/form/messages`, {
          method: 'POST',
          headers: { authorization: `Bearer ${secret}` },
          body: JSON.stringify({ messageId: id, sender: { id: `client-${n % 25}`, name: 'Клиент' }, text: `Сообщение ${id}` }),
          signal: AbortSignal.timeout(10_000),
        });
        if (r.status === 202) accepted.push(`webhook:form:${id}`);
        await r.body?.cancel();
      } catch {
        await new Promise((r) => setTimeout(r, 50)); // gateway down: the client would retry later
      }
    }
  };
  const clients = Promise.all([client(), client(), client(), client()]);
  return {
    accepted,
    async stop() {
      stop = true;
      await clients;
    },
  };
}

function serversOn(dataDir: string): number[] {
  return findLeftovers(join(dataDir, 'jetstream'), join(dataDir, 'nats-server.pid')).map((l) => l.pid);
}

beforeAll(() => {
  if (!existsSync(join(root, 'dist/cli.js'))) execFileSync('npx', ['tsc', '-p', 'tsconfig.build.json'], { cwd: root, stdio: 'inherit' });
});
afterEach(async () => {
  await Promise.all(running.splice(0).map((p) => p.kill('SIGKILL')));
});
afterAll(async () => {
  // Whatever a failed test left: the watchdogs stop their servers once the gateways are gone.
  for (const d of dirs) {
    await until(() => serversOn(d).length === 0, 30_000, `no nats-server on ${d}`).catch(() => {});
    rmSync(d, { recursive: true, force: true });
  }
});

describe('embedded nats-server after kill -9', () => {
  it('restarts on the same data dir (fixed port, then random port): one server, every accepted event in exactly one ticket log', async () => {
    const dataDir = tempDir();
    const natsPort = await freePort();
    const httpPort = await freePort();
    const accepted: string[] = [];

    const runs: Array<{ port: number; label: string }> = [
      { port: natsPort, label: 'fixed' },
      { port: natsPort, label: 'fixed-again' },
      { port: 0, label: 'random' },
    ];
    let last!: GatewayProcess;
    for (const [i, run] of runs.entries()) {
      const t0 = Date.now();
      const gw = gateway(dataDir, run.port, httpPort);
      await gw.started;
      const leftover = gw.output().includes('found a nats-server left by a previous gateway process');
      console.log(`run ${run.label}: started in ${Date.now() - t0} ms${leftover ? ' (stopped the previous run\'s server first)' : ''}`);
      // Exactly one nats-server serves the store, whatever the previous run left.
      expect(serversOn(dataDir)).toHaveLength(1);
      const url = readEmbeddedAccess(dataDir)!.url;
      if (run.port) expect(url).toBe(`nats://127.0.0.1:${natsPort}`);
      const load = posting(httpPort, `${run.label}`);
      await until(() => load.accepted.length >= 150, 60_000, `150 accepted events in run ${run.label}`);
      if (i < runs.length - 1) {
        await gw.kill('SIGKILL'); // events in flight
        await load.stop();
        accepted.push(...load.accepted);
      } else {
        await load.stop();
        accepted.push(...load.accepted);
        last = gw;
      }
    }

    // Count what the router logged, on the server the last run started.
    const nc = await connect(natsConnectionOptions(readEmbeddedAccess(dataDir)!));
    try {
      const jsm = await jetstreamManager(nc, PATIENT);
      await until(async () => {
        // Intake publishes on the conversations' partitions: every router consumer must be done.
        return (await routerBacklog(jsm).catch(() => 1)) === 0;
      }, 120_000, 'the router to finish');
      const c = await jetstream(nc, PATIENT).consumers.get('OMNI_LOG');
      const seen = new Map<string, number>();
      let pending = (await c.info(true)).num_pending;
      while (pending > 0) {
        for await (const m of await c.fetch({ max_messages: Math.min(pending, 1000), expires: 5000 })) {
          pending--;
          const entry = m.json<LogEntry>();
          if (entry.kind === 'inbound') seen.set(entry.event.id, (seen.get(entry.event.id) ?? 0) + 1);
        }
      }
      expect(accepted.length).toBeGreaterThanOrEqual(450);
      console.log(`${accepted.length} accepted, ${seen.size} logged`);
      expect(accepted.filter((id) => !seen.has(id))).toEqual([]);
      expect([...seen].filter(([, n]) => n > 1)).toEqual([]);
    } finally {
      await nc.close();
    }
    expect(await last.kill('SIGTERM')).toBe(0);
    expect(serversOn(dataDir)).toEqual([]);
  }, 300_000);

  it('frees the dead gateway\'s leases at the next start on its data dir: routing resumes without waiting out their TTL', async () => {
    const dataDir = tempDir();
    const natsPort = await freePort();
    const httpPort = await freePort();
    // Far longer than the waits below: a restart that waited for the dead holder's leases would time out.
    const leaseTtl = '300s';
    const post = async (id: string) => {
      const r = await fetch(`http://127.0.0.1:${httpPort}/connectors/webhook/form/messages`, {
        method: 'POST',
        headers: { authorization: `Bearer ${secret}` },
        body: JSON.stringify({ messageId: id, sender: { id: 'client-1', name: 'Клиент' }, text: `Сообщение ${id}` }),
      });
      expect(r.status).toBe(202);
    };
    const logged = async (id: string) => {
      const nc = await connect(natsConnectionOptions(readEmbeddedAccess(dataDir)!));
      try {
        const c = await jetstream(nc, PATIENT).consumers.get('OMNI_LOG');
        let pending = (await c.info(true)).num_pending;
        while (pending > 0) {
          for await (const m of await c.fetch({ max_messages: pending, expires: 5000 })) {
            pending--;
            const entry = m.json<LogEntry>();
            if (entry.kind === 'inbound' && entry.event.id === `webhook:form:${id}`) return true;
          }
        }
        return false;
      } finally {
        await nc.close();
      }
    };

    const first = gateway(dataDir, natsPort, httpPort, { leaseTtl });
    await first.started;
    await post('before-crash');
    await until(() => logged('before-crash'), 60_000, 'the first message in a ticket log');
    const dead = readFileSync(join(dataDir, 'gateway.instance'), 'utf8').trim();
    await first.kill('SIGKILL');

    const second = gateway(dataDir, natsPort, httpPort, { leaseTtl });
    await second.started;
    const postedAt = Date.now();
    await post('after-restart');
    await until(() => logged('after-restart'), 60_000, 'the message accepted after the restart in a ticket log (its partition lease held by the dead gateway?)');
    console.log(`posted after the restart: in a ticket log ${Date.now() - postedAt} ms later (lease TTL ${leaseTtl})`);
    const freed = second.output().split('\n').find((l) => l.includes('freed the leases of the previous gateway'));
    expect(freed).toBeDefined();
    expect(JSON.parse(freed!)).toMatchObject({ predecessor: dead });
    expect(JSON.parse(freed!).leases).toBeGreaterThan(0);
    expect(await second.kill('SIGTERM')).toBe(0);
  }, 240_000);

  it('the watchdog stops the server soon after its gateway is killed, with no restart needed', async () => {
    const dataDir = tempDir();
    const gw = gateway(dataDir, 0, await freePort());
    await gw.started;
    const [server] = serversOn(dataDir);
    expect(server).toBeGreaterThan(0);
    const killedAt = Date.now();
    await gw.kill('SIGKILL');
    await until(() => serversOn(dataDir).length === 0, 30_000, 'the orphaned nats-server to stop');
    console.log(`nats-server gone ${Date.now() - killedAt} ms after kill -9 of its gateway`);
  }, 120_000);

  it('refuses a second gateway on a data dir in use, naming the holder', async () => {
    const dataDir = tempDir();
    const first = gateway(dataDir, 0, await freePort());
    await first.started;
    const second = gateway(dataDir, 0, await freePort());
    expect(await second.exited).toBe(1);
    expect(second.output()).toContain(`data directory ${dataDir} (nats.embedded.dataDir) is in use by another omnigate process`);
    // The pid comes from asking the holder over its socket; a holder too busy to answer in time is
    // still refused, named by its directory only.
    const named = /in use by another omnigate process \(pid (\d+)\)/.exec(second.output());
    if (named) expect(Number(named[1])).toBe(first.child.pid);
    expect(serversOn(dataDir)).toHaveLength(1);
    expect(await first.kill('SIGTERM')).toBe(0);
  }, 120_000);

  it('stops a nats-server orphaned on the store without a watchdog before starting its own on the same port', async () => {
    const dataDir = tempDir();
    const natsPort = await freePort();
    // What an older version (or a watchdog killed too) leaves behind: a bare server on our store.
    const orphan = spawn(natsServerBinary(), ['-js', '-sd', join(dataDir, 'jetstream'), '-a', '127.0.0.1', '-p', String(natsPort), '-P', join(dataDir, 'nats-server.pid')], {
      stdio: 'ignore',
      detached: true,
    });
    orphan.unref();
    await until(() => serversOn(dataDir).includes(orphan.pid!), 15_000, 'the orphan to run');
    const gw = gateway(dataDir, natsPort, await freePort());
    await gw.started;
    expect(gw.output()).toContain('found a nats-server left by a previous gateway process');
    expect(serversOn(dataDir)).not.toContain(orphan.pid);
    expect(serversOn(dataDir)).toHaveLength(1);
    expect(await gw.kill('SIGTERM')).toBe(0);
  }, 120_000);
});
