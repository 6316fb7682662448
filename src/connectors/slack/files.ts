/**
 * Slack files in and out. In: `url_private(_download)` fetched with the bot token into the object
 * store, refusing past the size limit without buffering the excess. The token goes only to Slack's
 * file host (https://files.slack.com, and the host of the configured apiUrl): a URL elsewhere in
 * an event (plain HTTP, a look-alike or internal host) is recorded as not fetched, never requested,
 * and fetch drops the Authorization header on a redirect to another origin. Only a refusal that a
 * retry cannot change is recorded on the message as a failed attachment; anything else (Slack 5xx
 * or 429, a network error or timeout, the object store unwritable while NATS is away) rejects, so
 * the event stays unacknowledged and Slack redelivers it, unless this is Slack's last delivery.
 * Out: the current upload flow (files.getUploadURLExternal → POST the bytes →
 * files.completeUploadExternal), the steps of WebClient.filesUploadV2 made one by one.
 */
import type { WebClient } from '@slack/web-api';
import { MediaTooLargeError, type MediaStore } from '../../core/media.js';
import { errorMessage } from '../../core/errors.js';
import type { Attachment } from '../../core/schema.js';
import type { SlackFile } from './shape.js';

/** files.slack.com answers these for a file that is gone or that this token may not read. */
const PERMANENT_STATUS = new Set([401, 403, 404, 410]);

class PermanentDownloadError extends Error {}

/** Where Slack serves files with the bot token (`url_private`), compared as origins (scheme, host, port). */
const SLACK_FILE_ORIGIN = 'https://files.slack.com';

/**
 * The origins the bot token may be sent to for a download: files.slack.com, the origin of the Web
 * API base URL (a stand-in in tests, an on-premises proxy), and for an HTTPS base its `files.` host
 * (GovSlack: slack-gov.com serves files from files.slack-gov.com).
 */
export function slackFileOrigins(apiUrl: string): ReadonlySet<string> {
  const api = new URL(apiUrl);
  const origins = new Set([SLACK_FILE_ORIGIN, api.origin]);
  if (api.protocol === 'https:') origins.add(`https://files.${api.host}`);
  return origins;
}

export interface DownloadOptions {
  botToken: string;
  /** From slackFileOrigins(): a file URL on any other origin is not fetched. */
  fileOrigins: ReadonlySet<string>;
  media: MediaStore;
  limit: number;
  /**
   * Slack will not deliver this event again: record a transient failure on the message too
   * rather than lose the message with the file.
   */
  lastDelivery: boolean;
}

export async function downloadFiles(files: SlackFile[], o: DownloadOptions): Promise<Attachment[]> {
  const out: Attachment[] = [];
  for (const f of files) out.push(await downloadOne(f, o));
  return out;
}

async function downloadOne(f: SlackFile, { botToken, fileOrigins, media, limit, lastDelivery }: DownloadOptions): Promise<Attachment> {
  const mimeType = f.mimetype || 'application/octet-stream';
  const meta = { name: f.name || f.title || f.id, mimeType, kind: mimeType.startsWith('image/') ? 'image' : 'document', size: f.size };
  if (f.size !== undefined && f.size > limit) return media.failed(meta, `file is ${f.size} bytes; the limit is ${limit}`);
  const field = f.url_private_download ? 'url_private_download' : 'url_private';
  const url = f.url_private_download || f.url_private;
  if (!url) return media.failed(meta, 'Slack sent no download URL for this file (Slack Connect files need files.info)');
  const origin = URL.canParse(url) ? new URL(url).origin : undefined;
  if (!origin) return media.failed(meta, `${field}: not a URL`);
  if (!fileOrigins.has(origin)) {
    return media.failed(meta, `${field}: ${origin} is not Slack's file host (${[...fileOrigins].join(', ')}); not fetched, so the bot token is not sent there`);
  }
  try {
    const res = await fetch(url, { headers: { authorization: `Bearer ${botToken}` }, signal: AbortSignal.timeout(60_000) });
    if (!res.ok || !res.body) {
      await res.body?.cancel();
      throw new (PERMANENT_STATUS.has(res.status) ? PermanentDownloadError : Error)(`download answered ${res.status}`);
    }
    const declared = Number(res.headers.get('content-length') ?? NaN);
    if (declared > limit) {
      await res.body.cancel();
      return media.failed(meta, `file is ${declared} bytes; the limit is ${limit}`);
    }
    // Without files:read Slack answers 200 with its HTML sign-in page instead of the file.
    if ((res.headers.get('content-type') ?? '').startsWith('text/html') && !mimeType.startsWith('text/html')) {
      await res.body.cancel();
      return media.failed(meta, 'Slack answered with a sign-in page: the bot token lacks files:read');
    }
    return await media.putStream(capped(res.body, limit), meta);
  } catch (err) {
    if (err instanceof MediaTooLargeError) return media.failed(meta, err.message);
    if (err instanceof PermanentDownloadError || lastDelivery) return media.failed(meta, `could not fetch the file: ${errorMessage(err)}`);
    throw new Error(`file ${f.id} not fetched yet: ${errorMessage(err)}`);
  }
}

/** Our limit may be below the store's: refuse past it while streaming, when no size was declared. */
async function* capped(body: AsyncIterable<Uint8Array>, limit: number): AsyncIterable<Uint8Array> {
  let size = 0;
  for await (const chunk of body) {
    size += chunk.byteLength;
    if (size > limit) throw new MediaTooLargeError(size, limit);
    yield chunk;
  }
}

export interface UploadTarget {
  channel: string;
  threadTs?: string;
}

/**
 * The three steps of WebClient.filesUploadV2, made here so that `beforePost` runs right before the
 * one that shows the file in the channel (files.completeUploadExternal): getting the URL and
 * sending the bytes post nothing, and a gateway stopped during a long upload has sent nothing.
 */
export async function uploadFile(client: WebClient, target: UploadTarget, bytes: Uint8Array, filename: string, beforePost: () => Promise<void>, timeoutMs: number): Promise<void> {
  const { upload_url: uploadUrl, file_id: fileId } = await client.files.getUploadURLExternal({ filename, length: bytes.byteLength });
  if (!uploadUrl || !fileId) throw new Error(`files.getUploadURLExternal answered without ${uploadUrl ? 'file_id' : 'upload_url'}`);
  const res = await fetch(uploadUrl, { method: 'POST', body: bytes, signal: AbortSignal.timeout(timeoutMs) });
  await res.body?.cancel();
  if (res.status !== 200) throw new Error(`the file upload answered ${res.status}`);
  await beforePost();
  await client.files.completeUploadExternal({
    files: [{ id: fileId, title: filename }],
    channel_id: target.channel,
    ...(target.threadTs ? { thread_ts: target.threadTs } : {}),
  });
}
