/**
 * Inbound files: getFile, then the bytes into the object store, streamed and cut off at the
 * limit. What cannot be fetched becomes an attachment with status "failed" and the reason; the
 * message itself is never held back by a file.
 */
import { createReadStream } from 'node:fs';
import { isAbsolute } from 'node:path';
import type { Telegram } from 'telegraf';
import { MediaTooLargeError } from '../../core/media.js';
import type { Attachment } from '../../core/schema.js';
import type { ConnectorContext } from '../contract.js';
import type { PendingFile } from './normalize.js';

const ATTEMPTS = 3;

type TgFile = Awaited<ReturnType<Telegram['getFile']>>;

class LocalFileError extends Error {
  constructor(path: string, cause: unknown) {
    super(`the Bot API server (--local) keeps this file at ${path}, which the gateway cannot read (${cause instanceof Error ? cause.message : String(cause)}); mount its working directory at the same path`);
    this.name = 'LocalFileError';
  }
}

/** Disk errors tagged as such: they are about our mounts, not a flaky Bot API worth retrying. */
async function* readLocal(path: string): AsyncIterable<Uint8Array> {
  try {
    yield* createReadStream(path);
  } catch (err) {
    throw new LocalFileError(path, err);
  }
}

interface TelegramErrorLike {
  code?: number;
  description?: string;
}

export class TelegramFiles {
  constructor(
    private readonly api: Telegram,
    private readonly ctx: ConnectorContext,
    /** The download limit (20 MB on the public Bot API; on a self-hosted one the server decides). */
    private readonly maxFileBytes: number,
    private readonly redact: (err: unknown) => string,
  ) {}

  async fetchAll(files: PendingFile[]): Promise<Attachment[]> {
    const out: Attachment[] = [];
    for (const f of files) out.push(await this.fetchOne(f));
    return out;
  }

  private tooLarge(size: number, exact = true): string {
    return `file is ${exact ? '' : 'over '}${size} bytes; the Bot API serves files up to ${this.maxFileBytes} bytes (only a self-hosted Bot API server in --local mode lifts this)`;
  }

  private async fetchOne(f: PendingFile): Promise<Attachment> {
    const meta = { name: f.name, mimeType: f.mimeType, kind: f.kind, size: f.size };
    if (f.size !== undefined && f.size > this.maxFileBytes) return this.ctx.media.failed(meta, this.tooLarge(f.size));
    let lastError = '';
    for (let attempt = 1; attempt <= ATTEMPTS && !this.ctx.signal.aborted; attempt++) {
      try {
        const file = await this.api.getFile(f.fileId);
        if (file.file_size !== undefined && file.file_size > this.maxFileBytes) return this.ctx.media.failed(meta, this.tooLarge(file.file_size));
        return await this.ctx.media.putStream(this.limit(await this.open(file)), meta);
      } catch (err) {
        if (err instanceof MediaTooLargeError) {
          return this.ctx.media.failed(meta, err.limit === this.maxFileBytes ? this.tooLarge(this.maxFileBytes, false) : err.message);
        }
        lastError = this.redact(err);
        // A --local server's path we cannot open stays unopenable however often we try.
        if (err instanceof LocalFileError) break;
        const e = err as TelegramErrorLike & { status?: number };
        // A 4xx is Telegram's final word (file too big, file_id invalid or expired): no retry.
        const permanent = (typeof e.code === 'number' && e.code >= 400 && e.code < 500) || (e.status !== undefined && e.status >= 400 && e.status < 500);
        if (permanent) break;
        if (attempt < ATTEMPTS) await new Promise((r) => setTimeout(r, 300 * attempt));
      }
    }
    return this.ctx.media.failed(meta, `could not fetch the file: ${lastError}`);
  }

  /**
   * A self-hosted server in --local mode answers getFile with an absolute path on its disk and
   * serves no file route; read that path directly (telegraf's getFileLink would turn it into a
   * file:// URL carrying the apiRoot host, which fileURLToPath refuses on Linux).
   */
  private async open(file: TgFile): Promise<AsyncIterable<Uint8Array>> {
    if (file.file_path && isAbsolute(file.file_path)) return readLocal(file.file_path);
    const link = await this.api.getFileLink(file);
    const res = await fetch(link, { signal: AbortSignal.timeout(120_000) });
    if (!res.ok || !res.body) throw Object.assign(new Error(`file download answered ${res.status}`), { status: res.status });
    return res.body;
  }

  /** Stops reading as soon as the file passes the Bot API limit (sizes are not always announced). */
  private async *limit(stream: AsyncIterable<Uint8Array>): AsyncIterable<Uint8Array> {
    let size = 0;
    for await (const chunk of stream) {
      size += chunk.byteLength;
      if (size > this.maxFileBytes) throw new MediaTooLargeError(size, this.maxFileBytes);
      yield chunk;
    }
  }
}
