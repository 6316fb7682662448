/**
 * What an administrator's change looks like to the gateway: a role set NOLOGIN, or a privilege
 * revoked. Both are the database being unavailable to us (503 with Retry-After from the API, a
 * loop failure a restart cannot cure), not a defect of ours (an outside ops trial saw lists and
 * search answer 500 `internal` while the role was NOLOGIN).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { randomBytes } from 'node:crypto';
import { openDatabase, type Database } from '../../src/read-model/database.js';
import { isDatabaseUnavailable } from '../../src/core/errors.js';
import { postgresDatabase, type TestPostgres } from '../helpers/sql.js';

let pg: TestPostgres;
let admin: Database;
const role = `omnigate_test_role_${randomBytes(4).toString('hex')}`;
beforeAll(async () => {
  pg = await postgresDatabase();
  admin = await openDatabase({ url: pg.url, user: pg.user, dataDir: '' });
  await admin.query(`CREATE ROLE ${role} LOGIN`);
  await admin.query('CREATE TABLE guarded (id int)');
});
afterAll(async () => {
  await admin?.close();
  await pg?.drop();
  const a = await openDatabase({ url: pg.url.replace(/\/[^/]+$/, '/postgres'), user: pg.user, dataDir: '' });
  await a.query(`DROP ROLE IF EXISTS ${role}`).finally(() => a.close());
});

describe('PostgreSQL refusing us by an administrator\'s change', () => {
  it('a privilege revoked (42501) and a role set NOLOGIN (28000) read as the database unavailable', async () => {
    const db = await openDatabase({ url: pg.url, user: role, dataDir: '' });
    try {
      const denied = await db.query('SELECT * FROM guarded').then(() => undefined, (e: unknown) => e);
      expect((denied as { code?: string }).code).toBe('42501');
      expect(isDatabaseUnavailable(denied)).toBe(true);
    } finally {
      await db.close();
    }
    await admin.query(`ALTER ROLE ${role} NOLOGIN`);
    const refused = await openDatabase({ url: pg.url, user: role, dataDir: '' }).then(() => undefined, (e: unknown) => e);
    expect((refused as { code?: string }).code).toBe('28000');
    expect(isDatabaseUnavailable(refused)).toBe(true);
    // A mistake of ours stays one.
    expect(isDatabaseUnavailable(await admin.query('SELEKT 1').then(() => undefined, (e: unknown) => e))).toBe(false);
  });
});
