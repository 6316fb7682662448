/** The longest wait a Node timer holds: a longer one (a platform's retry_after of weeks) fires after 1 ms instead. */
const MAX_TIMER_MS = 2 ** 31 - 1;

/** Waits `ms` (at most ~24.8 days), or less if the signal aborts first (shutdown must not wait out a backoff). */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  ms = Math.min(ms, MAX_TIMER_MS);
  return new Promise((resolve) => {
    if (signal?.aborted) return resolve();
    const onAbort = () => {
      clearTimeout(t);
      resolve();
    };
    // The listener goes when the wait ends: a long-lived signal must not collect one per sleep.
    const t = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}

/** Exponential backoff: `baseMs` × 2^attempt (attempt 0 = baseMs), never above `maxMs`. */
export function backoffMs(attempt: number, baseMs: number, maxMs: number): number {
  return Math.min(maxMs, baseMs * 2 ** Math.min(Math.max(attempt, 0), 30));
}

/** Resolves when the signal aborts (at once if it already has): a loop with nothing left to do but wait for stop. */
export function whenAborted(signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal.aborted) return resolve();
    signal.addEventListener('abort', () => resolve(), { once: true });
  });
}

/**
 * `p`, or the signal's reason once it aborts first (`p` itself goes on: a late result is
 * dropped, a late failure is not reported).
 */
export function untilAborted<T>(p: Promise<T>, signal: AbortSignal): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(signal.reason as Error);
    if (signal.aborted) return onAbort();
    signal.addEventListener('abort', onAbort, { once: true });
    p.then(resolve, reject).finally(() => signal.removeEventListener('abort', onAbort));
  });
}

/**
 * `work`, or a rejection with `error()` once `ms` have passed (the work itself is not cancelled:
 * the caller decides what a late result means). The timer goes when either ends.
 */
export async function within<T>(ms: number, work: Promise<T>, error: () => Error = () => new Error(`no answer within ${ms} ms`)): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(error()), ms);
  });
  try {
    return await Promise.race([work, late]);
  } finally {
    clearTimeout(timer);
  }
}
