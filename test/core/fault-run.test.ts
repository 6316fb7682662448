/**
 * Issue 11's combined fault run, through the real CLI (`node dist/cli.js start`) on an external
 * nats-server: messages posted through the HTTP (webhook) channel by clients that retry with the
 * same messageId until they get 202, one reply per ticket posted by a "helpdesk" that reacts to
 * the ticket.created webhook (retrying with the same Idempotency-Key), and during the run three
 * `kill -9`s of the gateway (restarted at once) and one `kill -9` of the nats-server (restarted
 * on the same port and store). Then it counts:
 *
 * - every accepted message exactly once in a ticket log;
 * - one ticket per conversation, and no ticket number used twice;
 * - every reply reaching the customer's callback, each idempotency key once after dedup (the
 *   webhook channel is resendSafe: a resend after a crash carries the same key; repeats counted);
 * - helpdesk webhooks in order per ticket (by stream sequence; repeats with the same delivery id
 *   after a takeover are allowed and counted, inversions are not).
 *
 * `npm test` runs 1,200 messages over 120 conversations to stay bounded on a loaded 2-core machine;
 * OMNIGATE_FAULT_MESSAGES=5000 runs the issue's full count (what the soak uses).
 */
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { createServer as createHttpServer, type Server } from 'node:http';
import { createServer } from 'node:net';
import { jetstream, jetstreamManager } from '@nats-io/jetstream';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { LogEntry } from '../../src/core/schema.js';
import { startNats, type TestNats, PATIENT } from '../helpers/nats-server.js';
import { spawnGateway, writeConfig, type GatewayProcess } from '../helpers/process.js';
import { routerBacklog } from '../helpers/events.js';

const root = new URL('../..', import.meta.url).pathname;
const MESSAGES = Number(process.env.OMNIGATE_FAULT_MESSAGES ?? 1200);
const CONVERSATIONS = Math.max(10, Math.round(MESSAGES / 10));
const CLIENTS = 6;
const FORM_SECRET = 'fault-run-form-secret-0123456789';
const API_TOKEN = 'fault-run-api-token-0123456789abcdef';

let nats: TestNats;
const servers: Server[] = [];
const gateways: GatewayProcess[] = [];

interface Hook { type: string; ticketId: string; number: number; sequence: number; delivery: string; conversation?: string; at: number }
const hooks: Hook[] = [];
/** Idempotency keys seen at the customer's callback, with how often each came. */
const callbacks = new Map<string, number>();

function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const s = createServer().listen(0, '127.0.0.1', () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => resolve(port));
    });
  });
}

async function until<T>(fn: () => T | Promise<T>, timeoutMs: number, what: string): Promise<NonNullable<T>> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (v) return v as NonNullable<T>;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function listen(handler: (body: string, headers: Record<string, string | string[] | undefined>) => void): Promise<string> {
  const s = createHttpServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      handler(Buffer.concat(chunks).toString('utf8'), req.headers);
      res.writeHead(200, { 'content-type': 'application/json' }).end('{}');
    });
  });
  servers.push(s);
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  return `http://127.0.0.1:${(s.address() as { port: number }).port}`;
}

beforeAll(() => {
  if (!existsSync(`${root}dist/cli.js`)) execFileSync('npx', ['tsc', '-p', 'tsconfig.build.json'], { cwd: root, stdio: 'inherit' });
});
afterAll(async () => {
  await Promise.all(gateways.map((g) => g.kill('SIGKILL')));
  await nats?.stop();
  for (const s of servers) s.close();
});

describe('one fault run: 3 gateway kill -9s and 1 nats-server kill -9 under load', () => {
  it(`${MESSAGES} messages over ${CONVERSATIONS} conversations: each once, one ticket each, no number twice, replies once, webhooks in order`, async () => {
    nats = await startNats();
    const httpPort = await freePort();
    const hookUrl = await listen((body, headers) => {
      const e = JSON.parse(body) as { type: string; ticketId: string; ticketNumber: number; conversation?: { id: string } };
      hooks.push({ type: e.type, ticketId: e.ticketId, number: e.ticketNumber, sequence: Number(headers['x-omnigate-sequence']), delivery: String(headers['x-omnigate-delivery']), conversation: e.conversation?.id, at: Date.now() });
      if (e.type === 'ticket.created') reply(e.ticketId);
    });
    const callbackUrl = await listen((_body, headers) => {
      const key = String(headers['idempotency-key']);
      callbacks.set(key, (callbacks.get(key) ?? 0) + 1);
    });
    const config = writeConfig({
      nats: { url: nats.url, leaseTtl: '3s' },
      http: { host: '127.0.0.1', port: httpPort },
      log: { level: 'info' },
      shutdownTimeout: '5s',
      api: { tokens: [{ name: 'helpdesk', token: API_TOKEN }] },
      connectors: [{ type: 'webhook', account: 'form', secret: '${FORM_SECRET}', callbackUrl: `${callbackUrl}/reply` }],
      webhooks: [{ name: 'helpdesk', url: `${hookUrl}/hook`, secret: 'fault-run-hook-secret-0123456789', backoffBase: '100ms', backoffMax: '1s', redeliverAfter: '20s' }],
    });
    const gateway = () => {
      const g = spawnGateway(config, { entry: 'dist', env: { FORM_SECRET } });
      gateways.push(g);
      return g;
    };
    let current = gateway();
    await current.started;
    const base = `http://127.0.0.1:${httpPort}`;

    // The helpdesk answers each new ticket once; a failed call is retried with the same key.
    const replies = new Map<string, Promise<void>>();
    function reply(ticketId: string): void {
      if (replies.has(ticketId)) return;
      replies.set(ticketId, (async () => {
        for (;;) {
          try {
            const r = await fetch(`${base}/v1/tickets/${ticketId}/replies`, {
              method: 'POST',
              headers: { authorization: `Bearer ${API_TOKEN}`, 'content-type': 'application/json', 'idempotency-key': `reply-${ticketId}` },
              body: JSON.stringify({ text: `Ответ на ${ticketId}`, author: { id: 'agent-1' } }),
              signal: AbortSignal.timeout(10_000),
            });
            await r.body?.cancel();
            if (r.status === 202 || r.status === 200) return;
          } catch {
            /* gateway down: retry */
          }
          await sleep(200);
        }
      })());
    }

    // Clients: each message posted until 202, with the same messageId (the gateway dedupes).
    let next = 0;
    let accepted = 0;
    let retries = 0;
    const client = async () => {
      for (let i = next++; i < MESSAGES; i = next++) {
        const conversation = `conv-${i % CONVERSATIONS}`;
        const body = JSON.stringify({ messageId: `m-${i}`, conversationId: conversation, sender: { id: `cust-${i % CONVERSATIONS}`, name: 'Клиент' }, text: `Сообщение ${i}` });
        for (;;) {
          try {
            const r = await fetch(`${base}/connectors/webhook/form/messages`, { method: 'POST', headers: { authorization: `Bearer ${FORM_SECRET}` }, body, signal: AbortSignal.timeout(15_000) });
            await r.body?.cancel();
            if (r.status === 202) break;
          } catch {
            /* refused or cut off: retry */
          }
          retries++;
          await sleep(100);
        }
        accepted++;
      }
    };
    const load = Promise.all(Array.from({ length: CLIENTS }, client));

    // Faults, by progress: gateway kill -9 at 20 %, 45 % and 80 %; nats-server kill -9 at 60 %.
    const faults: string[] = [];
    for (const [share, what] of [[0.2, 'gateway'], [0.45, 'gateway'], [0.6, 'nats'], [0.8, 'gateway']] as const) {
      await until(() => accepted >= MESSAGES * share, 300_000, `${share * 100} % accepted`);
      if (what === 'gateway') {
        await current.kill('SIGKILL');
        current = gateway();
        await current.started;
      } else {
        await nats.kill('SIGKILL');
        await sleep(1000);
        await nats.restart();
      }
      faults.push(`${what} at ${accepted} (t=${Date.now()})`);
    }
    await load;

    // Wait for the router, replies and webhooks to settle.
    const nc: NatsConnection = await connect({ servers: nats.url });
    try {
      const jsm = await jetstreamManager(nc, PATIENT);
      await until(async () => {
        // Intake publishes on the conversations' partitions: every router consumer must be done.
        return (await routerBacklog(jsm).catch(() => 1)) === 0;
      }, 180_000, 'the router to finish');
      await until(() => replies.size >= CONVERSATIONS, 120_000, `${CONVERSATIONS} replies requested (one per ticket)`);
      await Promise.all(replies.values());
      await until(() => callbacks.size >= CONVERSATIONS, 120_000, 'every reply at the callback');
      await until(async () => {
        const info = await jsm.consumers.info('OMNI_EVENTS', 'webhook-helpdesk').catch(() => null);
        return info && info.num_pending === 0 && info.num_ack_pending === 0;
      }, 120_000, 'the helpdesk webhook to catch up');

      // Every ticket log, read back from the stream.
      const inLog = new Map<string, number>();
      const ticketsOf = new Map<string, Set<string>>();
      const c = await jetstream(nc, PATIENT).consumers.get('OMNI_LOG');
      let pending = (await c.info(true)).num_pending;
      while (pending > 0) {
        for await (const m of await c.fetch({ max_messages: Math.min(pending, 1000), expires: 5000 })) {
          pending--;
          const entry = m.json<LogEntry>();
          if (entry.kind !== 'inbound') continue;
          const ticketId = m.subject.split('.')[2]!;
          inLog.set(entry.event.id, (inLog.get(entry.event.id) ?? 0) + 1);
          const conv = entry.event.conversation.id;
          ticketsOf.set(conv, (ticketsOf.get(conv) ?? new Set()).add(ticketId));
        }
      }
      const expected = Array.from({ length: MESSAGES }, (_, i) => `webhook:form:m-${i}`);
      const missing = expected.filter((id) => !inLog.has(id));
      const twice = [...inLog].filter(([, n]) => n > 1);
      const merged = [...ticketsOf].filter(([, t]) => t.size !== 1);

      const numbers = new Map<number, Set<string>>();
      for (const h of hooks) numbers.set(h.number, (numbers.get(h.number) ?? new Set()).add(h.ticketId));
      const numberTwice = [...numbers].filter(([, t]) => t.size > 1);

      // Webhooks: in order per ticket by stream sequence; a repeat (same delivery id) is allowed.
      const last = new Map<string, number>();
      const seen = new Set<string>();
      let inversions = 0;
      let repeats = 0;
      for (const h of hooks) {
        if (seen.has(h.delivery)) {
          repeats++;
          continue;
        }
        seen.add(h.delivery);
        if (h.sequence < (last.get(h.ticketId) ?? 0)) {
          inversions++;
          // What a failure needs to be understood: that ticket's deliveries in arrival order.
          console.log(`inversion on ${h.ticketId}: ${JSON.stringify(hooks.filter((o) => o.ticketId === h.ticketId).map((o) => [o.sequence, o.type, o.at]))}`);
        } else last.set(h.ticketId, h.sequence);
      }
      if (inversions) {
        // The dispatchers' side of it: each gateway's webhook and lease log lines.
        for (const [i, g] of gateways.entries()) {
          const lines = g.output().split('\n').filter((l) => /webhook|lease|NATS|nats/.test(l));
          console.log(`gateway ${i} (${lines.length} lines):\n${lines.slice(-80).join('\n')}`);
        }
      }
      const replyKeys = [...callbacks.keys()];
      const replyRepeats = [...callbacks.values()].reduce((a, n) => a + n - 1, 0);
      console.log(
        `fault run: ${MESSAGES} messages, ${CONVERSATIONS} conversations, faults ${faults.join(', ')}; client retries ${retries}; ` +
          `${inLog.size} logged, ${missing.length} missing, ${twice.length} twice; ${ticketsOf.size} conversations, ${merged.length} not in exactly one ticket; ` +
          `${numbers.size} ticket numbers, ${numberTwice.length} used twice; ${replyKeys.length} replies at the callback (${replyRepeats} resends deduplicated by key); ` +
          `${hooks.length} webhook deliveries, ${repeats} repeats, ${inversions} inversions`,
      );
      expect(missing).toEqual([]);
      expect(twice).toEqual([]);
      expect(ticketsOf.size).toBe(CONVERSATIONS);
      expect(merged).toEqual([]);
      expect(numberTwice).toEqual([]);
      expect(numbers.size).toBe(CONVERSATIONS);
      expect(replyKeys).toHaveLength(CONVERSATIONS);
      expect(inversions).toBe(0);
    } finally {
      await nc.close();
    }
    expect(await current.kill('SIGTERM')).toBe(0);
  }, 600_000);
});
