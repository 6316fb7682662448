/**
 * The few Graph API calls the Cloud API transport makes, with Meta's errors turned into our
 * delivery outcomes. The access token goes in the Authorization header only, never in URLs.
 */
import { PermanentDeliveryError, TransientDeliveryError, errorMessage } from '../../core/errors.js';
import { describeFetchFailure } from '../../core/network-failure.js';
import { redirectRefusal, retryAfterMs } from '../../core/http.js';
import type { WhatsAppCloudOptions } from './index.js';

export interface GraphError {
  message?: string;
  type?: string;
  code?: number;
  error_subcode?: number;
  error_data?: { details?: string };
}

export class GraphCallError extends Error {
  constructor(
    readonly status: number,
    readonly error: GraphError | undefined,
    readonly retryAfterMs?: number,
  ) {
    // Status 0: no answer at all (the message says what the network said), not an HTTP status.
    const head = status === 0 ? 'Graph API' : `Graph API ${status}`;
    super(`${head}${error?.code ? ` (code ${error.code})` : ''}: ${error?.message ?? 'no error body'}${error?.error_data?.details ? ` (${error.error_data.details})` : ''}`);
    this.name = 'GraphCallError';
  }
}

export class GraphClient {
  private readonly base: string;

  constructor(private readonly o: WhatsAppCloudOptions) {
    this.base = `${o.graphApiUrl.replace(/\/+$/, '')}/${o.graphApiVersion}`;
  }

  private async call<T>(method: string, path: string, body?: string | FormData, contentType?: string): Promise<T> {
    let res: Response;
    try {
      res = await fetch(`${this.base}${path}`, {
        method,
        headers: { authorization: `Bearer ${this.o.accessToken}`, ...(contentType ? { 'content-type': contentType } : {}) },
        body,
        signal: AbortSignal.timeout(this.o.timeoutMs),
        redirect: 'manual',
      });
    } catch (err) {
      throw new GraphCallError(0, { message: `unreachable: ${describeFetchFailure(err, this.base, this.o.timeoutMs, 'timeoutMs')}` });
    }
    const redirected = redirectRefusal(res);
    if (redirected) {
      await res.body?.cancel().catch(() => {});
      throw new GraphCallError(res.status, { message: `graphApiUrl ${redirected}` });
    }
    const text = await res.text().catch(() => '');
    let json: { error?: GraphError } & Record<string, unknown> = {};
    try {
      json = text ? JSON.parse(text) : {};
    } catch {
      /* a proxy's HTML error page */
    }
    if (!res.ok) {
      throw new GraphCallError(res.status, json.error ?? { message: text.slice(0, 200) }, retryAfterMs(res.headers.get('retry-after')));
    }
    return json as T;
  }

  /** Startup check that the token can see the phone number. */
  phoneNumber(): Promise<{ id: string; display_phone_number?: string; verified_name?: string }> {
    return this.call('GET', `/${this.o.phoneNumberId}?fields=display_phone_number,verified_name`);
  }

  async sendMessage(payload: Record<string, unknown>): Promise<string> {
    const res = await this.call<{ messages?: Array<{ id: string }> }>(
      'POST',
      `/${this.o.phoneNumberId}/messages`,
      JSON.stringify({ messaging_product: 'whatsapp', recipient_type: 'individual', ...payload }),
      'application/json',
    );
    const id = res.messages?.[0]?.id;
    if (!id) throw new GraphCallError(200, { message: 'the messages call returned no message id' });
    return id;
  }

  async uploadMedia(bytes: Uint8Array, mimeType: string, name: string): Promise<string> {
    const form = new FormData();
    form.append('messaging_product', 'whatsapp');
    form.append('type', mimeType);
    form.append('file', new Blob([bytes], { type: mimeType }), name);
    const res = await this.call<{ id?: string }>('POST', `/${this.o.phoneNumberId}/media`, form);
    if (!res.id) throw new GraphCallError(200, { message: 'the media upload returned no id' });
    return res.id;
  }

  mediaInfo(mediaId: string): Promise<{ url: string; mime_type?: string; file_size?: number; sha256?: string }> {
    return this.call('GET', `/${encodeURIComponent(mediaId)}`);
  }

  /** Media URLs need the same bearer token; they are not public. */
  async download(url: string, limit: number): Promise<Uint8Array> {
    const res = await fetch(url, { headers: { authorization: `Bearer ${this.o.accessToken}` }, signal: AbortSignal.timeout(60_000) });
    if (!res.ok || !res.body) throw new Error(`media download answered ${res.status}`);
    const declared = Number(res.headers.get('content-length'));
    if (Number.isFinite(declared) && declared > limit) {
      await res.body.cancel();
      throw new Error(`file is ${declared} bytes; the limit is ${limit} bytes`);
    }
    const chunks: Uint8Array[] = [];
    let size = 0;
    for await (const chunk of res.body as AsyncIterable<Uint8Array>) {
      size += chunk.byteLength;
      if (size > limit) throw new Error(`file exceeds the limit of ${limit} bytes`);
      chunks.push(chunk);
    }
    return Buffer.concat(chunks);
  }
}

/**
 * Our documented reason for a Meta error code that means "this message will not be delivered",
 * the same whether Meta said so answering the send or later in a failed-status webhook (where
 * it says so most often). Undefined for codes without a reason of their own (`graph_<code>`).
 */
export function metaReason(code: number | undefined): string | undefined {
  switch (code) {
    case 131047: return 'outside_24h_window';
    case 131026: return 'undeliverable';
    case 131051: return 'unsupported_message_type';
    case 131052:
    case 131053: return 'media_failed';
    default: return undefined;
  }
}

/** Meta's codes: https://developers.facebook.com/docs/whatsapp/cloud-api/support/error-codes */
export function classifyGraphError(err: unknown): Error {
  if (err instanceof PermanentDeliveryError || err instanceof TransientDeliveryError) return err;
  if (!(err instanceof GraphCallError)) return new TransientDeliveryError(`WhatsApp Cloud API call failed: ${errorMessage(err)}`);
  const code = err.error?.code;
  if (err.status === 0) return new TransientDeliveryError(err.message);
  if (code === 131047) return new PermanentDeliveryError(`${err.message}: more than 24 hours since the customer's last message`, 'outside_24h_window');
  if (err.status === 429 || code === 4 || code === 613 || code === 80007 || code === 130429 || code === 131048 || code === 131056) {
    return new TransientDeliveryError(`rate limited: ${err.message}`, err.retryAfterMs ?? 10_000);
  }
  if (err.status >= 500 || code === 1 || code === 2 || code === 131000 || code === 131016) return new TransientDeliveryError(err.message);
  if (err.status === 401 || code === 190) return new TransientDeliveryError(`access token rejected: ${err.message}`, 60_000);
  const reason = metaReason(code) ?? `graph_${code ?? err.status}`;
  return new PermanentDeliveryError(err.message, reason);
}
