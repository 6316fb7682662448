/**
 * A PostgreSQL that accepts the connection and never answers (a half-dead host, a proxy with
 * nothing behind it): the open fails after the connect timeout with a reason, instead of
 * leaving the read model "opening" for ever with nothing for /readyz to show.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createServer, type AddressInfo, type Server, type Socket } from 'node:net';
import { openDatabase } from '../../src/read-model/database.js';

let silent: Server;
const sockets: Socket[] = [];
beforeAll(async () => {
  silent = createServer((socket) => sockets.push(socket));
  await new Promise<void>((r) => silent.listen(0, '127.0.0.1', r));
});
afterAll(async () => {
  for (const s of sockets) s.destroy();
  await new Promise((r) => silent.close(r));
});

describe('a PostgreSQL that never answers', () => {
  it('fails the open after the connect timeout, with the reason', async () => {
    const url = `postgres://127.0.0.1:${(silent.address() as AddressInfo).port}/omnigate`;
    const failed = await openDatabase({ url, dataDir: '', connectTimeoutMs: 300 }).then(
      () => undefined,
      (e: unknown) => e as Error,
    );
    expect(failed?.message).toMatch(/timeout/i);
    expect(sockets.length).toBeGreaterThan(0);
  });
});
