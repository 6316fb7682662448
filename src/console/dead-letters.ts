/**
 * Dead letters for the console: list the newest by source and reason, read one, replay one or a
 * filtered set. Replay is `omnigate dlq --replay`'s own (src/dlq.ts), so the console and the CLI
 * take a letter back the same way and refuse the same ones with the same reasons.
 *
 * Listing reads the stream with a short-lived ordered consumer from a bounded window of the most
 * recent letters (SCAN_WINDOW sequences): the stream is capped by deadLetters.maxBytes, but a
 * page of the console should never walk all of it.
 */
import { DeliverPolicy, type JetStreamClient, type JetStreamManager } from '@nats-io/jetstream';
import type { NatsConnection } from '@nats-io/transport-node';
import { errorMessage } from '../core/errors.js';
import { DeadLetter } from '../core/schema.js';
import { Streams, Subjects } from '../core/subjects.js';
import { replayOne, type Outcome } from '../dlq.js';

/** How many of the newest stream sequences a listing looks at. */
export const SCAN_WINDOW = 5000;

export interface LetterFilter {
  /** The subject suffix after omni.dlq. (router, inbound.email.support, webhook.crm, …); a prefix matches. */
  source?: string;
  /** Matches the letter's code exactly or appears in its reason (case-insensitive). */
  reason?: string;
  limit: number;
}

export interface LetterSummary {
  seq: number;
  at: string;
  source: string;
  subject: string;
  code?: string;
  reason: string;
  payloadBytes?: number;
  truncated: boolean;
}

export interface LetterDetail extends LetterSummary {
  payload: string;
  payloadEncoding: 'utf8' | 'base64';
  meta?: Record<string, string>;
}

export type ReplayResult = Outcome & { seq: number };

export class DeadLetterDesk {
  constructor(
    private readonly nc: NatsConnection,
    private readonly js: JetStreamClient,
    private readonly jsm: JetStreamManager,
  ) {}

  /** The newest letters matching the filter, newest first, with the sequence each was stored at. */
  async list(f: LetterFilter): Promise<{ letters: Array<LetterSummary & { letter: DeadLetter }>; scanned: number }> {
    const info = await this.jsm.streams.info(Streams.deadLetter);
    const last = info.state.last_seq;
    const from = Math.max(info.state.first_seq, last - SCAN_WINDOW + 1);
    if (info.state.messages === 0 || last === 0) return { letters: [], scanned: 0 };
    const filter = f.source ? sourceSubject(f.source) : Subjects.deadLetterAll;
    const consumer = await this.js.consumers.get(Streams.deadLetter, { filter_subjects: filter, deliver_policy: DeliverPolicy.StartSequence, opt_start_seq: from });
    const found: Array<LetterSummary & { letter: DeadLetter }> = [];
    let scanned = 0;
    try {
      let pending = (await consumer.info(true)).num_pending;
      const needle = f.reason?.toLowerCase();
      while (pending > 0) {
        const batch = await consumer.fetch({ max_messages: Math.min(pending, 500), expires: 3000 });
        let got = 0;
        for await (const m of batch) {
          got++;
          pending--;
          scanned++;
          const parsed = DeadLetter.safeParse(safeJson(m.data));
          if (!parsed.success) continue;
          const d = parsed.data;
          if (needle && d.code?.toLowerCase() !== needle && !d.reason.toLowerCase().includes(needle)) continue;
          found.push({ ...summary(m.seq, d), letter: d });
          if (pending === 0) break;
        }
        if (got === 0) break;
      }
    } finally {
      await consumer.delete().catch(() => {});
    }
    found.reverse();
    return { letters: found.slice(0, f.limit), scanned };
  }

  async get(seq: number): Promise<LetterDetail | null> {
    const m = await this.stored(seq);
    if (!m) return null;
    const parsed = DeadLetter.safeParse(safeJson(m.data));
    if (!parsed.success) return null;
    const d = parsed.data;
    return { ...summary(seq, d), payload: d.payload, payloadEncoding: d.payloadEncoding, meta: d.meta };
  }

  /** Replays one letter by sequence; null when there is none. */
  async replay(seq: number): Promise<ReplayResult | null> {
    const m = await this.stored(seq);
    if (!m) return null;
    const parsed = DeadLetter.safeParse(safeJson(m.data));
    if (!parsed.success) return { seq, outcome: 'invalid', detail: 'not a dead letter this version reads' };
    return this.replayLetter(seq, parsed.data);
  }

  /** Replays every letter the filter lists, oldest first (the order they failed in), one at a time. */
  async replayMatching(f: LetterFilter): Promise<ReplayResult[]> {
    const { letters } = await this.list(f);
    const results: ReplayResult[] = [];
    for (const l of letters.reverse()) results.push(await this.replayLetter(l.seq, l.letter));
    return results;
  }

  /** The letter stored at `seq`, or null when there is none; NATS being away is an error (503), not "none". */
  private stored(seq: number) {
    return this.jsm.streams.getMessage(Streams.deadLetter, { seq }).catch((err: unknown) => {
      if (/no message found|not found/i.test(errorMessage(err))) return null;
      throw err;
    });
  }

  private async replayLetter(seq: number, d: DeadLetter): Promise<ReplayResult> {
    try {
      return { seq, ...(await replayOne(this.nc, this.js, seq, d)) };
    } catch (err) {
      return { seq, outcome: 'failed', detail: errorMessage(err) };
    }
  }
}

/** `inbound.email` lists every email account's letters; `router` is exactly router (not router.ignored). */
function sourceSubject(source: string): string {
  const clean = source.replace(/^omni\.dlq\./, '');
  return clean.split('.').length >= 3 || clean === 'router' || clean === 'router.ignored' || clean.startsWith('webhook.') ? Subjects.deadLetter(clean) : `${Subjects.deadLetter(clean)}.>`;
}

function summary(seq: number, d: DeadLetter): LetterSummary {
  return { seq, at: d.at, source: d.source, subject: d.subject, code: d.code, reason: d.reason, payloadBytes: d.payloadBytes, truncated: d.truncated ?? false };
}

function safeJson(bytes: Uint8Array): unknown {
  try {
    return JSON.parse(Buffer.from(bytes).toString('utf8'));
  } catch {
    return undefined;
  }
}
