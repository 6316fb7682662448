/**
 * A stand-in for the Graph API endpoints the Cloud API transport calls (node:http): the phone
 * number lookup, `messages`, media upload (multipart, parsed with busboy), media info and media
 * download. Records every call; failures can be queued. Also signs webhooks like Meta does.
 */
import { createHmac } from 'node:crypto';
import { createServer, type IncomingMessage, type Server } from 'node:http';
import busboy from 'busboy';

export interface GraphCall {
  method: string;
  path: string;
  auth?: string;
  json?: any;
  files?: Record<string, { name: string; mimeType: string; bytes: Buffer }>;
  fields?: Record<string, string>;
  at: number;
}

/** A Graph refusal to answer; `retryAfter`: the Retry-After header (null: none, as Meta; absent: 1 on a 429). */
export interface GraphFailure {
  status: number;
  error: Record<string, unknown>;
  retryAfter?: string | null;
}

export class FakeGraphApi {
  readonly calls: GraphCall[] = [];
  readonly media = new Map<string, { bytes: Buffer; mimeType: string; info?: Record<string, unknown> }>();
  /** Queued answers for the next `messages` calls: status and Graph error body. */
  readonly failMessages: GraphFailure[] = [];
  /** Asked first for each `messages` call, with its recipient: a failure to answer instead, or none. */
  failMessagesTo?: (to: string) => GraphFailure | undefined;
  /** Runs before a `messages` call is answered, with the wamid the answer will carry. */
  beforeMessageAnswer?: (wamid: string) => Promise<void>;
  private server?: Server;
  private waiters: Array<{ pred: (c: GraphCall) => boolean; resolve: (c: GraphCall) => void }> = [];
  private n = 0;
  base = '';

  constructor(
    readonly token: string,
    readonly phoneNumberId: string,
  ) {}

  async start(): Promise<void> {
    this.server = createServer((req, res) => {
      void this.handle(req).then(({ status, body, type, retryAfter }) => {
        // Meta sends no Retry-After; the stand-in does (1 s unless the failure says), so rate-limit tests wait 1 s, not 10.
        const header = retryAfter === undefined ? (status === 429 ? '1' : null) : retryAfter;
        res.writeHead(status, { 'content-type': type ?? 'application/json', ...(header !== null ? { 'retry-after': header } : {}) }).end(body);
      });
    });
    await new Promise<void>((r) => this.server!.listen(0, '127.0.0.1', r));
    this.base = `http://127.0.0.1:${(this.server.address() as { port: number }).port}`;
  }

  async stop(): Promise<void> {
    this.server?.closeAllConnections();
    await new Promise<void>((r) => (this.server ? this.server.close(() => r()) : r()));
  }

  /** `info`: fields to put into (or over) the media info answer, as a broken Graph might. */
  addMedia(id: string, bytes: Buffer, mimeType: string, info?: Record<string, unknown>): void {
    this.media.set(id, { bytes, mimeType, info });
  }

  waitForCall(pred: (c: GraphCall) => boolean, timeoutMs = 15_000): Promise<GraphCall> {
    const found = this.calls.find(pred);
    if (found) return Promise.resolve(found);
    return new Promise((resolve, reject) => {
      const w = { pred, resolve };
      this.waiters.push(w);
      setTimeout(() => {
        const i = this.waiters.indexOf(w);
        if (i >= 0) {
          this.waiters.splice(i, 1);
          reject(new Error(`no matching Graph call within ${timeoutMs} ms; saw ${this.calls.map((c) => `${c.method} ${c.path}`).join(', ')}`));
        }
      }, timeoutMs).unref();
    });
  }

  private record(call: GraphCall): void {
    this.calls.push(call);
    for (const w of [...this.waiters]) if (w.pred(call)) {
      this.waiters.splice(this.waiters.indexOf(w), 1);
      w.resolve(call);
    }
  }

  private async handle(req: IncomingMessage): Promise<{ status: number; body: string | Buffer; type?: string; retryAfter?: string | null }> {
    const path = (req.url ?? '').split('?')[0]!;
    const call: GraphCall = { method: req.method ?? 'GET', path, auth: req.headers.authorization, at: Date.now() };
    const unauthorized = req.headers.authorization !== `Bearer ${this.token}`;
    const err = (status: number, code: number, message: string) => ({ status, body: JSON.stringify({ error: { message, type: 'OAuthException', code, fbtrace_id: 'test' } }) });
    if ((req.headers['content-type'] ?? '').startsWith('multipart/form-data')) await this.parseMultipart(req, call);
    else {
      const chunks: Buffer[] = [];
      for await (const c of req) chunks.push(c as Buffer);
      const raw = Buffer.concat(chunks).toString('utf8');
      if (raw) call.json = JSON.parse(raw);
    }
    this.record(call);
    if (unauthorized) return err(401, 190, 'Invalid OAuth access token');
    const file = path.match(/^\/files\/(.+)$/);
    if (file) {
      const m = this.media.get(decodeURIComponent(file[1]!));
      return m ? { status: 200, body: m.bytes, type: m.mimeType } : { status: 404, body: '' };
    }
    const parts = path.split('/').filter(Boolean); // [version, id, edge?]
    if (parts[1] === this.phoneNumberId && parts[2] === 'messages' && req.method === 'POST') {
      const fail = this.failMessagesTo?.(String(call.json?.to)) ?? this.failMessages.shift();
      const refused = templateRefusal(call.json);
      if (!fail && refused) return { status: 400, body: JSON.stringify({ error: refused }) };
      if (fail) return { status: fail.status, body: JSON.stringify({ error: fail.error }), retryAfter: fail.retryAfter };
      const wamid = `wamid.OUT${++this.n}${Date.now()}`;
      await this.beforeMessageAnswer?.(wamid);
      return { status: 200, body: JSON.stringify({ messaging_product: 'whatsapp', contacts: [{ input: call.json?.to, wa_id: call.json?.to }], messages: [{ id: wamid }] }) };
    }
    if (parts[1] === this.phoneNumberId && parts[2] === 'media' && req.method === 'POST') {
      const f = call.files?.file;
      if (!f) return err(400, 100, 'file is required');
      const id = `up-${++this.n}`;
      this.media.set(id, { bytes: f.bytes, mimeType: f.mimeType });
      return { status: 200, body: JSON.stringify({ id }) };
    }
    if (parts[1] === this.phoneNumberId && req.method === 'GET') {
      return { status: 200, body: JSON.stringify({ id: this.phoneNumberId, display_phone_number: '+7 495 000-00-00', verified_name: 'Магазин' }) };
    }
    const mediaId = parts[1] ?? '';
    const m = this.media.get(decodeURIComponent(mediaId));
    if (m && req.method === 'GET') {
      return { status: 200, body: JSON.stringify({ id: mediaId, url: `${this.base}/files/${mediaId}`, mime_type: m.mimeType, file_size: m.bytes.length, messaging_product: 'whatsapp', ...m.info }) };
    }
    return err(404, 803, `unknown path ${path}`);
  }

  private parseMultipart(req: IncomingMessage, call: GraphCall): Promise<void> {
    call.files = {};
    call.fields = {};
    return new Promise((resolve, reject) => {
      const bb = busboy({ headers: req.headers });
      bb.on('file', (name, stream, info) => {
        const chunks: Buffer[] = [];
        stream.on('data', (d: Buffer) => chunks.push(d));
        stream.on('end', () => (call.files![name] = { name: info.filename ?? '', mimeType: info.mimeType, bytes: Buffer.concat(chunks) }));
      });
      bb.on('field', (name, value) => (call.fields![name] = value));
      bb.on('close', () => resolve());
      bb.on('error', reject);
      req.pipe(bb);
    });
  }
}

/** Meta's answer to a template body parameter it does not take (a line break, a tab, more than 4 spaces in a row, nothing). */
function templateRefusal(body: any): Record<string, unknown> | undefined {
  if (body?.type !== 'template') return undefined;
  const texts: string[] = (body.template?.components ?? []).flatMap((c: any) => (c.parameters ?? []).map((p: any) => String(p.text ?? '')));
  if (!texts.some((t) => t.trim() === '' || /[\n\t]| {5}/.test(t))) return undefined;
  return {
    message: '(#132018) There was an issue with the parameters in your template.', type: 'OAuthException', code: 132018,
    error_data: { messaging_product: 'whatsapp', details: 'Param text cannot have new-line/tab characters or more than 4 consecutive spaces' }, fbtrace_id: 'test',
  };
}

export function signWebhook(appSecret: string, body: string): string {
  return `sha256=${createHmac('sha256', appSecret).update(body).digest('hex')}`;
}

let wamidCounter = 0;
export const newWamid = () => `wamid.HBgLNzkxNjEyMzQ1NjcVAgASGBQzQUIx${++wamidCounter}${Date.now()}`;

/** A Cloud API webhook body as Meta sends it. */
export function webhookBody(phoneNumberId: string, value: { messages?: unknown[]; statuses?: unknown[]; contacts?: unknown[] }): string {
  return JSON.stringify({
    object: 'whatsapp_business_account',
    entry: [{
      id: 'WABA-1',
      changes: [{
        field: 'messages',
        value: { messaging_product: 'whatsapp', metadata: { display_phone_number: '74950000000', phone_number_id: phoneNumberId }, ...value },
      }],
    }],
  });
}
