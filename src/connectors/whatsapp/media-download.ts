/**
 * WhatsApp media into the object store: decrypted by Baileys as a stream, cut off at the size limit
 * without buffering the rest, and given up after a deadline (a stalled CDN or re-upload request
 * would otherwise hold up every later message of the account).
 */
import { Transform, type Readable } from 'node:stream';
import { MediaTooLargeError } from '../../core/media.js';
import { errorMessage } from '../../core/errors.js';
import { untilAborted } from '../../core/sleep.js';
import type { Attachment } from '../../core/schema.js';
import type { ConnectorContext } from '../contract.js';
import { downloadMediaMessage, type WAMessage } from './baileys.js';
import type { PendingMedia } from './normalize.js';
import type { WaSocketLike } from './socket.js';
import type { WhatsAppOptions } from './index.js';

export async function downloadMedia(ctx: ConnectorContext, o: WhatsAppOptions, msg: WAMessage, media: PendingMedia, sock: WaSocketLike): Promise<Attachment> {
  const limit = Math.min(o.maxFileBytes ?? Infinity, ctx.media.maxBytes);
  const meta = { name: media.name, mimeType: media.mimeType, kind: media.kind, size: media.size };
  if (media.size !== undefined && media.size > limit) {
    return ctx.media.failed(meta, `file is ${media.size} bytes; the limit is ${limit} bytes`);
  }
  // A stalled CDN or re-upload request would otherwise hold up every later message.
  const ms = o.mediaDownloadTimeoutMs;
  const deadline = new AbortController();
  const timer = setTimeout(() => deadline.abort(new Error(`media download timed out after ${ms} ms`)), ms);
  try {
    const downloading = downloadMediaMessage(msg, 'stream', { options: { signal: deadline.signal } }, {
      logger: ctx.log.child({ lib: 'baileys' }, { level: o.libraryLogLevel }),
      reuploadRequest: (m) => (sock.updateMediaMessage ? sock.updateMediaMessage(m) : Promise.reject(new Error('media expired and re-upload is not available'))),
    }) as Promise<Readable>;
    void downloading.then((late) => deadline.signal.aborted && late.destroy(), () => {});
    const stream = await untilAborted(downloading, deadline.signal);
    const limited = capped(limit);
    stream.on('error', (e) => limited.destroy(e));
    const onDeadline = () => {
      limited.destroy(deadline.signal.reason as Error);
      stream.destroy();
    };
    if (deadline.signal.aborted) onDeadline();
    else deadline.signal.addEventListener('abort', onDeadline, { once: true });
    return await ctx.media.putStream(stream.pipe(limited), meta);
  } catch (err) {
    const cause = deadline.signal.aborted ? (deadline.signal.reason as Error) : err;
    const reason = cause instanceof MediaTooLargeError ? cause.message : `could not download or decrypt the media: ${errorMessage(cause)}`;
    return ctx.media.failed(meta, reason);
  } finally {
    clearTimeout(timer);
  }
}

/** Stops a media download past the limit without buffering the rest. */
function capped(limit: number): Transform {
  let size = 0;
  return new Transform({
    transform(chunk: Buffer, _enc, cb) {
      size += chunk.byteLength;
      if (size > limit) return cb(new MediaTooLargeError(size, limit));
      cb(null, chunk);
    },
  });
}
