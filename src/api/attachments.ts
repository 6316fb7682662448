/**
 * Attachments for the API: uploads (the raw body, multipart/form-data, or base64 inside a JSON
 * reply) stored content-addressed in the object store `omni_media` through MediaStore, and
 * downloads streamed from it. Multipart is parsed by the runtime's own FormData parser (undici),
 * so no extra package is needed; bodies are already bounded by http.bodyLimit.
 */
import { Readable } from 'node:stream';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { ObjectStore } from '@nats-io/obj';
import { z } from 'zod';
import { MediaTooLargeError, safeFileName, type MediaStore } from '../core/media.js';
import { saysNothing, sniffMediaType } from '../core/media-sniff.js';
import { MimeType, OutboundAttachment, PrintableText } from '../core/schema.js';
import { decodeBase64Strict } from '../core/json-input.js';
import { HttpError, fail } from './errors.js';
import type { AttachmentExpiry } from './attachment-expiry.js';

export type StoredAttachment = z.infer<typeof OutboundAttachment>;

/** An attachment in a JSON reply: a reference from POST /v1/attachments, or the bytes inline. */
export const AttachmentInput = z.union([
  OutboundAttachment,
  z.object({
    name: PrintableText(255, 1),
    mimeType: MimeType.default('application/octet-stream'),
    contentBase64: z.string().min(1).refine((s) => decodeBase64Strict(s) !== null, 'is not valid base64'),
  }),
]);
export type AttachmentInput = z.infer<typeof AttachmentInput>;

const OBJECT_KEY = /^sha256\/[0-9a-f]{64}$/;
const REF_KEY = /^ref\/[0-9a-f]{40}$/;

export function isMultipart(req: FastifyRequest): boolean {
  return /^multipart\/form-data\b/i.test(String(req.headers['content-type'] ?? ''));
}

/** Parses a multipart body into its text fields and file parts. */
export async function readMultipart(req: FastifyRequest): Promise<{ fields: Map<string, string>; files: File[] }> {
  const body = Buffer.isBuffer(req.body) ? req.body : Buffer.alloc(0);
  let form: FormData;
  try {
    form = await new Response(body, { headers: { 'content-type': String(req.headers['content-type']) } }).formData();
  } catch {
    throw new HttpError('invalid_request', 'body is not valid multipart/form-data (check the boundary)', 'body');
  }
  const fields = new Map<string, string>();
  const files: File[] = [];
  for (const [name, value] of form) {
    if (typeof value !== 'string') files.push(value);
    // The last one won: `-F text=a -F text=b` sent "b" without a word, as a repeated query parameter is refused.
    else if (fields.has(name)) throw new HttpError('invalid_request', `${name}: given more than once; give it once`, name);
    else fields.set(name, value);
  }
  return { fields, files };
}

export class Attachments {
  constructor(
    private readonly media: MediaStore,
    private readonly objects: ObjectStore,
    /** Tells files deleted since they were logged (retention, erasure) from files never stored. */
    readonly expiry: AttachmentExpiry,
  ) {}

  async store(bytes: Uint8Array, name: string, mimeType: string, field: string, ticketId?: string): Promise<StoredAttachment> {
    try {
      const a = await this.media.put(bytes, { name, mimeType, ticketId });
      return { objectKey: a.objectKey!, ref: a.ref, name: a.name, mimeType: a.mimeType, size: a.size, sha256: a.sha256 };
    } catch (err) {
      if (err instanceof MediaTooLargeError) throw new HttpError('payload_too_large', err.message, field);
      throw err;
    }
  }

  async storeFile(file: File, field: string, ticketId?: string): Promise<StoredAttachment> {
    const mimeType = safeMimeType(file.type.split(';')[0]);
    return this.store(new Uint8Array(await file.arrayBuffer()), safeFileName(file.name), mimeType, field, ticketId);
  }

  /**
   * Turns the attachments of a JSON reply into stored references of this ticket, checking uploaded
   * ones exist: each gets its own reference record with the name and type given here.
   */
  async resolve(inputs: AttachmentInput[], ticketId: string): Promise<StoredAttachment[]> {
    const out: StoredAttachment[] = [];
    for (const [i, a] of inputs.entries()) {
      if ('objectKey' in a) {
        const stored = OBJECT_KEY.test(a.objectKey) ? await this.media.sizeOf(a.objectKey) : null;
        if (stored === null) {
          throw new HttpError('invalid_request', `attachment ${a.objectKey} was not uploaded (POST /v1/attachments first)`, `attachments.${i}.objectKey`);
        }
        // The size travels to the customer's platform and the log: the upload's own, not a claim.
        if (a.size !== stored) {
          throw new HttpError('invalid_request', `attachments.${i}.size: is ${a.size}, but the upload ${a.objectKey} is ${stored} bytes (copy size from the upload's answer)`, `attachments.${i}.size`);
        }
        const sha256 = a.objectKey.slice('sha256/'.length);
        const ref = await this.media.reference({ objectKey: a.objectKey, sha256, size: a.size, name: a.name, mimeType: a.mimeType, ticketId });
        out.push({ ...a, sha256, ref });
      } else {
        const bytes = decodeBase64Strict(a.contentBase64)!; // checked by AttachmentInput
        if (bytes.length === 0) throw new HttpError('invalid_request', 'contentBase64 decodes to nothing', `attachments.${i}.contentBase64`);
        out.push(await this.store(bytes, a.name, a.mimeType, `attachments.${i}`, ticketId));
      }
    }
    return out;
  }

  register(app: FastifyInstance, guards: { read: object; write: object }): void {
    app.post<{ Querystring: { name?: string } }>('/v1/attachments', guards.write, async (req, reply) => {
      // `?mimeType=` or a misspelt `?nmae=` was ignored without a word (the type comes from Content-Type).
      const unknown = Object.keys(req.query ?? {}).find((k) => k !== 'name');
      if (unknown !== undefined) return fail(reply, 'invalid_request', `unknown query parameter "${unknown}" (the only one is name; the type comes from Content-Type)`, unknown);
      if (isMultipart(req)) {
        const { files } = await readMultipart(req);
        if (files.length !== 1) return fail(reply, 'invalid_request', `send exactly one file part (got ${files.length})`, 'file');
        return reply.code(201).send(await this.storeFile(files[0]!, 'file'));
      }
      const bytes = Buffer.isBuffer(req.body) ? req.body : Buffer.alloc(0);
      if (bytes.length === 0) return fail(reply, 'invalid_request', 'send the file as the request body, or as multipart/form-data', 'body');
      const name = req.query.name;
      if (!name) return fail(reply, 'invalid_request', 'name query parameter is required (?name=invoice.pdf)', 'name');
      const checked = PrintableText(255, 1).safeParse(name);
      if (!checked.success) return fail(reply, 'invalid_request', `name: ${checked.error.issues[0]!.message}`, 'name');
      // No type, or the form type curl sends by default: the bytes say what the file is (media-sniff.ts).
      const declared = req.headers['content-type'];
      const mimeType = saysNothing(declared) ? sniffMediaType(bytes, name) : safeMimeType(String(declared).split(';')[0]!.trim());
      return reply.code(201).send(await this.store(bytes, name, mimeType, 'body'));
    });

    app.get<{ Params: { '*': string } }>('/v1/attachments/*', guards.read, async (req, reply) => this.download(req.params['*'], reply));
  }

  /**
   * Streams the bytes (a 25 MB file never sits whole in memory). By reference (`ref/<id>`) they
   * come with the name and type that reference recorded; by content (`sha256/<hex>`) with neither,
   * since the bytes may be shared by files of different names on different tickets.
   */
  private async download(key: string, reply: FastifyReply): Promise<FastifyReply> {
    const ref = await this.media.lookup(key);
    const objectKey = ref ? ref.objectKey : key;
    const found = OBJECT_KEY.test(objectKey) ? await this.objects.get(objectKey) : null;
    if (!found || found.info.deleted) {
      if (await this.wasDeleted(key, ref?.objectKey)) return fail(reply, 'attachment_expired', this.deletedText(key), 'objectKey');
      return fail(reply, 'not_found', `no attachment ${key}`);
    }
    const name = ref?.name ?? objectKey.slice('sha256/'.length);
    return reply
      .header('content-type', safeMimeType(ref?.mimeType))
      .header('x-content-type-options', 'nosniff')
      .header('content-length', String(found.info.size))
      .header('content-disposition', contentDisposition(name))
      .header('cache-control', 'private, max-age=31536000, immutable')
      .send(Readable.fromWeb(found.data as import('node:stream/web').ReadableStream<Uint8Array>));
  }

  /** The reference or its bytes were stored once and deleted since. */
  private async wasDeleted(key: string, refObjectKey: string | undefined): Promise<boolean> {
    if (!REF_KEY.test(key) && !OBJECT_KEY.test(key)) return false;
    if (await this.expiry.deleted(key)) return true;
    return refObjectKey !== undefined && OBJECT_KEY.test(refObjectKey) && (await this.expiry.deleted(refObjectKey));
  }

  private deletedText(key: string): string {
    const why = this.expiry.retentionMs > 0
      ? `files older than retention.attachments (${formatRetention(this.expiry.retentionMs)}) are deleted by the retention sweeper, and a person's files by an erasure`
      : 'retention.attachments is off, so it went with an erasure (or under an earlier retention setting)';
    return `attachment ${key} was deleted: ${why}; the ticket log keeps its name only`;
  }
}

/** A retention in whole days where it is one, else in hours, as people configure it. */
function formatRetention(ms: number): string {
  return ms % 86_400_000 === 0 ? `${ms / 86_400_000}d` : `${Math.round((ms / 3_600_000) * 100) / 100}h`;
}

/** RFC 6266 / RFC 8187: an ASCII `filename` for old clients and the exact name as `filename*`. */
export function contentDisposition(name: string): string {
  return `attachment; filename="${asciiFallback(name)}"; filename*=UTF-8''${encodeRfc8187(name)}`;
}

/** RFC 8187 attr-char: encodeURIComponent leaves ' ( ) * ! unescaped, which are not attr-chars. */
function encodeRfc8187(name: string): string {
  return encodeURIComponent(name).replace(/['()*!]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`);
}

/** A recorded type goes back out as a header: anything that is not a plain MIME type becomes octet-stream. */
function safeMimeType(type: string | undefined): string {
  return type && MimeType.safeParse(type).success ? type : 'application/octet-stream';
}

/** RFC 6266: a plain-ASCII filename for old clients next to the UTF-8 one. */
function asciiFallback(name: string): string {
  return name.replace(/[^\x20-\x7e]/g, '_').replace(/["\\]/g, '_');
}
