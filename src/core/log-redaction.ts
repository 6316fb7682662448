/**
 * An erased person's address in another customer's ticket log (a colleague Cc'd on a mail),
 * taken out as the log is read. OMNI_LOG is append-only and its sequences are what every reader
 * keys on (the read model's rows, search hits, paging), so an entry is never rewritten or moved:
 * the erasure appends a `redaction` entry naming the earlier entry's sequence and the positions in
 * its To/Cc, and readers drop those positions. The stored bytes of the earlier entry keep the
 * address until that ticket's log is purged (its erasure or retention; OMNI_LOG has no age
 * limit): docs/data.md, erasure.
 */
import type { LogEntry } from './schema.js';

type Redaction = Extract<LogEntry, { kind: 'redaction' }>;

/**
 * `log` without its redaction entries, every entry they name with the named To/Cc positions left
 * out. Positions are of the entry as stored, so a redaction appended twice (an erasure repeated)
 * takes out the same addresses, never the next ones. `indexed`: the ticket's redactions as kept
 * beside the log (redaction-index.ts), for a part of the log that does not reach its redactions.
 */
export function applyRedactions<T extends { seq: number; entry: LogEntry }>(log: T[], indexed: ReadonlyArray<Pick<Redaction, 'seq' | 'fields'>> = []): T[] {
  const redactions = new Map<number, Array<Redaction['fields'][number]>>();
  const add = (r: Pick<Redaction, 'seq' | 'fields'>) => redactions.set(r.seq, [...(redactions.get(r.seq) ?? []), ...r.fields]);
  for (const r of indexed) add(r);
  for (const { entry } of log) if (entry.kind === 'redaction') add(entry);
  if (redactions.size === 0) return log;
  const out: T[] = [];
  for (const item of log) {
    if (item.entry.kind === 'redaction') continue;
    const fields = redactions.get(item.seq);
    out.push(fields ? { ...item, entry: redacted(item.entry, fields) } : item);
  }
  return out;
}

function redacted(entry: LogEntry, fields: Redaction['fields']): LogEntry {
  const without = <V>(list: V[], field: Redaction['fields'][number]['field']) => list.filter((_, i) => !fields.some((f) => f.field === field && f.index === i));
  if (entry.kind === 'inbound' && entry.event.email) {
    const email = entry.event.email;
    return { ...entry, event: { ...entry.event, email: { ...email, to: without(email.to, 'to'), cc: without(email.cc, 'cc') } } };
  }
  if (entry.kind === 'outbound' && entry.message.email) {
    const email = entry.message.email;
    return { ...entry, message: { ...entry.message, email: { ...email, to: without(email.to, 'to'), cc: without(email.cc, 'cc') } } };
  }
  if (entry.kind === 'delivery' && entry.status.refusedCopies) {
    const refusedCopies = without(entry.status.refusedCopies, 'refusedCopies');
    return { ...entry, status: { ...entry.status, refusedCopies: refusedCopies.length ? refusedCopies : undefined } };
  }
  return entry;
}

/** The To/Cc positions of `entry` that `names` matches: what a redaction of it lists. */
export function addressPositions(entry: LogEntry, names: (text: string) => boolean): Redaction['fields'] {
  const out: Redaction['fields'] = [];
  // A reply's copies the mail server refused (connectors/email/sender.ts), on its delivery.
  if (entry.kind === 'delivery') {
    entry.status.refusedCopies?.forEach((r, index) => names(r.address) && out.push({ field: 'refusedCopies', index }));
    return out;
  }
  const email = entry.kind === 'inbound' ? entry.event.email : entry.kind === 'outbound' ? entry.message.email : undefined;
  if (!email) return [];
  for (const field of ['to', 'cc'] as const) email[field].forEach((v, index) => {
    if (names(JSON.stringify(v))) out.push({ field, index });
  });
  return out;
}
