/**
 * Reading a ticket-log entry as the read model can store it: its ticket from the subject, the
 * entry judged against the schema, text SQL cannot hold replaced; and which SQL errors are the
 * entry's fault rather than the database's.
 */
import { LONE_SURROGATE } from '../core/json-input.js';
import { LogEntry } from '../core/schema.js';
import { safeParser } from '../core/schema-as-is.js';
import type { SequencedEntry } from './apply.js';

const TICKET_OF = /^omni\.ticket\.([^.]+)\.log$/;

/** SQLSTATE classes 22 (data exception) and 54 (program limit exceeded): the entry, not the database, is the problem. */
export function isDataError(err: unknown): boolean {
  const code = (err as { code?: unknown })?.code;
  return typeof code === 'string' && /^(22|54)/.test(code);
}

/**
 * A log entry as SQL can store it. PostgreSQL text and jsonb cannot hold U+0000: one NUL in a
 * customer's text (or a name, a subject) failed its batch for good, and the log keeps the entry
 * for ever, so the projection stopped at it on every restart (/healthz 503, lists stale). Nor
 * can jsonb hold half of a surrogate pair: such an entry was skipped, and with it every later
 * entry of a conversation whose sender id held one, so the ticket was gone from lists and search
 * (intake refuses both now; entries logged before, or by other writers, remain). Either is
 * stored as U+FFFD; the log itself keeps the original. JSON carries both only escaped, so only
 * a text holding such an escape pays for the reviver.
 */
function parseJson(data: Uint8Array): unknown {
  try {
    const text = utf8.decode(data);
    return UNSTORABLE_ESCAPE.test(text) ? JSON.parse(text, storable) : JSON.parse(text);
  } catch {
    return undefined;
  }
}

const UNSTORABLE_ESCAPE = /\\u(0000|[dD][89a-fA-F])/;
const UNSTORABLE = new RegExp(`\u0000|${LONE_SURROGATE.source}`, 'g');

const utf8 = new TextDecoder();

/** What the gateway writes (a LogEntry as it was built, through JSON) is taken as it is; anything else is zod's to judge (core/schema-as-is.ts). */
const parseLogEntry = safeParser(LogEntry);

/** A fetched log entry, read: ready to apply, or refused with the reason. */
export type FetchedEntry = SequencedEntry | { seq: number; subject: string; refused: string };

export function readEntry(seq: number, subject: string, data: Uint8Array): FetchedEntry {
  const ticketId = TICKET_OF.exec(subject)?.[1];
  if (!ticketId) return { seq, subject, refused: 'subject' };
  const parsed = parseLogEntry(parseJson(data));
  return parsed.success ? { seq, ticketId, entry: parsed.data } : { seq, subject, refused: parsed.error.issues[0]?.message ?? 'invalid entry' };
}

function storable(_key: string, value: unknown): unknown {
  return typeof value === 'string' ? value.replace(UNSTORABLE, '\uFFFD') : value;
}
