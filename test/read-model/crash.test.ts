/**
 * The projection survives kill -9, through the real CLI (`node dist/cli.js start`) on PGlite and on
 * PostgreSQL: while messages stream in, the gateway is killed mid-projection and started again;
 * afterwards the read model holds exactly what the ticket log holds — no entry lost, none twice.
 */
import { rmSync } from 'node:fs';
import { connect } from '@nats-io/transport-node';
import { jetstream, jetstreamManager } from '@nats-io/jetstream';
import { afterAll, describe, expect, it } from 'vitest';
import { LogEntry } from '../../src/core/schema.js';
import { Streams } from '../../src/core/subjects.js';
import { routerBacklog } from '../helpers/events.js';
import { openDatabase } from '../../src/read-model/database.js';
import { startNats, type TestNats } from '../helpers/nats-server.js';
import { monitorApi, monitorHeaders, spawnGateway, writeConfig, type GatewayProcess } from '../helpers/process.js';
import { pgliteDir, postgresDatabase } from '../helpers/sql.js';
import { freePort } from '../helpers/ports.js';

const SECRET = 'crash-secret-0123456789';
const running: GatewayProcess[] = [];
const cleanups: Array<() => Promise<void> | void> = [];

afterAll(async () => {
  await Promise.all(running.splice(0).map((p) => p.kill('SIGKILL')));
  for (const c of cleanups.splice(0).reverse()) await c();
});


async function until<T>(fn: () => T | Promise<T>, timeoutMs: number, what: string): Promise<NonNullable<T>> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    let v: T | undefined;
    try {
      v = await fn();
    } catch {
      v = undefined; // the gateway is restarting
    }
    if (v) return v as NonNullable<T>;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

async function readModelState(httpPort: number): Promise<{ checkpoint: number; lag: number; logLastSeq: number; applying: boolean } | undefined> {
  try {
    const res = await fetch(`http://127.0.0.1:${httpPort}/readyz`, { headers: monitorHeaders });
    const body = (await res.json()) as { readModel?: { checkpoint: number; lag: number; logLastSeq: number; applying: boolean; database: string } };
    // A sample that timed out under load answers { error } instead: not a state.
    return body.readModel && body.readModel.database !== 'opening' && typeof body.readModel.checkpoint === 'number' ? body.readModel : undefined;
  } catch {
    return undefined;
  }
}

describe.each(['pglite', 'postgres'] as const)('read model on %s after kill -9', (engine) => {
  it('resumes from its checkpoint and ends with exactly the log', async () => {
    const nats: TestNats = await startNats();
    cleanups.push(() => nats.stop());
    let database: Record<string, unknown>;
    let open: () => ReturnType<typeof openDatabase>;
    if (engine === 'pglite') {
      const dir = await pgliteDir();
      cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
      database = { dataDir: dir, batchSize: 1 };
      open = () => openDatabase({ dataDir: dir });
    } else {
      const pg = await postgresDatabase();
      cleanups.push(() => pg.drop());
      database = { url: pg.url, user: pg.user, batchSize: 1 };
      open = () => openDatabase({ url: pg.url, user: pg.user, dataDir: '' });
    }
    const httpPort = await freePort();
    const config = writeConfig({
      nats: { url: nats.url, leaseTtl: '3s' },
      http: { host: '127.0.0.1', port: httpPort },
      api: monitorApi,
      log: { level: 'info' },
      database,
      // Messages the killed router had taken are redelivered after this.
      router: { ackWait: '3s' },
      shutdownDrain: 0,
      connectors: [{ type: 'webhook', account: 'form', secret: SECRET }],
    });
    const start = () => {
      const p = spawnGateway(config, { entry: 'dist' });
      running.push(p);
      return p;
    };

    let gw = start();
    await gw.started;
    let posting = true;
    let accepted = 0;
    const poster = (async () => {
      for (let i = 0; posting && i < 400; i++) {
        const sender = `client-${i % 25}@example.ru`;
        const res = await fetch(`http://127.0.0.1:${httpPort}/connectors/webhook/form/messages`, {
          method: 'POST',
          headers: { authorization: `Bearer ${SECRET}` },
          body: JSON.stringify({ messageId: `m-${i}`, sender: { id: sender, email: sender }, text: `Сообщение ${i}: оплатил заказ №${1000 + i}` }),
        }).catch(() => undefined);
        if (res?.status === 202) accepted++;
      }
    })();
    // Mid-projection: entries applied, more written than applied.
    const seen = await until(async () => {
      const s = await readModelState(httpPort);
      if (!s || s.checkpoint === 0 || s.lag === 0) return undefined;
      // The metric says what /readyz says (docs/api.md: omnigate_read_model_lag).
      const metric = /^omnigate_read_model_lag (\d+)/m.exec(await (await fetch(`http://127.0.0.1:${httpPort}/metrics`)).text());
      return metric && Number(metric[1]) > 0 ? s : undefined;
    }, 90_000, 'the projection to be behind the log');
    await gw.kill('SIGKILL');
    posting = false;
    await poster;
    expect(seen.checkpoint).toBeGreaterThan(0);
    expect(accepted).toBeGreaterThan(0);

    gw = start();
    await gw.started;
    const nc = await connect({ servers: nats.url });
    cleanups.push(() => nc.close());
    const jsm = await jetstreamManager(nc);
    // Whatever the router still had in flight is routed after the restart; then the log stands still.
    let last = -1;
    await until(async () => {
      if ((await routerBacklog(jsm)) > 0) return false;
      const logLast = (await jsm.streams.info(Streams.log)).state.last_seq;
      const s = await readModelState(httpPort);
      const settled = s && s.checkpoint === logLast && logLast === last;
      last = logLast;
      return settled;
    }, 120_000, 'the read model to catch up with a quiet log');
    await gw.kill('SIGTERM');

    // The log, entry by entry, against the tables.
    const js = jetstream(nc);
    const consumer = await js.consumers.get(Streams.log);
    const tickets = new Set<string>();
    const inbound = new Set<string>();
    const outbound = new Set<string>();
    const deliveries = new Set<string>();
    let statuses = 0;
    let n = 0;
    while (n < last) {
      const batch = await consumer.fetch({ max_messages: 500, expires: 2000 });
      for await (const m of batch) {
        n++;
        const ticketId = m.subject.split('.')[2]!;
        const e = LogEntry.parse(m.json());
        if (e.kind === 'inbound') {
          tickets.add(ticketId);
          inbound.add(`${ticketId}/${e.event.id}`);
        } else if (e.kind === 'outbound') outbound.add(`${ticketId}/${e.message.id}`);
        else if (e.kind === 'delivery') deliveries.add(e.status.outboundId);
        else if (e.kind === 'status') statuses++;
      }
    }
    const db = await open();
    try {
      const count = async (sql: string) => ((await db.query<{ n: number }>(sql))[0]!.n);
      expect(await count(`SELECT seq AS n FROM projection_checkpoint`)).toBe(last);
      expect(await count(`SELECT count(*)::int AS n FROM tickets`)).toBe(tickets.size);
      expect(await count(`SELECT count(*)::int AS n FROM messages WHERE direction = 'inbound'`)).toBe(inbound.size);
      expect(await count(`SELECT count(*)::int AS n FROM messages WHERE direction = 'outbound'`)).toBe(outbound.size);
      expect(await count(`SELECT count(*)::int AS n FROM deliveries`)).toBe(deliveries.size);
      expect(await count(`SELECT count(*)::int AS n FROM status_changes`)).toBe(statuses);
      expect(await count(`SELECT coalesce(sum(message_count), 0)::int AS n FROM tickets`)).toBe(inbound.size);
      expect(inbound.size).toBeGreaterThanOrEqual(accepted);
    } finally {
      await db.close();
    }
  }, 400_000);
});
