/**
 * Which database failures are the database being away (503 `unavailable` with Retry-After, a
 * retry later can succeed) and which are a defect of ours (500). An outside trial saw a database
 * set ALLOW_CONNECTIONS false (SQLSTATE 55000 at connect) answer 500 `internal` on lists,
 * search, contacts and reports.
 */
import { describe, expect, it } from 'vitest';
import { isDatabaseUnavailable } from '../../src/core/errors.js';
import { openDatabase } from '../../src/read-model/database.js';
import { startApiHarness } from '../api/support.js';
import { postgresDatabase } from '../helpers/sql.js';

/** A PostgreSQL error as node-pg gives it: the message, the SQLSTATE, the server function that raised it. */
function pgError(code: string, message = 'x', routine?: string): Error {
  return Object.assign(new Error(message), { code, routine, severity: 'ERROR' });
}

describe('isDatabaseUnavailable', () => {
  it('is true for the SQLSTATEs that mean "the server or database cannot take us now"', () => {
    for (const code of [
      '08000', '08003', '08006', '08001', '08004', '08P01', // connection exceptions
      '53000', '53100', '53200', '53300', '53400', // insufficient resources
      '57P01', '57P02', '57P03', '57P04', '57P05', // shutdowns, cannot connect now, dropped, idle timeout
      '3D000', '42P01', '28000', '28P01', '42501', // administrator's changes
    ]) {
      expect(isDatabaseUnavailable(pgError(code)), code).toBe(true);
    }
  });

  it('reads 55000 as unavailable only as the refusal of a database not accepting connections', () => {
    expect(isDatabaseUnavailable(pgError('55000', 'database "crm" is not currently accepting connections', 'CheckMyDatabase'))).toBe(true);
    // The server's messages may be in Russian (lc_messages): the raising function still tells.
    expect(isDatabaseUnavailable(pgError('55000', 'база данных "crm" в данный момент не принимает подключения', 'CheckMyDatabase'))).toBe(true);
    expect(isDatabaseUnavailable(pgError('55000', 'database "crm" is not currently accepting connections'))).toBe(true);
    // Any other object in the wrong state is the statement's own fault.
    expect(isDatabaseUnavailable(pgError('55000', 'cannot refresh materialized view "x" concurrently', 'ExecRefreshMatView'))).toBe(false);
    expect(isDatabaseUnavailable(pgError('54000', 'database is not accepting commands that assign new XIDs to avoid wraparound data loss in database "crm"'))).toBe(true);
    expect(isDatabaseUnavailable(pgError('54000', 'statement is too complex'))).toBe(false);
  });

  it('is false for a statement\'s own faults', () => {
    for (const code of ['42601', '42703', '23505', '22P02', '57014', '40001', '5', '0800', '080001']) {
      expect(isDatabaseUnavailable(pgError(code)), code).toBe(false);
    }
    expect(isDatabaseUnavailable(new Error('boom'))).toBe(false);
    expect(isDatabaseUnavailable(undefined)).toBe(false);
  });
});

describe('a PostgreSQL database set ALLOW_CONNECTIONS false', () => {
  it('makes lists, search, contacts and reports answer 503 unavailable with Retry-After, and answer again when allowed', async () => {
    const pg = await postgresDatabase();
    const adminUrl = pg.url.replace(/\/[^/]+$/, '/postgres');
    const h = await startApiHarness({ database: { url: pg.url, user: pg.user } });
    const paths = ['/v1/tickets', '/v1/search?q=x', '/v1/contacts?email=a@example.ru', '/v1/reports/volume?from=2026-01-01&to=2026-01-31'];
    try {
      for (const path of paths) expect((await h.api(path)).status, path).toBe(200);
      const admin = await openDatabase({ url: adminUrl, user: pg.user, dataDir: '' });
      try {
        await admin.query(`ALTER DATABASE ${pg.name} ALLOW_CONNECTIONS false`);
        // The pool's open sessions end: every call needs a new connection, which is refused.
        await admin.query('SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()', [pg.name]);
        const direct = await openDatabase({ url: pg.url, user: pg.user, dataDir: '' }).then(() => undefined, (e: unknown) => e);
        expect((direct as { code?: string }).code).toBe('55000');
        for (const path of paths) {
          const res = await h.api(path);
          expect(res.status, `${path} ${JSON.stringify(res.body)}`).toBe(503);
          expect(res.headers.get('retry-after'), path).toBeTruthy();
          expect(res.body.error, path).toMatchObject({ code: 'unavailable' });
        }
        await admin.query(`ALTER DATABASE ${pg.name} ALLOW_CONNECTIONS true`);
      } finally {
        await admin.close();
      }
      await expect.poll(async () => (await h.api('/v1/tickets')).status, { timeout: 30_000 }).toBe(200);
    } finally {
      await h.stop();
      await pg.drop();
    }
  }, 120_000);
});
