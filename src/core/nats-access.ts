/**
 * How we reach a NATS deployment: server list, TLS, and who we are (user/password, token, creds
 * file, NKey seed). Turned into client connection options in one place, for the gateway and the
 * CLI tools alike. Files are read at each (re)connect, so rotated creds and certificates are
 * picked up without a restart. Nothing here logs, and errors never quote a file's content.
 */
import { readFileSync } from 'node:fs';
import { credsAuthenticator, nkeyAuthenticator, nkeys, type Authenticator, type ConnectionOptions } from '@nats-io/transport-node';

export interface NatsTls {
  caFile?: string;
  certFile?: string;
  keyFile?: string;
  /** The name to verify the server certificate against (and send as SNI) instead of the URL's host. */
  serverName?: string;
  /** For servers configured with `handshake_first` (2.10+). */
  handshakeFirst?: boolean;
}

export interface NatsAccess {
  /** One URL, or several separated by commas: the client picks one and fails over to the others. */
  url: string;
  user?: string;
  pass?: string;
  token?: string;
  tls?: NatsTls;
  /** A creds file (user JWT + NKey seed), as `nsc` and NGS hand out. */
  credsFile?: string;
  /** An NKey user seed ("SU…"). */
  nkey?: string;
}

export class NatsAccessError extends Error {
  constructor(
    readonly key: string,
    problem: string,
  ) {
    super(`nats.${key}: ${problem}`);
    this.name = 'NatsAccessError';
  }
}

export function natsServers(url: string): string[] {
  return url
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean);
}

/** Checks files and seeds up front, so a typo fails the start with the key's name rather than as an auth loop. */
export function natsConnectionOptions(a: NatsAccess): Partial<ConnectionOptions> {
  const authenticator: Authenticator[] = [];
  if (a.credsFile) {
    const file = a.credsFile;
    const read = () => readFileSync(file);
    const creds = readable('credsFile', read);
    if (!/-----BEGIN NATS USER JWT-----/.test(creds.toString()) || !/-----BEGIN USER NKEY SEED-----/.test(creds.toString())) {
      throw new NatsAccessError('credsFile', `${file} is not a NATS creds file (expected a user JWT block and a user NKey seed block)`);
    }
    authenticator.push(credsAuthenticator(read));
  }
  if (a.nkey) {
    const seed = new TextEncoder().encode(a.nkey.trim());
    let prefix = '';
    try {
      prefix = nkeys.fromSeed(seed).getPublicKey().slice(0, 1);
    } catch {
      throw new NatsAccessError('nkey', 'not a valid NKey seed (expected the "SU…" seed of a user, as `nk -gen user` prints)');
    }
    if (prefix !== 'U') throw new NatsAccessError('nkey', 'this NKey seed is not a user seed (a user seed starts with "SU")');
    authenticator.push(nkeyAuthenticator(seed));
  }
  const tls = a.tls ? tlsOptions(a.tls) : undefined;
  return {
    servers: natsServers(a.url),
    user: a.user,
    pass: a.pass,
    token: a.token,
    ...(authenticator.length ? { authenticator } : {}),
    ...(tls ? { tls } : {}),
  };
}

function tlsOptions(t: NatsTls): ConnectionOptions['tls'] {
  if (!!t.certFile !== !!t.keyFile) throw new NatsAccessError(t.certFile ? 'tls.keyFile' : 'tls.certFile', 'a client certificate needs both tls.certFile and tls.keyFile');
  for (const key of ['caFile', 'certFile', 'keyFile'] as const) {
    const file = t[key];
    if (file) readable(`tls.${key}`, () => readFileSync(file));
  }
  // Extra keys reach node:tls.connect as they are: `servername` overrides the URL's host for SNI
  // and for the certificate check.
  return {
    ...(t.caFile ? { caFile: t.caFile } : {}),
    ...(t.certFile ? { certFile: t.certFile, keyFile: t.keyFile } : {}),
    ...(t.handshakeFirst ? { handshakeFirst: true } : {}),
    ...(t.serverName ? { servername: t.serverName } : {}),
  } as ConnectionOptions['tls'];
}

function readable(key: string, read: () => Buffer): Buffer {
  try {
    return read();
  } catch (err) {
    throw new NatsAccessError(key, `cannot read the file (${(err as NodeJS.ErrnoException).code ?? 'error'})`);
  }
}
