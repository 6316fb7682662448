/**
 * The API behind /console (and for anyone with a token): the signed-in token, connectors across
 * every replica and their restart, dead letters (list, read, replay, erase: admin only), and a live tail of ticket
 * events as server-sent events. Same bearer tokens as /v1; read-only tokens are refused every
 * write here by the same rule (403), whatever the page shows.
 */
import { randomUUID } from 'node:crypto';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { DeliverPolicy, type Consumer } from '@nats-io/jetstream';
import { z } from 'zod';
import { queryWholeNumber } from '../api/query-numbers.js';
import type { Bus } from '../core/bus.js';
import { NatsUnavailableError, errorMessage } from '../core/errors.js';
import type { Logger } from '../core/logger.js';
import { Streams, Subjects } from '../core/subjects.js';
import type { TokenAuth } from '../api/auth.js';
import { fail, failAuth, failQuery } from '../api/errors.js';
import { QueryDateTime } from '../api/query-time.js';
import { DeadLetterDesk, elideQuoted, withholdPayload } from './dead-letters.js';
import type { ReplicaConnectors, RestartAnswer } from './replica-service.js';
import { registerConsoleAssets } from './static.js';
import { announceErasure, emptyCounts } from '../core/erasure.js';

export interface ConsoleDeps {
  bus: Bus;
  auth: TokenAuth;
  log: Logger;
  /** Ticket ids are this prefix and the number: the console looks a number up by id. */
  ticketPrefix: string;
  leaseTtlMs: number;
  /** How long to collect replicas' answers about their connectors. */
  replicaWaitMs?: number;
}

/** Strict, as the API's lists: `since=…` (a CLI option, not a parameter here) was ignored and every letter listed. */
const LetterQuery = z.strictObject({
  source: z.string().regex(/^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$/, 'dot-separated parts of letters, digits, "_" and "-", none empty (e.g. inbound.telegram.support)').optional(),
  reason: z.string().max(200).optional(),
  ticket: z.string().trim().min(1).max(100).optional(),
  /** Only letters parked at or after this time (as `omnigate dlq --since`). */
  since: QueryDateTime.optional(),
  /** Only letters at or below this sequence: a page already shown stays the page replayed. */
  upTo: z.string().regex(/^[1-9]\d{0,15}$/, { error: 'a letter sequence, written in digits' }).transform(Number).optional(),
  limit: queryWholeNumber(1, 500).default(100),
});
const ReplayBody = LetterQuery.extend({ limit: queryWholeNumber(1, 200).default(50) });
/** Decimal digits only: Number() also took `0x1F` (letter 31), `1e3` and ` 1`. */
const Seq = z.string().regex(/^[1-9]\d{0,15}$/).transform(Number);
const Token = z.string().regex(/^[A-Za-z0-9_-]+$/);

/** A restart waits for the connector's stop and start on its replica. */
const RESTART_TIMEOUT_MS = 30_000;
const SSE_HEARTBEAT_MS = 15_000;
/** How long a ticket event stream waits for a client that stopped reading before closing it. */
const SSE_STALL_MS = 30_000;
/**
 * Events a stream takes from JetStream ahead of its client. nats.js's default pulls ~100 at a
 * time: a client that stopped reading made the gateway hold its whole buffer (events carry their
 * entry: up to ~1 MB each), about 100 MB per stalled client.
 */
const SSE_AHEAD = 8;
/** Ticket event streams open at once on this replica; more are refused (503): each holds a consumer and up to SSE_AHEAD events. */
const SSE_MAX_STREAMS = 32;

/** Resolves true once `res` can take more, false after `ms` or when the connection closed. */
function drained(res: NodeJS.WritableStream & { destroyed?: boolean }, ms: number): Promise<boolean> {
  if (res.destroyed) return Promise.resolve(false);
  return new Promise((resolve) => {
    const done = (ok: boolean) => {
      clearTimeout(timer);
      res.off('drain', onDrain);
      res.off('close', onClose);
      resolve(ok);
    };
    const onDrain = () => done(true);
    const onClose = () => done(false);
    const timer = setTimeout(() => done(false), ms);
    res.on('drain', onDrain);
    res.on('close', onClose);
  });
}

export function registerConsole(app: FastifyInstance, deps: ConsoleDeps): void {
  const guard = async (req: FastifyRequest, reply: FastifyReply) => {
    const refused = deps.auth.authorizeRequest(req);
    if (refused) return failAuth(reply, refused);
  };
  const guarded = { onRequest: guard };
  const desk = new DeadLetterDesk(deps.bus.nc, deps.bus.js, deps.bus.jsm);

  registerConsoleAssets(app);

  app.get('/v1/session', guarded, async (req) => {
    const who = deps.auth.identified(req);
    return { token: who.ok ? who.name : null, readOnly: who.ok ? who.readOnly : true, ticketPrefix: deps.ticketPrefix };
  });

  app.get('/v1/connectors', guarded, async () => {
    const answers = await replicaConnectors(deps);
    const leases = await leaseHolders(deps);
    return { replicas: answers.map((a) => a.replica).sort(), connectors: mergeByConnector(answers, leases) };
  });

  app.post<{ Params: { channel: string; account: string } }>('/v1/connectors/:channel/:account/restart', guarded, async (req, reply) => {
    const { channel, account } = req.params;
    if (!Token.safeParse(channel).success) return fail(reply, 'invalid_request', 'channel: Latin letters, digits, "_" and "-" only', 'channel');
    if (!Token.safeParse(account).success) return fail(reply, 'invalid_request', 'account: Latin letters, digits, "_" and "-" only', 'account');
    const who = deps.auth.identified(req);
    deps.log.warn({ channel, account, by: who.ok ? who.name : undefined }, 'connector restart requested from the API');
    // Ask who hosts it first: a connector nobody runs is a 404 now, not a timeout later.
    const hosts = (await replicaConnectors(deps)).filter((a) => a.connectors.some((c) => c.channel === channel && c.account === account));
    if (hosts.length === 0) return fail(reply, 'not_found', `no running replica hosts connector ${channel}/${account}`);
    // Every replica hosting it restarts it (a connector without a lease runs on each of them).
    const results: RestartAnswer[] = [];
    const replies = await deps.bus.nc.requestMany(Subjects.consoleRestart(channel, account), '', { strategy: 'count', maxMessages: hosts.length, maxWait: RESTART_TIMEOUT_MS });
    for await (const m of replies) results.push(m.json<RestartAnswer>());
    if (results.length === 0) return fail(reply, 'unavailable', `no replica hosting ${channel}/${account} answered within ${RESTART_TIMEOUT_MS / 1000} s`);
    return { results };
  });

  app.get('/v1/dead-letters', guarded, async (req, reply) => {
    const q = LetterQuery.safeParse(req.query);
    if (!q.success) return failQuery(reply, q.error);
    const { letters, scanned } = await desk.list(q.data);
    const who = deps.auth.identified(req);
    const readOnly = who.ok && who.readOnly;
    return { letters: letters.map(({ letter: _letter, ...rest }) => (readOnly ? { ...rest, reason: elideQuoted(rest.reason) } : rest)), scanned };
  });

  app.get<{ Params: { seq: string } }>('/v1/dead-letters/:seq', guarded, async (req, reply) => {
    const seq = Seq.safeParse(req.params.seq);
    if (!seq.success) return fail(reply, 'invalid_request', 'seq must be a positive integer', 'seq');
    const letter = await desk.get(seq.data);
    if (!letter) return fail(reply, 'not_found', `no dead letter at sequence ${seq.data}`);
    // A refused post is parked whole, personal data and all: read-only tokens (dashboards) see why, not what.
    const who = deps.auth.identified(req);
    return who.ok && who.readOnly ? withholdPayload(letter) : letter;
  });

  // Admin only, as erasure: a letter may be the only copy of a person's data (every post refused).
  app.delete<{ Params: { seq: string } }>('/v1/dead-letters/:seq', async (req, reply) => {
    const who = deps.auth.authorizeAdminRequest(req);
    if ('error' in who) return failAuth(reply, who.error);
    const seq = Seq.safeParse(req.params.seq);
    if (!seq.success) return fail(reply, 'invalid_request', 'seq must be a positive integer', 'seq');
    if (!(await desk.erase(seq.data))) return fail(reply, 'not_found', `no dead letter at sequence ${seq.data}`, 'seq');
    deps.log.info({ seq: seq.data, by: who.name }, 'dead letter erased from the API');
    // Audited as every erasure is: a letter may be the only copy of a person's data.
    await announceErasure(deps.bus, { id: randomUUID(), ticketCount: 0, erased: { ...emptyCounts(), deadLetters: 1 } }, { reason: 'api', requestedBy: who.name });
    return { seq: seq.data, erased: true };
  });

  app.post<{ Params: { seq: string } }>('/v1/dead-letters/:seq/replay', guarded, async (req, reply) => {
    const seq = Seq.safeParse(req.params.seq);
    if (!seq.success) return fail(reply, 'invalid_request', 'seq must be a positive integer', 'seq');
    const result = await desk.replay(seq.data);
    if (!result) return fail(reply, 'not_found', `no dead letter at sequence ${seq.data}`);
    logReplay(deps, req, [result]);
    return { results: [result] };
  });

  // The filter comes as query parameters, like the listing it replays (no body to parse).
  app.post('/v1/dead-letters/replay', guarded, async (req, reply) => {
    const q = ReplayBody.safeParse(req.query);
    if (!q.success) return failQuery(reply, q.error);
    if (!q.data.source && !q.data.reason && !q.data.ticket) return fail(reply, 'invalid_request', 'give a source, a reason or a ticket: replaying every letter at once is not offered', 'source');
    const results = await desk.replayMatching(q.data);
    logReplay(deps, req, results);
    return { results };
  });

  let openStreams = 0;
  app.get('/v1/events/tickets', guarded, async (req, reply) => {
    if (openStreams >= SSE_MAX_STREAMS) {
      reply.header('retry-after', '30');
      return fail(reply, 'unavailable', `${SSE_MAX_STREAMS} ticket event streams are open on this replica already; retry later or close one`);
    }
    openStreams++;
    let messages: Awaited<ReturnType<Consumer['consume']>>;
    try {
      const consumer = await deps.bus.js.consumers.get(Streams.events, { filter_subjects: 'omni.events.ticket.>', deliver_policy: DeliverPolicy.New });
      messages = await consumer.consume({ max_messages: SSE_AHEAD });
    } catch (err) {
      openStreams--;
      throw err;
    }
    reply.hijack();
    const res = reply.raw;
    // Gone while the consumer was being made: its 'close' came before anyone listened for it.
    if (res.destroyed || req.raw.socket.destroyed) {
      openStreams--;
      messages.stop();
      return;
    }
    res.writeHead(200, { 'content-type': 'text/event-stream; charset=utf-8', 'cache-control': 'no-store', 'x-accel-buffering': 'no' });
    res.write(': omnigate ticket events\n\n');
    const heartbeat = setInterval(() => res.write(': keep-alive\n\n'), SSE_HEARTBEAT_MS);
    const end = () => {
      clearInterval(heartbeat);
      messages.stop();
    };
    req.raw.on('close', end);
    try {
      for await (const m of messages) {
        if (res.write(`id: ${m.seq}\nevent: ticket\ndata: ${Buffer.from(m.data).toString('utf8')}\n\n`)) continue;
        // The client is not reading (a suspended tab with its connection open): stop taking events
        // until it does, instead of buffering every one in memory; give up on it after a while
        // (the console reconnects and says the tail was lost meanwhile).
        if (!(await drained(res, SSE_STALL_MS))) {
          deps.log.info({ stalledMs: SSE_STALL_MS }, 'closing a ticket event stream whose client stopped reading');
          break;
        }
      }
    } catch (err) {
      deps.log.debug({ err: errorMessage(err) }, 'ticket event tail ended');
    } finally {
      openStreams--;
      end();
      res.end();
    }
  });
}

/** What every replica answering within a moment says about the connectors it hosts. */
async function replicaConnectors(deps: ConsoleDeps): Promise<ReplicaConnectors[]> {
  // Silence while NATS is away is not "no replica runs it" (a false 404 and an empty channel list).
  if (!deps.bus.connected) throw new NatsUnavailableError('NATS is not connected: replicas cannot be asked');
  const answers: ReplicaConnectors[] = [];
  const replies = await deps.bus.nc.requestMany(Subjects.consoleConnectors, '', { strategy: 'timer', maxWait: deps.replicaWaitMs ?? 750 });
  for await (const m of replies) {
    try {
      answers.push(m.json<ReplicaConnectors>());
    } catch {
      /* an answer that is not ours: skip */
    }
  }
  return answers;
}

function logReplay(deps: ConsoleDeps, req: FastifyRequest, results: Array<{ seq: number; outcome: string }>): void {
  const who = deps.auth.identified(req);
  deps.log.info({ by: who.ok ? who.name : undefined, results: results.map((r) => `${r.seq}:${r.outcome}`) }, 'dead letters replayed from the API');
}

interface LeaseHolder {
  key: string;
  holder: string;
  /** When the lease runs out unless its holder renews it. */
  until: string;
}

async function leaseHolders(deps: ConsoleDeps): Promise<LeaseHolder[]> {
  const kv = deps.bus.kv.leases;
  const out: LeaseHolder[] = [];
  for await (const key of await kv.keys()) {
    const e = await kv.get(key);
    if (e && e.operation === 'PUT') out.push({ key, holder: e.string(), until: new Date(e.created.getTime() + deps.leaseTtlMs).toISOString() });
  }
  return out;
}

/** One row per connector; each replica that hosts it says what it sees, leases say who holds it. */
function mergeByConnector(answers: ReplicaConnectors[], leases: LeaseHolder[]) {
  const rows = new Map<string, { channel: string; account: string; type: string; required: boolean; replicas: unknown[]; leases: LeaseHolder[] }>();
  for (const a of answers) {
    for (const c of a.connectors) {
      const id = `${c.channel}/${c.account}`;
      let row = rows.get(id);
      if (!row) {
        const prefix = `${c.channel}.${c.account}.`;
        row = { channel: c.channel, account: c.account, type: c.type, required: c.required, replicas: [], leases: leases.filter((l) => l.key.startsWith(prefix)) };
        rows.set(id, row);
      }
      const { channel: _c, account: _a, type: _t, required: _r, ...seen } = c;
      row.replicas.push({ replica: a.replica, ...seen });
    }
  }
  return [...rows.values()].sort((x, y) => `${x.channel}/${x.account}`.localeCompare(`${y.channel}/${y.account}`));
}
