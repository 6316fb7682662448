/**
 * The read model behind PgBouncer (session pooling), the pooler teams put in front of a shared
 * PostgreSQL. PgBouncer refuses a connection that sends a startup parameter it does not pass on
 * ("unsupported startup parameter: options"): the gateway sent `options=-c jit=off` and
 * `idle_in_transaction_session_timeout` that way, so it could not open its database at all. The
 * settings are now made once connected; this checks they hold on every kind of connection (pool,
 * transaction, the applier's lock session) and that the lock works through the pooler.
 * Skipped where pgbouncer is not installed (`npm test` and .ci/run install it on Debian).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { spawn, type ChildProcess } from 'node:child_process';
import { chmodSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { openDatabase, type Database } from '../../src/read-model/database.js';
import { migrate } from '../../src/read-model/migrations.js';
import { freePort } from '../helpers/ports.js';
import { postgresDatabase, type TestPostgres } from '../helpers/sql.js';

const PGBOUNCER = ['/usr/sbin/pgbouncer', '/usr/bin/pgbouncer'].find((p) => existsSync(p));

describe.skipIf(!PGBOUNCER)('the read model behind PgBouncer (session pooling)', () => {
  let dir: string;
  let bouncer: ChildProcess;
  let pg: TestPostgres;
  let url: string;
  let db: Database | undefined;

  beforeAll(async () => {
    pg = await postgresDatabase();
    const target = new URL(pg.url);
    const port = await freePort();
    dir = mkdtempSync(join(tmpdir(), 'omnigate-pgbouncer-'));
    writeFileSync(join(dir, 'users.txt'), `"${pg.user}" ""\n`);
    writeFileSync(
      join(dir, 'pgbouncer.ini'),
      [
        '[databases]',
        `* = host=${target.hostname} port=${target.port || 5432}`,
        '[pgbouncer]',
        'listen_addr = 127.0.0.1',
        `listen_port = ${port}`,
        'auth_type = trust',
        `auth_file = ${join(dir, 'users.txt')}`,
        'pool_mode = session',
        'unix_socket_dir =',
        `logfile = ${join(dir, 'pgbouncer.log')}`,
      ].join('\n'),
    );
    // PgBouncer will not run as root: as root it is told to switch to nobody, who must reach its files.
    const root = process.getuid?.() === 0;
    if (root) for (const f of ['', 'users.txt', 'pgbouncer.ini']) chmodSync(join(dir, f), f ? 0o644 : 0o777);
    bouncer = spawn(PGBOUNCER!, [...(root ? ['-u', 'nobody'] : []), join(dir, 'pgbouncer.ini')], { stdio: 'ignore' });
    await listening(port);
    const u = new URL(pg.url);
    u.port = String(port);
    url = u.toString();
  });

  afterAll(async () => {
    await db?.close();
    if (bouncer.exitCode === null) {
      const exited = new Promise((r) => bouncer.once('exit', r));
      bouncer.kill('SIGTERM');
      await exited;
    }
    await pg.drop();
    rmSync(dir, { recursive: true, force: true });
  });

  it('opens, migrates and queries; each session has the gateway\'s settings; the applier lock is taken and given back', async () => {
    db = await openDatabase({ url, user: pg.user, dataDir: '', silenceMs: 12_000 });
    await migrate(db);
    // Several at once: each on a connection of its own from the pool.
    const shown = await Promise.all(Array.from({ length: 4 }, () => db!.query<{ jit: string; idle: string }>("SELECT current_setting('jit') AS jit, current_setting('idle_in_transaction_session_timeout') AS idle")));
    for (const [row] of shown) expect(row).toEqual({ jit: 'off', idle: '12s' });
    const inTransaction = await db.transaction((tx) => tx.query<{ jit: string }>("SELECT current_setting('jit') AS jit"));
    expect(inTransaction).toEqual([{ jit: 'off' }]);
    const lock = await db.tryApplierLock(4242);
    expect(lock).not.toBeNull();
    expect(await db.tryApplierLock(4242)).toBeNull(); // held: another session is refused
    await lock!.release();
    const again = await db.tryApplierLock(4242);
    expect(again).not.toBeNull();
    await again!.release();
    expect(readFileSync(join(dir, 'pgbouncer.log'), 'utf8')).not.toMatch(/unsupported startup parameter/);
  });
});

/** Resolves once something accepts connections on the port (PgBouncer starts in milliseconds; a loaded machine gets 20 s). */
async function listening(port: number): Promise<void> {
  const until = Date.now() + 20_000;
  for (;;) {
    const ok = await new Promise<boolean>((resolve) => {
      const s = connect(port, '127.0.0.1');
      s.once('connect', () => {
        s.destroy();
        resolve(true);
      });
      s.once('error', () => resolve(false));
    });
    if (ok) return;
    if (Date.now() > until) throw new Error(`pgbouncer did not listen on ${port}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}
