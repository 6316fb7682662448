/**
 * A request body sent a byte at a time: Fastify turns Node's own request timeout off, and such a
 * body held its connection for ever, before any token was checked (a few hundred of them hold
 * the process's file descriptors). http.requestTimeout bounds it: 408, field `request`, closed.
 */
import { describe, expect, it } from 'vitest';
import { connect } from 'node:net';
import { HttpServer } from '../../src/api/server.js';
import { createLogger } from '../../src/core/logger.js';

describe('a request that does not arrive in time', () => {
  it('is answered 408 naming the request, and its connection closed', async () => {
    const server = new HttpServer({ host: '127.0.0.1', port: 0, bodyLimit: 1 << 20, requestTimeout: 1000, log: createLogger({ level: 'silent' }), readiness: async () => ({ ready: true, checks: {} }) });
    server.app.post('/slow', async () => ({ ok: true }));
    await server.listen();
    try {
      const socket = connect(server.port, '127.0.0.1');
      let answer = '';
      socket.on('data', (d: Buffer) => (answer += d.toString()));
      const closed = new Promise<void>((r) => socket.once('close', () => r()));
      socket.write('POST /slow HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n{"a":');
      // A byte every 200 ms, for up to a minute: the server must end it long before.
      const drip = setInterval(() => socket.writable && socket.write(' '), 200);
      const ended = await Promise.race([closed.then(() => true), new Promise<boolean>((r) => setTimeout(() => r(false), 60_000))]);
      clearInterval(drip);
      socket.destroy();
      expect(ended).toBe(true);
      expect(answer).toMatch(/^HTTP\/1\.1 408/);
      expect(answer).toContain('"field":"request"');
    } finally {
      await server.close();
    }
  }, 90_000);
});
