/**
 * The embedded server in-process: a nats-server killed under a running gateway comes back on the
 * same port (through its watchdog wrapper); the data-directory lock refuses a second owner and is
 * free again after stop.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect } from '@nats-io/transport-node';
import { afterAll, describe, expect, it } from 'vitest';
import { DataDirLockedError } from '../../src/core/data-dir-lock.js';
import { EmbeddedNats } from '../../src/core/embedded-nats.js';
import { natsConnectionOptions } from '../../src/core/nats-access.js';
import { createLogger } from '../../src/core/logger.js';
import { findLeftovers } from '../../src/core/nats-leftovers.js';
import { natsServerBinary } from '../helpers/nats-server.js';

const dataDir = mkdtempSync(join(tmpdir(), 'omnigate-embedded-'));
const log = createLogger({ level: 'silent' });
const servers = () => findLeftovers(join(dataDir, 'jetstream'), join(dataDir, 'nats-server.pid')).map((l) => l.pid);
const embedded = () => new EmbeddedNats({ binary: natsServerBinary(), dataDir, host: '127.0.0.1', port: 0 }, log);

afterAll(() => rmSync(dataDir, { recursive: true, force: true }));

async function until(pred: () => boolean, timeoutMs: number, what: string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!pred()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

describe('embedded nats-server', () => {
  it('comes back on the same port after being killed; one owner per directory; the lock is free after stop', async () => {
    const a = embedded();
    const url = await a.start();
    try {
      await expect(embedded().start()).rejects.toBeInstanceOf(DataDirLockedError);
      const [first] = servers();
      process.kill(first!, 'SIGKILL');
      await until(() => servers().length === 1 && servers()[0] !== first, 30_000, 'the restarted server');
      // With the credential made at start: the relaunched server takes the same one.
      const nc = await connect({ ...natsConnectionOptions({ url, ...a.access }), timeout: 10_000, waitOnFirstConnect: true });
      await nc.flush();
      await nc.close();
    } finally {
      await a.stop();
    }
    expect(servers()).toEqual([]);
    const b = embedded();
    await b.start();
    await b.stop();
  }, 90_000);
});

/** Processes in the watchdog's process group (it is started detached: its pid is the group's id). */
function watchdogGroup(): { pgid: number; members: () => string[] } {
  const rows = () => execFileSync('ps', ['-eo', 'pid=,pgid=,args='], { encoding: 'utf8' }).split('\n').map((l) => l.trim().split(/\s+/));
  const shell = rows().find((r) => r.includes('omnigate-nats-watchdog') && r.some((a) => a.startsWith(dataDir)));
  if (!shell) throw new Error('no watchdog shell found');
  const pgid = Number(shell[1]);
  return { pgid, members: () => rows().filter((r) => Number(r[1]) === pgid).map((r) => r.slice(2).join(' ')) };
}

describe('embedded nats-server stop', () => {
  it('leaves no process of its watchdog behind (a `sleep 15` outlived every stop)', async () => {
    const a = embedded();
    await a.start();
    const group = watchdogGroup();
    expect(group.members().length).toBeGreaterThan(0);
    await a.stop();
    await until(() => group.members().length === 0, 3_000, `the watchdog group ${group.pgid} to be gone: ${group.members().join('; ')}`);
  }, 60_000);
});
