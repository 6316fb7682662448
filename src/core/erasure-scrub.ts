/**
 * The erased person taken out of tickets that are not theirs: a colleague Cc'd on a customer's
 * mail stays in that ticket's `participants` and `emailParties`, and every later reply of the
 * ticket went on copying them — mail to someone who asked to be forgotten. Each such ticket
 * record is rewritten without them (compare-and-set against the router, which re-reads on a
 * conflict). Its log is append-only: each entry whose mail named them in To or Cc gets a
 * redaction entry after it, and readers leave those addresses out (log-redaction.ts); free text
 * stays as written (another customer's record; docs/data.md).
 */
import type { Logger } from 'pino';
import type { Bus } from './bus.js';
import { isCasConflict } from './bus.js';
import { addressPositions } from './log-redaction.js';
import { indexRedactions } from './redaction-index.js';
import { LogEntry } from './schema.js';
import { scanStream } from './stream-scan.js';
import { Buckets, Streams, Subjects } from './subjects.js';

interface MailParties {
  last?: { author: string; to: string[]; cc: string[] };
  authors?: string[];
  own?: string[];
  replies?: Array<{ outboundId: string; to: string[]; cc?: string[]; messageId?: string }>;
  bouncedCopies?: string[];
}

/** Rewrites every ticket record (but `erased`) whose people `names` matches; how many it rewrote. */
export async function scrubOtherTickets(bus: Bus, names: (text: string) => boolean, erased: ReadonlySet<string>, log: Logger): Promise<number> {
  const prefix = `$KV.${Buckets.tickets}.`;
  const candidates: string[] = [];
  await scanStream(bus, `KV_${Buckets.tickets}`, { filter: `${prefix}>`, lastPerSubject: true }, (m) => {
    const id = m.subject.slice(prefix.length);
    if (m.data.length > 0 && !erased.has(id) && names(m.string())) candidates.push(id);
  });
  let rewritten = 0;
  for (const id of candidates) if (await scrubOne(bus, id, names, log)) rewritten++;
  return rewritten;
}

async function scrubOne(bus: Bus, id: string, names: (text: string) => boolean, log: Logger): Promise<boolean> {
  for (let attempt = 0; attempt < 10; attempt++) {
    const entry = await bus.kv.tickets.get(id);
    if (!entry || entry.operation !== 'PUT') return false;
    const ticket = entry.json<{ participants?: string[]; emailParties?: MailParties }>();
    const kept = (list: string[] | undefined) => list?.filter((v) => !names(JSON.stringify(v)));
    const before = JSON.stringify([ticket.participants, ticket.emailParties]);
    ticket.participants = kept(ticket.participants);
    const p = ticket.emailParties;
    if (p) {
      p.authors = kept(p.authors);
      // The newest mail was theirs: replies go to the ticket's customer, as on tickets without it.
      if (p.last && names(JSON.stringify(p.last.author))) delete p.last;
      else if (p.last) p.last = { ...p.last, to: kept(p.last.to) ?? [], cc: kept(p.last.cc) ?? [] };
      if (p.replies) p.replies = p.replies.map((r) => ({ ...r, to: kept(r.to) ?? [], ...(r.cc ? { cc: kept(r.cc) ?? [] } : {}) }));
      if (p.bouncedCopies) p.bouncedCopies = kept(p.bouncedCopies);
    }
    if (JSON.stringify([ticket.participants, ticket.emailParties]) === before) return false;
    try {
      await bus.kv.tickets.update(id, JSON.stringify(ticket), entry.revision);
      log.info({ ticketId: id }, 'erased person taken out of the participants of a ticket that is not theirs');
      return true;
    } catch (err) {
      if (!isCasConflict(err)) throw err;
    }
  }
  log.warn({ ticketId: id }, 'erased person left among the participants of a ticket that kept changing: erase again to take them out');
  return false;
}

/**
 * Appends a redaction to the log of every ticket (but `erased`) for each entry whose mail named
 * the person in To or Cc: an inbound mail they were copied on, a reply that copied them. How many
 * entries it redacted. A repeated erasure appends the same positions again, which readers take
 * out once (log-redaction.ts); the msgID keeps a retry within the dedup window from adding one.
 * Each is also kept in the ticket's redaction index, which a repeated erasure leaves as it was.
 */
export async function redactOtherLogs(bus: Bus, names: (text: string) => boolean, erased: ReadonlySet<string>, erasureId: string): Promise<number> {
  const found: Array<{ ticketId: string; seq: number; fields: ReturnType<typeof addressPositions> }> = [];
  await scanStream(bus, Streams.log, { filter: Subjects.ticketLogAll }, (m) => {
    const ticketId = m.subject.split('.')[2]!;
    if (erased.has(ticketId)) return;
    const text = m.string();
    // Most entries name no one erased: parsed only when the text holds the person at all.
    if (!names(text)) return;
    let json: unknown;
    try {
      json = JSON.parse(text);
    } catch {
      return; // no log entry (an outside publisher's): nothing a reader shows as To or Cc
    }
    const parsed = LogEntry.safeParse(json);
    if (!parsed.success) return;
    const fields = addressPositions(parsed.data, names);
    if (fields.length) found.push({ ticketId, seq: m.seq, fields });
  });
  // Indexed first: a reader that stops at a limit or reads a later page finds the redaction there
  // (redaction-index.ts), and a failure between the two leaves the address hidden, never shown.
  const byTicket = new Map<string, typeof found>();
  for (const r of found) byTicket.set(r.ticketId, [...(byTicket.get(r.ticketId) ?? []), r]);
  // A ticket erased meanwhile (its index purged for good) gets no redaction: its log is gone.
  const erasedMeanwhile = new Set<string>();
  for (const [ticketId, list] of byTicket) if (!(await indexRedactions(bus, ticketId, list))) erasedMeanwhile.add(ticketId);
  let redacted = 0;
  for (const r of found) {
    if (erasedMeanwhile.has(r.ticketId)) continue;
    const entry = { kind: 'redaction', at: new Date().toISOString(), seq: r.seq, fields: r.fields, erasureId };
    await bus.publishJson(Subjects.ticketLog(r.ticketId), entry, `redaction:${erasureId}:${r.seq}`);
    redacted++;
  }
  return redacted;
}
