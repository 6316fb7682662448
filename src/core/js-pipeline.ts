/**
 * The hot path's JetStream calls — publish-and-wait-for-ack and direct get of a subject's last
 * message — over one reply subscription, without the client's per-request machinery.
 *
 * Why: nats.js turns every JetStream publish and KV get into a `request()` that arms a timer
 * and, on completion, always constructs a `RequestError("cancelled")` (with a stack trace) even
 * when the request succeeded. On the router that was the largest single cost in the CPU profile
 * (~11 % self time, plus timers and GC). Here a request is one map entry; timeouts are found by
 * one sweep, since entries are inserted in deadline order. Semantics are the client's: acks and
 * API errors are parsed the same way and errors are the library's `JetStreamApiError`, so callers
 * cannot tell the difference (and `isCasConflict` keeps working).
 */
import { createInbox, headers as makeHeaders, type Msg, type MsgHdrs, type NatsConnection, type Subscription } from '@nats-io/transport-node';
import { JetStreamApiError, type PubAck } from '@nats-io/jetstream';
import type { CasGuard } from './cas-guard.js';
import { NatsUnavailableError } from './errors.js';

interface Pending {
  resolve: (m: Msg) => void;
  reject: (e: Error) => void;
  deadline: number;
}

export interface StoredMessage {
  seq: number;
  data: Uint8Array;
  headers?: MsgHdrs;
}

export interface PublishOptions {
  msgID?: string;
  /** Compare-and-set: store only if the subject's last sequence is this (0 = subject empty). */
  expectedLastSubjectSeq?: number;
}

const SWEEP_MS = 250;

export class JsPipeline {
  private readonly prefix: string;
  private readonly pending = new Map<string, Pending>();
  private readonly sub: Subscription;
  private readonly sweeper: NodeJS.Timeout;
  private next = 0;
  private closedReason?: Error;
  private outbox: Array<{ subject: string; data: string | Uint8Array; opts: { reply: string; headers?: MsgHdrs }; token: string }> = [];

  constructor(
    private readonly nc: NatsConnection,
    private readonly timeoutMs: number,
    private readonly apiPrefix = '$JS.API',
  ) {
    this.prefix = createInbox();
    this.sub = nc.subscribe(`${this.prefix}.*`, {
      // An error here (a permissions violation on the inbox) ends the subscription: fail fast
      // from then on instead of letting every call wait for its timeout.
      callback: (err, m) => (err ? this.close(new Error(`JetStream reply subscription failed: ${err.message}`)) : this.settle(m)),
    });
    this.sweeper = setInterval(() => this.sweep(), SWEEP_MS).unref();
    void nc.closed().then(() => this.close(new NatsUnavailableError('NATS connection closed'))); // eslint-disable-line @typescript-eslint/no-floating-promises -- closed() resolves (with the error, if any), never rejects
  }

  /** A JetStream publish; resolves once the stream stored it (or recognised a duplicate). */
  async publish(subject: string, data: string | Uint8Array, o?: PublishOptions): Promise<PubAck> {
    const h = o?.msgID !== undefined || o?.expectedLastSubjectSeq !== undefined ? publishHeaders(o) : undefined;
    const m = await this.request(subject, data, h);
    if (m.headers?.code === 503) throw new Error(`no stream stores ${subject} (JetStream answered 503 no responders)`);
    const ack = JSON.parse(decoder.decode(m.data)) as { stream?: string; seq?: number; duplicate?: boolean; domain?: string; error?: ApiErrorBody };
    if (ack.error) throw new JetStreamApiError(ack.error);
    if (!ack.stream || ack.seq === undefined) throw new Error(`invalid JetStream ack for ${subject}`);
    return { stream: ack.stream, seq: ack.seq, duplicate: ack.duplicate ?? false, domain: ack.domain } as PubAck;
  }

  /** The last message stored on `subject` in `stream` (a stream with allow_direct), or null. */
  async lastBySubject(stream: string, subject: string): Promise<StoredMessage | null> {
    const m = await this.request(`${this.apiPrefix}.DIRECT.GET.${stream}.${subject}`, EMPTY);
    const code = m.headers?.code ?? 0;
    if (code === 404) return null;
    if (code !== 0) throw new JetStreamApiError({ code, err_code: 0, description: m.headers?.description || `direct get failed with status ${code}` });
    return { seq: Number(m.headers!.get('Nats-Sequence')), data: m.data, headers: m.headers };
  }

  private request(subject: string, data: string | Uint8Array, h?: MsgHdrs): Promise<Msg> {
    if (this.closedReason) return Promise.reject(this.closedReason);
    if (this.nc.isClosed()) return Promise.reject(new NatsUnavailableError('NATS connection closed'));
    const token = (this.next++).toString(36);
    return new Promise<Msg>((resolve, reject) => {
      this.pending.set(token, { resolve, reject, deadline: performance.now() + this.timeoutMs });
      this.outbox.push({ subject, data, opts: h ? { reply: `${this.prefix}.${token}`, headers: h } : { reply: `${this.prefix}.${token}` }, token });
      if (this.outbox.length === 1) setImmediate(this.sendOutbox);
    });
  }

  /**
   * Requests made during one turn of the event loop go out together: the client flushes its
   * buffer to the socket once per microtask checkpoint, and on a busy router that was a write
   * syscall for nearly every publish (~10 % of CPU).
   */
  private readonly sendOutbox = (): void => {
    const batch = this.outbox;
    this.outbox = [];
    for (const r of batch) {
      try {
        this.nc.publish(r.subject, r.data, r.opts);
      } catch (err) {
        const p = this.pending.get(r.token);
        this.pending.delete(r.token);
        p?.reject(err as Error);
      }
    }
  };

  private settle(m: Msg): void {
    const token = m.subject.slice(this.prefix.length + 1);
    const p = this.pending.get(token);
    if (!p) return; // answered after its timeout
    this.pending.delete(token);
    p.resolve(m);
  }

  private sweep(): void {
    const now = performance.now(); // monotonic: deadlines stay in insertion order
    for (const [token, p] of this.pending) {
      if (p.deadline > now) break; // insertion order is deadline order
      this.pending.delete(token);
      p.reject(new NatsUnavailableError(`JetStream did not answer within ${this.timeoutMs} ms`));
    }
  }

  close(reason = new Error('pipeline closed')): void {
    this.closedReason ??= reason;
    clearInterval(this.sweeper);
    if (!this.sub.isClosed()) this.sub.unsubscribe();
    for (const p of this.pending.values()) p.reject(reason);
    this.pending.clear();
  }
}

/**
 * The headers of a hot-path publish as the bytes the client sends. The client only calls
 * `encode()` on what it is given; building the text directly skips a MsgHdrs (a Map of arrays,
 * a validation regex per value, string concatenation in toString) per publish. Values are
 * checked as MsgHdrs.set checks them: no CR or LF.
 */
function publishHeaders(o: PublishOptions): MsgHdrs {
  let text = 'NATS/1.0';
  if (o.msgID !== undefined) {
    if (/[\r\n]/.test(o.msgID)) return slowHeaders(o);
    text += `\r\nNats-Msg-Id: ${o.msgID.trim()}`;
  }
  if (o.expectedLastSubjectSeq !== undefined) text += `\r\nNats-Expected-Last-Subject-Sequence: ${o.expectedLastSubjectSeq}`;
  const bytes = encoder.encode(`${text}\r\n\r\n`);
  return { encode: () => bytes } as unknown as MsgHdrs;
}

/** The client's own headers, for a value it refuses (it throws the client's error). */
function slowHeaders(o: PublishOptions): MsgHdrs {
  const h = makeHeaders();
  if (o.msgID !== undefined) h.set('Nats-Msg-Id', o.msgID);
  if (o.expectedLastSubjectSeq !== undefined) h.set('Nats-Expected-Last-Subject-Sequence', String(o.expectedLastSubjectSeq));
  return h;
}

const encoder = new TextEncoder();

interface ApiErrorBody {
  code: number;
  err_code: number;
  description: string;
}

const EMPTY = new Uint8Array(0);

export interface KvEntry {
  revision: number;
  operation: 'PUT' | 'DEL' | 'PURGE';
  string(): string;
  json<T>(): T;
}

const decoder = new TextDecoder();

/**
 * The KV operations the router's hot path uses (get, create, update), on a JsPipeline. Same
 * semantics as @nats-io/kv's: create succeeds over a deleted key, conflicts throw the library's
 * wrong-last-sequence error. The bucket must allow direct gets (provisioning sets it).
 */
export class PipelinedKv {
  private readonly stream: string;
  private readonly subjectPrefix: string;

  constructor(
    private readonly pipe: JsPipeline,
    readonly bucket: string,
    /** Set where the server's own compare-and-set was found unsafe (cas-probe.ts). */
    private readonly guard?: CasGuard,
  ) {
    this.stream = `KV_${bucket}`;
    this.subjectPrefix = `$KV.${bucket}.`;
  }

  async get(key: string): Promise<KvEntry | null> {
    const m = await this.pipe.lastBySubject(this.stream, this.subjectPrefix + key);
    if (!m) return null;
    const operation = (m.headers?.get('KV-Operation') || 'PUT') as KvEntry['operation'];
    return {
      revision: m.seq,
      operation,
      string: () => decoder.decode(m.data),
      json: <T>() => JSON.parse(decoder.decode(m.data)) as T,
    };
  }

  async create(key: string, value: string): Promise<number> {
    try {
      return (await this.pipe.publish(this.subjectPrefix + key, value, { expectedLastSubjectSeq: 0 })).seq;
    } catch (err) {
      // A deleted or purged key still has a last message: create over it, as the library does.
      const current = await this.get(key).catch(() => null);
      if (!current || current.operation === 'PUT') throw err;
      return this.update(key, value, current.revision);
    }
  }

  async update(key: string, value: string, revision: number): Promise<number> {
    const write = async () => (await this.pipe.publish(this.subjectPrefix + key, value, { expectedLastSubjectSeq: revision })).seq;
    return this.guard ? this.guard.update(this.bucket, key, revision, write) : write();
  }
}
