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

/**
 * One request in flight. The record is also what the client is given as its publish options
 * (it reads `reply` and `headers`), and the map key is its reply subject, so a request costs one
 * object, one promise and one string beside what it sends: on the router this runs ~4 times per
 * routed event, and what lives while a request is in flight is what each scavenge copies.
 */
interface Pending {
  readonly subject: string;
  /** What to send; dropped once handed to the client, so a payload is not kept for the round trip. */
  data: string | Uint8Array | undefined;
  readonly reply: string;
  headers: MsgHdrs | undefined;
  readonly deadline: number;
  /** A publish settles with its parsed ack; a direct get with the message. */
  readonly publish: boolean;
  readonly resolve: (v: Msg | PubAck) => void;
  readonly reject: (e: Error) => void;
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
  /** Reply subject → the request waiting for it, in deadline order. */
  private readonly pending = new Map<string, Pending>();
  private readonly sub: Subscription;
  private readonly sweeper: NodeJS.Timeout;
  private next = 0;
  private closedReason?: Error;
  private outbox: Pending[] = [];

  constructor(
    private readonly nc: NatsConnection,
    private readonly timeoutMs: number,
    private readonly apiPrefix = '$JS.API',
  ) {
    this.prefix = `${createInbox()}.`;
    this.sub = nc.subscribe(`${this.prefix}*`, {
      // An error here (a permissions violation on the inbox) ends the subscription: fail fast
      // from then on instead of letting every call wait for its timeout.
      callback: (err, m) => (err ? this.close(new Error(`JetStream reply subscription failed: ${err.message}`)) : this.settle(m)),
    });
    this.sweeper = setInterval(() => this.sweep(), SWEEP_MS).unref();
    void nc.closed().then(() => this.close(new NatsUnavailableError('NATS connection closed'))); // eslint-disable-line @typescript-eslint/no-floating-promises -- closed() resolves (with the error, if any), never rejects
  }

  /** A JetStream publish; resolves once the stream stored it (or recognised a duplicate). */
  publish(subject: string, data: string | Uint8Array, o?: PublishOptions): Promise<PubAck> {
    let h: MsgHdrs | undefined;
    try {
      h = o?.msgID !== undefined || o?.expectedLastSubjectSeq !== undefined ? publishHeaders(o) : undefined;
    } catch (err) {
      // A value the client refuses (CR or LF in a message id): a rejection, as from any call, so
      // a caller that started other calls beside this one still awaits them all.
      return Promise.reject(err as Error);
    }
    return this.request(subject, data, h, true) as Promise<PubAck>;
  }

  /** The last message stored on `subject` in `stream` (a stream with allow_direct), or null. */
  async lastBySubject(stream: string, subject: string): Promise<StoredMessage | null> {
    const m = (await this.request(`${this.apiPrefix}.DIRECT.GET.${stream}.${subject}`, EMPTY, undefined, false)) as Msg;
    const code = m.headers?.code ?? 0;
    if (code === 404) return null;
    if (code !== 0) throw new JetStreamApiError({ code, err_code: 0, description: m.headers?.description || `direct get failed with status ${code}` });
    return { seq: Number(m.headers!.get('Nats-Sequence')), data: m.data, headers: m.headers };
  }

  private request(subject: string, data: string | Uint8Array, headers: MsgHdrs | undefined, publish: boolean): Promise<Msg | PubAck> {
    if (this.closedReason) return Promise.reject(this.closedReason);
    if (this.nc.isClosed()) return Promise.reject(new NatsUnavailableError('NATS connection closed'));
    const reply = this.prefix + (this.next++).toString(36);
    return new Promise<Msg | PubAck>((resolve, reject) => {
      // Buffer.from, not the client's TextEncoder: a payload under 4 KB is a slice of Node's 8 KB
      // pool instead of an ArrayBuffer of its own, and every young ArrayBuffer is swept by a
      // scavenge (at times milliseconds of the pause; BENCHMARKS.md). The same for headers.
      const r: Pending = { subject, data: typeof data === 'string' ? Buffer.from(data) : data, reply, headers, deadline: performance.now() + this.timeoutMs, publish, resolve, reject };
      this.pending.set(reply, r);
      if (this.outbox.push(r) === 1) setImmediate(this.sendOutbox);
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
      // Timed out or failed by close() before its turn came.
      if (this.pending.get(r.reply) !== r) continue;
      try {
        this.nc.publish(r.subject, r.data, r);
      } catch (err) {
        this.pending.delete(r.reply);
        r.reject(err as Error);
      }
      r.data = undefined;
      r.headers = undefined;
    }
  };

  private settle(m: Msg): void {
    const r = this.pending.get(m.subject);
    if (!r) return; // answered after its timeout
    this.pending.delete(m.subject);
    if (!r.publish) return r.resolve(m);
    try {
      r.resolve(pubAck(m, r.subject));
    } catch (err) {
      r.reject(err as Error);
    }
  }

  private sweep(): void {
    const now = performance.now(); // monotonic: deadlines stay in insertion order
    for (const [reply, r] of this.pending) {
      if (r.deadline > now) break; // insertion order is deadline order
      this.pending.delete(reply);
      r.reject(new NatsUnavailableError(`JetStream did not answer within ${this.timeoutMs} ms`));
    }
  }

  close(reason = new Error('pipeline closed')): void {
    this.closedReason ??= reason;
    clearInterval(this.sweeper);
    if (!this.sub.isClosed()) this.sub.unsubscribe();
    for (const r of this.pending.values()) r.reject(reason);
    this.pending.clear();
  }
}

/** A publish's answer as the client library reads it: its ack, or the error it reports. */
function pubAck(m: Msg, subject: string): PubAck {
  if (m.headers?.code === 503) throw new Error(`no stream stores ${subject} (JetStream answered 503 no responders)`);
  const fast = plainAck(m.data);
  if (fast) return fast;
  const ack = JSON.parse(decoder.decode(m.data)) as { stream?: string; seq?: number; duplicate?: boolean; domain?: string; error?: ApiErrorBody };
  if (ack.error) throw new JetStreamApiError(ack.error);
  if (!ack.stream || ack.seq === undefined) throw new Error(`invalid JetStream ack for ${subject}`);
  return { stream: ack.stream, seq: ack.seq, duplicate: ack.duplicate ?? false, domain: ack.domain } as PubAck;
}

const ascii = new TextEncoder();
const STREAM_KEY = ascii.encode('{"stream":"');
const SEQ_KEY = ascii.encode('"seq":');
const DUPLICATE_KEY = ascii.encode(',"duplicate":');
const TRUE_TAIL = ascii.encode('true}');

/**
 * The two acks nats-server sends for nearly every publish, read without decoding and parsing
 * the JSON. The server writes them from a template, not with a JSON encoder, and the spacing
 * differs by version: `{"stream":"S", "seq":N}` and `…, "seq":N,"duplicate": true}` up to
 * 2.11 (seen on 2.9.10; the 2.10 and 2.11 sources read the same), without the space before
 * "seq" later. A single space is allowed where a version puts one; anything else (an error, a
 * domain, another key order) returns undefined and takes the JSON path, so the answer is the
 * library's in every case.
 */
export function plainAck(b: Uint8Array): PubAck | undefined {
  if (!startsWithAt(b, STREAM_KEY, 0)) return undefined;
  let i = STREAM_KEY.length;
  const nameStart = i;
  while (i < b.length && b[i] !== QUOTE && b[i] !== BACKSLASH) i++;
  const nameEnd = i;
  if (b[i] !== QUOTE || b[i + 1] !== COMMA) return undefined;
  i += 2;
  if (b[i] === SPACE) i++;
  if (!startsWithAt(b, SEQ_KEY, i)) return undefined;
  const stream = streamName(b, nameStart, nameEnd);
  if (stream === undefined) return undefined;
  i += SEQ_KEY.length;
  let seq = 0;
  const digits = i;
  for (; i < b.length && b[i]! >= ZERO && b[i]! <= NINE; i++) seq = seq * 10 + (b[i]! - ZERO);
  if (i === digits || i - digits > 15) return undefined;
  if (i === b.length - 1 && b[i] === CLOSE_BRACE) return { stream, seq, duplicate: false } as PubAck;
  if (!startsWithAt(b, DUPLICATE_KEY, i)) return undefined;
  i += DUPLICATE_KEY.length;
  if (b[i] === SPACE) i++;
  if (i + TRUE_TAIL.length === b.length && startsWithAt(b, TRUE_TAIL, i)) return { stream, seq, duplicate: true } as PubAck;
  return undefined;
}

/** The printable-ASCII stream name in b[from, to), or undefined (the JSON path reads it). */
function streamName(b: Uint8Array, from: number, to: number): string | undefined {
  for (let k = from; k < to; k++) if (b[k]! > 0x7e || b[k]! < 0x20) return undefined;
  return decoder.decode(b.subarray(from, to));
}

function startsWithAt(b: Uint8Array, prefix: Uint8Array, at: number): boolean {
  if (at + prefix.length > b.length) return false;
  for (let k = 0; k < prefix.length; k++) if (b[at + k] !== prefix[k]) return false;
  return true;
}

const QUOTE = 0x22;
const COMMA = 0x2c;
const SPACE = 0x20;
const BACKSLASH = 0x5c;
const ZERO = 0x30;
const NINE = 0x39;
const CLOSE_BRACE = 0x7d;

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
  return new EncodedHeaders(Buffer.from(`${text}\r\n\r\n`)) as unknown as MsgHdrs;
}

/** Headers already encoded: the client only asks them for their bytes. */
class EncodedHeaders {
  constructor(private readonly bytes: Uint8Array) {}

  encode(): Uint8Array {
    return this.bytes;
  }
}

/** The client's own headers, for a value it refuses (it throws the client's error). */
function slowHeaders(o: PublishOptions): MsgHdrs {
  const h = makeHeaders();
  if (o.msgID !== undefined) h.set('Nats-Msg-Id', o.msgID);
  if (o.expectedLastSubjectSeq !== undefined) h.set('Nats-Expected-Last-Subject-Sequence', String(o.expectedLastSubjectSeq));
  return h;
}

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
