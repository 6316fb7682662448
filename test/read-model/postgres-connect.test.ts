/**
 * A PostgreSQL that stops answering. One that accepts the connection and never answers (a
 * half-dead host, a proxy with nothing behind it): the open fails after the connect timeout with
 * a reason, instead of leaving the read model "opening" for ever with nothing for /readyz to
 * show. One that goes away after it opened: lists and search answer 503 with Retry-After (a
 * retry can succeed), not 500, and answer again once it is back. Tables gone under a running
 * gateway are made again; a checkpoint of another ticket log stops the projection, named.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connect, createServer, type AddressInfo, type Server, type Socket } from 'node:net';
import { openDatabase } from '../../src/read-model/database.js';
import { migrate } from '../../src/read-model/migrations.js';
import { startApiHarness } from '../api/support.js';
import { silentServer, type SilentServer } from '../helpers/silent-server.js';
import { postgresDatabase } from '../helpers/sql.js';

let silent: SilentServer;
beforeAll(async () => {
  silent = await silentServer();
});
afterAll(async () => silent?.close());

/** A TCP proxy to `target` on a fixed local port, which can be cut (every connection dropped, new ones refused) and restored. */
async function cuttableProxy(target: URL): Promise<{ port: number; cut(): Promise<void>; restore(): Promise<void>; close(): Promise<void> }> {
  const open = new Set<Socket>();
  let server: Server | undefined;
  const listen = (port: number) =>
    new Promise<number>((resolve) => {
      server = createServer((client) => {
        const upstream = connect(Number(target.port || 5432), target.hostname);
        for (const s of [client, upstream]) {
          open.add(s);
          s.on('error', () => undefined);
          s.on('close', () => open.delete(s));
        }
        client.pipe(upstream).pipe(client);
      }).listen(port, '127.0.0.1', () => resolve((server!.address() as AddressInfo).port));
    });
  const stop = async () => {
    for (const s of open) s.destroy();
    await new Promise((r) => server?.close(r));
  };
  const port = await listen(0);
  return { port, cut: stop, restore: async () => void (await listen(port)), close: stop };
}

describe('a PostgreSQL that stops answering', () => {
  it('fails the open after the connect timeout, with the reason', async () => {
    const url = `postgres://127.0.0.1:${silent.port}/omnigate`;
    const failed = await openDatabase({ url, dataDir: '', connectTimeoutMs: 300 }).then(
      () => undefined,
      (e: unknown) => e as Error,
    );
    expect(failed?.message).toMatch(/timeout/i);
    expect(silent.sockets.length).toBeGreaterThan(0);
  });

  it('makes lists and search answer 503 with Retry-After while it is away, and answer again when it is back', async () => {
    const pg = await postgresDatabase();
    const proxy = await cuttableProxy(new URL(pg.url));
    const through = new URL(pg.url);
    through.host = `127.0.0.1:${proxy.port}`;
    const h = await startApiHarness({ database: { url: through.toString(), user: pg.user } });
    try {
      expect((await h.api('/v1/tickets')).status).toBe(200);
      await proxy.cut();
      for (const path of ['/v1/tickets', '/v1/search?q=x']) {
        const res = await h.api(path);
        expect(res.status, JSON.stringify(res.body)).toBe(503);
        expect(res.headers.get('retry-after')).toBe('5');
        expect(res.body.error).toMatchObject({ code: 'unavailable', message: expect.stringContaining('read model database did not answer') });
        expect(JSON.stringify(res.body)).not.toContain(String(proxy.port));
      }
      expect((await h.api('/healthz', { token: null })).status).toBe(200);
      await proxy.restore();
      await expect.poll(async () => (await h.api('/v1/tickets')).status, { timeout: 30_000 }).toBe(200);
    } finally {
      await h.stop();
      await proxy.close();
      await pg.drop();
    }
  }, 120_000);

  it('puts its tables back when they are gone (a rebuild by DROP SCHEMA, a database made again) and applies the log again, without a restart', async () => {
    const pg = await postgresDatabase();
    const h = await startApiHarness({ database: { url: pg.url, user: pg.user } });
    try {
      const first = await h.openTicket('rebuild-1', 'rebuild@example.ru', 'До пересоздания');
      await expect.poll(async () => (await h.api('/v1/tickets')).body.tickets?.map((t: { id: string }) => t.id), { timeout: 30_000 }).toEqual([first]);
      const admin = await openDatabase({ url: pg.url, user: pg.user, dataDir: '' });
      try {
        // What docs/data.md says to run for a rebuild, with the gateway left running.
        await admin.query('DROP SCHEMA public CASCADE');
        await admin.query('CREATE SCHEMA public');
      } finally {
        await admin.close();
      }
      const second = await h.openTicket('rebuild-2', 'rebuild2@example.ru', 'После пересоздания');
      await expect.poll(async () => ((await h.api('/v1/tickets')).body.tickets ?? []).map((t: { id: string }) => t.id).sort(), { timeout: 60_000 }).toEqual([first, second].sort());
    } finally {
      await h.stop();
      await pg.drop();
    }
  }, 120_000);

  it('applies nothing while its checkpoint counts in another ticket log (a NATS store replaced), says so in /readyz, and goes on after a rebuild', async () => {
    const pg = await postgresDatabase();
    const db = await openDatabase({ url: pg.url, user: pg.user, dataDir: '' });
    // What a read model left by the NATS store before holds: a checkpoint far along another log.
    await migrate(db);
    await db.query(`INSERT INTO projection_checkpoint (name, seq, log_created, updated_at) VALUES ('ticket-log', 22897, '2026-01-01T00:00:00Z', now())`);
    const h = await startApiHarness({ database: { url: pg.url, user: pg.user } });
    try {
      const ticket = await h.openTicket('replaced-1', 'replaced@example.ru', 'После замены хранилища');
      await expect.poll(async () => (await h.api('/readyz')).body.readModel?.error, { timeout: 30_000 }).toMatch(/ticket log was replaced/);
      // /readyz says it as the applier refuses; the log line follows once the loop's failure is logged.
      await expect.poll(() => h.gw.logs.join(''), { timeout: 30_000 }).toMatch(/applied the ticket log up to sequence 22897, but the log NATS holds now was created at/);
      expect((await h.api('/v1/tickets')).body.tickets).toEqual([]);
      // The rebuild of docs/data.md (the checkpoint among what is truncated); the gateway keeps running.
      await db.query('TRUNCATE projection_checkpoint');
      await expect.poll(async () => (await h.api('/v1/tickets')).body.tickets?.map((t: { id: string }) => t.id), { timeout: 60_000 }).toEqual([ticket]);
      expect((await h.api('/readyz')).body.readModel.error).toBeUndefined();
      // Replaced under a running applier (here: the log it counts in made to differ): noticed while idle, not followed into.
      await db.query(`UPDATE projection_checkpoint SET log_created = '2026-01-01T00:00:00Z'`);
      await expect.poll(async () => (await h.api('/readyz')).body.readModel?.error, { timeout: 30_000 }).toMatch(/ticket log was replaced/);
    } finally {
      await h.stop();
      await db.close();
      await pg.drop();
    }
  }, 120_000);
});
