/**
 * One signed POST of a ticket event to a webhook's receiver (the dispatcher decides when and how often).
 *
 * Written with node:http rather than fetch so that the sender's last check (`mayWrite`: is this
 * holder's lease still valid?) runs in the same synchronous step as the write of the request's
 * bytes, once the connection is ready. fetch (undici) writes some ticks after it was called,
 * and a process frozen (SIGSTOP, a VM pause) between a check and that write posted, once it
 * woke, an event its successor had already re-sent under a higher lease token. Now only a freeze
 * inside that one step, or bytes already in the kernel's send buffer, can still let a stale post
 * out: no sender closes that fully, which is why each POST carries its lease token and a
 * receiver that must never act on a stale holder refuses lower tokens (docs/api.md).
 */
import http from 'node:http';
import https from 'node:https';
import type { Socket } from 'node:net';
import { errorMessage } from '../core/errors.js';
import { redirectAnswerRefusal, retryAfterMs } from '../core/http.js';
import { SIGNATURE_HEADER, sign } from '../core/signature.js';

export type PostOutcome =
  | { ok: true }
  /** `permanent`: retrying cannot help (a redirect); the dead-letter code to park the event under at once. */
  | { ok: false; problem: string; retryAfterMs?: number; permanent?: string };

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

/** Connections kept open between POSTs (as fetch did), one pool per scheme for the process. */
const agents = { 'http:': new http.Agent({ keepAlive: true }), 'https:': new https.Agent({ keepAlive: true }) };

/** The request was not written because `mayWrite` said no at the last moment. */
const NOT_SENT = 'not sent: the lease is no longer valid';

/**
 * POSTs once: ok when the receiver answered 2xx, else what went wrong. `cutOff` ends it early
 * (shutdown, or the lease ran out by the clock). `mayWrite` is asked right before the request's
 * bytes are written; false: nothing is sent.
 */
export async function postEvent(target: PostTarget, body: Uint8Array, meta: PostMeta, cutOff: AbortSignal, mayWrite: () => boolean = () => true): Promise<PostOutcome> {
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
    const { status, retryAfterHeader, location } = await send(target, raw, meta, request.signal, mayWrite);
    if (status >= 200 && status < 300) return { ok: true };
    // A redirect answers every retry alike: it was retried for all of retryFor. Not followed, as
    // for a callback (core/http.ts), and named by host only: its path or query may hold a secret.
    const redirected = redirectAnswerRefusal(status, location, target.url);
    if (redirected) return { ok: false, problem: `receiver ${redirected} (webhooks[].url)`, permanent: `http_${status}` };
    return { ok: false, problem: `receiver answered ${status}`, retryAfterMs: retryAfterMs(retryAfterHeader) };
  } catch (err) {
    if (err instanceof Error && err.message === NOT_SENT) return { ok: false, problem: NOT_SENT };
    return { ok: false, problem: `receiver unreachable: ${errorMessage(request.signal.aborted ? request.signal.reason : err)}` };
  } finally {
    clearTimeout(timer);
    cutOff.removeEventListener('abort', onCut);
  }
}

/** The request itself: headers and body written in one step once the socket is connected, the answer read to its end. */
function send(target: PostTarget, raw: Buffer, meta: PostMeta, signal: AbortSignal, mayWrite: () => boolean): Promise<{ status: number; retryAfterHeader: string | null; location?: string }> {
  return new Promise((resolve, reject) => {
    let url: URL;
    try {
      url = new URL(target.url);
    } catch (err) {
      return reject(err instanceof Error ? err : new Error(String(err)));
    }
    const agent = url.protocol === 'https:' ? agents['https:'] : agents['http:'];
    const lib = url.protocol === 'https:' ? https : http;
    const req = lib.request(url, {
      method: 'POST',
      agent,
      signal,
      headers: {
        'content-type': 'application/json',
        'content-length': String(raw.length),
        [SIGNATURE_HEADER]: sign(target.secret, raw),
        'x-omnigate-event': meta.type,
        'x-omnigate-delivery': `${target.name}-${meta.seq}`,
        // Increases with event order: lets a receiver spot a late redelivery after a gateway crash.
        'x-omnigate-sequence': String(meta.seq),
        'x-omnigate-lease-token': String(meta.token),
        'user-agent': 'omnigate-webhooks/1',
      },
    });
    req.once('error', reject);
    req.once('response', (res) => {
      res.once('error', reject);
      res.once('close', () => {
        if (!res.complete) reject(new Error('the answer was cut off'));
      });
      res.on('data', () => undefined); // read to the end so the connection goes back to the pool
      res.once('end', () => {
        const header = res.headers['retry-after'];
        resolve({ status: res.statusCode ?? 0, retryAfterHeader: typeof header === 'string' ? header : null, location: res.headers.location });
      });
    });
    // node:http sends nothing before end(): headers and body leave together, right after the check.
    const write = () => {
      if (req.destroyed) return;
      if (!mayWrite()) return void req.destroy(new Error(NOT_SENT));
      req.end(raw);
    };
    req.once('socket', (socket: Socket) => {
      // A pooled connection is ready now; a new one (TLS included) is waited for, so that the
      // write happens when it can leave at once, not queued behind the connect.
      if (req.reusedSocket || (!socket.connecting && url.protocol !== 'https:')) return write();
      const ready = url.protocol === 'https:' ? 'secureConnect' : 'connect';
      const onReady = () => {
        req.off('close', onClose);
        write();
      };
      // The request ended first (aborted, timed out): the socket must not keep our listener.
      const onClose = () => socket.off(ready, onReady);
      socket.once(ready, onReady);
      req.once('close', onClose);
    });
  });
}

