/**
 * The bytes of a chunk of mail, fetched before any of it is published: whole sources for mail
 * within the size limit, only the headers (with a note saying so) for mail above it. Collected
 * first, because issuing commands inside a running FETCH loop would deadlock imapflow.
 */
import type { ImapFlow } from 'imapflow';
import { errorMessage } from '../../core/errors.js';

export interface MailSource {
  bytes: Buffer;
  /** Said in the event's text: only the headers of an oversized mail were read. */
  note?: string;
}

export interface SourcesWanted {
  /** UIDs to fetch whole. */
  whole: number[];
  /** UIDs above `maxBytes`, with their sizes: only their headers are fetched. */
  oversized: Array<{ uid: number; size: number }>;
  maxBytes: number;
  mailbox: string;
  folder: string;
}

/**
 * The sources by UID; a UID the server returned no content for is not in the map. When the fetch
 * fails, each such UID is handed to `failedRead` before the error is thrown on.
 */
export async function fetchSources(client: ImapFlow, w: SourcesWanted, failedRead: (uid: number, error: string) => void): Promise<Map<number, MailSource>> {
  const raw = new Map<number, MailSource>();
  const empty: number[] = [];
  try {
    if (w.whole.length > 0) {
      for await (const m of client.fetch(w.whole.join(','), { uid: true, source: true }, { uid: true })) {
        if (m.source) raw.set(m.uid, { bytes: m.source });
        else empty.push(m.uid);
      }
    }
    if (w.oversized.length > 0) {
      for await (const m of client.fetch(w.oversized.map((o) => o.uid).join(','), { uid: true, headers: true }, { uid: true })) {
        const size = w.oversized.find((o) => o.uid === m.uid)?.size ?? 0;
        const note = `[The mail is ${size} bytes, above the ${w.maxBytes}-byte limit: only its headers were read. Open it in the mailbox ${w.mailbox}, folder ${w.folder}.]`;
        if (m.headers) raw.set(m.uid, { bytes: Buffer.concat([m.headers, Buffer.from('\r\n')]), note });
        else empty.push(m.uid);
      }
    }
  } catch (err) {
    // Dovecot answers a mail it cannot read with a row without content, then ends the session:
    // count it against that mail, or it would stall the folder forever.
    for (const uid of empty) failedRead(uid, errorMessage(err));
    throw err;
  }
  return raw;
}
