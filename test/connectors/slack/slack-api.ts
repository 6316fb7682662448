/**
 * A stand-in Slack on 127.0.0.1: the Web API methods the connector uses (form or JSON bodies,
 * scripted 429s, platform errors and calls that never answer), the external file upload flow,
 * private file downloads (scripted failures), and a Socket Mode WebSocket server that redelivers
 * envelopes the client did not acknowledge and can close connections right after hello.
 */
import { randomUUID } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { WebSocketServer, type WebSocket } from 'ws';

export interface ApiCall {
  method: string;
  params: Record<string, any>;
  at: number;
  /** The bearer token the call carried. */
  token: string;
}

export class FakeSlack {
  readonly calls: ApiCall[] = [];
  readonly uploads = new Map<string, Buffer>();
  readonly acked = new Set<string>();
  readonly files = new Map<string, Buffer>();
  /** Files answered with Slack's HTML sign-in page, as when the token lacks files:read. */
  readonly signInPageFiles = new Set<string>();
  /** Files sent chunked, without Content-Length. */
  readonly chunkedFiles = new Set<string>();
  /** Tokens auth.test and apps.connections.open refuse with invalid_auth. */
  readonly refusedTokens = new Set<string>();
  /** File downloads served, by file id. */
  readonly downloads = new Map<string, number>();
  /** Statuses the next downloads of a file answer with, before it is served normally. */
  readonly downloadFailures = new Map<string, number[]>();
  /** This many next Socket Mode connections are closed right after hello. */
  closeAfterHello = 0;
  /** When each Socket Mode connection was accepted. */
  readonly connectedAt: number[] = [];
  /** When set, file downloads wait for this before answering (to hold an event in flight). */
  downloadGate?: Promise<void>;
  private downloadArrived?: () => void;
  readonly botToken: string;
  connections = 0;
  private server?: Server;
  private wss?: WebSocketServer;
  private socket?: WebSocket;
  private readonly pending = new Map<string, unknown>();
  private readonly scripted = new Map<string, Array<Scripted>>();
  private waiters: Array<{ pred: (c: ApiCall) => boolean; resolve: (c: ApiCall) => void }> = [];
  port = 0;

  constructor(botToken: string) {
    this.botToken = botToken;
  }

  get apiUrl(): string {
    return `http://127.0.0.1:${this.port}/api/`;
  }

  async start(): Promise<void> {
    this.server = createServer((req, res) => void this.handle(req, res));
    this.wss = new WebSocketServer({ server: this.server, path: '/ws' });
    this.wss.on('connection', (ws) => {
      this.connections++;
      this.connectedAt.push(Date.now());
      ws.send(JSON.stringify({ type: 'hello', num_connections: 1, connection_info: { app_id: 'A1' }, debug_info: { host: 'stand-in' } }));
      if (this.closeAfterHello > 0) {
        this.closeAfterHello--;
        return void ws.close();
      }
      this.socket = ws;
      for (const [envelope_id, payload] of this.pending) this.sendEnvelope(ws, envelope_id, payload, 1);
      ws.on('message', (data) => {
        const m = JSON.parse(String(data)) as { envelope_id?: string };
        if (m.envelope_id) {
          this.acked.add(m.envelope_id);
          this.pending.delete(m.envelope_id);
        }
      });
    });
    await new Promise<void>((r) => this.server!.listen(0, '127.0.0.1', r));
    this.port = (this.server.address() as { port: number }).port;
  }

  async stop(): Promise<void> {
    for (const c of this.wss?.clients ?? []) c.terminate();
    this.wss?.close();
    this.server?.closeAllConnections();
    await new Promise((r) => this.server?.close(r));
  }

  /** Pushes an Events API payload over Socket Mode; it is redelivered until acknowledged. */
  pushSocketEvent(payload: unknown, then?: 'disconnect'): string {
    const envelope_id = randomUUID();
    this.pending.set(envelope_id, payload);
    if (this.socket) {
      this.sendEnvelope(this.socket, envelope_id, payload, 0);
      if (then === 'disconnect') this.socket.send(JSON.stringify({ type: 'disconnect', reason: 'refresh_requested', debug_info: { host: 'stand-in' } }));
    }
    return envelope_id;
  }

  /** Sends a `disconnect` frame on the current Socket Mode connection (Slack recycling it). */
  disconnect(): void {
    this.socket?.send(JSON.stringify({ type: 'disconnect', reason: 'refresh_requested', debug_info: { host: 'stand-in' } }));
  }

  failNext(method: string, ...responses: Array<Scripted>): void {
    this.scripted.set(method, [...(this.scripted.get(method) ?? []), ...responses]);
  }

  /** The next call of `method` is read and recorded but never answered. */
  hangNext(method: string): void {
    this.failNext(method, 'hang');
  }

  /** Resolves when the next file download request arrives. */
  nextDownload(): Promise<void> {
    return new Promise((r) => (this.downloadArrived = r));
  }

  waitForCall(pred: (c: ApiCall) => boolean, timeoutMs = 15_000): Promise<ApiCall> {
    const found = this.calls.find(pred);
    if (found) return Promise.resolve(found);
    return new Promise((resolve, reject) => {
      const w = { pred, resolve };
      this.waiters.push(w);
      setTimeout(() => {
        this.waiters = this.waiters.filter((x) => x !== w);
        reject(new Error(`no matching Slack call within ${timeoutMs} ms; calls: ${this.calls.map((c) => c.method).join(',')}`));
      }, timeoutMs);
    });
  }

  private sendEnvelope(ws: WebSocket, envelope_id: string, payload: unknown, retry: number): void {
    ws.send(JSON.stringify({ type: 'events_api', envelope_id, payload, accepts_response_payload: false, retry_attempt: retry, retry_reason: retry ? 'timeout' : '' }));
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', 'http://x');
    const raw = await readRaw(req);
    if (url.pathname.startsWith('/files/')) {
      if (req.headers.authorization !== `Bearer ${this.botToken}`) return void res.writeHead(403).end();
      const id = url.pathname.slice('/files/'.length);
      this.downloads.set(id, (this.downloads.get(id) ?? 0) + 1);
      this.downloadArrived?.();
      this.downloadArrived = undefined;
      if (this.downloadGate) await this.downloadGate;
      const failure = this.downloadFailures.get(id)?.shift();
      if (failure) return void res.writeHead(failure, { 'content-type': 'text/plain' }).end(`stand-in answered ${failure}`);
      if (this.signInPageFiles.has(id)) return void res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' }).end('<!DOCTYPE html><html><body>Sign in to Slack</body></html>');
      const f = this.files.get(id);
      if (f && this.chunkedFiles.has(id)) {
        res.writeHead(200, { 'content-type': 'application/octet-stream' });
        for (let i = 0; i < f.length; i += 16_384) res.write(f.subarray(i, i + 16_384));
        return void res.end();
      }
      return void (f ? res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': String(f.length) }).end(f) : res.writeHead(404).end());
    }
    if (url.pathname.startsWith('/upload/')) {
      this.uploads.set(url.pathname.slice('/upload/'.length), extractUpload(raw, String(req.headers['content-type'] ?? '')));
      return void res.writeHead(200).end('OK');
    }
    const method = url.pathname.replace('/api/', '');
    const params = parseParams(raw, String(req.headers['content-type'] ?? ''));
    const token = String(req.headers.authorization ?? '').replace(/^Bearer /, '') || String(params.token ?? '');
    const call = { method, params, at: Date.now(), token };
    this.calls.push(call);
    for (const w of [...this.waiters]) if (w.pred(call)) {
      this.waiters = this.waiters.filter((x) => x !== w);
      w.resolve(call);
    }
    const scripted = this.scripted.get(method)?.shift();
    if (scripted === 'hang') return;
    if (scripted) return void res.writeHead(scripted.status, { 'content-type': 'application/json', ...scripted.headers }).end(JSON.stringify(scripted.body));
    if ((method === 'auth.test' || method === 'apps.connections.open') && this.refusedTokens.has(token)) {
      return void res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ ok: false, error: 'invalid_auth' }));
    }
    const ok = (body: Record<string, unknown>) => res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ ok: true, ...body }));
    switch (method) {
      case 'auth.test':
        return void ok({ user_id: 'UBOT', bot_id: 'BBOT', team_id: 'T1', user: 'omnigate' });
      case 'apps.connections.open':
        return void ok({ url: `ws://127.0.0.1:${this.port}/ws` });
      case 'users.info':
        return void ok({ user: { id: params.user, name: 'ivan', real_name: 'Иван Петров', profile: { display_name: 'Иван', real_name: 'Иван Петров', email: 'ivan@client.ru' } } });
      case 'chat.postMessage':
        return void ok({ channel: params.channel, ts: `${Math.floor(Date.now() / 1000)}.${String(this.calls.length).padStart(6, '0')}` });
      case 'files.getUploadURLExternal': {
        const id = `F${this.calls.length}`;
        return void ok({ upload_url: `http://127.0.0.1:${this.port}/upload/${id}`, file_id: id });
      }
      case 'files.completeUploadExternal':
        return void ok({ files: JSON.parse(String(params.files ?? '[]')) });
      default:
        return void ok({});
    }
  }
}

type Scripted = { status: number; headers?: Record<string, string>; body: unknown } | 'hang';

async function readRaw(req: IncomingMessage): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const c of req) chunks.push(c as Buffer);
  return Buffer.concat(chunks);
}

function parseParams(raw: Buffer, type: string): Record<string, any> {
  const text = raw.toString('utf8');
  if (type.includes('application/json')) return text ? JSON.parse(text) : {};
  return Object.fromEntries(new URLSearchParams(text));
}

/** The upload body is the file, possibly wrapped in a one-part multipart form. */
function extractUpload(raw: Buffer, type: string): Buffer {
  const boundary = /boundary=(?:"([^"]+)"|([^;]+))/.exec(type);
  if (!boundary) return raw;
  const b = Buffer.from(`--${boundary[1] ?? boundary[2]}`);
  const start = raw.indexOf(b);
  const headerEnd = raw.indexOf('\r\n\r\n', start);
  const end = raw.indexOf(b, headerEnd);
  return raw.subarray(headerEnd + 4, end - 2);
}
