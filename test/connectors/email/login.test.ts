/**
 * IMAP login health: a mailbox whose login the server refuses shows `auth_failed` (naming the
 * mailbox, never the password) through every retry, and `connected` once a login is accepted;
 * a server that drops the connection shows `disconnected`, not `auth_failed`.
 */
import { readFile, rename, writeFile } from 'node:fs/promises';
import { createServer, type Server, type Socket } from 'node:net';
import { join } from 'node:path';
import { connect, type NatsConnection, type Subscription } from '@nats-io/transport-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ConnectorState } from '../../../src/core/schema.js';
import { Subjects } from '../../../src/core/subjects.js';
import { startGateway, type TestGateway } from '../../helpers/gateway.js';
import { PASSWORD, SUPPORT, mailbox, startWorld, until, type EmailWorld } from './harness.js';

/** What the connector is configured with; the server knows only PASSWORD until the test changes it. */
const WRONG = 'wrong-imap-pw-7Qz';
/** /readyz shows connector states only to an API token (http.probeDetails). */
const MONITOR = 'monitor-token-0123456789abcdef';

let world: EmailWorld;
let nc: NatsConnection;

beforeAll(async () => {
  world = await startWorld();
  nc = await connect({ servers: world.nats.url });
});
afterAll(async () => {
  await nc?.close();
  await world?.stop();
});

/** Every state the email connector announced on omni.events.connector.email.support (what ops, the console and metrics are told). */
async function watchStates(): Promise<{ states: Array<{ state: ConnectorState; detail?: string }>; sub: Subscription }> {
  const states: Array<{ state: ConnectorState; detail?: string }> = [];
  const sub = nc.subscribe(Subjects.connectorEvent('email', 'support'), {
    callback: (err, m) => {
      if (!err) states.push(m.json<{ state: ConnectorState; detail?: string }>());
    },
  });
  await nc.flush(); // subscribed on the server before the gateway announces anything
  return { states, sub };
}

function gatewayFor(imap: Record<string, unknown>, pass: string): Promise<TestGateway> {
  const m = mailbox(world);
  return startGateway(
    {
      // Quick retries: each refused login still waits Dovecot's auth_failure_delay (2 s).
      connectors: [{ type: 'email', account: 'support', firstRun: 'all', reconnectMaxMs: 300, mailboxes: [{ ...m, imap: { ...m.imap, ...imap } }] }],
      api: { tokens: [{ name: 'monitor', token: MONITOR, readOnly: true }] },
    },
    { nats: world.nats, env: { IMAP_PASS: pass } },
  );
}

const emailHealth = (gw: TestGateway) => gw.gateway.connectors.health().find((h) => h.channel === 'email');

/** Logins Dovecot refused for the support mailbox so far (its log has one line per refused session). */
async function refusedLogins(): Promise<number> {
  const log = await readFile(join(world.dovecot.dir, 'dovecot.log'), 'utf8').catch(() => '');
  return log.split('\n').filter((l) => l.includes('auth failed') && l.includes(`user=<${SUPPORT}>`)).length;
}

/** Sets the support mailbox's password on the server (Dovecot re-reads its passwd-file when it changes). */
async function serverPassword(pass: string): Promise<void> {
  const file = join(world.dovecot.dir, 'users');
  const lines = (await readFile(file, 'utf8')).split('\n').map((l) => (l.startsWith(`${SUPPORT}:`) ? `${SUPPORT}:{PLAIN}${pass}` : l));
  await writeFile(`${file}.new`, lines.join('\n'));
  await rename(`${file}.new`, file); // a new file (inode, size): never a half-written one
}

describe('email connector health on IMAP login', () => {
  it('stays auth_failed while the IMAP login keeps being refused, through every retry, then turns connected once a login is accepted', async () => {
    const { states, sub } = await watchStates();
    const gw = await gatewayFor({}, WRONG);
    try {
      await until(() => states.some((s) => s.state === 'auth_failed'), 'auth_failed announced', 60_000);
      const first = states.findIndex((s) => s.state === 'auth_failed');
      // Three more refused logins after the first one was reported: each closes its connection
      // and waits out a backoff, and none of that may hide the cause.
      const seen = await refusedLogins();
      await until(async () => (await refusedLogins()) >= seen + 3, 'three more refused logins', 90_000);
      const after = states.slice(first);
      expect(after.map((s) => s.state), JSON.stringify(after)).toEqual(after.map(() => 'auth_failed'));
      const health = emailHealth(gw)!;
      expect(health.state).toBe('auth_failed');
      expect(health.detail).toContain(`${SUPPORT}/INBOX`);
      expect(health.detail).toContain('IMAP login refused');
      // What an operator reads: the probe and the metrics say the same.
      const ready = (await fetch(`${gw.httpUrl}/readyz`, { headers: { authorization: `Bearer ${MONITOR}` } }).then((r) => r.json())) as { connectors: Array<{ channel: string; state: string; detail?: string }> };
      expect(ready.connectors.find((c) => c.channel === 'email')).toMatchObject({ state: 'auth_failed' });
      const metrics = await fetch(`${gw.httpUrl}/metrics`).then((r) => r.text());
      expect(metrics).toMatch(/omnigate_connector_state\{[^}]*state="auth_failed"[^}]*\} 1/);
      // The password is in no state, no detail and no log line.
      expect(JSON.stringify(states)).not.toContain(WRONG);
      expect(JSON.stringify(ready)).not.toContain(WRONG);
      expect(gw.logs.join('')).not.toContain(WRONG);

      // The server now accepts that password (as if the operator fixed it): the next retry logs in.
      await serverPassword(WRONG);
      await until(() => emailHealth(gw)?.state === 'connected', 'connected after the password was fixed', 90_000);
      // Announced on NATS after the in-process health changed: it may arrive a moment later.
      await until(() => states.at(-1)?.state === 'connected', 'connected announced', 30_000);
      expect(emailHealth(gw)?.detail).toBeUndefined();
    } finally {
      sub.unsubscribe();
      await gw.stop();
      await serverPassword(PASSWORD);
    }
  });

  it('shows disconnected, not auth_failed, when the server drops the connection', async () => {
    // Accepts and closes at once, before any greeting: a network failure, nothing about credentials.
    let accepted = 0;
    const sockets = new Set<Socket>();
    const server: Server = createServer((s) => {
      accepted++;
      sockets.add(s);
      s.on('close', () => sockets.delete(s));
      s.destroy();
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
    const port = (server.address() as { port: number }).port;
    const { states, sub } = await watchStates();
    const gw = await gatewayFor({ port }, PASSWORD);
    try {
      await until(() => accepted >= 3, 'three dropped connections', 60_000);
      await until(() => emailHealth(gw)?.state === 'disconnected', 'disconnected', 30_000);
      expect(emailHealth(gw)?.detail).toContain(`${SUPPORT}/INBOX`);
      expect(states.map((s) => s.state)).not.toContain('auth_failed');
      expect(states.map((s) => s.state)).toContain('disconnected');
    } finally {
      sub.unsubscribe();
      await gw.stop();
      for (const s of sockets) s.destroy();
      await new Promise<void>((r) => server.close(() => r()));
    }
  });

  it('shows disconnected, not auth_failed, when the server says its authentication is unavailable (NO [UNAVAILABLE])', async () => {
    // An IMAP stand-in whose auth backend is down, as Dovecot answers then: the password may be right.
    let refused = 0;
    const sockets = new Set<Socket>();
    const server: Server = createServer((s) => {
      sockets.add(s);
      s.on('close', () => sockets.delete(s));
      s.on('error', () => {});
      s.write('* OK [CAPABILITY IMAP4rev1 AUTH=PLAIN] stand-in ready\r\n');
      let buffered = '';
      s.on('data', (d: Buffer) => {
        buffered += d.toString('latin1');
        for (let nl = buffered.indexOf('\r\n'); nl >= 0; nl = buffered.indexOf('\r\n')) {
          const [tag, command = ''] = buffered.slice(0, nl).split(' ');
          buffered = buffered.slice(nl + 2);
          const verb = command.toUpperCase();
          if (verb === 'CAPABILITY') s.write(`* CAPABILITY IMAP4rev1 AUTH=PLAIN\r\n${tag} OK done\r\n`);
          else if (verb === 'LOGIN' || verb === 'AUTHENTICATE') {
            refused++;
            s.write(`${tag} NO [UNAVAILABLE] Temporary authentication failure.\r\n`);
          } else if (verb === 'LOGOUT') s.end(`* BYE\r\n${tag} OK bye\r\n`);
          else s.write(`${tag} OK done\r\n`);
        }
      });
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
    const port = (server.address() as { port: number }).port;
    const { states, sub } = await watchStates();
    const gw = await gatewayFor({ port }, PASSWORD);
    try {
      await until(() => refused >= 3, 'three logins answered UNAVAILABLE', 60_000);
      await until(() => emailHealth(gw)?.state === 'disconnected', 'disconnected', 30_000);
      expect(emailHealth(gw)?.detail).toContain(`${SUPPORT}/INBOX`);
      expect(states.map((s) => s.state)).not.toContain('auth_failed');
    } finally {
      sub.unsubscribe();
      await gw.stop();
      for (const s of sockets) s.destroy();
      await new Promise<void>((r) => server.close(() => r()));
    }
  });
});
