/**
 * Erasure of one person's data from every NATS store (152-FZ art. 21, GDPR art. 17), and of
 * whole tickets when retention expires them. Given the person's tickets and identifiers:
 *
 * - the ticket logs are purged by subject (`omni.ticket.<id>.log`: one subject per ticket is
 *   what makes this possible without rewriting the stream);
 * - the ticket records, and the thread-index and dedup entries pointing at those tickets, are
 *   purged from their buckets (the index keys are hashes, so they are found by their values);
 * - attachments the logs reference lose their reference records, and their bytes unless a ticket
 *   that is not erased still references the same content (objects are content-addressed);
 * - copies in the transport streams (OMNI_IN/OUT/STATUS), ticket events and dead letters that
 *   name one of the tickets or identifiers are erased by sequence (`erase: true` overwrites);
 * - each ticket is announced as `omni.events.ticket.erased` first (ticket-erased.ts), so the
 *   helpdesks and webhook receivers holding a copy delete theirs.
 *
 * The scans read whole streams and buckets: minutes on a large installation, which is fine for
 * a rare, deliberate operation and keeps every store honest (nothing relies on an index that
 * could be incomplete). An audit event with counts only is announced at the end.
 */
import { randomUUID } from 'node:crypto';
import type { JsMsg } from '@nats-io/jetstream';
import type { Logger } from 'pino';
import type { Bus } from './bus.js';
import { isGone, scanStream } from './stream-scan.js';
import { Buckets, Streams, Subjects } from './subjects.js';
import { AuditErasureEvent, ErasureCounts, LogEntry } from './schema.js';
import { Needles } from './erasure-needles.js';
import { redactOtherLogs, scrubOtherTickets } from './erasure-scrub.js';
import { purgeRedactionIndex } from './redaction-index.js';
import { TICKET_ERASED_SUBJECT, announceErasedTickets } from './ticket-erased.js';

export interface ErasureTarget {
  /** Every ticket of the person: logs, records, index entries and attachments go whole. */
  ticketIds: string[];
  /**
   * The person's identifiers on every channel: platform user ids, phone numbers, email
   * addresses, usernames. Transport copies and dead letters naming one are erased. Identifiers
   * found in the tickets' logs (sender ids and handles) are added automatically.
   */
  identities: string[];
  /**
   * Identifiers matched only as a whole JSON value, never inside a longer text: what an operator
   * names for a person the read model does not know, where a substring ("support", "gmail.com")
   * would erase other people's messages too.
   */
  exactIdentities?: string[];
  /** OMNI_LOG sequences of the person's messages in tickets that are not theirs (a group chat): erased one by one. */
  logSequences?: number[];
  /** Stored attachment objects of those messages (the read model knows them). */
  objectKeys?: string[];
}

export interface ErasureOptions {
  reason: 'api' | 'retention';
  /** Token name or `retention`; goes into the audit event. */
  requestedBy: string;
  /**
   * Whether stored bytes (`sha256/…`) or a reference record (`ref/…`) are used by a ticket that is
   * not being erased (the SQL read model knows every attachment of every ticket). A connector's
   * reference is shared by everyone who sent the same file under the same name on that account,
   * so erasing one of them deleted the reference the others' tickets name. Without the read
   * model, the object store's own reference records are asked about bytes, and references are
   * erased (it cannot tell those senders apart).
   */
  sharedElsewhere?: (key: string, erasing: ReadonlySet<string>) => Promise<boolean>;
}

export interface ErasureResult {
  id: string;
  ticketCount: number;
  erased: ErasureCounts;
}

/** The audit event of an erasure (`omni.events.audit.erasure`): what was erased and who asked, never whom. */
export async function announceErasure(bus: Bus, result: Pick<ErasureResult, 'id' | 'ticketCount' | 'erased'>, o: Pick<ErasureOptions, 'reason' | 'requestedBy'>): Promise<AuditErasureEvent> {
  const event = AuditErasureEvent.parse({
    v: 1,
    type: 'audit.erasure',
    id: result.id,
    at: new Date().toISOString(),
    reason: o.reason,
    requestedBy: o.requestedBy,
    ticketCount: result.ticketCount,
    erased: result.erased,
  });
  await bus.publishJson(Subjects.auditEvent('erasure'), event, `audit:${event.id}`);
  return event;
}

export function emptyCounts(): ErasureCounts {
  return { logEntries: 0, tickets: 0, threadKeys: 0, dedupKeys: 0, attachments: 0, attachmentRefs: 0, inbound: 0, outbound: 0, status: 0, events: 0, deadLetters: 0, sql: {} };
}

export class Eraser {
  constructor(
    private readonly bus: Bus,
    private readonly log: Logger,
  ) {}

  async erase(target: ErasureTarget, o: ErasureOptions): Promise<ErasureResult> {
    const id = randomUUID();
    const counts = emptyCounts();
    const tickets = new Set(target.ticketIds);
    const files = { objects: new Set<string>(), refs: new Set<string>() };
    const needles = new Needles(target.identities);
    for (const v of target.exactIdentities ?? []) needles.addExact(v);
    for (const t of tickets) needles.addToken(t);
    // Read the logs first: they name the attachments and the identifiers the transport copies carry.
    for (const ticketId of tickets) await this.collect(ticketId, files, needles);
    for (const key of target.objectKeys ?? []) files.objects.add(key);
    // Copies outside the gateway (helpdesks, webhook receivers) are told before anything goes:
    // an erasure cut short has announced every ticket it may have touched.
    await announceErasedTickets(this.bus, tickets, id, o.reason);
    // The system of record goes first, so a failure midway leaves the person unreachable from it.
    for (const ticketId of tickets) {
      const r = await this.bus.jsm.streams.purge(Streams.log, { filter: Subjects.ticketLog(ticketId) });
      counts.logEntries += r.purged;
      if (await this.purgeKey('tickets', ticketId)) counts.tickets++;
      // Its redactions (positions only, no address) mean nothing without the log. Purged for
      // good: an erasure of another person redacting this log at the same time cannot write it again.
      if (await purgeRedactionIndex(this.bus, ticketId)) counts.threadKeys++;
    }
    for (const seq of target.logSequences ?? []) {
      if (await this.bus.jsm.streams.deleteMessage(Streams.log, seq, true).catch((err: unknown) => (isGone(err) ? false : Promise.reject(err)))) counts.logEntries++;
    }
    counts.threadKeys += await this.purgeKeysWhere('threads', (value) => tickets.has(value));
    counts.dedupKeys = await this.purgeKeysWhere('dedup', (value, key) => needles.matches(value) || needles.isAckKey(key));
    await this.eraseFiles(files, tickets, counts, o);
    counts.inbound = await this.eraseMessages(Streams.inbound, needles);
    counts.outbound = await this.eraseMessages(Streams.outbound, needles);
    counts.status = await this.eraseMessages(Streams.status, needles);
    counts.events = await this.eraseMessages(Streams.events, needles);
    counts.deadLetters = await this.eraseMessages(Streams.deadLetter, needles);
    const scrubbed = await scrubOtherTickets(this.bus, (text) => needles.matches(text), tickets, this.log);
    const redacted = await redactOtherLogs(this.bus, (text) => needles.matches(text), tickets, id);
    // The SQL rows go after this (the caller's step): an empty `sql` here read as "no rows erased".
    const { sql: _notYet, ...natsCounts } = counts;
    this.log.info({ erasureId: id, reason: o.reason, requestedBy: o.requestedBy, tickets: tickets.size, counts: natsCounts, otherTicketsRewritten: scrubbed, otherLogEntriesRedacted: redacted }, 'erasure done in NATS');
    return { id, ticketCount: tickets.size, erased: counts };
  }

  /** Announces an erasure (after SQL rows were counted in too): counts and who asked, nothing else. */
  async announce(result: ErasureResult, o: ErasureOptions, contactIds?: string[]): Promise<AuditErasureEvent> {
    const event = await announceErasure(this.bus, result, o);
    // The whole record in the gateway's own log too (the audit event ages out with retention.events,
    // and names no one): the line an operator's record of the erasure joins to the request by the
    // contact ids (ours, never a name or address; the log names them elsewhere too).
    this.log.info({ erasureId: event.id, reason: event.reason, requestedBy: event.requestedBy, ...(contactIds ? { contactIds } : {}), tickets: event.ticketCount, erased: event.erased }, 'erasure done in every store (announced as audit.erasure)');
    return event;
  }

  /** Attachments and identifiers of one ticket's log. */
  private async collect(ticketId: string, files: { objects: Set<string>; refs: Set<string> }, needles: Needles): Promise<void> {
    await scanStream(this.bus, Streams.log, { filter: Subjects.ticketLog(ticketId) }, (m) => {
      const parsed = LogEntry.safeParse(jsonOf(m));
      if (!parsed.success) return;
      const e = parsed.data;
      const attachments = e.kind === 'inbound' ? e.event.attachments : e.kind === 'outbound' ? e.message.attachments : [];
      for (const a of attachments) {
        if (a.objectKey) files.objects.add(a.objectKey);
        if (a.ref) files.refs.add(a.ref);
      }
      if (e.kind === 'inbound' || e.kind === 'edited') {
        needles.addExact(e.event.sender.id);
        for (const h of Object.values(e.event.sender.handles)) needles.add(h);
        if (e.event.conversation.kind === 'private') needles.add(e.event.conversation.id);
      }
      if (e.kind === 'inbound' && e.event.email) needles.add(e.event.email.from);
    });
  }

  private async eraseFiles(files: { objects: Set<string>; refs: Set<string> }, tickets: ReadonlySet<string>, counts: ErasureCounts, o: ErasureOptions): Promise<void> {
    const store = this.bus.media;
    for (const ref of files.refs) {
      const info = await store.info(ref);
      if (!info || info.deleted) continue;
      if (o.sharedElsewhere && (await o.sharedElsewhere(ref, tickets))) {
        this.log.info({ ref }, 'attachment reference kept: a ticket that is not erased names the same file (same bytes, name and type, same account)');
        continue;
      }
      await store.delete(ref);
      counts.attachmentRefs++;
    }
    const shared = o.sharedElsewhere ?? ((key: string) => this.referencedByRecords(key));
    for (const key of files.objects) {
      const info = await store.info(key);
      if (!info || info.deleted) continue;
      if (await shared(key, tickets)) {
        this.log.info({ objectKey: key }, 'attachment bytes kept: a ticket that is not erased references the same content');
        continue;
      }
      await store.delete(key);
      counts.attachments++;
    }
  }

  /** A reference record that survived the erasure still points at these bytes. */
  private async referencedByRecords(objectKey: string): Promise<boolean> {
    for (const info of await this.bus.media.list()) {
      if (info.deleted || !info.name.startsWith('ref/')) continue;
      const bytes = await this.bus.media.getBlob(info.name);
      if (!bytes) continue;
      try {
        if ((JSON.parse(Buffer.from(bytes).toString('utf8')) as { objectKey?: string }).objectKey === objectKey) return true;
      } catch {
        // not a reference record this version wrote: it cannot point anywhere
      }
    }
    return false;
  }

  private async purgeKey(bucket: 'tickets' | 'threads' | 'dedup', key: string): Promise<boolean> {
    const entry = await this.bus.kv[bucket].get(key);
    if (!entry || entry.operation !== 'PUT') return false;
    await this.bus.kv[bucket].purge(key);
    return true;
  }

  /**
   * Purges every key of a bucket whose value satisfies `pred`, as of the scan: each key only up to
   * the revision the scan judged (a purge of its subject up to that sequence, as dropTicket does),
   * so a write after the scan survives it — a router's `rebind` of a binding left naming an
   * erased ticket to the new ticket it just opened, which an unconditional purge deleted (the
   * conversation then split from its new ticket). A newer value that still satisfies `pred` goes
   * too. A bounded purge is no compare-and-set, so it holds on servers whose own one does not
   * (cas-probe.ts). Counts the keys whose judged revision went.
   */
  private async purgeKeysWhere(bucket: 'threads' | 'dedup', pred: (value: string, key: string) => boolean): Promise<number> {
    const prefix = `$KV.${Buckets[bucket]}.`;
    const doomed: Array<{ key: string; revision: number }> = [];
    await scanStream(this.bus, `KV_${Buckets[bucket]}`, { filter: `${prefix}>`, lastPerSubject: true }, (m) => {
      if (m.data.length === 0) return; // a delete or purge marker
      const key = m.subject.slice(prefix.length);
      if (pred(m.string(), key)) doomed.push({ key, revision: m.seq });
    });
    let purged = 0;
    for (const { key, revision } of doomed) if (await this.purgeUpTo(bucket, key, revision, pred)) purged++;
    return purged;
  }

  private async purgeUpTo(bucket: 'threads' | 'dedup', key: string, revision: number, pred: (value: string, key: string) => boolean): Promise<boolean> {
    let removed = false;
    for (let upTo = revision; ; ) {
      const r = await this.bus.jsm.streams.purge(`KV_${Buckets[bucket]}`, { filter: `$KV.${Buckets[bucket]}.${key}`, seq: upTo + 1 });
      removed ||= r.purged > 0;
      const after = await this.bus.kv[bucket].get(key);
      if (!after || after.operation !== 'PUT' || after.revision <= upTo || !pred(after.string(), key)) return removed;
      upTo = after.revision;
    }
  }

  /** Erases (overwrites) every message of a stream that names the tickets or the person. */
  private async eraseMessages(stream: string, needles: Needles): Promise<number> {
    const doomed: number[] = [];
    await scanStream(this.bus, stream, {}, (m) => {
      if (announcesErasure(m)) return;
      if (needles.matches(textOf(m))) doomed.push(m.seq);
    });
    let erased = 0;
    for (const seq of doomed) if (await this.bus.jsm.streams.deleteMessage(stream, seq, true)) erased++;
    return erased;
  }
}

function jsonOf(m: JsMsg): unknown {
  try {
    return m.json();
  } catch {
    return undefined;
  }
}

/**
 * An erased ticket's announcement, or its dead letter (a helpdesk refused to delete its copy: the
 * letter is how an operator learns it, and may be parked while this erasure is still scanning).
 * They name the ticket id and nothing else, and must reach the helpdesks and webhooks still behind.
 */
function announcesErasure(m: JsMsg): boolean {
  if (m.subject === TICKET_ERASED_SUBJECT) return true;
  if (!m.subject.startsWith('omni.dlq.')) return false;
  return (jsonOf(m) as { subject?: unknown } | undefined)?.subject === TICKET_ERASED_SUBJECT;
}

/** A message's payload as text; a dead letter's base64 payload is decoded so it can be searched. */
function textOf(m: JsMsg): string {
  const text = m.string();
  if (!m.subject.startsWith('omni.dlq.')) return text;
  try {
    const letter = JSON.parse(text) as { payload?: unknown; payloadEncoding?: string };
    if (letter.payloadEncoding === 'base64' && typeof letter.payload === 'string') return `${text}\n${Buffer.from(letter.payload, 'base64').toString('utf8')}`;
  } catch {
    // not JSON: searched as it is
  }
  return text;
}

