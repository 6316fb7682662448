/**
 * Just enough of NATS decentralized auth for tests: an operator, one account with JetStream and
 * one user, signed with NKeys (the JWT is base64url header.claims.ed25519-signature), and the
 * creds file `nsc` would write for that user. Served with `resolver: MEMORY`.
 */
import { randomBytes } from 'node:crypto';
import { nkeys } from '@nats-io/transport-node';

type KeyPair = ReturnType<typeof nkeys.createUser>;

const b64url = (b: Uint8Array | string) => Buffer.from(b).toString('base64url');

function jwt(issuer: KeyPair, subject: string, name: string, nats: Record<string, unknown>): string {
  const header = b64url(JSON.stringify({ typ: 'JWT', alg: 'ed25519-nkey' }));
  const claims = b64url(
    JSON.stringify({ jti: randomBytes(16).toString('hex').toUpperCase(), iat: Math.floor(Date.now() / 1000), iss: issuer.getPublicKey(), name, sub: subject, nats: { ...nats, version: 2 } }),
  );
  const sig = b64url(issuer.sign(new TextEncoder().encode(`${header}.${claims}`)));
  return `${header}.${claims}.${sig}`;
}

export interface OperatorSetup {
  /** nats-server config lines (operator, memory resolver with the account preloaded). */
  serverConf: string;
  /** A creds file's text for the user. */
  creds: string;
  userSeed: string;
}

export function operatorSetup(): OperatorSetup {
  const operator = nkeys.createOperator();
  const account = nkeys.createAccount();
  // JetStream in operator mode needs a system account.
  const system = nkeys.createAccount();
  const user = nkeys.createUser();
  const opJwt = jwt(operator, operator.getPublicKey(), 'test-operator', { type: 'operator' });
  const unlimited = { subs: -1, data: -1, payload: -1, imports: -1, exports: -1, wildcards: true, conn: -1, leaf: -1 };
  const accJwt = jwt(operator, account.getPublicKey(), 'omnigate', {
    type: 'account',
    limits: { ...unlimited, mem_storage: -1, disk_storage: -1, streams: -1, consumer: -1 },
    default_permissions: { pub: {}, sub: {} },
  });
  const sysJwt = jwt(operator, system.getPublicKey(), 'SYS', { type: 'account', limits: unlimited, default_permissions: { pub: {}, sub: {} } });
  const userJwt = jwt(account, user.getPublicKey(), 'gateway', { type: 'user', pub: {}, sub: {}, subs: -1, data: -1, payload: -1 });
  const userSeed = new TextDecoder().decode(user.getSeed());
  const creds = `-----BEGIN NATS USER JWT-----
${userJwt}
------END NATS USER JWT------

************************* IMPORTANT *************************
NKEY Seed printed below can be used to sign and prove identity.
NKEYs are sensitive and should be treated as secrets.

-----BEGIN USER NKEY SEED-----
${userSeed}
------END USER NKEY SEED------

*************************************************************
`;
  return {
    serverConf: `operator: ${opJwt}\nsystem_account: ${system.getPublicKey()}\nresolver: MEMORY\nresolver_preload: {\n  ${account.getPublicKey()}: ${accJwt}\n  ${system.getPublicKey()}: ${sysJwt}\n}\n`,
    creds,
    userSeed,
  };
}
