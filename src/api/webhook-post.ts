/** One signed POST of a ticket event to a webhook's receiver (the dispatcher decides when and how often). */
import { errorMessage } from '../core/errors.js';
import { SIGNATURE_HEADER, sign } from '../core/signature.js';

export type PostOutcome = { ok: true } | { ok: false; problem: string; retryAfterMs?: number };

export interface PostTarget {
  name: string;
  url: string;
  secret: string;
  timeout: number;
}

/** What goes into the delivery headers besides the body. */
export interface PostMeta {
  type: string;
  /** Stream sequence of the event: increases with event order. */
  seq: number;
  /** The dispatcher's lease token: a later dispatcher's is higher (core/lease.ts). */
  token: number;
}

/** POSTs once: ok when the receiver answered 2xx, else what went wrong. `cutOff` ends it early (shutdown). */
export async function postEvent(target: PostTarget, body: Uint8Array, meta: PostMeta, cutOff: AbortSignal): Promise<PostOutcome> {
  const raw = Buffer.from(body);
  // A per-request controller rather than AbortSignal.any([timeout, cutOff]): the dependant signal
  // `any` creates stays registered on the long-lived cutOff signal for the dispatcher's life
  // (~80 B per delivery, 1.3 GB/day at 200 events/s). This listener is removed when the POST
  // ends. Only the shutdown cut-off aborts a POST: a lost lease lets it finish (see the dispatcher's `term`).
  const request = new AbortController();
  const onCut = () => request.abort(cutOff.reason);
  if (cutOff.aborted) onCut();
  else cutOff.addEventListener('abort', onCut, { once: true });
  const timer = setTimeout(() => request.abort(new DOMException(`no answer within ${target.timeout} ms`, 'TimeoutError')), target.timeout);
  try {
    const res = await fetch(target.url, {
      method: 'POST',
      headers: {
        'content-type': 'application/json',
        [SIGNATURE_HEADER]: sign(target.secret, raw),
        'x-omnigate-event': meta.type,
        'x-omnigate-delivery': `${target.name}-${meta.seq}`,
        // Increases with event order: lets a receiver spot a late redelivery after a gateway crash.
        'x-omnigate-sequence': String(meta.seq),
        'x-omnigate-lease-token': String(meta.token),
        'user-agent': 'omnigate-webhooks/1',
      },
      body: raw,
      signal: request.signal,
    });
    await res.arrayBuffer().catch(() => undefined);
    if (res.ok) return { ok: true };
    return { ok: false, problem: `receiver answered ${res.status}`, retryAfterMs: retryAfter(res.headers.get('retry-after')) };
  } catch (err) {
    return { ok: false, problem: `receiver unreachable: ${errorMessage(err)}` };
  } finally {
    clearTimeout(timer);
    cutOff.removeEventListener('abort', onCut);
  }
}

/** Retry-After as seconds or an HTTP date, in ms; undefined when absent or unreadable. */
export function retryAfter(value: string | null): number | undefined {
  if (!value) return undefined;
  const seconds = Number(value);
  if (Number.isFinite(seconds)) return Math.max(0, seconds * 1000);
  const at = Date.parse(value);
  return Number.isNaN(at) ? undefined : Math.max(0, at - Date.now());
}
