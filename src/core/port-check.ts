/**
 * Whether the HTTP port is free, asked before anything else starts. The listener opens last (after
 * the router and the connectors), so a second `start` with the same config by mistake joined the
 * cluster first and only then failed on EADDRINUSE: the running gateway handed it half its
 * partitions and took them back seconds later (an outside ops trial saw the routing pause).
 * A check, not a reservation: the port can still be taken in between, and then listen() fails as before.
 */
import { createServer } from 'node:net';

export class PortInUseError extends Error {
  constructor(host: string, port: number) {
    super(`http.port ${port} on ${host} is in use: is another omnigate (or something else) running with this config? Nothing was started`);
    this.name = 'PortInUseError';
  }
}

/** Resolves when `port` on `host` can be listened on now (port 0 always can); rejects with PortInUseError when it is taken. */
export async function assertPortFree(host: string, port: number): Promise<void> {
  if (port === 0) return;
  await new Promise<void>((resolve, reject) => {
    const probe = createServer();
    probe.once('error', (err: NodeJS.ErrnoException) => reject(err.code === 'EADDRINUSE' ? new PortInUseError(host, port) : err));
    probe.listen({ host, port, exclusive: true }, () => probe.close(() => resolve()));
  });
}
