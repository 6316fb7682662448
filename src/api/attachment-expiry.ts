/**
 * Files the retention sweeper deleted (`retention.attachments`), told apart at read time. The
 * ticket log is append-only: its entry keeps `status: "stored"` after the file is gone, so the
 * answer of GET /v1/tickets/{id} (and /log) marks such a file `expired` from the object store
 * itself, and a download of it answers 410 `attachment_expired` instead of a bare 404. Asking the
 * store, not the SQL read model, keeps the answer true after a read-model rebuild from the log.
 */
import type { ObjectStore } from '@nats-io/obj';
import { REWRITE_AFTER_MS } from '../core/media.js';
import type { LogEntry } from '../core/schema.js';

/**
 * A reference is written at most REWRITE_AFTER_MS before the entry naming it, and bytes are kept
 * while a young reference names them: an entry younger than the retention minus this is not
 * checked. The extra hour covers clocks of replicas that disagree.
 */
const MARGIN_MS = REWRITE_AFTER_MS + 3_600_000;
/** What the store names files by; anything else in an entry is not looked up. */
const STORE_KEY = /^(ref\/[0-9a-f]{40}|sha256\/[0-9a-f]{64})$/;
/** Object-store reads in flight for one answer. */
const PARALLEL = 16;

interface FileRef {
  objectKey?: string;
  ref?: string;
  status?: string;
}

export class AttachmentExpiry {
  constructor(
    private readonly objects: ObjectStore,
    /** `retention.attachments`; 0: files are never deleted by age, nothing is checked. */
    readonly retentionMs: number,
    private readonly now: () => number = Date.now,
  ) {}

  /** Whether the object was stored once and deleted since (the store keeps a deleted marker). */
  async deleted(key: string): Promise<boolean> {
    const info = await this.objects.info(key);
    return !!info?.deleted;
  }

  /**
   * The entries with each file the store no longer has marked `status: "expired"` (an outbound
   * attachment, which has no status, gets one then); entries are copied, never changed in place.
   * `expired` is a status of the answer only (the schema of the log knows `stored` and `failed`).
   */
  async mark<E extends LogEntry>(entries: E[]): Promise<E[]> {
    if (this.retentionMs <= 0) return entries;
    const checkBefore = this.now() - this.retentionMs + MARGIN_MS;
    // Bytes without a reference of their own live only as long as someone else's reference: checked whatever their age.
    const candidates = entries.map((e) => this.filesOf(e).filter((f) => f.status !== 'failed' && (f.ref || f.objectKey) && (!f.ref || Date.parse(e.at) < checkBefore)));
    const keys = [...new Set(candidates.flat().flatMap((f) => [f.ref, f.objectKey].filter((k): k is string => !!k && STORE_KEY.test(k))))];
    const gone = await this.deletedOf(keys);
    if (gone.size === 0) return entries;
    const expired = (f: FileRef) => (f.ref !== undefined && gone.has(f.ref)) || (f.objectKey !== undefined && gone.has(f.objectKey));
    return entries.map((e, i) => {
      if (!candidates[i]!.some(expired)) return e;
      const files = this.filesOf(e).map((f) => (candidates[i]!.includes(f) && expired(f) ? { ...f, status: 'expired' } : f));
      if (e.kind === 'inbound') return { ...e, event: { ...e.event, attachments: files } };
      return e.kind === 'outbound' ? { ...e, message: { ...e.message, attachments: files } } : e;
    });
  }

  private filesOf(e: LogEntry): FileRef[] {
    if (e.kind === 'inbound') return e.event.attachments;
    if (e.kind === 'outbound') return e.message.attachments;
    return [];
  }

  /**
   * The keys the store holds a deleted marker for. A key with no record at all (a restored or
   * recreated bucket) is left as the log says: the download then answers 404, not 410.
   */
  private async deletedOf(keys: string[]): Promise<Set<string>> {
    const out = new Set<string>();
    for (let i = 0; i < keys.length; i += PARALLEL) {
      const batch = keys.slice(i, i + PARALLEL);
      const infos = await Promise.all(batch.map((k) => this.objects.info(k)));
      infos.forEach((info, j) => {
        if (info?.deleted) out.add(batch[j]!);
      });
    }
    return out;
  }
}
