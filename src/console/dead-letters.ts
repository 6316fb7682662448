/**
 * Dead letters for the console: list the newest by source and reason, read one, replay one or a
 * filtered set. Replay is `omnigate dlq --replay`'s own (src/dlq.ts), so the console and the CLI
 * take a letter back the same way and refuse the same ones with the same reasons.
 *
 * Listing reads the stream with a short-lived ordered consumer from a bounded window: the
 * SCAN_WINDOW most recent letters, of the source asked for when there is one (the server filters
 * by subject). The stream is capped by deadLetters.maxBytes, but a page of the console should
 * never read all of it.
 */
import { AckPolicy, DeliverPolicy, type JetStreamClient, type JetStreamManager } from '@nats-io/jetstream';
import type { NatsConnection } from '@nats-io/transport-node';
import { sourceSubjectFilter } from '../core/dead-letter.js';
import { errorMessage } from '../core/errors.js';
import { isGone } from '../core/stream-scan.js';
import { DeadLetter } from '../core/schema.js';
import { Streams, Subjects } from '../core/subjects.js';
import { replayOne, type Outcome } from '../dlq.js';
import { jsonOrUndefined } from '../core/json-input.js';

/** How many of the newest stream sequences a listing looks at. */
export const SCAN_WINDOW = 5000;

export interface LetterFilter {
  /** The subject suffix after omni.dlq. (router, inbound.email.support, webhook.crm, …); a prefix matches. */
  source?: string;
  /** Matches the letter's code exactly or appears in its reason (case-insensitive). */
  reason?: string;
  /** Only letters of this ticket (a reply that failed for good names its ticket). */
  ticket?: string;
  /** Only letters parked at or after this ISO time. */
  since?: string;
  /** Only letters at or below this sequence (the newest of a page already shown: "replay all shown"). */
  upTo?: number;
  limit: number;
}

export interface LetterSummary {
  seq: number;
  at: string;
  source: string;
  subject: string;
  code?: string;
  reason: string;
  /** The ticket a failed reply was for (outbound letters; a ticket id is no personal data, so read-only tokens see it too). */
  ticketId?: string;
  payloadBytes?: number;
  truncated: boolean;
}

export interface LetterDetail extends LetterSummary {
  payload: string;
  payloadEncoding: 'utf8' | 'base64';
  meta?: Record<string, string>;
}

/** What a read-only token sees of a letter: the payload and its meta may hold personal data. */
export interface WithheldLetter extends LetterSummary {
  payloadWithheld: string;
}

/** A letter without its payload and meta, saying why. */
export function withholdPayload(l: LetterDetail): WithheldLetter {
  const { payload: _p, payloadEncoding: _e, meta: _m, ...rest } = l;
  return { ...rest, reason: elideQuoted(rest.reason), payloadWithheld: 'a read-only token sees no payload (it may hold personal data): read it with a token that may write' };
}

/**
 * A reason as a read-only token sees it: quoted values elided. A refusal may quote what was sent
 * (`type: unknown value "Ирина Смирнова +79037776655"`), which is the payload's data again.
 */
export function elideQuoted(reason: string): string {
  return reason.replace(/"(?:[^"\\]|\\.)*"/g, '"…"');
}

export type ReplayResult = Outcome & { seq: number };

export class DeadLetterDesk {
  constructor(
    private readonly nc: NatsConnection,
    private readonly js: JetStreamClient,
    private readonly jsm: JetStreamManager,
  ) {}

  /**
   * The newest letters matching the filter (at or below `upTo`), newest first, with the sequence
   * each was stored at. A source filter is applied by the server over the whole stream, and the
   * SCAN_WINDOW newest letters of that source are read: a flood of one source (a webhook receiver
   * down for a day) does not hide another's letters. Without one, the newest SCAN_WINDOW letters.
   */
  async list(f: LetterFilter): Promise<{ letters: Array<LetterSummary & { letter: DeadLetter }>; scanned: number }> {
    const info = await this.jsm.streams.info(Streams.deadLetter);
    const last = Math.min(info.state.last_seq, f.upTo ?? Infinity);
    if (info.state.messages === 0 || last < info.state.first_seq) return { letters: [], scanned: 0 };
    const filter = f.source ? sourceSubjectFilter(f.source) : Subjects.deadLetterAll;
    const from = f.source ? await this.windowStart(filter, info.state.first_seq, last) : Math.max(info.state.first_seq, last - SCAN_WINDOW + 1);
    const consumer = await this.js.consumers.get(Streams.deadLetter, { filter_subjects: filter, deliver_policy: DeliverPolicy.StartSequence, opt_start_seq: from });
    const found: Array<LetterSummary & { letter: DeadLetter }> = [];
    let scanned = 0;
    try {
      let pending = (await consumer.info(true)).num_pending;
      const needle = f.reason?.toLowerCase();
      const sinceMs = f.since === undefined ? undefined : Date.parse(f.since);
      reading: while (pending > 0) {
        const batch = await consumer.fetch({ max_messages: Math.min(pending, 500), expires: 3000 });
        let got = 0;
        for await (const m of batch) {
          got++;
          pending--;
          if (m.seq > last) break reading;
          scanned++;
          const parsed = DeadLetter.safeParse(jsonOrUndefined(m.data));
          if (parsed.success) {
            const d = parsed.data;
            const wanted = (!needle || d.code?.toLowerCase() === needle || d.reason.toLowerCase().includes(needle)) && (!f.ticket || d.meta?.ticketId?.toUpperCase() === f.ticket.toUpperCase()) && (sinceMs === undefined || Date.parse(d.at) >= sinceMs);
            if (wanted) found.push({ ...summary(m.seq, d), letter: d });
          }
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

  /**
   * The lowest sequence from which at most SCAN_WINDOW letters on `filter` reach `last`: found by
   * bisection on the server's count of matching letters (a consumer's num_pending), so the
   * client reads no letter of another source.
   */
  private async windowStart(filter: string, first: number, last: number): Promise<number> {
    const above = await this.matchingFrom(filter, last + 1);
    if ((await this.matchingFrom(filter, first)) - above <= SCAN_WINDOW) return first;
    let lo = first; // more than SCAN_WINDOW from here
    let hi = last; // at most SCAN_WINDOW from here
    while (hi - lo > 1) {
      const mid = Math.floor((lo + hi) / 2);
      if ((await this.matchingFrom(filter, mid)) - above > SCAN_WINDOW) lo = mid;
      else hi = mid;
    }
    return hi;
  }

  /** How many letters on `filter` the stream holds from `seq` on (counted by the server). */
  private async matchingFrom(filter: string, seq: number): Promise<number> {
    const c = await this.jsm.consumers.add(Streams.deadLetter, { filter_subject: filter, deliver_policy: DeliverPolicy.StartSequence, opt_start_seq: seq, ack_policy: AckPolicy.None, inactive_threshold: 30_000_000_000 });
    await this.jsm.consumers.delete(Streams.deadLetter, c.name).catch(() => {});
    return c.num_pending;
  }

  async get(seq: number): Promise<LetterDetail | null> {
    const m = await this.stored(seq);
    if (!m) return null;
    const parsed = DeadLetter.safeParse(jsonOrUndefined(m.data));
    if (!parsed.success) return null;
    const d = parsed.data;
    return { ...summary(seq, d), payload: d.payload, payloadEncoding: d.payloadEncoding, meta: d.meta };
  }

  /**
   * Erases one letter (overwritten on disk, `erase: true`, as a person's erasure erases theirs):
   * false when there is none at `seq`. A letter other than a dead letter at that sequence cannot
   * be: the sequence is the dead-letter stream's own.
   */
  async erase(seq: number): Promise<boolean> {
    if (!(await this.stored(seq))) return false;
    return this.jsm.streams.deleteMessage(Streams.deadLetter, seq, true).catch((err: unknown) => (isGone(err) ? false : Promise.reject(err)));
  }

  /** Replays one letter by sequence; null when there is none. */
  async replay(seq: number): Promise<ReplayResult | null> {
    const m = await this.stored(seq);
    if (!m) return null;
    const parsed = DeadLetter.safeParse(jsonOrUndefined(m.data));
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

function summary(seq: number, d: DeadLetter): LetterSummary {
  const ticketId = d.meta?.ticketId;
  return { seq, at: d.at, source: d.source, subject: d.subject, code: d.code, reason: d.reason, ...(ticketId ? { ticketId } : {}), payloadBytes: d.payloadBytes, truncated: d.truncated ?? false };
}
