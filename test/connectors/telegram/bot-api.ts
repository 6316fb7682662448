/**
 * A stand-in Telegram Bot API on 127.0.0.1 speaking the HTTP wire protocol telegraf uses:
 * /bot<token>/<method> (JSON or multipart) and /file/bot<token>/<path>. getUpdates honours
 * `offset` and holds the request briefly when empty; send methods are recorded and can be
 * scripted to fail (429 with retry_after, 403 blocked..., or a dropped connection). Files can
 * also be handed out as absolute paths on disk, as a server started with --local does.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import busboy from 'busboy';

export interface RecordedCall {
  method: string;
  params: Record<string, unknown>;
  files: Record<string, { filename: string; bytes: Buffer }>;
  at: number;
}

/** An error answer, or `{ drop: true }`: the connection is cut without an answer (network failure). */
type Scripted = { status: number; body: Record<string, unknown> } | { drop: true };

export class FakeBotApi {
  readonly calls: RecordedCall[] = [];
  readonly offsets: number[] = [];
  /** When each getUpdates arrived, scripted failures included (`offsets` has only the answered ones). */
  readonly polls: number[] = [];
  /** How often each update_id was handed out by getUpdates. */
  readonly served = new Map<number, number>();
  /** getUpdates calls that overlapped another one (Telegram answers the older with 409). */
  conflicts = 0;
  private pendingPoll?: ServerResponse;
  /** When false, getUpdates ignores offsets and re-serves everything (confirmations lost). */
  honourOffset = true;
  private updates: Array<Record<string, unknown> & { update_id: number }> = [];
  /** Telegram numbers each bot's updates on its own: two bots' ids are unrelated. */
  nextUpdateId = 1000;
  private nextMessageId = 500;
  private readonly files = new Map<string, { path: string; bytes?: Buffer; size?: number }>();
  private readonly scripted = new Map<string, Scripted[]>();
  private waiters: Array<() => void> = [];
  private pollWaiters: Array<{ target: number; resolve: () => void }> = [];
  private callWaiters: Array<{ pred: (c: RecordedCall) => boolean; resolve: (c: RecordedCall) => void }> = [];
  private server?: Server;
  port = 0;

  constructor(
    readonly token: string,
    readonly bot = { id: 777000, username: 'omni_support_bot', first_name: 'Поддержка' },
  ) {}

  get apiRoot(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  async start(): Promise<void> {
    this.server = createServer((req, res) => void this.handle(req, res));
    await new Promise<void>((r) => this.server!.listen(0, '127.0.0.1', r));
    this.port = (this.server.address() as { port: number }).port;
  }

  async stop(): Promise<void> {
    for (const w of this.waiters.splice(0)) w();
    this.server?.closeAllConnections();
    await new Promise((r) => this.server?.close(r));
  }

  /** Queue an update; returns its update_id. */
  push(update: Record<string, unknown>): number {
    const update_id = this.nextUpdateId++;
    this.updates.push({ update_id, ...update });
    for (const w of this.waiters.splice(0)) w();
    return update_id;
  }

  addFile(fileId: string, bytes: Buffer, size = bytes.length): void {
    this.files.set(fileId, { path: `photos/${fileId}.bin`, bytes, size });
  }

  /** getFile answers with this absolute path, as a --local server does; `size` unset leaves file_size out. */
  addLocalFile(fileId: string, path: string, size?: number): void {
    this.files.set(fileId, { path, size });
  }

  /** The next calls of `method` answer with these errors, in order. */
  failNext(method: string, ...responses: Scripted[]): void {
    this.scripted.set(method, [...(this.scripted.get(method) ?? []), ...responses]);
  }

  /** Drops the scripted answers of `method` not used yet (a test that expected fewer calls leaves none behind). */
  clearScripted(method: string): void {
    this.scripted.delete(method);
  }

  /** Resolves once getUpdates has been called `count` more times. */
  waitForPolls(count: number, timeoutMs = 15_000): Promise<void> {
    const target = this.offsets.length + count;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`only ${this.offsets.length} of ${target} polls within ${timeoutMs} ms`)), timeoutMs);
      this.pollWaiters.push({ target, resolve: () => (clearTimeout(timer), resolve()) });
    });
  }

  waitForCall(pred: (c: RecordedCall) => boolean, timeoutMs = 15_000): Promise<RecordedCall> {
    const found = this.calls.find(pred);
    if (found) return Promise.resolve(found);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.callWaiters = this.callWaiters.filter((x) => x !== w);
        reject(new Error(`no matching Bot API call within ${timeoutMs} ms; calls: ${this.calls.map((c) => c.method).join(',')}`));
      }, timeoutMs);
      const w = {
        pred,
        resolve: (c: RecordedCall) => {
          clearTimeout(timer);
          resolve(c);
        },
      };
      this.callWaiters.push(w);
    });
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', 'http://x');
    const fileMatch = /^\/file\/bot([^/]+)\/(.+)$/.exec(url.pathname);
    if (fileMatch) {
      const file = [...this.files.values()].find((f) => f.path === fileMatch[2]);
      if (fileMatch[1] !== this.token || !file?.bytes) return void res.writeHead(404).end();
      return void res.writeHead(200, { 'content-type': 'application/octet-stream' }).end(file.bytes);
    }
    const m = /^\/bot([^/]+)\/(\w+)$/.exec(url.pathname);
    if (!m) return void res.writeHead(404).end();
    const [, token, method] = m as unknown as [string, string, string];
    const { params, files } = await readBody(req);
    if (token !== this.token) return this.reply(res, 401, { ok: false, error_code: 401, description: 'Unauthorized' });
    const call: RecordedCall = { method, params, files, at: Date.now() };
    if (method === 'getUpdates') this.polls.push(call.at);
    if (method !== 'getUpdates') {
      this.calls.push(call);
    }
    const scripted = this.scripted.get(method)?.shift();
    if (scripted && 'drop' in scripted) return void res.destroy();
    if (scripted) return this.reply(res, scripted.status, scripted.body);
    if (method !== 'getUpdates') for (const w of [...this.callWaiters]) if (w.pred(call)) {
      this.callWaiters = this.callWaiters.filter((x) => x !== w);
      w.resolve(call);
    }
    switch (method) {
      case 'getMe':
        return this.ok(res, { ...this.bot, is_bot: true });
      case 'deleteWebhook':
      case 'setWebhook':
        return this.ok(res, true);
      case 'getUpdates':
        return this.getUpdates(params, res);
      case 'getFile': {
        const f = this.files.get(String(params.file_id));
        if (!f) return this.reply(res, 400, { ok: false, error_code: 400, description: 'Bad Request: invalid file_id' });
        return this.ok(res, { file_id: params.file_id, file_unique_id: `u${params.file_id}`, file_size: f.size, file_path: f.path });
      }
      case 'sendMessage':
      case 'sendPhoto':
      case 'sendDocument':
        return this.ok(res, { message_id: this.nextMessageId++, date: Math.floor(Date.now() / 1000), chat: { id: Number(params.chat_id), type: 'private' }, text: params.text });
      default:
        return this.reply(res, 404, { ok: false, error_code: 404, description: `Not Found: method ${method}` });
    }
  }

  private async getUpdates(params: Record<string, unknown>, res: ServerResponse): Promise<void> {
    const offset = Number(params.offset ?? 0);
    this.offsets.push(offset);
    for (const w of this.pollWaiters.filter((x) => this.offsets.length >= x.target)) w.resolve();
    this.pollWaiters = this.pollWaiters.filter((x) => this.offsets.length < x.target);
    res.on('close', () => {
      if (this.pendingPoll === res) this.pendingPoll = undefined; // answered, or the client hung up (stop)
    });
    if (this.pendingPoll && !this.pendingPoll.writableEnded) {
      // What Telegram does when two processes poll one bot.
      this.conflicts++;
      this.reply(this.pendingPoll, 409, { ok: false, error_code: 409, description: 'Conflict: terminated by other getUpdates request; make sure that only one bot instance is running' });
    }
    this.pendingPoll = res;
    const pick = () => this.updates.filter((u) => !this.honourOffset || u.update_id >= offset).slice(0, Number(params.limit ?? 100));
    if (this.honourOffset && offset > 0) this.updates = this.updates.filter((u) => u.update_id >= offset); // confirmed
    let found = pick();
    if (found.length === 0) {
      const wait = Math.min(Number(params.timeout ?? 0), 1) * 1000;
      await new Promise<void>((r) => {
        const t = setTimeout(r, wait);
        this.waiters.push(() => {
          clearTimeout(t);
          r();
        });
      });
      found = pick();
    }
    if (res.writableEnded) return;
    for (const u of found) this.served.set(u.update_id, (this.served.get(u.update_id) ?? 0) + 1);
    this.ok(res, found);
  }

  private ok(res: ServerResponse, result: unknown): void {
    this.reply(res, 200, { ok: true, result });
  }

  private reply(res: ServerResponse, status: number, body: unknown): void {
    if (res.writableEnded) return;
    res.writeHead(status, { 'content-type': 'application/json' }).end(JSON.stringify(body));
  }
}

async function readBody(req: IncomingMessage): Promise<{ params: Record<string, unknown>; files: RecordedCall['files'] }> {
  const type = req.headers['content-type'] ?? '';
  if (type.startsWith('multipart/form-data')) {
    const params: Record<string, unknown> = {};
    const files: RecordedCall['files'] = {};
    await new Promise<void>((resolve, reject) => {
      // Telegram reads file names as UTF-8 (busboy's default is latin1: «Счёт» would arrive as mojibake).
      const bb = busboy({ headers: req.headers, defParamCharset: 'utf8' });
      bb.on('field', (name, value) => {
        try {
          params[name] = JSON.parse(value);
        } catch {
          params[name] = value;
        }
      });
      bb.on('file', (name, stream, info) => {
        const chunks: Buffer[] = [];
        stream.on('data', (d: Buffer) => chunks.push(d));
        stream.on('end', () => (files[name] = { filename: info.filename ?? '', bytes: Buffer.concat(chunks) }));
      });
      bb.on('close', resolve);
      bb.on('error', reject);
      req.pipe(bb);
    });
    return { params, files };
  }
  const chunks: Buffer[] = [];
  for await (const c of req) chunks.push(c as Buffer);
  const text = Buffer.concat(chunks).toString('utf8');
  return { params: text ? (JSON.parse(text) as Record<string, unknown>) : {}, files: {} };
}
