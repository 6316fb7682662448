/**
 * Who may talk to the embedded nats-server: whoever holds a credential made at each gateway
 * start. Without one, any local process could read every stream (customer names, messages) from
 * 127.0.0.1 and publish commands. The server reads it from its config file; the gateway connects
 * with it; CLI tools (`omnigate dlq`, the `nats` CLI) read it from `<dataDir>/nats.url`, where it
 * is the URL's user and password. Both files are 0600 (private-files.ts); the password is in no
 * command line (ps shows those to every user) and in no log line (the logged URL has none).
 */
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { NatsAccess } from './nats-access.js';
import { writePrivateFile } from './private-files.js';

export const EMBEDDED_USER = 'omnigate';
/** In the data directory: the URL of the running server, with its credential (mode 0600). */
export const URL_FILE = 'nats.url';
/** In the data directory: the server's config file, holding the credential (mode 0600). */
export const SERVER_CONFIG_FILE = 'nats-server.conf';

export interface EmbeddedCredential {
  user: string;
  pass: string;
}

/** 192 random bits in hex: nothing to quote in the server's config or escape in a URL. */
export function newCredential(): EmbeddedCredential {
  return { user: EMBEDDED_USER, pass: randomBytes(24).toString('hex') };
}

export function serverConfigText(c: EmbeddedCredential): string {
  return [
    '# Written by omnigate at each start: the embedded server\'s credential, new every start.',
    '# Clients find it in nats.url beside this file. Keep both private (0600).',
    'authorization {',
    `  user: "${c.user}"`,
    `  password: "${c.pass}"`,
    '}',
    '',
  ].join('\n');
}

export async function writeServerConfig(dataDir: string, c: EmbeddedCredential): Promise<string> {
  const file = join(dataDir, SERVER_CONFIG_FILE);
  await writePrivateFile(file, serverConfigText(c));
  return file;
}

/** `url` (no credential in it) with the credential as its user info, written to nats.url. */
export async function writeUrlFile(dataDir: string, url: string, c: EmbeddedCredential): Promise<void> {
  const u = new URL(url);
  u.username = c.user;
  u.password = c.pass;
  await writePrivateFile(join(dataDir, URL_FILE), `${u.href.replace(/\/$/, '')}\n`);
}

/**
 * How a tool reaches the running embedded server: the URL (without the credential, fit for an
 * error message) and the user and password from nats.url. Undefined when there is no nats.url;
 * a file this user may not read throws (EACCES: the caller says whose it is).
 * A nats.url of a version before the credential has none: the server it names needs none.
 */
export function readEmbeddedAccess(dataDir: string): NatsAccess | undefined {
  const file = join(dataDir, URL_FILE);
  let text: string;
  try {
    text = readFileSync(file, 'utf8').trim();
  } catch (err) {
    // Only a missing file means no server; EACCES (another user than the gateway's) is the caller's to explain.
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
  let u: URL;
  try {
    u = new URL(text);
  } catch {
    throw new Error(`${file} holds no NATS URL: start the gateway again to rewrite it`);
  }
  const user = decodeURIComponent(u.username);
  const pass = decodeURIComponent(u.password);
  u.username = '';
  u.password = '';
  const url = u.href.replace(/\/$/, '');
  return user ? { url, user, pass } : { url };
}
