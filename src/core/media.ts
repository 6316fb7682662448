/**
 * Attachments live in the JetStream object store (bucket omni_media). The bytes are
 * content-addressed by SHA-256 (`sha256/<hex>`), so the same file stored twice (a redelivered
 * update, two customers sending one PDF) is one object. What differs per sender — the file name,
 * the MIME type, who it belongs to — is a small reference record (`ref/<id>`) per reference: one
 * customer's file name never shows on another's ticket. Events carry both keys.
 */
import { createHash } from 'node:crypto';
import type { ObjectStore } from '@nats-io/obj';
import type { Attachment } from './schema.js';

export class MediaTooLargeError extends Error {
  constructor(readonly size: number, readonly limit: number) {
    super(`attachment of ${size} bytes exceeds the ${limit}-byte limit`);
    this.name = 'MediaTooLargeError';
  }
}

export interface MediaMeta {
  name: string;
  mimeType: string;
  kind?: string;
  contentId?: string;
  /** The ticket the reference belongs to, when the caller knows it (API replies). */
  ticketId?: string;
}

/** One reference to stored bytes: the name and type its sender gave, and whose it is. */
export interface MediaReference {
  v: 1;
  objectKey: string;
  sha256: string;
  size: number;
  name: string;
  mimeType: string;
  /** Where the reference was made: `<channel>.<account>` for a connector, `api` for an upload. */
  scope: string;
  ticketId?: string;
  /** When it was last referenced (see reference()). */
  createdAt: string;
}

const REF_KEY = /^ref\/[0-9a-f]{40}$/;

/** How old a reference record may get before a new use writes it again (see reference()). */
export const REWRITE_AFTER_MS = 3_600_000;

/**
 * A file name as every consumer may use it: no path separators (a client's `../../etc/passwd`
 * becomes `.._.._etc_passwd`, and «Акт 1/2.pdf» keeps both halves), no control characters, line
 * separators or bidi overrides (a name that reads "gnp.exe" backwards), at most 255 characters;
 * `file` when nothing is left. Helpdesks, mail headers and downloads all take it as is.
 */
export function safeFileName(name: string | undefined): string {
  const cleaned = [...(name ?? '').replace(/[\\/\u0000-\u001f\u007f-\u009f\u2028\u2029\u202a-\u202e\u2066-\u2069]/g, '_').trim()].slice(0, 255).join('');
  return cleaned === '.' || cleaned === '..' || !cleaned ? 'file' : cleaned;
}
const encoder = new TextEncoder();

export class MediaStore {
  constructor(
    private readonly store: ObjectStore,
    readonly maxBytes: number,
    /** Recorded on every reference this store makes (see MediaReference.scope). */
    private readonly scope = 'api',
  ) {}

  /** Stores the bytes (or finds the existing object with the same content) and records this reference to them. */
  async put(data: Uint8Array, meta: MediaMeta): Promise<Attachment> {
    if (data.byteLength > this.maxBytes) throw new MediaTooLargeError(data.byteLength, this.maxBytes);
    const sha256 = createHash('sha256').update(data).digest('hex');
    const objectKey = `sha256/${sha256}`;
    const existing = await this.store.info(objectKey);
    // No description: the bytes are shared, a name is not.
    if (!existing || existing.deleted) await this.store.putBlob({ name: objectKey }, data);
    const name = safeFileName(meta.name);
    const ref = await this.reference({ objectKey, sha256, size: data.byteLength, name, mimeType: meta.mimeType, ticketId: meta.ticketId });
    return {
      objectKey,
      ref,
      name,
      mimeType: meta.mimeType,
      size: data.byteLength,
      sha256,
      kind: meta.kind ?? 'document',
      status: 'stored',
      contentId: meta.contentId,
    };
  }

  /** Reads a stream into memory, refusing past the limit without buffering the excess. */
  async putStream(stream: AsyncIterable<Uint8Array>, meta: MediaMeta): Promise<Attachment> {
    const chunks: Uint8Array[] = [];
    let size = 0;
    for await (const chunk of stream) {
      size += chunk.byteLength;
      if (size > this.maxBytes) throw new MediaTooLargeError(size, this.maxBytes);
      chunks.push(chunk);
    }
    return this.put(Buffer.concat(chunks), meta);
  }

  /** An attachment that could not be fetched, recorded with the reason instead of dropped. */
  failed(meta: MediaMeta & { size?: number }, reason: string): Attachment {
    return {
      name: safeFileName(meta.name),
      mimeType: meta.mimeType,
      size: meta.size ?? 0,
      kind: meta.kind ?? 'document',
      status: 'failed',
      error: reason,
    };
  }

  async get(objectKey: string): Promise<Uint8Array | null> {
    return this.store.getBlob(objectKey);
  }

  /**
   * Records a reference and returns its key. The key is derived from the bytes, name, type and
   * owner, so a redelivery finds the record it made, and everyone who sends the same file under
   * the same name on one account shares it. The record is written again on a use an hour or more
   * after its last write: its age is that of its newest use (within the hour), which `retention.attachments` goes by (written once, a file a customer sent
   * yesterday was deleted as old when another had sent it under that name a year ago).
   */
  async reference(r: { objectKey: string; sha256: string; size: number; name: string; mimeType: string; ticketId?: string }): Promise<string> {
    const owner = r.ticketId ? `ticket:${r.ticketId}` : this.scope;
    const id = createHash('sha256').update([r.objectKey, r.name, r.mimeType, owner].join('\u0000')).digest('hex').slice(0, 40);
    const key = `ref/${id}`;
    // Written again only once it is an hour old: retention counts in days, and a burst of uses
    // (an album, a redelivery) then costs one write, not one each racing the others.
    const existing = await this.store.info(key);
    if (existing && !existing.deleted && Date.now() - Date.parse(existing.mtime) < REWRITE_AFTER_MS) return key;
    const record: MediaReference = { v: 1, ...r, scope: this.scope, createdAt: new Date().toISOString() };
    await this.store.putBlob({ name: key }, encoder.encode(JSON.stringify(record)));
    return key;
  }

  /** The reference record, or null when the key is not one (or is gone). */
  async lookup(refKey: string): Promise<MediaReference | null> {
    if (!REF_KEY.test(refKey)) return null;
    const bytes = await this.store.getBlob(refKey);
    return bytes ? (JSON.parse(Buffer.from(bytes).toString('utf8')) as MediaReference) : null;
  }

  /** The stored object's size in bytes, or null when there is none (never uploaded, or erased). */
  async sizeOf(objectKey: string): Promise<number | null> {
    const info = await this.store.info(objectKey);
    return info && !info.deleted ? info.size : null;
  }
}
