/**
 * The socket seam for Baileys tests: a socket whose `ev` is Baileys' own makeEventBuffer, driven
 * with proto-shaped events, plus a local HTTP media server so media goes through Baileys' real
 * encryption (prepareWAMessageMedia) and decryption (downloadMediaMessage). Outgoing messages are
 * built by Baileys' generateWAMessage, as its sendMessage does.
 */
import { createServer, type Server } from 'node:http';
import type { Readable } from 'node:stream';
import { pino } from 'pino';
import type { AnyMessageContent, MiscMessageGenerationOptions, WAMessage, proto as P } from '@whiskeysockets/baileys';
import type { WaSocketConfig, WaSocketLike } from '../../../src/connectors/whatsapp/socket.js';

import { generateWAMessage, makeEventBuffer, prepareWAMessageMedia, proto } from '../../../src/connectors/whatsapp/baileys.js';
export const silent = pino({ level: 'silent' });

export class MediaServer {
  private readonly files = new Map<string, Buffer>();
  /** Paths answered with headers and a first chunk, then nothing: a CDN that hangs. */
  private readonly stalled = new Set<string>();
  private server?: Server;
  private base = '';
  private n = 0;

  async start(): Promise<void> {
    this.server = createServer((req, res) => {
      const body = this.files.get(req.url ?? '');
      if (!body) return res.writeHead(404).end();
      if (this.stalled.has(req.url ?? '')) return void res.writeHead(200, { 'content-length': body.length }).write(body.subarray(0, 64));
      res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': body.length }).end(body);
    });
    await new Promise<void>((r) => this.server!.listen(0, '127.0.0.1', r));
    this.base = `http://127.0.0.1:${(this.server.address() as { port: number }).port}`;
  }

  /** Baileys' WAMediaUploadFunction, storing the encrypted bytes on this server. */
  upload = async (stream: Readable, opts: { mediaType: string }) => {
    const chunks: Buffer[] = [];
    for await (const c of stream) chunks.push(c as Buffer);
    const path = `/mms/${opts.mediaType}/${++this.n}`;
    this.files.set(path, Buffer.concat(chunks));
    return { mediaUrl: `${this.base}${path}`, directPath: path };
  };

  /** Encrypt and "upload" media the way a phone would, returning the message content. */
  prepare(content: AnyMessageContent) {
    return prepareWAMessageMedia(content as never, { upload: this.upload as never, logger: silent });
  }

  stall(url: string): void {
    this.stalled.add(new URL(url).pathname);
  }

  async stop(): Promise<void> {
    this.server?.closeAllConnections();
    await new Promise<void>((r) => (this.server ? this.server.close(() => r()) : r()));
  }
}

export interface SentCall {
  jid: string;
  content: AnyMessageContent;
  options?: MiscMessageGenerationOptions;
  /** The message as Baileys built it (media encrypted and uploaded to the media server). */
  prepared?: P.IMessage;
}

let outCounter = 0;

export class FakeSocket implements WaSocketLike {
  readonly ev = makeEventBuffer(silent) as unknown as WaSocketLike['ev'];
  readonly sent: SentCall[] = [];
  ended = false;
  failNextSends = 0;
  /** The next sends reach WhatsApp but answer only after this long (a send that times out for us). */
  slowNextSends = { count: 0, ms: 0 };
  private sendWaiters: Array<{ pred: (c: SentCall) => boolean; resolve: (c: SentCall) => void }> = [];

  constructor(
    readonly config: WaSocketConfig,
    private readonly media: MediaServer,
  ) {}

  async sendMessage(jid: string, content: AnyMessageContent, options?: MiscMessageGenerationOptions): Promise<WAMessage> {
    if (this.failNextSends > 0) {
      this.failNextSends--;
      throw Object.assign(new Error('Connection Closed'), { output: { statusCode: 428 } });
    }
    const full = await generateWAMessage(jid, content, {
      userJid: this.config.auth.creds.me?.id ?? '79990000001@s.whatsapp.net',
      upload: this.media.upload as never,
      logger: silent,
      ...options,
      // Baileys' default when the caller does not choose one.
      messageId: options?.messageId ?? `3EB0OUT${++outCounter}`,
    });
    const call: SentCall = { jid, content, options, prepared: full.message ?? undefined };
    this.sent.push(call);
    for (const w of [...this.sendWaiters]) if (w.pred(call)) {
      this.sendWaiters.splice(this.sendWaiters.indexOf(w), 1);
      w.resolve(call);
    }
    if (this.slowNextSends.count > 0) {
      this.slowNextSends.count--;
      await new Promise((r) => setTimeout(r, this.slowNextSends.ms));
    }
    return full;
  }

  waitForSend(pred: (c: SentCall) => boolean = () => true, timeoutMs = 15_000): Promise<SentCall> {
    const found = this.sent.find(pred);
    if (found) return Promise.resolve(found);
    return new Promise((resolve, reject) => {
      const w = { pred, resolve };
      this.sendWaiters.push(w);
      setTimeout(() => reject(new Error(`no matching sendMessage within ${timeoutMs} ms; saw ${this.sent.length}`)), timeoutMs).unref();
    });
  }

  /** What Baileys does on close: one connection.update with the reason, as a Boom-like error. */
  end(error: Error | undefined): void {
    if (this.ended) return;
    this.ended = true;
    this.ev.emit('connection.update', { connection: 'close', lastDisconnect: { error, date: new Date() } });
  }

  /** Close the way WhatsApp does, with a DisconnectReason status code. */
  close(statusCode: number, message = 'closed by test'): void {
    this.end(Object.assign(new Error(message), { isBoom: true, output: { statusCode, payload: { message } } }));
  }

  async requestPairingCode(): Promise<string> {
    return 'OMNI2GAT';
  }

  emitMessages(messages: Array<Record<string, unknown>>, type: 'notify' | 'append' = 'notify'): void {
    this.ev.emit('messages.upsert', { messages: messages.map((m) => proto.WebMessageInfo.fromObject(m)), type });
  }
}

/** Collects sockets the connector creates; tests await the next one. */
export class SocketPool {
  readonly sockets: FakeSocket[] = [];
  private waiters: Array<{ n: number; resolve: (s: FakeSocket) => void }> = [];

  constructor(private readonly media: MediaServer) {}

  factory = (config: WaSocketConfig): WaSocketLike => {
    const s = new FakeSocket(config, this.media);
    this.sockets.push(s);
    for (const w of [...this.waiters]) if (this.sockets.length >= w.n) {
      this.waiters.splice(this.waiters.indexOf(w), 1);
      w.resolve(this.sockets[w.n - 1]!);
    }
    return s;
  };

  /** Resolves with the n-th socket (1-based) once created. */
  nth(n: number, timeoutMs = 15_000): Promise<FakeSocket> {
    if (this.sockets.length >= n) return Promise.resolve(this.sockets[n - 1]!);
    return new Promise((resolve, reject) => {
      this.waiters.push({ n, resolve });
      setTimeout(() => reject(new Error(`socket #${n} not created within ${timeoutMs} ms (have ${this.sockets.length})`)), timeoutMs).unref();
    });
  }

  get latest(): FakeSocket | undefined {
    return this.sockets[this.sockets.length - 1];
  }
}
