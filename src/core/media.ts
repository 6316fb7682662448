/**
 * Attachments live in the JetStream object store (bucket omni_media), content-addressed by
 * SHA-256 so the same file stored twice (a redelivered update) is one object. Events carry only
 * the reference: name, MIME type, size and checksum.
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
}

export class MediaStore {
  constructor(
    private readonly store: ObjectStore,
    readonly maxBytes: number,
  ) {}

  /** Stores the bytes (or returns the existing object with the same content) and describes them. */
  async put(data: Uint8Array, meta: MediaMeta): Promise<Attachment> {
    if (data.byteLength > this.maxBytes) throw new MediaTooLargeError(data.byteLength, this.maxBytes);
    const sha256 = createHash('sha256').update(data).digest('hex');
    const objectKey = `sha256/${sha256}`;
    const existing = await this.store.info(objectKey);
    if (!existing || existing.deleted) await this.store.putBlob({ name: objectKey, description: meta.name }, data);
    return {
      objectKey,
      name: meta.name,
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
      name: meta.name,
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

  async has(objectKey: string): Promise<boolean> {
    const info = await this.store.info(objectKey);
    return !!info && !info.deleted;
  }
}
