/**
 * Zammad → omnigate: agents' answers and state changes, from the Trigger → Webhook (signed with
 * HMAC-SHA1 in X-Hub-Signature, verified over the raw body) and, as the fallback for deliveries
 * Zammad gave up on (it tries 5 times in about 100 s), by polling the tickets changed lately.
 * Both end in ctx.takeAnswer, keyed by the article id (`article:<id>`) or the state change
 * (`state:<ticket>:<updated_at>`): however often Zammad or the poller offers one, it is taken once.
 *
 * Never an answer: what the integration user wrote (our own articles and state changes: echo),
 * customer articles, articles of System.
 */
import { createHmac, timingSafeEqual } from 'node:crypto';
import type { RawRequest, RawResponse } from '../../core/http.js';
import type { OutboundAttachment } from '../../core/schema.js';
import { errorMessage } from '../../core/errors.js';
import { parseWebhookJson } from '../../core/json-input.js';
import { sleep } from '../../core/sleep.js';
import { HelpdeskRefusedError, type AgentAnswer, type HelpdeskContext } from '../contract.js';
import type { ZammadAdapter } from './adapter.js';
import type { ZammadArticle, ZammadTicket } from './client.js';

/** What the poller remembers per linked ticket. */
interface Watched {
  /** Zammad's updated_at when we last looked: unchanged means nothing to fetch. */
  updatedAt: string;
  lastArticleId: number;
  /** When we last saw the ticket change: tickets quiet for longer than poll.window are dropped. */
  touched: number;
}

const WATCH_KEY = 'poll';

export class ZammadIntake {
  private polling?: { abort: AbortController; done: Promise<void> };
  private readonly states = new Map<string, string>();
  private writes: Promise<void> = Promise.resolve();

  constructor(
    private readonly zammad: ZammadAdapter,
    private readonly ctx: HelpdeskContext,
  ) {}

  get path(): string {
    return `/helpdesks/${this.ctx.id}/zammad/webhook`;
  }

  mount(): void {
    if (!this.zammad.o.webhook) return;
    this.ctx.http.route('POST', this.path, (req) => this.webhook(req));
  }

  private async webhook(req: RawRequest): Promise<RawResponse> {
    const secret = this.zammad.o.webhook!.secret;
    if (!validSignature(secret, req.rawBody, req.headers['x-hub-signature'])) {
      this.ctx.log.warn({ delivery: req.headers['x-zammad-delivery'], trigger: req.headers['x-zammad-trigger'] }, 'Zammad webhook refused: X-Hub-Signature missing or wrong (check the webhook\'s HMAC SHA1 Signature Token)');
      return { status: 401, body: { error: 'invalid signature' } };
    }
    let payload: { ticket?: ZammadTicket; article?: ZammadArticle | null };
    try {
      payload = parseWebhookJson(req.rawBody) as typeof payload;
    } catch (err) {
      // No dead letters for a helpdesk: the log keeps the reason, and the poller takes what the
      // delivery was about (Zammad gives up on a 4xx after its retries).
      this.ctx.log.warn({ delivery: req.headers['x-zammad-delivery'], trigger: req.headers['x-zammad-trigger'], err: errorMessage(err) }, 'Zammad webhook refused: body is not readable JSON');
      return { status: 400, body: { error: 'invalid_json', message: errorMessage(err), field: 'body' } };
    }
    if (!payload.ticket?.id) return { status: 200, body: { ignored: 'no ticket in the payload (custom payload?)' } };
    try {
      const answers = await this.answersOf(payload.ticket, payload.article ? [payload.article] : []);
      for (const a of answers) await this.ctx.takeAnswer(a);
      return { status: 200, body: { taken: answers.length } };
    } catch (err) {
      // Zammad retries a non-2xx delivery; the poller is there for when it stops retrying.
      this.ctx.log.warn({ zammadTicket: payload.ticket.id, err: errorMessage(err) }, 'Zammad webhook not taken now; Zammad will retry it');
      return { status: 503, body: { error: 'not taken, retry later' } };
    }
  }

  /** The answers in these articles of one ticket, then its state if an agent changed it. */
  private async answersOf(ticket: ZammadTicket, articles: ZammadArticle[]): Promise<AgentAnswer[]> {
    const me = await this.zammad.me();
    const externalId = String(ticket.id);
    // The field names our ticket only when it carries this installation's id (another
    // installation's T-1002 is not ours).
    const base = { externalId, ticketId: this.zammad.ticketIdOf(ticket[this.zammad.o.ticketField]) };
    const out: AgentAnswer[] = [];
    for (const a of articles) {
      if (a.created_by_id === me.id) continue; // ours: echo
      if (a.sender !== 'Agent') continue; // customer or system articles are not answers
      const agent = { id: String(a.created_by_id), name: agentName(a) };
      const body = a.content_type === 'text/html' ? htmlToText(a.body) : a.body;
      // White space alone is no text (replies and notes refuse it): the placeholder stands in, as for an empty body.
      const text = body.trim() ? body : '';
      if (a.internal) {
        out.push({ ...base, id: `article:${a.id}`, agent, kind: 'note', text: text || '(empty note)' });
        continue;
      }
      const attachments = await this.attachments(a);
      if (!text && attachments.length === 0) continue;
      out.push({ ...base, id: `article:${a.id}`, agent, kind: 'reply', text: text || '📎', html: a.content_type === 'text/html' ? a.body : undefined, attachments });
    }
    const status = await this.stateChange(ticket, me.id);
    if (status) out.push({ ...base, ...status });
    return out;
  }

  /** A state an agent set (not us), mapped to omnigate's; remembered so it is offered once. */
  private async stateChange(ticket: ZammadTicket, me: number): Promise<Omit<AgentAnswer & { kind: 'status' }, 'externalId' | 'ticketId'> | null> {
    const state = ticket.state;
    if (typeof state !== 'string') return null;
    const id = String(ticket.id);
    const before = this.states.get(id) ?? (await this.ctx.state.get(`state.${id}`))?.value;
    if (before === state) return null;
    await this.rememberState(id, state);
    if (before === undefined && state === 'new') return null;
    if (ticket.updated_by_id === me) return null; // we set it (a status synced from omnigate)
    const status = this.zammad.o.statusFromZammad[state];
    if (!status) return null;
    return { id: `state:${id}:${ticket.updated_at}`, kind: 'status', status, agent: { id: String(ticket.updated_by_id ?? 'zammad') } };
  }

  async rememberState(externalId: string, state: string): Promise<void> {
    this.states.set(externalId, state);
    if (this.states.size > 10_000) this.states.delete(this.states.keys().next().value!);
    await this.ctx.state.put(`state.${externalId}`, state);
  }

  /** The ticket was deleted for an erasure: the state remembered for it goes with it. */
  async forgetState(externalId: string): Promise<void> {
    this.states.delete(externalId);
    await this.ctx.state.delete(`state.${externalId}`);
  }

  /** An agent's files into our object store, for the channel to send. */
  private async attachments(a: ZammadArticle): Promise<OutboundAttachment[]> {
    const out: OutboundAttachment[] = [];
    for (const f of a.attachments ?? []) {
      const bytes = await this.zammad.client.attachment(a.ticket_id, a.id, f.id);
      const mimeType = String(f.preferences?.['Mime-Type'] ?? f.preferences?.['Content-Type'] ?? 'application/octet-stream');
      const stored = await this.ctx.media.put(bytes, { name: f.filename, mimeType });
      out.push({ objectKey: stored.objectKey!, ref: stored.ref, name: f.filename, mimeType, size: stored.size, sha256: stored.sha256 });
    }
    return out;
  }

  startPolling(): void {
    const interval = this.zammad.o.poll.interval;
    if (interval <= 0 || this.polling) return;
    const abort = new AbortController();
    const onStop = () => abort.abort();
    this.ctx.signal.addEventListener('abort', onStop, { once: true });
    const done = (async () => {
      while (!abort.signal.aborted) {
        await sleep(interval, abort.signal);
        if (abort.signal.aborted) break;
        try {
          await this.pollOnce(abort.signal);
        } catch (err) {
          this.ctx.log.warn({ err: errorMessage(err) }, 'polling Zammad failed; trying again at the next interval');
        }
      }
      this.ctx.signal.removeEventListener('abort', onStop);
    })();
    this.polling = { abort, done };
  }

  async stopPolling(): Promise<void> {
    const p = this.polling;
    this.polling = undefined;
    p?.abort.abort();
    await p?.done;
  }

  /** Start watching a ticket we made (the poller's list of linked tickets). */
  watch(externalId: string): Promise<void> {
    return this.serially(async () => {
      const list = await this.watched();
      list[externalId] ??= { updatedAt: '', lastArticleId: 0, touched: Date.now() };
      list[externalId].touched = Date.now();
      await this.ctx.state.put(WATCH_KEY, JSON.stringify(list));
    });
  }

  /** Stop watching a ticket (deleted: its omnigate ticket was erased). */
  unwatch(externalId: string): Promise<void> {
    return this.serially(async () => {
      const list = await this.watched();
      if (!(externalId in list)) return;
      delete list[externalId];
      await this.ctx.state.put(WATCH_KEY, JSON.stringify(list));
    });
  }

  /**
   * Start watching a ticket that existed before we linked it (an earlier attempt made it, or the
   * helpdesk's `id` changed in the config): its articles and state so far are history, not
   * answers. Linking such a ticket used to send every old agent answer to the customer again.
   */
  async watchExisting(ticket: ZammadTicket): Promise<void> {
    const id = String(ticket.id);
    const articles = await this.zammad.client.articles(id);
    const last = articles.reduce((max, a) => Math.max(max, a.id), 0);
    if (typeof ticket.state === 'string') await this.rememberState(id, ticket.state);
    await this.serially(async () => {
      const list = await this.watched();
      const w = list[id];
      list[id] = { updatedAt: ticket.updated_at, lastArticleId: Math.max(w?.lastArticleId ?? 0, last), touched: Date.now() };
      await this.ctx.state.put(WATCH_KEY, JSON.stringify(list));
    });
  }

  /** The watch list is one record, written by the syncing replica only: one writer at a time here. */
  private serially<T>(task: () => Promise<T>): Promise<T> {
    const run = this.writes.then(task, task);
    this.writes = run.then(() => undefined, () => undefined);
    return run;
  }

  private async watched(): Promise<Record<string, Watched>> {
    const e = await this.ctx.state.get(WATCH_KEY);
    return e ? (JSON.parse(e.value) as Record<string, Watched>) : {};
  }

  /**
   * One pass over the linked tickets changed within poll.window: new agent articles and state
   * changes are taken (the same path as the webhook: whatever the webhook took is skipped).
   */
  async pollOnce(signal?: AbortSignal): Promise<number> {
    const list = await this.watched();
    const seen: Record<string, true> = Object.fromEntries(Object.keys(list).map((k) => [k, true as const]));
    const horizon = Date.now() - this.zammad.o.poll.window;
    let taken = 0;
    for (const [id, w] of Object.entries(list)) {
      if (signal?.aborted) break;
      if (w.touched < horizon) {
        delete list[id];
        continue;
      }
      const ticket = await this.zammad.client.ticket(id).catch(goneAsNull);
      // Deleted in Zammad (by hand, or for an erasure): nothing more to take from it. It failed
      // every pass until it left the window. Its last seen state goes too: a pass that read the
      // ticket just before an erasure deleted it wrote the state back after erase() forgot it.
      // Also when it went between reading the ticket and its articles (a CI run met that race).
      const articles = ticket && ticket.updated_at !== w.updatedAt ? await this.zammad.client.articles(id).catch(goneAsNull) : undefined;
      if (!ticket || articles === null) {
        delete list[id];
        await this.forgetState(id);
        continue;
      }
      if (!articles) continue; // unchanged since the last pass
      const me = await this.zammad.me();
      const fresh = articles.filter((a) => a.id > w.lastArticleId).sort((a, b) => a.id - b.id);
      const pending: ZammadArticle[] = [];
      for (const a of fresh) if (a.created_by_id !== me.id && !(await this.ctx.taken(`article:${a.id}`))) pending.push(a);
      for (const answer of await this.answersOf(ticket, pending)) {
        await this.ctx.takeAnswer(answer);
        taken++;
      }
      // The cursor moves only once everything before it was taken.
      list[id] = { updatedAt: ticket.updated_at, lastArticleId: Math.max(w.lastArticleId, ...fresh.map((a) => a.id)), touched: Date.now() };
    }
    await this.serially(async () => {
      // Tickets linked while this pass ran are kept: merge into the current list.
      const current = await this.watched();
      for (const id of Object.keys(current)) if (!(id in list) && current[id]!.touched >= horizon && !(id in seen)) list[id] = current[id]!;
      await this.ctx.state.put(WATCH_KEY, JSON.stringify(list));
    });
    if (taken) this.ctx.log.info({ taken }, 'polling Zammad took answers the webhook had not delivered');
    return taken;
  }
}

/** A 404 from Zammad: the ticket is gone (null); any other failure as it is. */
function goneAsNull(err: unknown): Promise<null> {
  return err instanceof HelpdeskRefusedError && err.code === 'http_404' ? Promise.resolve(null) : Promise.reject(err);
}

/** X-Hub-Signature: `sha1=<hex HMAC-SHA1(token, raw body)>`, compared in constant time. */
export function validSignature(secret: string, body: Buffer, header: string | undefined): boolean {
  if (!header?.startsWith('sha1=')) return false;
  const expected = createHmac('sha1', secret).update(body).digest();
  const given = Buffer.from(header.slice('sha1='.length), 'hex');
  return given.length === expected.length && timingSafeEqual(given, expected);
}

function agentName(a: ZammadArticle & { created_by?: unknown }): string | undefined {
  const by = a.created_by;
  if (by && typeof by === 'object') {
    const u = by as { firstname?: string; lastname?: string; login?: string };
    const name = [u.firstname, u.lastname].filter(Boolean).join(' ');
    return name || u.login;
  }
  return a.from || undefined;
}

const ENTITIES: Record<string, string> = { amp: '&', lt: '<', gt: '>', quot: '"', '#39': "'", nbsp: ' ' };

/** Zammad's agent articles are HTML (the UI writes text/html): the text a chat can show. */
export function htmlToText(html: string): string {
  return html
    // What a browser never shows: a script's or style's text is not part of the answer.
    .replace(/<(script|style|head|template)\b[^>]*>[^]*?<\/\1\s*>/gi, '')
    .replace(/<!--[^]*?-->/g, '')
    .replace(/<br\s*\/?>/gi, '\n')
    .replace(/<\/(p|div|li|h\d|blockquote)>/gi, '\n')
    .replace(/<[^>]+>/g, '')
    .replace(/&(amp|lt|gt|quot|#39|nbsp);/g, (_, e: string) => ENTITIES[e]!)
    .replace(/\n{3,}/g, '\n\n')
    .trim();
}
