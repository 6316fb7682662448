/**
 * A stand-in Zammad on 127.0.0.1 implementing exactly the REST endpoints and behaviours written
 * down in /work/shared/recipes/zammad-api.md (sections in brackets), no more:
 *
 * - token auth `Authorization: Token token=<t>`, 401 for an unknown token [§1];
 * - POST /api/v1/tickets with a first article; customer as login/email string (must exist), as
 *   `customer_id: "guess:<email>"` or as an object found by id, email, login or created [§2];
 *   422 `Need at least article: { body: "some text" }` without a body; unknown group → 422;
 * - GET/PUT /api/v1/tickets/{id} (`?expand=true` adds names), state by name [§2, §8];
 *   DELETE /api/v1/tickets/{id} with its articles, for a caller with role Admin only (403 else);
 * - POST /api/v1/ticket_articles, `origin_by_id` forces sender Customer and fills `from` [§3];
 *   GET /api/v1/ticket_articles/by_ticket/{id}; GET /api/v1/ticket_attachment/{t}/{a}/{id} [§3];
 * - GET /api/v1/users/me [§4]; GET /api/v1/tickets/search?query=field:"value" →
 *   {tickets, tickets_count, assets} (as with Elasticsearch, which matches custom fields) [§8];
 * - errors as {"error", "error_human"} with 401/403/404/422 [§8];
 * - Trigger → Webhook [§5]: after an article or a state change, every trigger whose condition
 *   holds sends the default payload {ticket, article} in a background job, signed
 *   `X-Hub-Signature: sha1=<hex HMAC-SHA1(token, raw body)>`, with X-Zammad-Trigger and
 *   X-Zammad-Delivery (the same on retries); non-2xx or a network error is retried up to 5
 *   attempts in all, waiting executions × 10 s (scaled by `retryScale` for tests).
 *
 * Agents act through `agentArticle` and `agentSetState`, as they would in the UI. `down()` makes
 * the whole server refuse connections (a Zammad outage) until `up()`.
 */
import { createHmac, randomUUID } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { Socket } from 'node:net';

export interface StandinUser { id: number; login: string; firstname: string; lastname: string; email: string; mobile: string; phone: string; roles: string[] }
export interface StandinAttachment { id: number; filename: string; size: string; preferences: Record<string, string>; data: Buffer }
export interface StandinArticle {
  id: number; ticket_id: number; type: string; sender: string; internal: boolean; content_type: string; body: string; subject: string | null;
  from: string; created_by_id: number; origin_by_id: number | null; attachments: StandinAttachment[]; created_at: string; updated_at: string;
}
export interface StandinTicket {
  id: number; number: string; title: string; group_id: number; state_id: number; priority_id: number; customer_id: number; owner_id: number;
  created_by_id: number; updated_by_id: number; article_ids: number[]; created_at: string; updated_at: string; [field: string]: unknown;
}
export interface WebhookDelivery { trigger: string; delivery: string; attempt: number; status: number | 'error'; body: any }

/** A trigger: its name and when it fires (the condition the admin set in the UI). */
export interface StandinTrigger { name: string; when: (e: { action: 'create' | 'update'; article: StandinArticle | null; stateChanged: boolean }) => boolean }

const STATES: Record<number, string> = { 1: 'new', 2: 'open', 3: 'pending reminder', 4: 'closed', 5: 'merged', 7: 'pending close' };
const ARTICLE_TYPES = new Set(['email', 'phone', 'web', 'note', 'sms', 'chat', 'fax', 'telegram personal-message']);

class HttpError extends Error {
  constructor(readonly status: number, message: string) {
    super(message);
  }
}

export class ZammadStandin {
  readonly users: StandinUser[] = [];
  readonly tickets = new Map<number, StandinTicket>();
  readonly articles = new Map<number, StandinArticle>();
  readonly groups = [{ id: 1, name: 'Users' }, { id: 2, name: 'Telegram' }];
  readonly deliveries: WebhookDelivery[] = [];
  /** Every API request: method, path, status. */
  readonly requests: Array<{ method: string; path: string; status: number }> = [];
  readonly tokens = new Map<string, number>();
  triggers: StandinTrigger[] = [];
  webhook?: { endpoint: string; signatureToken: string };
  /** Scales Zammad's retry wait (executions × 10 s). */
  retryScale = 0.02;
  /** Added to every API answer, as a real Zammad's own time (benchmarks). */
  latencyMs = 0;
  /** Time spent answering API calls (handler + latencyMs), in ms: the helpdesk's share of a sync. */
  serviceMs = 0;
  /** `POST ticket_articles` etc.: the next such call is carried out, then its connection cut before the answer (a timeout as the client sees it). */
  readonly cutAfter = new Set<string>();
  /** Called after a ticket was created and before the answer goes out (a test's crash hook). */
  onTicketCreated?: (t: StandinTicket) => void | Promise<void>;
  readonly customFields: string[];
  readonly integration: StandinUser;
  readonly agent: StandinUser;
  private nextId = { user: 10, ticket: 1, article: 1, attachment: 1, number: 31001 };
  private server?: Server;
  private readonly sockets = new Set<Socket>();
  private isDown = false;
  private jobs = new Set<Promise<void>>();
  port = 0;

  constructor(opts: { token: string; customFields?: string[] }) {
    this.customFields = opts.customFields ?? ['omnigate_ticket'];
    this.integration = this.addUser({ login: 'omnigate@support.example', firstname: 'omnigate', lastname: 'bridge', roles: ['Agent'] }, 3);
    this.agent = this.addUser({ login: 'emma@support.example', firstname: 'Emma', lastname: 'Agent', roles: ['Agent'] }, 5);
    this.tokens.set(opts.token, this.integration.id);
  }

  get url(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  async start(): Promise<void> {
    this.server = createServer((req, res) => void this.handle(req, res));
    this.server.on('connection', (s) => {
      if (this.isDown) return s.destroy();
      this.sockets.add(s);
      s.on('close', () => this.sockets.delete(s));
    });
    await new Promise<void>((r) => this.server!.listen(0, '127.0.0.1', r));
    this.port = (this.server.address() as { port: number }).port;
  }

  async stop(): Promise<void> {
    this.isDown = true;
    for (const s of this.sockets) s.destroy();
    await new Promise<void>((r) => this.server?.close(() => r()) ?? r());
  }

  /** Zammad unreachable: every connection is cut at once. */
  down(): void {
    this.isDown = true;
    for (const s of this.sockets) s.destroy();
  }

  up(): void {
    this.isDown = false;
  }

  /** Background jobs (webhook deliveries) still running. */
  async idle(): Promise<void> {
    while (this.jobs.size) await Promise.all([...this.jobs]);
  }

  stateName(t: StandinTicket): string {
    return STATES[t.state_id]!;
  }

  ticketArticles(ticketId: number): StandinArticle[] {
    return [...this.articles.values()].filter((a) => a.ticket_id === ticketId);
  }

  private addUser(u: Partial<StandinUser> & { login: string }, id = this.nextId.user++): StandinUser {
    const user: StandinUser = { id, firstname: '', lastname: '', email: '', mobile: '', phone: '', roles: ['Customer'], ...u };
    this.users.push(user);
    return user;
  }

  // ---- what an agent does in the UI --------------------------------------------------------

  agentArticle(ticketId: number, a: { body: string; internal?: boolean; contentType?: string; type?: string; attachments?: Array<{ filename: string; data: Buffer; mimeType: string }> }): StandinArticle {
    const article = this.addArticle(ticketId, this.agent.id, {
      body: a.body, internal: a.internal ?? false, content_type: a.contentType ?? 'text/html', type: a.type ?? 'note', sender: 'Agent',
      attachments: (a.attachments ?? []).map((f) => ({ filename: f.filename, data: f.data.toString('base64'), 'mime-type': f.mimeType })),
    });
    this.touch(this.tickets.get(ticketId)!, this.agent.id);
    this.fire('update', this.tickets.get(ticketId)!, article, false);
    return article;
  }

  agentSetState(ticketId: number, state: string): void {
    const t = this.tickets.get(ticketId)!;
    t.state_id = this.stateId(state);
    this.touch(t, this.agent.id);
    this.fire('update', t, null, true);
  }

  // ---- HTTP --------------------------------------------------------------------------------

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    if (this.isDown) return void req.socket.destroy();
    const began = performance.now();
    const chunks: Buffer[] = [];
    for await (const c of req) chunks.push(c as Buffer);
    const url = new URL(req.url ?? '/', 'http://x');
    const send = (status: number, body: unknown, headers: Record<string, string> = {}) => {
      this.requests.push({ method: req.method ?? '', path: url.pathname, status });
      this.serviceMs += performance.now() - began;
      const data = Buffer.isBuffer(body) ? body : Buffer.from(JSON.stringify(body));
      res.writeHead(status, { 'content-type': Buffer.isBuffer(body) ? 'application/octet-stream' : 'application/json; charset=utf-8', ...headers });
      res.end(data);
    };
    const auth = /^Token token=(.+)$/.exec(req.headers.authorization ?? '');
    const caller = auth ? this.tokens.get(auth[1]!) : undefined;
    if (caller === undefined) return send(401, { error: 'Not authorized', error_human: "Can't find User for Token" }, { 'x-failure': 'Not authorized' });
    let body: any = {};
    try {
      if (chunks.length) body = JSON.parse(Buffer.concat(chunks).toString('utf8'));
    } catch {
      return send(422, { error: 'Unprocessable Entity', error_human: 'Invalid JSON' });
    }
    try {
      const r = await this.route(req.method ?? 'GET', url, body, caller);
      if (this.latencyMs) await new Promise((r2) => setTimeout(r2, this.latencyMs));
      const call = `${req.method} ${url.pathname.replace(/^\/api\/v1\//, '')}`;
      if (this.cutAfter.delete(call)) return void req.socket.destroy();
      if (this.isDown) return void req.socket.destroy();
      send(r.status, r.body);
    } catch (err) {
      if (err instanceof HttpError) return send(err.status, { error: err.message, error_human: err.message });
      send(500, { error: String(err) });
    }
  }

  private async route(method: string, url: URL, body: any, caller: number): Promise<{ status: number; body: unknown }> {
    const p = url.pathname.replace(/^\/api\/v1\//, '');
    const expand = url.searchParams.get('expand') === 'true';
    let m: RegExpExecArray | null;
    if (method === 'GET' && p === 'users/me') return { status: 200, body: this.userJson(this.user(caller)) };
    if (method === 'GET' && p === 'tickets/search') return { status: 200, body: this.search(url.searchParams.get('query') ?? '') };
    if (method === 'POST' && p === 'tickets') return { status: 201, body: await this.createTicket(body, caller) };
    if ((m = /^tickets\/(\d+)$/.exec(p))) {
      const t = this.tickets.get(Number(m[1]));
      if (!t) throw new HttpError(404, "Couldn't find Ticket with 'id'=" + m[1]);
      if (method === 'GET') return { status: 200, body: this.ticketJson(t, expand) };
      if (method === 'PUT') return { status: 200, body: this.updateTicket(t, body, caller) };
      if (method === 'DELETE') {
        // Zammad deletes tickets for the `admin` permission only (its articles and attachments with them).
        if (!this.user(caller).roles.includes('Admin')) throw new HttpError(403, 'Not authorized');
        this.tickets.delete(t.id);
        for (const a of this.ticketArticles(t.id)) this.articles.delete(a.id);
        return { status: 200, body: {} };
      }
    }
    if (method === 'POST' && p === 'ticket_articles') {
      const t = this.tickets.get(Number(body.ticket_id));
      if (!t) throw new HttpError(422, 'Need ticket_id');
      const a = this.articleFrom(t, body, caller);
      this.touch(t, caller);
      this.fire('update', t, a, false);
      return { status: 201, body: this.articleJson(a) };
    }
    if (method === 'GET' && (m = /^ticket_articles\/by_ticket\/(\d+)$/.exec(p))) {
      if (!this.tickets.has(Number(m[1]))) throw new HttpError(404, "Couldn't find Ticket with 'id'=" + m[1]);
      return { status: 200, body: this.ticketArticles(Number(m[1])).map((a) => this.articleJson(a)) };
    }
    if (method === 'GET' && (m = /^ticket_attachment\/(\d+)\/(\d+)\/(\d+)$/.exec(p))) {
      const a = this.articles.get(Number(m[2]));
      const f = a && a.ticket_id === Number(m[1]) ? a.attachments.find((x) => x.id === Number(m![3])) : undefined;
      if (!f) throw new HttpError(404, 'Not Found');
      return { status: 200, body: f.data };
    }
    throw new HttpError(404, `No route matches [${method}] "/api/v1/${p}"`);
  }

  private search(query: string): unknown {
    const m = /^([a-z_][a-z0-9_.]*):"((?:[^"\\]|\\.)*)"$/.exec(query.trim());
    const ids = m ? [...this.tickets.values()].filter((t) => String(t[m[1]!] ?? '') === m[2]!.replace(/\\(.)/g, '$1')).map((t) => t.id) : [];
    return { tickets: ids, tickets_count: ids.length, assets: {} };
  }

  private async createTicket(body: any, caller: number): Promise<unknown> {
    if (!body.title) throw new HttpError(422, 'Title is required');
    const group = this.groups.find((g) => g.name === body.group || g.id === body.group_id);
    if (!group) throw new HttpError(422, `No lookup value found for 'group': ${JSON.stringify(body.group ?? body.group_id)}`);
    if (!body.article?.body) throw new HttpError(422, 'Need at least article: { body: "some text" }');
    const customer = this.customerOf(body);
    const now = new Date().toISOString();
    const t: StandinTicket = {
      id: this.nextId.ticket++, number: String(this.nextId.number++), title: body.title, group_id: group.id,
      state_id: body.state ? this.stateId(body.state) : 1, priority_id: 2, customer_id: customer.id, owner_id: 1,
      created_by_id: caller, updated_by_id: caller, article_ids: [], created_at: now, updated_at: now,
    };
    for (const f of this.customFields) if (f in body) t[f] = body[f];
    this.tickets.set(t.id, t);
    const a = this.articleFrom(t, body.article, caller, true);
    await this.onTicketCreated?.(t);
    this.fire('create', t, a, false);
    return { ...this.ticketJson(t, false), create_article_type_id: 10, article_count: 1 };
  }

  private customerOf(body: any): StandinUser {
    if (typeof body.customer_id === 'string' && body.customer_id.startsWith('guess:')) {
      const email = body.customer_id.slice('guess:'.length);
      if (!/^[^@\s]+@[^@\s]+\.[^@\s]+$/.test(email)) throw new HttpError(422, `Invalid email '${email}' of customer`);
      return this.users.find((u) => u.email === email) ?? this.addUser({ login: email, email });
    }
    if (typeof body.customer_id === 'number') {
      const u = this.users.find((x) => x.id === body.customer_id);
      if (!u) throw new HttpError(422, 'No such customer');
      return u;
    }
    const c = body.customer;
    if (typeof c === 'string') {
      const u = this.users.find((x) => x.login === c || x.email === c);
      if (!u) throw new HttpError(422, `No lookup value found for 'customer': "${c}"`);
      return u;
    }
    if (c && typeof c === 'object') {
      const found = (c.id && this.users.find((u) => u.id === c.id)) || (c.email && this.users.find((u) => u.email === c.email)) || (c.login && this.users.find((u) => u.login === c.login));
      if (found) return found;
      if (!c.login && !c.email) throw new HttpError(422, 'Attribute login or email required');
      return this.addUser({ login: c.login ?? c.email, email: c.email ?? '', firstname: c.firstname ?? '', lastname: c.lastname ?? '', mobile: c.mobile ?? '', phone: c.phone ?? '' });
    }
    throw new HttpError(422, 'Customer is required');
  }

  private updateTicket(t: StandinTicket, body: any, caller: number): unknown {
    let stateChanged = false;
    if (body.state !== undefined) {
      const id = this.stateId(body.state);
      stateChanged = id !== t.state_id;
      t.state_id = id;
    }
    if (body.title) t.title = body.title;
    const a = body.article ? this.articleFrom(t, body.article, caller) : null;
    this.touch(t, caller);
    this.fire('update', t, a, stateChanged);
    return this.ticketJson(t, false);
  }

  private stateId(name: unknown): number {
    const id = Object.entries(STATES).find(([, n]) => n === name)?.[0];
    if (!id) throw new HttpError(422, `No lookup value found for 'state': ${JSON.stringify(name)}`);
    return Number(id);
  }

  private articleFrom(t: StandinTicket, a: any, caller: number, first = false): StandinArticle {
    if (!a?.body) throw new HttpError(422, 'Need at least article: { body: "some text" }');
    const type = a.type ?? 'note';
    if (!ARTICLE_TYPES.has(type)) throw new HttpError(422, `No lookup value found for 'type': "${type}"`);
    let sender = a.sender ?? 'Agent';
    let from = this.fullName(this.user(caller));
    if (a.origin_by_id !== undefined && a.origin_by_id !== null) {
      const origin = this.users.find((u) => u.id === Number(a.origin_by_id));
      if (!origin) throw new HttpError(422, 'No such origin_by user');
      sender = 'Customer';
      from = this.fullName(origin);
    } else if (first && sender === 'Customer') {
      from = this.fullName(this.user(t.customer_id));
    }
    return this.addArticle(t.id, caller, { ...a, type, sender, from, origin_by_id: a.origin_by_id ?? null });
  }

  private addArticle(ticketId: number, by: number, a: any): StandinArticle {
    const now = new Date().toISOString();
    const attachments = ((a.attachments ?? []) as Array<{ filename: string; data: string; 'mime-type': string }>).map((f) => {
      const data = Buffer.from(f.data, 'base64');
      return { id: this.nextId.attachment++, filename: f.filename, size: String(data.length), preferences: { 'Mime-Type': f['mime-type'] }, data };
    });
    const article: StandinArticle = {
      id: this.nextId.article++, ticket_id: ticketId, type: a.type ?? 'note', sender: a.sender ?? 'Agent', internal: a.internal ?? false,
      content_type: a.content_type ?? 'text/plain', body: a.body, subject: a.subject ?? null, from: a.from ?? this.fullName(this.user(by)),
      created_by_id: by, origin_by_id: a.origin_by_id ?? null, attachments, created_at: now, updated_at: now,
    };
    this.articles.set(article.id, article);
    this.tickets.get(ticketId)!.article_ids.push(article.id);
    return article;
  }

  private touch(t: StandinTicket, by: number): void {
    t.updated_by_id = by;
    // Strictly increasing, as Zammad's updated_at with its microseconds is.
    const next = Math.max(Date.now(), Date.parse(t.updated_at) + 1);
    t.updated_at = new Date(next).toISOString();
  }

  private user(id: number): StandinUser {
    return this.users.find((u) => u.id === id)!;
  }

  private fullName(u: StandinUser): string {
    return [u.firstname, u.lastname].filter(Boolean).join(' ') || u.login;
  }

  private userJson(u: StandinUser): Record<string, unknown> {
    return { id: u.id, login: u.login, firstname: u.firstname, lastname: u.lastname, email: u.email, mobile: u.mobile, phone: u.phone, active: true };
  }

  ticketJson(t: StandinTicket, expand: boolean): Record<string, unknown> {
    const base: Record<string, unknown> = { ...t };
    if (expand) Object.assign(base, { state: this.stateName(t), group: this.groups.find((g) => g.id === t.group_id)!.name, customer: this.user(t.customer_id).login });
    return base;
  }

  articleJson(a: StandinArticle): Record<string, unknown> {
    const { attachments, ...rest } = a;
    return {
      ...rest, type_id: 0, sender_id: a.sender === 'Agent' ? 1 : a.sender === 'Customer' ? 2 : 3, created_by: this.user(a.created_by_id).login,
      attachments: attachments.map(({ data: _d, ...f }) => ({ ...f, url: `${this.url}/api/v1/ticket_attachment/${a.ticket_id}/${a.id}/${f.id}` })),
    };
  }

  // ---- Trigger → Webhook -------------------------------------------------------------------

  private fire(action: 'create' | 'update', t: StandinTicket, article: StandinArticle | null, stateChanged: boolean): void {
    if (!this.webhook) return;
    for (const trigger of this.triggers) {
      if (!trigger.when({ action, article, stateChanged })) continue;
      const payload = this.payload(t, article);
      const job = this.deliver(trigger.name, randomUUID(), JSON.stringify(payload)).finally(() => this.jobs.delete(job));
      this.jobs.add(job);
    }
  }

  /** The default payload: {ticket, article} with nested users expanded, without secrets [§5]. */
  private payload(t: StandinTicket, article: StandinArticle | null): unknown {
    const userOf = (id: number) => this.userJson(this.user(id));
    return {
      ticket: {
        ...t, state: this.stateName(t), group: this.groups.find((g) => g.id === t.group_id), customer: userOf(t.customer_id),
        owner: userOf(t.owner_id === 1 ? this.integration.id : t.owner_id), created_by: userOf(t.created_by_id), updated_by: userOf(t.updated_by_id),
        article_count: t.article_ids.length,
      },
      article: article && { ...this.articleJson(article), created_by: userOf(article.created_by_id), origin_by: article.origin_by_id ? this.user(article.origin_by_id).login : null },
    };
  }

  private async deliver(trigger: string, delivery: string, raw: string): Promise<void> {
    const hook = this.webhook!;
    for (let executions = 1; executions <= 5; executions++) {
      const headers: Record<string, string> = {
        'content-type': 'application/json; charset=utf-8', 'user-agent': 'Zammad User Agent', 'x-zammad-trigger': trigger, 'x-zammad-delivery': delivery,
      };
      if (hook.signatureToken) headers['x-hub-signature'] = `sha1=${createHmac('sha1', hook.signatureToken).update(raw).digest('hex')}`;
      let status: number | 'error' = 'error';
      try {
        const res = await fetch(hook.endpoint, { method: 'POST', headers, body: raw, redirect: 'manual', signal: AbortSignal.timeout(60_000) });
        status = res.status;
        await res.arrayBuffer();
      } catch {
        status = 'error';
      }
      this.deliveries.push({ trigger, delivery, attempt: executions, status, body: JSON.parse(raw) });
      if (typeof status === 'number' && status >= 200 && status < 300) return;
      await new Promise((r) => setTimeout(r, executions * 10_000 * this.retryScale));
    }
  }
}
