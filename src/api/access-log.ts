/**
 * Who read or changed what through the API: one line per /v1 request (the console reads through
 * /v1 too), naming the token, the route as mounted, its path parameters (ticket and contact ids,
 * a dead letter's sequence, an attachment's key) and the answer's status. Never the query string
 * or the body: `contact=`, `q=` and replies carry addresses and words. 152-FZ leaves the operator
 * to show who had access to a person's data; this log is that record (docs/personal-data.md).
 */
import type { FastifyInstance } from 'fastify';
import type { Logger } from '../core/logger.js';
import type { TokenAuth } from './auth.js';
import { clientAddress } from './client-address.js';

/** The OpenAPI document names no one: not worth a line per fetch. */
const UNLOGGED = new Set(['/v1/openapi.json']);

export function registerAccessLog(app: FastifyInstance, auth: Pick<TokenAuth, 'identified'>, log: Logger): void {
  app.addHook('onResponse', (req, reply, done) => {
    const route = req.routeOptions.url;
    if (route?.startsWith('/v1/') && !UNLOGGED.has(route)) {
      // As the route's auth step found it (a second compare of the token per request before).
      const who = auth.identified(req);
      const params = req.params as Record<string, string> | undefined;
      log.info(
        {
          tokenName: who.ok ? who.name : null,
          client: clientAddress(req),
          method: req.method,
          route,
          ...(params && Object.keys(params).length ? { params } : {}),
          status: reply.statusCode,
          ms: Math.round(reply.elapsedTime),
        },
        'api access',
      );
    }
    done();
  });
}
