/**
 * Every redaction of one ticket's log, kept beside the log (key `redact.<ticketId>` in
 * omni_threads) so a reader applies them to whatever part of the log it reads. A redaction entry
 * lands at the log's end, after everything that followed its target: a reader that stops at a
 * limit (10,000 entries) or starts at a later sequence never met the redaction of an entry it
 * showed, and showed the erased address. Redactions are few (one per mail that named an erased
 * person), so the whole list is one small value, read with one get per log read instead of a scan
 * of a log that may hold millions of entries.
 */
import type { Bus } from './bus.js';
import { isCasConflict } from './bus.js';
import { errorMessage } from './errors.js';
import { jsonOrUndefined } from './json-input.js';
import type { LogEntry } from './schema.js';

export type Redaction = Extract<LogEntry, { kind: 'redaction' }>;
export type IndexedRedaction = Pick<Redaction, 'seq' | 'fields'>;

/** Ticket ids are `[A-Za-z0-9_-]` (the router's prefix and number): a valid key as they are. */
export const redactionIndexKey = (ticketId: string): string => `redact.${ticketId}`;

/** The redactions of `ticketId`'s log as indexed; none when it has none. */
export async function readRedactionIndex(bus: Bus, ticketId: string): Promise<IndexedRedaction[]> {
  const entry = await bus.kv.threads.get(redactionIndexKey(ticketId));
  if (!entry || entry.operation !== 'PUT' || entry.length === 0) return [];
  return parseIndex(entry.string(), ticketId);
}

/**
 * Adds `found` to the ticket's index (compare-and-set: two erasures of different people may
 * name the same ticket at once). A position already there is not added twice, so a repeated
 * erasure leaves the value as it was. False, writing nothing, when the ticket was erased: its
 * index is then a purge marker (purgeRedactionIndex), which no write may replace. kv.create would
 * (it writes over a delete or purge marker), so a new key is written only where none ever was.
 */
export async function indexRedactions(bus: Bus, ticketId: string, found: IndexedRedaction[]): Promise<boolean> {
  const key = redactionIndexKey(ticketId);
  for (;;) {
    const entry = await bus.kv.threads.get(key);
    if (entry && entry.operation !== 'PUT') return false;
    const live = entry && entry.length > 0;
    const merged = mergeRedactions(live ? parseIndex(entry.string(), ticketId) : [], found);
    const value = JSON.stringify({ ticketId, redactions: merged });
    try {
      // Expected revision 0: no message on the key at all, a marker included.
      await bus.kv.threads.put(key, value, { previousSeq: entry ? entry.revision : 0 });
      return true;
    } catch (err) {
      // One too large for the server's message size among them: said with the key, never skipped.
      if (!isCasConflict(err)) throw new Error(`redaction index ${key} in omni_threads (${merged.length} entries, ${value.length} bytes) not written: ${errorMessage(err)}`, { cause: err });
    }
  }
}

/**
 * The ticket is erased: its index goes, and a purge marker stays on the key even where there was
 * no index, so an erasure of someone else still redacting this ticket's log cannot write the
 * index again afterwards (indexRedactions). True when there was an index to remove.
 */
export async function purgeRedactionIndex(bus: Bus, ticketId: string): Promise<boolean> {
  const key = redactionIndexKey(ticketId);
  const entry = await bus.kv.threads.get(key);
  await bus.kv.threads.purge(key);
  return entry?.operation === 'PUT';
}

/** `list` with `more` added, each sequence once and each of its positions once. */
export function mergeRedactions(list: IndexedRedaction[], more: IndexedRedaction[]): IndexedRedaction[] {
  const bySeq = new Map<number, IndexedRedaction['fields']>();
  for (const r of [...list, ...more]) {
    const fields = bySeq.get(r.seq) ?? [];
    for (const f of r.fields) if (!fields.some((g) => g.field === f.field && g.index === f.index)) fields.push(f);
    bySeq.set(r.seq, fields);
  }
  return [...bySeq].map(([seq, fields]) => ({ seq, fields }));
}

function parseIndex(text: string, ticketId: string): IndexedRedaction[] {
  const value = jsonOrUndefined(Buffer.from(text)) as { ticketId?: unknown; redactions?: unknown } | undefined;
  const list = value?.ticketId === ticketId && Array.isArray(value.redactions) ? (value.redactions as unknown[]) : undefined;
  // Thrown, not skipped: a reader that went on without it would show the erased address.
  if (!list?.every((r) => Number.isInteger((r as IndexedRedaction).seq) && Array.isArray((r as IndexedRedaction).fields))) {
    throw new Error(`${redactionIndexKey(ticketId)} in omni_threads is not a redaction index of ticket ${ticketId}`);
  }
  return list as IndexedRedaction[];
}
