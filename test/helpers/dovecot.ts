/**
 * A throwaway Dovecot IMAP server per test file: own temp directory and config, passwd-file users
 * with plain passwords, maildir homes, a free port on 127.0.0.1, SIGTERM on stop. Needs
 * dovecot-imapd (Debian's /usr/sbin/dovecot, or OMNIGATE_TEST_DOVECOT).
 */
import { freePort } from './ports.js';
import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { appendFile, chmod, chown, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ImapFlow } from 'imapflow';

export interface TestDovecot {
  host: string;
  port: number;
  dir: string;
  /** Adds a login; mail lives in <dir>/home/<user>/Maildir. */
  addUser(user: string, password: string): Promise<void>;
  /** A connected imapflow client for the test itself (APPEND, folder changes, assertions). */
  client(user: string, password: string): Promise<ImapFlow>;
  stop(): Promise<void>;
}

export function dovecotBinary(): string {
  return process.env.OMNIGATE_TEST_DOVECOT ?? '/usr/sbin/dovecot';
}

/** Uid/gid that owns the mail: ourselves, or (as root, which Dovecot refuses for mail) the dovecot user. */
function mailOwner(): { uid: number; gid: number } {
  const uid = process.getuid?.() ?? 0;
  const gid = process.getgid?.() ?? 0;
  if (uid !== 0) return { uid, gid };
  const line = readFileSync('/etc/passwd', 'utf8').split('\n').find((l) => l.startsWith('dovecot:'));
  if (!line) throw new Error('running as root needs the dovecot user (dovecot-core creates it)');
  const [, , u, g] = line.split(':');
  return { uid: Number(u), gid: Number(g) };
}

function config(dir: string, port: number): string {
  const uid = process.getuid?.() ?? 0;
  const owner = mailOwner();
  // Unprivileged: everything runs as us. As root: Dovecot refuses to run its login process as
  // root, so use the package's own dovenull/dovecot users, and allow uid 0 for mail access.
  const self = process.env.USER || 'nobody';
  const loginUser = uid === 0 ? 'dovenull' : self;
  const internalUser = uid === 0 ? 'dovecot' : self;
  // One setting per line, chroot off.
  return [
    'protocols = imap',
    'listen = 127.0.0.1',
    'ssl = no',
    'disable_plaintext_auth = no',
    'auth_mechanisms = plain login',
    `base_dir = ${dir}/run`,
    `state_dir = ${dir}/state`,
    `log_path = ${dir}/dovecot.log`,
    `info_log_path = ${dir}/dovecot.log`,
    'mail_location = maildir:~/Maildir',
    `default_login_user = ${loginUser}`,
    `default_internal_user = ${internalUser}`,
    'mail_max_userip_connections = 100',
    `first_valid_uid = ${owner.uid}`,
    `first_valid_gid = ${owner.gid}`,
    'passdb {',
    '  driver = passwd-file',
    `  args = scheme=PLAIN username_format=%u ${dir}/users`,
    '}',
    'userdb {',
    '  driver = static',
    `  args = uid=${owner.uid} gid=${owner.gid} home=${dir}/home/%u`,
    '}',
    'service imap-login {',
    '  chroot =',
    '  inet_listener imap {',
    '    address = 127.0.0.1',
    `    port = ${port}`,
    '  }',
    '  inet_listener imaps {',
    '    port = 0',
    '  }',
    '}',
    'service anvil {',
    '  chroot =',
    '}',
    '',
  ].join('\n');
}

export async function startDovecot(): Promise<TestDovecot> {
  const dir = await mkdtemp(join(tmpdir(), 'omnigate-dovecot-'));
  await chmod(dir, 0o755); // the login process (another user when we are root) reaches sockets in it
  await Promise.all(['run', 'state', 'home'].map((d) => mkdir(join(dir, d))));
  const owner = mailOwner();
  await chown(join(dir, 'home'), owner.uid, owner.gid);
  await writeFile(join(dir, 'users'), '');
  const port = await freePort();
  await writeFile(join(dir, 'dovecot.conf'), config(dir, port));
  const child: ChildProcess = spawn(dovecotBinary(), ['-F', '-c', join(dir, 'dovecot.conf')], { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr?.on('data', (d: Buffer) => (stderr += d.toString()));
  await waitForListener(port, child, () => stderr);
  const clients: ImapFlow[] = [];
  return {
    host: '127.0.0.1',
    port,
    dir,
    async addUser(user, password) {
      await appendFile(join(dir, 'users'), `${user}:{PLAIN}${password}\n`);
    },
    async client(user, password) {
      const c = new ImapFlow({ host: '127.0.0.1', port, secure: false, doSTARTTLS: false, auth: { user, pass: password }, logger: false });
      c.on('error', () => {});
      await c.connect();
      clients.push(c);
      return c;
    },
    async stop() {
      await Promise.all(clients.map((c) => c.logout().catch(() => c.close())));
      await new Promise<void>((resolve) => {
        if (child.exitCode !== null) return resolve();
        const t = setTimeout(() => child.kill('SIGKILL'), 5000);
        child.once('exit', () => {
          clearTimeout(t);
          resolve();
        });
        child.kill('SIGTERM');
      });
      await rm(dir, { recursive: true, force: true });
    },
  };
}

async function waitForListener(port: number, child: ChildProcess, stderr: () => string): Promise<void> {
  const { connect } = await import('node:net');
  const deadline = Date.now() + 15_000;
  while (Date.now() < deadline) {
    if (child.exitCode !== null) throw new Error(`dovecot exited (${child.exitCode}): ${stderr()}`);
    const ok = await new Promise<boolean>((resolve) => {
      const s = connect(port, '127.0.0.1');
      const t = setTimeout(() => {
        s.destroy();
        resolve(false);
      }, 1000);
      s.once('data', (d) => {
        clearTimeout(t);
        s.destroy();
        resolve(d.toString().startsWith('* OK'));
      });
      s.once('error', () => {
        clearTimeout(t);
        resolve(false);
      });
    });
    if (ok) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  child.kill('SIGKILL');
  throw new Error(`dovecot did not listen on ${port} within 15 s: ${stderr()}`);
}
