/**
 * Three gateway processes (dist/cli.js, as in the container) on a three-node cluster with
 * `nats.replicas: 3`, the HTTP channel as the way in, and one receiver on 127.0.0.1 playing
 * both ends a helpdesk sees: the channel's reply callback (`/cb`) and a ticket-event webhook
 * (`/hook`). A load driver POSTs messages to the gateways round-robin, retrying an unanswered or
 * 503 POST on the next gateway with the same message id (what any sender does), and posts one
 * agent reply per ticket as soon as the ticket is announced. `verify()` counts what the fault
 * tests promise: every inbound message exactly once in a ticket log, one ticket per
 * conversation, no ticket number twice, every reply sent once, webhooks in order per ticket.
 */
import { writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { jetstream } from '@nats-io/jetstream';
import { Kvm } from '@nats-io/kv';
import { startCluster, type TestCluster } from '../helpers/nats-cluster.js';
import { spawnGateway, writeConfig, type GatewayProcess } from '../helpers/process.js';
import type { Ticket } from '../../src/core/schema.js';
import { readInboundLog } from '../helpers/events.js';

const SECRET = 'cluster-fleet-secret-0123456789';
const TOKEN = 'cluster-fleet-api-token-0123456789';
const ACCOUNT = 'load';

export interface FleetGateway {
  process: GatewayProcess;
  port: number;
}

export interface HookPost {
  seq: number;
  ticketId: string;
  token: number;
  type: string;
  eventId?: string;
  at: number;
}

/** One POST to the reply callback. */
export interface ReplyPost {
  key: string;
  at: number;
  /** x-omnigate-attempt: the runner's attempt count for this outbound id. */
  attempt: number;
  /** x-omnigate-replica: the gateway instance that made the call (`<pid>-<random>`). */
  replica: string;
}

export interface FleetReport {
  sent: number;
  logged: number;
  /** Inbound entries in the ticket logs per channel (all channels, not only the driver's). */
  loggedByChannel: Record<string, number>;
  tickets: number;
  replies: number;
  replyRepeats: number;
  hookPosts: number;
  hookRepeats: number;
  /** Message accepted (202) → its event at the webhook receiver, ms. */
  p50: number;
  p99: number;
  max: number;
  problems: string[];
  /** Webhook first copies out of order per ticket (also in `problems`). */
  inversions: string[];
}

export class Fleet {
  cluster!: TestCluster;
  readonly gateways: Array<FleetGateway | undefined> = [];
  /** Gateways stopped so far (their logs explain a failed run). */
  readonly retired: Array<{ index: number; process: GatewayProcess }> = [];
  readonly hook: HookPost[] = [];
  /** Reply callbacks: idempotency key → times posted. */
  readonly replyPosts = new Map<string, number>();
  readonly replyTickets = new Map<string, string>();
  readonly replyLog: ReplyPost[] = [];
  /** pid → when the fleet killed that gateway with SIGKILL (a repeat of its sends is allowed after). */
  private readonly killedAt = new Map<number, number>();
  private receiver!: Server;
  private receiverPort = 0;
  private nc!: NatsConnection;
  private readonly sentAt = new Map<string, number>();
  private readonly firstHookAt = new Map<string, number>();
  private readonly replyRequested = new Set<string>();
  private readonly pending = new Set<Promise<unknown>>();
  private next = 0;

  constructor(private readonly o: { leaseTtl?: string; extraConfig?: Record<string, unknown>; connectors?: () => Array<Record<string, unknown>> } = {}) {}

  async start(count = 3): Promise<void> {
    this.cluster = await startCluster(3);
    this.nc = await connect({ servers: this.cluster.nodes.map((n) => n.url), maxReconnectAttempts: -1 });
    this.receiver = createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        const body = JSON.parse(Buffer.concat(chunks).toString('utf8')) as Record<string, any>;
        if (req.url?.startsWith('/cb')) {
          const key = String(req.headers['idempotency-key']);
          this.replyPosts.set(key, (this.replyPosts.get(key) ?? 0) + 1);
          this.replyTickets.set(key, String(body.ticketId));
          this.replyLog.push({ key, at: Date.now(), attempt: Number(req.headers['x-omnigate-attempt']), replica: String(req.headers['x-omnigate-replica']) });
          // FLEET_CALLBACK_DELAY_MS holds each answer: a kill -9 then lands mid-send (the repeat must pass the check).
          const answer = () => res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ id: `cb-${key}` }));
          return void setTimeout(answer, Number(process.env.FLEET_CALLBACK_DELAY_MS ?? 0));
        }
        const post: HookPost = {
          seq: Number(req.headers['x-omnigate-sequence']),
          ticketId: String(body.ticketId),
          token: Number(req.headers['x-omnigate-lease-token']),
          type: String(body.type),
          eventId: body.entry?.event?.id,
          at: Date.now(),
        };
        this.hook.push(post);
        if (post.eventId && !this.firstHookAt.has(post.eventId)) this.firstHookAt.set(post.eventId, post.at);
        if (post.type === 'ticket.created' && body.channel === 'webhook') this.requestReply(post.ticketId);
        res.writeHead(200).end('ok');
      });
    });
    await new Promise<void>((r) => this.receiver.listen(0, '127.0.0.1', () => r()));
    this.receiverPort = (this.receiver.address() as { port: number }).port;
    // One gateway provisions first (three creating the same R3 streams at once only cost time).
    await this.startGateway(0);
    await Promise.all(Array.from({ length: count - 1 }, (_, i) => this.startGateway(i + 1)));
  }

  config(i: number): Record<string, unknown> {
    const urls = this.cluster.nodes.map((n) => n.url);
    return {
      // Each replica lists its own node first: clients spread over the cluster as in production.
      nats: { url: [...urls.slice(i % 3), ...urls.slice(0, i % 3)].join(','), replicas: 3, leaseTtl: this.o.leaseTtl ?? '3s' },
      http: { host: '127.0.0.1', port: 0 },
      log: { level: 'info' },
      api: { tokens: [{ name: 'helpdesk', token: TOKEN }] },
      router: { ackWait: '5s', concurrency: 64 },
      connectors: [{ type: 'webhook', account: ACCOUNT, secret: SECRET, callbackUrl: `http://127.0.0.1:${this.receiverPort}/cb` }, ...(this.o.connectors?.() ?? [])],
      webhooks: [{ name: 'helpdesk', url: `http://127.0.0.1:${this.receiverPort}/hook`, secret: SECRET, events: ['ticket.created', 'ticket.message'], redeliverAfter: '5s', backoffBase: '100ms', backoffMax: '1s' }],
      ...this.o.extraConfig,
    };
  }

  async startGateway(i: number): Promise<FleetGateway> {
    const process = spawnGateway(writeConfig(this.config(i)), { entry: 'dist' });
    await process.started;
    const port = Number(/"http":"[\d.]+:(\d+)"/.exec(process.output())?.[1]);
    const g = { process, port };
    this.gateways[i] = g;
    return g;
  }

  async stopGateway(i: number, signal: NodeJS.Signals): Promise<void> {
    const g = this.gateways[i];
    this.gateways[i] = undefined;
    if (g) this.retired.push({ index: i, process: g.process });
    if (g && signal === 'SIGKILL' && g.process.child.pid) this.killedAt.set(g.process.child.pid, Date.now());
    await g?.process.kill(signal);
  }

  private live(): FleetGateway[] {
    return this.gateways.filter((g): g is FleetGateway => !!g && g.process.child.exitCode === null);
  }

  /** POST until some gateway answers 2xx; the same id each time, so a repeat is deduplicated. */
  private async postUntilAccepted(path: string, body: unknown, headers: Record<string, string>): Promise<void> {
    const deadline = Date.now() + 120_000;
    for (let attempt = 0; ; attempt++) {
      const live = this.live();
      const g = live[(this.next++ + attempt) % Math.max(live.length, 1)];
      if (g) {
        try {
          const res = await fetch(`http://127.0.0.1:${g.port}${path}`, {
            method: 'POST',
            headers: { 'content-type': 'application/json', ...headers },
            body: JSON.stringify(body),
            signal: AbortSignal.timeout(15_000),
          });
          const text = await res.text();
          if (res.ok) return;
          // 409 in_progress: the same Idempotency-Key is still being handled (docs/api.md): retry.
          if (res.status < 500 && !(res.status === 409 && text.includes('in_progress'))) throw new Error(`${path} refused with ${res.status}`);
        } catch (err) {
          if (err instanceof Error && err.message.includes('refused with')) throw err;
        }
      }
      if (Date.now() > deadline) throw new Error(`${path}: no gateway accepted within 120 s`);
      await new Promise((r) => setTimeout(r, 200));
    }
  }

  private track(p: Promise<unknown>): void {
    this.pending.add(p);
    void p.finally(() => this.pending.delete(p));
  }

  send(conversation: string, messageId: string): void {
    const id = `webhook:${ACCOUNT}:${messageId}`;
    this.track(
      this.postUntilAccepted(`/connectors/webhook/${ACCOUNT}/messages`, { messageId, conversationId: conversation, sender: { id: conversation, name: 'Клиент' }, text: `сообщение ${messageId}` }, { authorization: `Bearer ${SECRET}` }).then(() => {
        this.sentAt.set(id, Date.now());
      }),
    );
  }

  private requestReply(ticketId: string): void {
    if (this.replyRequested.has(ticketId)) return;
    this.replyRequested.add(ticketId);
    this.track(this.postUntilAccepted(`/v1/tickets/${ticketId}/replies`, { text: `ответ на ${ticketId}`, author: { id: 'agent-1', name: 'Мария' } }, { authorization: `Bearer ${TOKEN}`, 'idempotency-key': `reply-${ticketId}` }));
  }

  /**
   * Sends `total` messages over `conversations` at about `perSecond`, while `during` runs (the
   * fault). Returns once every send was accepted and `during` finished.
   */
  async load(o: { total: number; conversations: number; perSecond: number; during?: () => Promise<void>; from?: number }): Promise<string[]> {
    const ids: string[] = [];
    const fault = o.during?.();
    const t0 = Date.now();
    for (let i = 0; i < o.total; i++) {
      const n = (o.from ?? 0) + i;
      const messageId = `m${n}`;
      ids.push(`webhook:${ACCOUNT}:${messageId}`);
      this.send(`conv-${n % o.conversations}`, messageId);
      const due = t0 + ((i + 1) * 1000) / o.perSecond;
      if (due > Date.now()) await new Promise((r) => setTimeout(r, due - Date.now()));
    }
    await fault;
    while (this.pending.size) await Promise.all([...this.pending]);
    return ids;
  }

  /** Waits for every event and reply at the receiver, then counts. */
  async verify(ids: string[], timeoutMs = 120_000): Promise<FleetReport> {
    const deadline = Date.now() + timeoutMs;
    const problems: string[] = [];
    for (;;) {
      while (this.pending.size) await Promise.all([...this.pending]);
      const missing = ids.filter((id) => !this.firstHookAt.has(id)).length;
      const repliesMissing = [...this.replyRequested].filter((t) => ![...this.replyTickets.values()].includes(t)).length;
      if (missing === 0 && repliesMissing === 0) break;
      if (Date.now() > deadline) {
        problems.push(`after ${timeoutMs} ms: ${missing} messages not at the webhook, ${repliesMissing} replies not at the callback`);
        break;
      }
      await new Promise((r) => setTimeout(r, 500));
    }
    await new Promise((r) => setTimeout(r, 1500)); // late repeats would land now

    // The ticket logs.
    const js = jetstream(this.nc, { timeout: 20_000 });
    // Email threads by Message-ID, not by conversation: keyed by channel too.
    const entries = (await readInboundLog(this.nc)).map((e) => ({ ...e, conversation: `${e.channel}/${e.conversation}` }));
    const loggedByChannel: Record<string, number> = {};
    for (const e of entries) loggedByChannel[e.conversation.split('/')[0]!] = (loggedByChannel[e.conversation.split('/')[0]!] ?? 0) + 1;
    const perEvent = new Map<string, number>();
    for (const e of entries) perEvent.set(e.eventId, (perEvent.get(e.eventId) ?? 0) + 1);
    const notLogged = ids.filter((id) => !perEvent.has(id));
    if (notLogged.length) problems.push(`${notLogged.length} messages not in any ticket log, e.g. ${notLogged.slice(0, 3).join(', ')}`);
    const twice = [...perEvent].filter(([, n]) => n > 1);
    if (twice.length) problems.push(`${twice.length} messages logged more than once, e.g. ${twice.slice(0, 3).map(([id, n]) => `${id}×${n}`).join(', ')}`);

    const ticketsOf = new Map<string, Set<string>>();
    const conversationsOf = new Map<string, Set<string>>();
    for (const e of entries) {
      (ticketsOf.get(e.conversation) ?? ticketsOf.set(e.conversation, new Set()).get(e.conversation)!).add(e.ticketId);
      (conversationsOf.get(e.ticketId) ?? conversationsOf.set(e.ticketId, new Set()).get(e.ticketId)!).add(e.conversation);
    }
    // Email threads by Message-ID headers, not by conversation (the mailbox): each new mail here is its own ticket.
    for (const [c, t] of ticketsOf) if (t.size !== 1 && !c.startsWith('email/')) problems.push(`conversation ${c} in ${t.size} tickets: ${[...t].join(', ')}`);
    for (const [t, c] of conversationsOf) if (c.size !== 1) problems.push(`ticket ${t} holds ${c.size} conversations`);

    const kv = await new Kvm(js).open('omni_tickets');
    const numbers = new Map<number, string>();
    for (const ticketId of conversationsOf.keys()) {
      const t = (await kv.get(ticketId))?.json<Ticket>();
      if (!t) {
        problems.push(`ticket ${ticketId} logged but not stored`);
        continue;
      }
      if (numbers.has(t.number)) problems.push(`ticket number ${t.number} used by ${numbers.get(t.number)} and ${ticketId}`);
      numbers.set(t.number, ticketId);
    }

    // Replies: one per ticket, each posted once.
    const repliesPerTicket = new Map<string, number>();
    for (const t of this.replyTickets.values()) repliesPerTicket.set(t, (repliesPerTicket.get(t) ?? 0) + 1);
    for (const [t, n] of repliesPerTicket) if (n !== 1) problems.push(`ticket ${t} got ${n} different replies`);
    const replyRepeats = [...this.replyPosts.values()].reduce((a, n) => a + n - 1, 0);
    problems.push(...this.forbiddenReplyRepeats());

    // Webhooks: in order per ticket (first copies, as a receiver deduplicating on the delivery id
    // sees them); a repeat only from a newer lease holder re-sending what the old one had posted.
    const firstToken = new Map<number, number>();
    const lastSeq = new Map<string, number>();
    const inversions: string[] = [];
    let hookRepeats = 0;
    for (const p of this.hook) {
      const first = firstToken.get(p.seq);
      if (first !== undefined) {
        hookRepeats++;
        if (first >= p.token) problems.push(`webhook event ${p.seq} posted twice under lease token ${p.token}`);
        continue;
      }
      firstToken.set(p.seq, p.token);
      const last = lastSeq.get(p.ticketId) ?? 0;
      if (p.seq < last) inversions.push(`webhook inversion on ${p.ticketId}: ${p.seq} after ${last}`);
      lastSeq.set(p.ticketId, Math.max(last, p.seq));
    }

    problems.push(...inversions);

    // A helpdesk opens its own ticket on ticket.created: each ticket must announce it once.
    const created = new Map<string, Set<number>>();
    for (const p of this.hook) if (p.type === 'ticket.created') (created.get(p.ticketId) ?? created.set(p.ticketId, new Set()).get(p.ticketId)!).add(p.seq);
    for (const t of conversationsOf.keys()) {
      const n = created.get(t)?.size ?? 0;
      if (n !== 1) problems.push(`ticket ${t} announced ticket.created ${n} times (posts: ${this.hook.filter((p) => p.ticketId === t).map((p) => `${p.seq}:${p.type}:${p.eventId}`).join(' ')})`);
    }

    if (problems.length || process.env.OMNIGATE_TEST_STORY) this.tellStory(problems);
    const delays = ids.map((id) => (this.firstHookAt.get(id) ?? NaN) - (this.sentAt.get(id) ?? NaN)).filter((d) => Number.isFinite(d)).sort((a, b) => a - b);
    const q = (p: number) => delays[Math.min(delays.length - 1, Math.floor(p * delays.length))] ?? NaN;
    return {
      sent: ids.length,
      logged: ids.filter((id) => perEvent.has(id)).length,
      loggedByChannel,
      tickets: conversationsOf.size,
      replies: this.replyPosts.size,
      replyRepeats,
      hookPosts: this.hook.length,
      hookRepeats,
      p50: q(0.5),
      p99: q(0.99),
      max: delays.at(-1) ?? NaN,
      problems,
      inversions,
    };
  }

  /** Repeated replies the webhook channel does not allow (see `forbiddenRepeats`), each with its story. */
  private forbiddenReplyRepeats(): string[] {
    return forbiddenRepeats(this.replyLog, this.killedAt).map(({ key, why }) => `${why}\n${this.replyStory(key)}`);
  }

  /** Every gateway's log lines (stopped ones included) that name one outbound id. */
  replyStory(outboundId: string): string {
    const procs = [...this.retired.map((r) => ({ name: `gateway ${r.index} (stopped, pid ${r.process.child.pid})`, process: r.process })), ...this.gateways.flatMap((g, i) => (g ? [{ name: `gateway ${i} (pid ${g.process.child.pid})`, process: g.process }] : []))];
    return procs.map(({ name, process }) => `${name}:\n${process.output().split('\n').filter((l) => l.includes(outboundId) || /shutting|shutdown|abandon/.test(l)).join('\n')}`).join('\n');
  }

  /**
   * For a failed order check: each inverted ticket's posts (seq:token@ms since the first post)
   * and the webhook dispatchers' log lines of every gateway, stopped ones included.
   */
  orderStory(inversions: string[]): string {
    const t0 = this.hook[0]?.at ?? 0;
    const tickets = [...new Set(inversions.map((i) => /on (\S+):/.exec(i)?.[1]).filter(Boolean))];
    const posts = tickets.map((t) => `${t}: ${this.hook.filter((p) => p.ticketId === t).map((p) => `${p.seq}:${p.token}@${p.at - t0}`).join(' ')}`);
    const procs = this.processes();
    const logs = procs.map(({ name, process }) => `${name}:\n${process.output().split('\n').filter((l) => /webhook|lease|shutting|shutdown/.test(l)).join('\n')}`);
    return [`first post at ${t0}`, ...posts, ...logs].join('\n');
  }

  private processes(): Array<{ name: string; process: GatewayProcess }> {
    return [...this.retired.map((r) => ({ name: `gateway ${r.index} (stopped)`, process: r.process })), ...this.gateways.flatMap((g, i) => (g ? [{ name: `gateway ${i}`, process: g.process }] : []))];
  }

  /**
   * For whoever reads a failed run (CI shows only the output): every gateway's whole log into a
   * file, and on the console the lines that say who owned what and what went wrong.
   */
  private tellStory(problems: string[]): void {
    const procs = this.processes();
    const file = join(tmpdir(), `omnigate-fleet-${Date.now()}.log`);
    writeFileSync(file, procs.map(({ name, process }) => `===== ${name}\n${process.output()}`).join('\n'));
    const lines = procs.map(({ name, process }) => {
      const relevant = process.output().split('\n').filter((l) => /partition|owning|giving|lease|"level":(40|50|60|"warn"|"error"|"fatal")/.test(l));
      return `${name} (${relevant.length} lines, last 25):\n${relevant.slice(-25).map((l) => l.slice(0, 400)).join('\n')}`;
    });
    console.warn(`fleet: ${problems.length} problems; every gateway's log in ${file}\n${lines.join('\n')}`);
  }

  /** Error-level lines in the gateways' logs (a fault test expects warnings, not errors). The logger writes levels as words ("error"), not pino numbers: matching only 50|60 found none. */
  errors(): string[] {
    return this.gateways.flatMap((g) => (g?.process.output() ?? '').split('\n').filter((l) => /"level":(50|60|"error"|"fatal")/.test(l)));
  }

  async stop(): Promise<void> {
    await Promise.all(this.gateways.map(async (g) => g?.process.kill('SIGKILL')));
    await this.nc?.close();
    await this.cluster?.stop();
    await new Promise((r) => this.receiver?.close(r));
  }
}

/**
 * A reply POSTed again is allowed only as the webhook channel promises (README, webhook channel):
 * after the gateway that had it in flight died (here: was killed with SIGKILL before the repeat,
 * `killedAt` by pid), as a new attempt (a higher x-omnigate-attempt than every earlier post) with
 * the same Idempotency-Key. A repeat while an earlier sender lived (a SIGTERM stop, two replicas
 * sending at once) or under the same attempt is a bug: one line each.
 */
export function forbiddenRepeats(posts: ReplyPost[], killedAt: ReadonlyMap<number, number>): Array<{ key: string; why: string }> {
  const out: Array<{ key: string; why: string }> = [];
  const t0 = posts[0]?.at ?? 0;
  const byKey = new Map<string, ReplyPost[]>();
  for (const p of posts) (byKey.get(p.key) ?? byKey.set(p.key, []).get(p.key)!).push(p);
  for (const [key, list] of byKey) {
    for (let i = 1; i < list.length; i++) {
      const p = list[i]!;
      const earlier = list.slice(0, i);
      const newAttempt = earlier.every((e) => p.attempt > e.attempt);
      const alive = earlier.filter((e) => !((killedAt.get(Number(e.replica.split('-')[0])) ?? Infinity) <= p.at));
      if (newAttempt && alive.length === 0) continue;
      const what = (e: ReplyPost) => `${e.replica} (attempt ${e.attempt}, +${e.at - t0} ms)`;
      const reasons = [...(newAttempt ? [] : ['not a new attempt']), ...(alive.length ? [`${[...new Set(alive.map((e) => e.replica))].join(', ')} not killed`] : [])];
      out.push({ key, why: `reply ${key} posted again by ${what(p)} after ${earlier.map(what).join(', ')}: ${reasons.join('; ')}` });
    }
  }
  return out;
}
