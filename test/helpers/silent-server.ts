/**
 * A TCP server that takes every connection and never answers: a PostgreSQL or a callback on a
 * half-dead host, a proxy with nothing behind it. What it took stays open until `close` (a dropped
 * connection would be an answer of sorts: the client would see a reset, not silence).
 */
import { createServer, type AddressInfo, type Socket } from 'node:net';

export interface SilentServer {
  /** On 127.0.0.1. */
  port: number;
  /** The connections taken so far; the same array throughout, so a poll on its length sees new ones. */
  readonly sockets: readonly Socket[];
  /** Drops the connections it holds first (a server closes only once none is left), then stops listening. */
  close(): Promise<void>;
}

export async function silentServer(): Promise<SilentServer> {
  const sockets: Socket[] = [];
  const server = createServer((socket) => void sockets.push(socket));
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    port: (server.address() as AddressInfo).port,
    sockets,
    async close() {
      for (const s of sockets) s.destroy();
      await new Promise((r) => server.close(r));
    },
  };
}
