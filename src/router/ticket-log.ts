/**
 * Reading a ticket's append-only log (stream OMNI_LOG, one subject per ticket) back in order,
 * for the API's log view and for eviction. Writing it is journal.ts's job.
 */
import { DeliverPolicy } from '@nats-io/jetstream';
import type { Bus } from '../core/bus.js';
import { jsonOrUndefined } from '../core/json-input.js';
import { applyRedactions } from '../core/log-redaction.js';
import { readRedactionIndex } from '../core/redaction-index.js';
import { LogEntry, describeZodError, type LogEntry as LogEntryT } from '../core/schema.js';
import { safeParser } from '../core/schema-as-is.js';
import { Streams, Subjects } from '../core/subjects.js';

const parseLogEntry = safeParser(LogEntry);

export interface ReadLogOptions {
  fromSeq?: number;
  limit?: number;
  onUnreadable?: (seq: number, reason: string) => void;
}

/**
 * Reads a ticket's log in order, erasures' redactions applied. Something on the log subject that is no log entry (only a
 * publisher other than the gateway can put it there) is left out and told to `onUnreadable`,
 * as the read model skips it: one such message no longer failed every read of the ticket (its
 * API view, its eviction).
 */
export async function readTicketLog(bus: Bus, ticketId: string, opts: ReadLogOptions = {}): Promise<Array<{ seq: number; entry: LogEntryT }>> {
  const subject = Subjects.ticketLog(ticketId);
  const limit = opts.limit ?? 10_000;
  const consumer = await bus.js.consumers.get(Streams.log, {
    filter_subjects: subject, // a string, not an array: 2.9 has no multi-filter consumers
    ...(opts.fromSeq ? { deliver_policy: DeliverPolicy.StartSequence, opt_start_seq: opts.fromSeq } : {}),
  });
  const out: Array<{ seq: number; entry: LogEntryT }> = [];
  try {
    const info = await consumer.info(true);
    let pending = info.num_pending;
    while (pending > 0 && out.length < limit) {
      const batch = await consumer.fetch({ max_messages: Math.min(pending, limit - out.length, 500), expires: 2000 });
      let got = 0;
      for await (const m of batch) {
        got++;
        const json = jsonOrUndefined(m.data);
        const parsed = json === undefined ? undefined : parseLogEntry(json);
        if (parsed?.success) out.push({ seq: m.seq, entry: parsed.data });
        else opts.onUnreadable?.(m.seq, parsed ? describeZodError(parsed.error) : 'not valid JSON');
      }
      if (got === 0) break;
      pending -= got;
    }
  } finally {
    await consumer.delete().catch(() => {});
  }
  // An erased person's address in this ticket's mails (To, Cc) is left out as it is read: the
  // entries themselves cannot be rewritten (core/log-redaction.ts). Their redaction entries come
  // after them, often past `limit` or the page asked for: the index beside the log names them all.
  return out.length === 0 ? out : applyRedactions(out, await readRedactionIndex(bus, ticketId));
}
