/**
 * Dead letters: the one path every refusal takes. What could not be processed is counted
 * (omnigate_dead_letters_total{source,reason}) and, within its source's rate limit, parked on
 * omni.dlq.<subject suffix> with the reason and the head of the original bytes. Bounded three
 * ways, because refusals are what a hostile client controls: a size cap per letter, a token bucket
 * per source (over it: counted, not stored), and the OMNI_DLQ stream's max_age and max_bytes.
 *
 * The token bucket applies only to what outsiders send (connector intake, events on omni.in, mail
 * the loop guard drops). A reply, webhook delivery or helpdesk sync that failed for good is
 * something the gateway accepted: its letter is the only copy left, so it is always stored (the
 * stream's limits still bound it), and its volume is bounded by intake already. A webhook
 * receiver down for a day once turned its backlog into letters faster than the bucket allowed,
 * and the callers acked what was not stored.
 */
import { createHash } from 'node:crypto';
import type { Bus } from './bus.js';
import { metrics } from './metrics.js';
import { Subjects } from './subjects.js';
import type { DeadLetter } from './schema.js';

/** Who refused: the `source` label. Subjects keep their historical names (see `subjectSuffix`). */
export const DEAD_LETTER_SOURCES = ['router', 'connector', 'outbound', 'webhook', 'loop-guard', 'helpdesk'] as const;
export type DeadLetterSource = (typeof DEAD_LETTER_SOURCES)[number];

export interface DeadLetterLimits {
  /** A payload above this (as it travels, JSON-escaped) is cut to its head and marked truncated. */
  maxPayloadBytes: number;
  /** Letters each source (router; connector, outbound: per channel and account; webhook: per name) may store per minute. */
  perMinute: number;
  /** Letters a source may store at once before the per-minute rate applies. */
  burst: number;
}

/** Sources whose letters an outsider can cause at will: rate-limited per source. */
const RATE_LIMITED: ReadonlySet<DeadLetterSource> = new Set(['router', 'connector', 'loop-guard']);

/** The code of a router letter parked from an inbound subject no router reads (router/strays.ts): replayed onto a read one. */
export const UNREAD_SUBJECT = 'unread_subject';

/** Room beside a letter's payload under the bus's max_payload: the reason, the other fields, headers. */
const LETTER_HEADROOM_BYTES = 8 * 1024;

export const DEFAULT_DEAD_LETTER_LIMITS: DeadLetterLimits = { maxPayloadBytes: 256 * 1024, perMinute: 60, burst: 120 };

export interface Refusal {
  source: DeadLetterSource;
  /** Channel.account for connector and outbound letters, the webhook's name for webhook letters, the helpdesk's id for helpdesk letters. */
  scope?: string;
  /** The subject the payload came from (or was headed to): replay sends it back there. */
  subject: string;
  /** Short reason code: the metric label. Keep it to a fixed set per source. */
  code: string;
  /** The reason in words, for the operator. */
  reason: string;
  /**
   * What makes two refusals of the same payload the same letter, in place of `reason` in its id
   * (letterId), when the reason carries what may change between attempts (a measured size).
   */
  sameAs?: string;
  payload: unknown;
  meta?: Record<string, string>;
  /**
   * The letter is the only copy of something the gateway accepted (a customer message the router
   * cannot store as it is: too_large): stored whatever the source's rate, and cut only where the
   * bus itself could not carry it (max_payload less headroom), not at deadLetters.maxPayloadBytes.
   */
  onlyCopy?: boolean;
}

const decoder = new TextDecoder('utf-8', { fatal: true });
const MAX_REASON_CHARS = 2000;

/** omni.dlq.<suffix>: router, router.ignored, inbound.<ch>.<acc>, outbound.<ch>.<acc>, webhook.<name>, helpdesk.<id>. */
export function subjectSuffix(source: DeadLetterSource, scope?: string): string {
  switch (source) {
    case 'router':
      return 'router';
    case 'loop-guard':
      return 'router.ignored';
    case 'connector':
      return `inbound.${scope}`;
    case 'outbound':
      return `outbound.${scope}`;
    case 'webhook':
      return `webhook.${scope}`;
    case 'helpdesk':
      return `helpdesk.${scope}`;
  }
}

/** The source class of a letter's `source` field (its subject suffix). */
export function sourceOf(suffix: string): DeadLetterSource | undefined {
  if (suffix === 'router') return 'router';
  if (suffix === 'router.ignored') return 'loop-guard';
  if (suffix.startsWith('inbound.')) return 'connector';
  if (suffix.startsWith('outbound.')) return 'outbound';
  if (suffix.startsWith('webhook.')) return 'webhook';
  if (suffix.startsWith('helpdesk.')) return 'helpdesk';
  return undefined;
}

/**
 * The subject filter for a `source` as people type it (the console, `omnigate dlq --source`): a
 * full suffix is itself, a prefix (`inbound`, `inbound.email`, `outbound`, `helpdesk`) lists
 * everything below it; `router` is exactly router (not router.ignored).
 */
export function sourceSubjectFilter(source: string): string {
  const clean = source.replace(/^omni\.dlq\./, '');
  // An empty token (`a..b`, `inbound.`) is no subject: the server refused the consumer, and the
  // API answered 500, the CLI "jetstream is not enabled".
  const tokens = clean.split('.');
  if (!tokens.every((t, i) => SOURCE_TOKEN.test(t) || t === '*' || (t === '>' && i === tokens.length - 1))) throw new DeadLetterSourceError(source);
  // A NATS wildcard given on the command line (`inbound.>`, `outbound.*.*`) is used as written.
  if (/[*>]/.test(clean)) return `omni.dlq.${clean}`;
  // Full suffixes have a fixed length per kind (subjectSuffix): 3 tokens for inbound and outbound, 2 for a webhook or helpdesk.
  const kind = sourceOf(clean);
  const exact = clean === 'router' || clean === 'router.ignored' || ((kind === 'webhook' || kind === 'helpdesk') && tokens.length >= 2) || tokens.length >= 3;
  return exact ? `omni.dlq.${clean}` : `omni.dlq.${clean}.>`;
}

const SOURCE_TOKEN = /^[A-Za-z0-9_-]+$/;

/** A `source` that names no subject; the message says what one looks like. */
export class DeadLetterSourceError extends Error {
  readonly field = 'source';
  constructor(source: string) {
    super(`source ${JSON.stringify(source)}: dot-separated parts of letters, digits, "_" and "-" (e.g. inbound.telegram.support), none empty; "*" for one part and a final ">" as in NATS`);
  }
}

/**
 * Creates the {source, reason} series of codes known before they happen at 0, so increase() in
 * OmnigateDeadLettersIncreasing counts their first letter; codes only known when they happen are
 * caught by the rule's "appeared above zero" half (deploy/observability/alerts.yml).
 */
export function presetDeadLetters(source: DeadLetterSource, codes: readonly string[]): void {
  for (const reason of codes) metrics.parked.inc({ source, reason }, 0);
}

export class DeadLetters {
  private readonly buckets = new Map<string, { tokens: number; at: number }>();

  constructor(
    private readonly bus: Bus,
    readonly limits: DeadLetterLimits = DEFAULT_DEAD_LETTER_LIMITS,
    private readonly now: () => number = Date.now,
  ) {}

  /**
   * Counts the refusal and stores it unless its source is rate-limited and over the limit; says
   * which happened. Letters of outbound, webhook and helpdesk failures are always stored.
   */
  async park(r: Refusal): Promise<'stored' | 'suppressed'> {
    const suffix = subjectSuffix(r.source, r.scope);
    const labels = { source: r.source, reason: r.code };
    metrics.parked.inc(labels);
    if (!r.onlyCopy && RATE_LIMITED.has(r.source) && !this.take(suffix)) {
      metrics.deadLettersSuppressed.inc(labels);
      return 'suppressed';
    }
    const bytes = toBytes(r.payload); // once for the letter and its id: a payload may be megabytes of JSON
    // Never over what the bus carries: a letter the server refuses is no letter, and what parks it
    // (a router batch) is retried for ever behind it. The only copy of a message may use all of it.
    const busCap = (this.bus.nc.info?.max_payload ?? 1_048_576) - LETTER_HEADROOM_BYTES;
    const cap = r.onlyCopy ? busCap : Math.min(this.limits.maxPayloadBytes, busCap);
    const letter = encodeLetter(suffix, r, cap, new Date(this.now()).toISOString(), bytes);
    await this.bus.publishJson(Subjects.deadLetter(suffix), letter, letterId(suffix, r, bytes));
    return 'stored';
  }

  /** Token bucket per subject suffix; buckets refilled to full are forgotten, so the map stays small. */
  private take(key: string): boolean {
    const { perMinute, burst } = this.limits;
    const now = this.now();
    const b = this.buckets.get(key) ?? { tokens: burst, at: now };
    b.tokens = Math.min(burst, b.tokens + ((now - b.at) * perMinute) / 60_000);
    b.at = now;
    if (b.tokens < 1) {
      this.buckets.set(key, b);
      return false;
    }
    b.tokens -= 1;
    this.buckets.set(key, b);
    if (this.buckets.size > 10_000) this.forgetFull(now);
    return true;
  }

  private forgetFull(now: number): void {
    const { perMinute, burst } = this.limits;
    for (const [k, b] of this.buckets) if (b.tokens + ((now - b.at) * perMinute) / 60_000 >= burst) this.buckets.delete(k);
  }
}

/**
 * The letter's Nats-Msg-Id, from what it says (where, why, the whole payload), not when: the same
 * refusal parked again within the stream's duplicate window is stored once. A letter has no id of
 * its own to be deduplicated by, unlike an event, so whatever parks and then fails before it can
 * say so (a mail whose flags did not land, a message redelivered after a crash between the park
 * and its ack) would otherwise store a second, identical letter. Counted in the metric either way.
 */
export function letterId(suffix: string, r: Refusal, bytes: Uint8Array = toBytes(r.payload)): string {
  const h = createHash('sha256');
  for (const part of [suffix, r.subject, r.code, r.sameAs ?? r.reason]) h.update(part).update('\n');
  h.update(bytes);
  return `dl:${h.digest('base64url')}`;
}

/** The letter as it will travel: the payload whole when it fits `cap`, else its head. */
export function encodeLetter(suffix: string, r: Refusal, cap: number, at: string, bytes: Uint8Array = toBytes(r.payload)): DeadLetter {
  const reason = r.reason.length > MAX_REASON_CHARS ? `${r.reason.slice(0, MAX_REASON_CHARS)}…` : r.reason;
  const letter: DeadLetter = {
    v: 1, type: 'dead-letter', source: suffix, subject: r.subject, reason, code: r.code, at,
    payload: '', payloadEncoding: 'utf8', payloadBytes: bytes.length, ...(r.meta ? { meta: r.meta } : {}),
  };
  let head = bytes;
  for (;;) {
    const { text, encoding } = asText(head, head.length < bytes.length);
    // Measured JSON-escaped: control characters grow sixfold on the wire.
    if (Buffer.byteLength(JSON.stringify(text)) <= cap) {
      Object.assign(letter, { payload: text, payloadEncoding: encoding });
      if (head.length < bytes.length) letter.truncated = true;
      return letter;
    }
    // Cut by how much escaping grew this head (Cyrillic or quotes and line breaks), with a little
    // to spare: near the cap, not a quarter below it, in a step or two.
    const escaped = Buffer.byteLength(JSON.stringify(text));
    head = head.subarray(0, Math.floor(head.length * 0.97 * Math.min(1, cap / escaped)));
  }
}

function toBytes(payload: unknown): Uint8Array {
  if (payload instanceof Uint8Array) return payload;
  if (typeof payload === 'string') return Buffer.from(payload, 'utf8');
  return Buffer.from(JSON.stringify(payload) ?? String(payload), 'utf8');
}

/** UTF-8 text when it is (a cut may split a character: up to 3 trailing bytes are dropped), else base64. */
function asText(bytes: Uint8Array, cut: boolean): { text: string; encoding: DeadLetter['payloadEncoding'] } {
  for (let drop = 0; drop < (cut ? 4 : 1) && drop <= bytes.length; drop++) {
    try {
      return { text: decoder.decode(bytes.subarray(0, bytes.length - drop)), encoding: 'utf8' };
    } catch {
      /* try a shorter cut */
    }
  }
  return { text: Buffer.from(bytes).toString('base64'), encoding: 'base64' };
}
