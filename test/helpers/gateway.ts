/**
 * Runs a whole Gateway in-process against a throwaway nats-server, with whatever connectors the
 * test configures, and gives the test a plain NATS connection and helpers to observe the bus.
 */
import { testTempDir } from './temp-dirs.js';
import { Writable } from 'node:stream';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { jetstream, jetstreamManager } from '@nats-io/jetstream';
import { Gateway } from '../../src/app.js';
import { loadAll } from '../../src/cli.js';
import { createLogger } from '../../src/core/logger.js';
import type { Ticket, TicketEvent } from '../../src/core/schema.js';
import { Streams } from '../../src/core/subjects.js';
import { startNats, type TestNats } from './nats-server.js';
import { pgliteDir, postgresDatabase } from './sql.js';
import { writeFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { stringify } from 'yaml';

export interface TestGateway {
  gateway: Gateway;
  nats: TestNats;
  nc: NatsConnection;
  httpUrl: string;
  logs: string[];
  /** Wait until a ticket event matching `pred` was published; returns it. */
  waitForEvent(pred: (e: TicketEvent) => boolean, timeoutMs?: number): Promise<TicketEvent>;
  ticket(id: string): Promise<Ticket | null>;
  request<T = any>(subject: string, body: unknown): Promise<T>;
  /** Wait for a message on a stream subject (e.g. a dead letter) matching `pred`. */
  waitForStreamMessage<T = any>(stream: string, subject: string, pred?: (m: T) => boolean, timeoutMs?: number): Promise<T>;
  stop(): Promise<void>;
}

export async function startGateway(config: Record<string, unknown>, opts: { nats?: TestNats; env?: Record<string, string> } = {}): Promise<TestGateway> {
  const nats = opts.nats ?? (await startNats());
  const dir = testTempDir('omnigate-cfg-');
  const file = join(dir, 'omnigate.yaml');
  // Each gateway its own read model: a throwaway PostgreSQL database when the machine's server is
  // there (a second to create), else a PGlite directory copied from a migrated template (PGlite
  // takes seconds to open and ~300 MB per process; test/read-model covers it on its own).
  const own = config.database ? undefined : await postgresDatabase().catch(() => undefined);
  const sqlDir = config.database || own ? undefined : await pgliteDir();
  const full = {
    // No readiness drain period in tests: it only delays every stop. A long budget: an abandoned
    // component keeps running inside the test process (a real process exits), so a stop slowed
    // by a loaded machine must not abandon anything unless the test asks for it.
    shutdownDrain: 0,
    shutdownTimeout: '60s',
    ...config,
    nats: { url: nats.url, duplicateWindow: '2m', leaseTtl: '3s', ...(config.nats as object) },
    // Each gateway its own read-model directory, copied from a migrated template (no initdb per test).
    database: { ...(sqlDir ? { dataDir: sqlDir } : {}), ...(own ? { url: own.url, user: own.user } : {}), ...(config.database as object) },
    http: { host: '127.0.0.1', port: 0, ...(config.http as object) },
    log: { level: 'debug' },
  };
  writeFileSync(file, stringify(full));
  const { loaded, factories, helpdeskFactories } = await loadAll(file, { ...process.env, ...opts.env });
  const logs: string[] = [];
  const log = createLogger({
    level: 'debug',
    destination: new Writable({
      write(chunk, _enc, cb) {
        logs.push(chunk.toString());
        if (process.env.OMNIGATE_TEST_LOGS) process.stderr.write(chunk);
        cb();
      },
    }),
  });
  const gateway = new Gateway({ loaded, factories, helpdeskFactories, log });
  await gateway.start();
  // The read model opens in the background (start-up does not wait for it); tests that list right away do.
  await gateway.readModel?.database();
  const nc = await connect({ servers: nats.url });
  const events: TicketEvent[] = [];
  const waiters = new Set<{ pred: (e: TicketEvent) => boolean; resolve: (e: TicketEvent) => void }>();
  const js = jetstream(nc);
  const consumer = await js.consumers.get(Streams.events, { filter_subjects: 'omni.events.ticket.>' });
  const iter = await consumer.consume();
  void (async () => {
    for await (const m of iter) {
      const e = m.json<TicketEvent>();
      events.push(e);
      for (const w of waiters) if (w.pred(e)) {
        waiters.delete(w);
        w.resolve(e);
      }
    }
  })();
  return {
    gateway,
    nats,
    nc,
    logs,
    httpUrl: `http://127.0.0.1:${gateway.http.port}`,
    // 30 s: a bound for a hang, not a speed check (10 s was reached under the full suite on 2 cores).
    waitForEvent(pred, timeoutMs = 30_000) {
      const found = events.find(pred);
      if (found) return Promise.resolve(found);
      return new Promise((resolve, reject) => {
        const w = { pred, resolve };
        waiters.add(w);
        setTimeout(() => {
          if (waiters.delete(w)) reject(new Error(`no matching ticket event within ${timeoutMs} ms; saw ${events.map((e) => e.type + ':' + e.ticketId).join(', ')}`));
        }, timeoutMs);
      });
    },
    async ticket(id) {
      return (await gateway.router!.store.get(id))?.value ?? null;
    },
    async waitForStreamMessage(stream, subject, pred = () => true, timeoutMs = 30_000) {
      const c = await js.consumers.get(stream, { filter_subjects: subject });
      const deadline = Date.now() + timeoutMs;
      try {
        while (Date.now() < deadline) {
          const m = await c.next({ expires: Math.max(1000, Math.min(5000, deadline - Date.now())) });
          if (m && pred(m.json())) return m.json();
        }
      } finally {
        await c.delete().catch(() => {});
      }
      throw new Error(`no matching message on ${subject} within ${timeoutMs} ms`);
    },
    async request(subject, body) {
      const m = await nc.request(subject, JSON.stringify(body), { timeout: 10_000 });
      return m.json();
    },
    async stop() {
      iter.stop();
      await gateway.stop();
      await nc.close();
      if (!opts.nats) await nats.stop();
      if (sqlDir) rmSync(sqlDir, { recursive: true, force: true });
      await own?.drop();
    },
  };
}

export { jetstreamManager };
