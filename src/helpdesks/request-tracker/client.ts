/**
 * A small client for Request Tracker 5's REST2 API (/REST/2.0), covering what the adapter needs:
 * tickets, correspondence and comments with attachments, ticket custom fields, transactions
 * since an id, users. Every fact it relies on was measured against RT 5.0.3 from Debian 12
 * (docs/helpdesks/request-tracker.md): the id of a new transaction is only in the `Location`
 * header, `GET /attachment/:id` returns `Content` base64-encoded while collection views return
 * it raw, collections page at most 100 items.
 *
 * Credentials go into the Authorization header only, never into a URL or an error message.
 */
import { callSignal, redirectRefusal } from '../../core/http.js';
import { describeFetchFailure } from '../../core/network-failure.js';
import { Semaphore } from '../../core/lanes.js';

export interface RtClientOptions {
  /** RT's base URL (WebBaseURL), e.g. http://rt.example.com; REST2 lives under /REST/2.0. */
  url: string;
  /** An RT auth token ("Authorization: token …"); or user + password (basic auth). */
  token?: string;
  user?: string;
  password?: string;
  timeoutMs?: number;
  /**
   * Calls in flight at once; more wait here, outside `timeoutMs`. RT serves a few requests at a
   * time (the Debian rt-server: 2 workers) and queues the rest: with the helpdesk host's 16 lanes
   * all writing after an outage, a call's timeout was mostly spent queued behind the others, it
   * timed out although RT then did it, and the retry (checking whether it landed) cost more calls.
   */
  maxConcurrent?: number;
  /** Aborts calls in flight when the gateway stops (a slow RT held the stop past its budget). */
  signal?: AbortSignal;
}

/** An RT answer that a retry cannot change (refused input, no right, unknown object). */
export class RtRefusedError extends Error {
  constructor(
    message: string,
    readonly status: number,
  ) {
    super(message);
    this.name = 'RtRefusedError';
  }
}

/** RT unreachable, timing out, or failing on its side (5xx): try again later. */
export class RtUnavailableError extends Error {
  constructor(
    message: string,
    readonly status?: number,
  ) {
    super(message);
    this.name = 'RtUnavailableError';
  }
}

export interface RtAttachmentInput {
  fileName: string;
  mimeType: string;
  bytes: Buffer;
}

export interface RtMessageInput {
  content: string;
  contentType?: 'text/plain' | 'text/html';
  subject?: string;
  attachments?: RtAttachmentInput[];
  /** Set the ticket's status in the same transaction set (RT applies it after the message). */
  status?: string;
}

export interface RtTicketInput extends RtMessageInput {
  queue: string;
  subject: string;
  /**
   * Requestors: RT user names or email addresses (an address creates a user RT will mail). A
   * name with ":" is read as "<principal type>:<name>" and silently dropped by RT 5.0.3.
   */
  requestors: string[];
  customFields?: Record<string, string>;
}

export interface RtTicket {
  id: number;
  subject: string;
  status: string;
  queue: string;
  customFields: Record<string, string[]>;
}

export interface RtTransaction {
  id: number;
  type: string;
  /** Name of the RT user who made it. */
  creator: string;
  ticketId: number;
  created: string;
  field?: string;
  oldValue?: string;
  newValue?: string;
}

export interface RtPart {
  id: number;
  contentType: string;
  fileName?: string;
  /** Raw content for text parts; binary parts are fetched with `attachmentBytes`. */
  content?: string;
  size: number;
}

export interface RtUser {
  /** 0 when just created (REST2 answers a create with the name only). */
  id: number;
  name: string;
  email?: string;
  realName?: string;
}

const PAGE = 100;

export class RtClient {
  readonly rest2: string;
  private readonly auth: string;
  private readonly timeoutMs: number;
  private readonly stopping?: AbortSignal;
  private readonly slots: Semaphore;

  constructor(opts: RtClientOptions) {
    this.stopping = opts.signal;
    this.slots = new Semaphore(opts.maxConcurrent ?? 4);
    this.rest2 = `${opts.url.replace(/\/+$/, '')}/REST/2.0`;
    if (opts.token) this.auth = `token ${opts.token}`;
    else if (opts.user && opts.password) this.auth = `Basic ${Buffer.from(`${opts.user}:${opts.password}`).toString('base64')}`;
    else throw new Error('RT client needs a token or a user and password');
    this.timeoutMs = opts.timeoutMs ?? 30_000;
  }

  /** RT's version; also proves the URL and the credentials. */
  async version(): Promise<string> {
    const { body } = await this.call('GET', '/rt');
    return String((body as { Version?: string }).Version ?? 'unknown');
  }

  async createTicket(input: RtTicketInput): Promise<number> {
    const { location } = await this.call('POST', '/ticket', {
      Queue: input.queue,
      Subject: input.subject,
      Requestor: input.requestors,
      ...messageBody(input),
      ...(input.customFields ? { CustomFields: input.customFields } : {}),
      ...(input.status ? { Status: input.status } : {}),
    });
    return idFromLocation(location, 'ticket');
  }

  async getTicket(id: number): Promise<RtTicket> {
    const { body } = await this.call('GET', `/ticket/${id}`);
    return toTicket(body as Record<string, unknown>);
  }

  /** Tickets whose custom field `name` equals `value`, oldest first. */
  async findTicketsByCustomField(name: string, value: string): Promise<number[]> {
    const query = `'CF.{${tsqlQuote(name)}}' = '${tsqlQuote(value)}'`;
    const items = await this.search('/tickets', { query, orderby: 'id', order: 'ASC' });
    return items.map((i) => Number(i.id));
  }

  /**
   * The tickets an agent merged into this one (RT keeps them with EffectiveId = the surviving
   * ticket, each with its own custom fields; their later transactions are recorded on the
   * surviving ticket).
   */
  async mergedInto(id: number): Promise<RtTicket[]> {
    const items = await this.search('/tickets', { query: `EffectiveId = ${id} AND id != ${id}`, orderby: 'id', order: 'ASC', fields: 'Subject,Status,Queue,CustomFields' });
    return items.map(toTicket);
  }

  async setStatus(id: number, status: string): Promise<void> {
    await this.call('PUT', `/ticket/${id}`, { Status: status });
  }

  /** Sets the ticket's Subject. REST2 answers 200 to a refusal too (only messages say it): callers read the ticket back. */
  async setSubject(id: number, subject: string): Promise<void> {
    await this.call('PUT', `/ticket/${id}`, { Subject: subject });
  }

  async setCustomFields(id: number, fields: Record<string, string>): Promise<void> {
    await this.call('PUT', `/ticket/${id}`, { CustomFields: fields });
  }

  /** A public message on the ticket; returns the transaction id. */
  async correspond(ticketId: number, message: RtMessageInput): Promise<number> {
    const { location } = await this.call('POST', `/ticket/${ticketId}/correspond`, { ...messageBody(message), ...(message.status ? { Status: message.status } : {}) });
    return idFromLocation(location, 'transaction');
  }

  /** An internal comment; returns the transaction id. */
  async comment(ticketId: number, message: RtMessageInput): Promise<number> {
    const { location } = await this.call('POST', `/ticket/${ticketId}/comment`, messageBody(message));
    return idFromLocation(location, 'transaction');
  }

  /**
   * Ticket transactions with an id above `afterId`, ascending, at most `limit`. Transaction ids
   * are monotonic (timestamps have one-second resolution), so this is the checkpointable cursor.
   */
  async transactionsAfter(afterId: number, opts: { types: string[]; limit?: number }): Promise<RtTransaction[]> {
    const types = opts.types.map((t) => `Type = '${tsqlQuote(t)}'`).join(' OR ');
    const query = `ObjectType = 'RT::Ticket' AND id > ${Math.trunc(afterId)} AND (${types})`;
    const items = await this.search(
      '/transactions',
      { query, orderby: 'id', order: 'ASC', fields: 'Type,Creator,Created,ObjectId,Field,OldValue,NewValue' },
      opts.limit ?? PAGE,
    );
    return items.map((i) => ({
      id: Number(i.id),
      type: String(i.Type),
      creator: refId(i.Creator),
      ticketId: Number(i.ObjectId),
      created: String(i.Created ?? ''),
      field: optString(i.Field),
      oldValue: optString(i.OldValue),
      newValue: optString(i.NewValue),
    }));
  }

  /** Ids of the newest transactions of `type` that `creator` made on a ticket, newest first. */
  async recentTransactionsBy(ticketId: number, creator: string, type: string, limit: number): Promise<number[]> {
    const query = `ObjectType = 'RT::Ticket' AND ObjectId = ${Math.trunc(ticketId)} AND Type = '${tsqlQuote(type)}' AND Creator = '${tsqlQuote(creator)}'`;
    const items = await this.search('/transactions', { query, orderby: 'id', order: 'DESC' }, limit);
    return items.map((i) => Number(i.id));
  }

  /** The highest transaction id so far (0 on an empty RT): where a fresh poller starts. */
  async lastTransactionId(): Promise<number> {
    const items = await this.search('/transactions', { query: 'id > 0', orderby: 'id', order: 'DESC' }, 1);
    return items.length ? Number(items[0]!.id) : 0;
  }

  /** The MIME parts of one transaction (text parts with their content; files without). */
  async transactionParts(txnId: number): Promise<RtPart[]> {
    const items = await this.search(`/transaction/${txnId}/attachments`, { fields: 'ContentType,Filename,ContentLength,Content' });
    return items
      .filter((i) => !String(i.ContentType ?? '').startsWith('multipart/'))
      .map((i) => {
        const contentType = String(i.ContentType ?? 'application/octet-stream');
        const fileName = optString(i.Filename);
        const isText = !fileName && (contentType === 'text/plain' || contentType === 'text/html');
        const content = typeof i.Content === 'string' ? i.Content : undefined;
        return { id: Number(i.id), contentType, fileName, content: isText ? content : undefined, size: Number(i.ContentLength ?? content?.length ?? 0) };
      });
  }

  async attachmentBytes(id: number): Promise<Buffer> {
    const { body } = await this.call('GET', `/attachment/${id}`);
    const content = (body as { Content?: string }).Content ?? '';
    return Buffer.from(content, 'base64');
  }

  async userByName(nameOrEmail: string): Promise<RtUser | null> {
    try {
      const { body } = await this.call('GET', `/user/${encodeURIComponent(nameOrEmail)}`);
      return toUser(body as Record<string, unknown>);
    } catch (err) {
      if (err instanceof RtRefusedError && err.status === 404) return null;
      throw err;
    }
  }

  /** Create an unprivileged user (REST2 answers with its name, not its number). */
  async createUser(user: { name: string; realName?: string; email?: string; comments?: string }): Promise<void> {
    await this.call('POST', '/user', {
      Name: user.name,
      ...(user.realName ? { RealName: user.realName } : {}),
      ...(user.email ? { EmailAddress: user.email } : {}),
      ...(user.comments ? { Comments: user.comments } : {}),
    });
  }

  /** The user named `name`, created if absent (a concurrent create is resolved by loading again). */
  async ensureUser(user: { name: string; realName?: string; email?: string; comments?: string }): Promise<RtUser> {
    const found = await this.userByName(user.name);
    if (found) return found;
    try {
      await this.createUser(user);
      return { id: 0, name: user.name, realName: user.realName, email: user.email };
    } catch (err) {
      if (!(err instanceof RtRefusedError)) throw err;
    }
    // Refused: perhaps another writer created it meanwhile.
    const made = await this.userByName(user.name);
    if (!made) throw new RtRefusedError(`RT did not create user "${user.name}"`, 422);
    return made;
  }

  private async search(path: string, params: Record<string, string>, limit = Infinity): Promise<Array<Record<string, unknown>>> {
    const out: Array<Record<string, unknown>> = [];
    for (let page = 1; ; page++) {
      const perPage = Math.min(PAGE, limit - out.length);
      const qs = new URLSearchParams({ ...params, page: String(page), per_page: String(perPage) });
      const { body } = await this.call('GET', `${path}?${qs}`);
      const items = ((body as { items?: Array<Record<string, unknown>> }).items ?? []) as Array<Record<string, unknown>>;
      out.push(...items);
      const pages = Number((body as { pages?: number }).pages ?? 0);
      if (items.length < perPage || page >= pages || out.length >= limit) return out;
    }
  }

  private async call(method: string, path: string, json?: unknown): Promise<{ status: number; body: unknown; location?: string }> {
    await this.slots.acquire();
    try {
      return await this.send(method, path, json);
    } finally {
      this.slots.release();
    }
  }

  private async send(method: string, path: string, json?: unknown): Promise<{ status: number; body: unknown; location?: string }> {
    const what = `${method} ${path.split('?')[0]}`;
    if (this.stopping?.aborted) throw new RtUnavailableError(`RT ${what}: not sent, the gateway is stopping`);
    let res: Response;
    try {
      res = await fetch(`${this.rest2}${path}`, {
        method,
        headers: {
          authorization: this.auth,
          accept: 'application/json',
          ...(json !== undefined ? { 'content-type': 'application/json; charset=utf-8' } : {}),
        },
        body: json !== undefined ? JSON.stringify(json) : undefined,
        signal: callSignal(this.timeoutMs, this.stopping),
        redirect: 'manual',
      });
    } catch (err) {
      throw new RtUnavailableError(`RT ${what}: ${describeFetchFailure(err, this.rest2, this.timeoutMs)}`);
    }
    const redirected = redirectRefusal(res);
    if (redirected) {
      await res.body?.cancel().catch(() => {});
      throw new RtRefusedError(`RT ${what}: ${redirected} (helpdesks[].url)`, res.status);
    }
    const text = await res.text().catch((err: Error) => {
      throw new RtUnavailableError(`RT ${what}: reading the answer: ${err.message}`, res.status);
    });
    let body: unknown = text;
    try {
      body = text ? JSON.parse(text) : null;
    } catch {
      // RT answers HTML for some server errors; keep the text for the message
    }
    if (res.status >= 500 || res.status === 429 || res.status === 408) {
      throw new RtUnavailableError(`RT ${what}: HTTP ${res.status} ${brief(body)}`, res.status);
    }
    if (res.status >= 400) throw new RtRefusedError(`RT ${what}: HTTP ${res.status} ${brief(body)}`, res.status);
    // REST2 reports some refusals as 200 with only messages (a custom field not applied to the
    // queue, a status the lifecycle does not allow): callers that care check the outcome.
    return { status: res.status, body, location: res.headers.get('location') ?? undefined };
  }
}

function messageBody(m: RtMessageInput): Record<string, unknown> {
  return {
    Content: m.content,
    ContentType: m.contentType ?? 'text/plain',
    ...(m.subject ? { Subject: m.subject } : {}),
    ...(m.attachments?.length
      ? {
          Attachments: m.attachments.map((a) => ({
            // RT 5.0.3 answers 500 ("Transaction not committed") to a file name with characters
            // past U+00FF; its UTF-8 bytes, one character each, are stored and shown correctly.
            FileName: Buffer.from(a.fileName, 'utf8').toString('latin1'),
            FileType: a.mimeType,
            FileContent: a.bytes.toString('base64'),
          })),
        }
      : {}),
  };
}

function idFromLocation(location: string | undefined, kind: string): number {
  const m = location ? new RegExp(`/${kind}/(\\d+)$`).exec(location) : null;
  if (!m) throw new RtUnavailableError(`RT did not say which ${kind} it created (Location: ${location ?? 'absent'})`);
  return Number(m[1]);
}

/** TicketSQL/TransactionSQL string literal content: RT reads backslash escapes inside quotes. */
export function tsqlQuote(value: string): string {
  return value.replace(/\\/g, '\\\\').replace(/'/g, "\\'");
}

function refId(v: unknown): string {
  if (v && typeof v === 'object' && 'id' in v) return String((v as { id: unknown }).id);
  return String(v ?? '');
}

function optString(v: unknown): string | undefined {
  return v === undefined || v === null || v === '' ? undefined : String(v);
}

function brief(body: unknown): string {
  const s = typeof body === 'string' ? body : JSON.stringify(body);
  return (s ?? '').replace(/\s+/g, ' ').slice(0, 300);
}

function toTicket(b: Record<string, unknown>): RtTicket {
  const cfs: Record<string, string[]> = {};
  for (const cf of (b.CustomFields as Array<{ name: string; values: string[] }> | undefined) ?? []) cfs[cf.name] = cf.values ?? [];
  return { id: Number(b.id), subject: String(b.Subject ?? ''), status: String(b.Status ?? ''), queue: refId(b.Queue), customFields: cfs };
}

function toUser(b: Record<string, unknown>): RtUser {
  return { id: Number(b.id), name: String(b.Name ?? ''), email: optString(b.EmailAddress), realName: optString(b.RealName) };
}
