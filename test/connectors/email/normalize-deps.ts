/** What normalizeMail needs, for parsing a mail without a gateway: files are recorded, not stored. */
import type { NormalizeDeps } from '../../../src/connectors/email/normalize.js';
import type { Attachment } from '../../../src/core/schema.js';
import type { MediaStore } from '../../../src/core/media.js';
import { SUPPORT } from './harness.js';

/** Says every file was stored (with its name, type and size) without storing it. */
export const recordingMedia = {
  maxBytes: 1 << 20,
  put: (data: Uint8Array, meta: { name: string; mimeType: string; kind: string }) => Promise.resolve({ ...meta, size: data.byteLength, status: 'stored' } as Attachment),
  failed: (meta: { name: string; mimeType: string; kind: string }, reason: string) => ({ ...meta, size: 0, status: 'failed', error: reason }) as Attachment,
} as unknown as MediaStore;

export const normalizeDeps: NormalizeDeps = {
  channel: 'email', account: 'support', media: recordingMedia, maxAttachmentBytes: 1 << 20, maxBodyChars: 100_000,
  ours: { addresses: new Set([SUPPORT]), domains: new Set(['example.ru']) }, ownAddresses: [SUPPORT],
};
