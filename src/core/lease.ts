/**
 * Single-runner leases in a KV bucket whose TTL expires a dead holder's key. Connectors that must
 * run once per account across replicas (Telegram polling, an IMAP mailbox, a WhatsApp session),
 * the webhook dispatcher and the SLA scanner hold one. Works on 2.9.10: bucket max_age, create()
 * and update(revision) only.
 *
 * Fencing. A holder can be paused (GC, SIGSTOP, a frozen VM) past its TTL while another replica
 * takes the lease over; when it wakes, its timers have not run yet and it would act as holder.
 * So the holder measures, on the monotonic clock, the time since it *sent* the last renewal the
 * server confirmed; the key cannot expire earlier than that plus the TTL (the server stamps the
 * write after we sent it). `valid()` is false from then on, and every effect checks it first.
 * `token` is the key's revision when this holder took it: a later holder always has a higher
 * one, so effects that carry it can be refused by a receiver that saw a newer token.
 *
 * Renewal is early (every TTL/3) and a failed renewal (a timeout, NATS restarting) is retried:
 * the lease is given up only when the TTL has really passed since the last confirmed renewal,
 * or when the server says the key is no longer ours. Under overload (issue 17) two things made
 * leases churn: a renewal the server applied but whose answer was lost made the retry fail with
 * "wrong last sequence", read as a takeover; and one renewal stuck in a NATS request longer than
 * the TTL blocked the next. Now a "not ours" answer is checked against the key (still our holder
 * id: adopt its revision and renew at once), and a renewal outstanding for a whole period is
 * joined by another. What is left is a process whose event loop is blocked longer than the TTL:
 * no timer runs, nothing can renew; the loss is then logged with `stalledMs` (the longest gap
 * between the lease's ticks), so starvation can be told from NATS being slow (`waitedMs`).
 */
import type { KV } from '@nats-io/kv';
import type { Logger } from 'pino';
import { sleep } from './sleep.js';
import { heldByInstance } from './holder.js';

export interface Lease {
  readonly key: string;
  /** The key's revision when this holder took it: higher for every later holder. */
  readonly token: number;
  /** Resolves when the lease was lost (not renewed in time, taken over, or released). */
  readonly lost: Promise<void>;
  /** True while no other replica can hold the lease. Check before every effect. */
  valid(): boolean;
  /** The longest gap between two of this lease's timer ticks since its last confirmed renewal (event-loop stalls), ms. */
  stalledMs(): number;
  /**
   * True once the TTL has passed since the last renewal the server confirmed (a pause, or cut off
   * from NATS): another replica may have taken the lease and acted since, unknown to this one.
   * Stays false after a loss the server announced, or a release, within the TTL.
   */
  expired(): boolean;
  release(): Promise<void>;
}

export interface LeaseOptions {
  ttlMs: number;
  holder: string;
  signal?: AbortSignal;
  log?: Logger;
  /** Monotonic clock in ms; tests replace it to simulate a pause. */
  now?: () => number;
}

/** The server answered that the key moved on or is gone: someone else's now, or expired. */
const NOT_OURS = /wrong last sequence|key exists|10071|10164|not found/i;

/** Waits until the lease is ours, then keeps renewing it until released or lost. */
export async function acquireLease(kv: KV, key: string, o: LeaseOptions): Promise<Lease> {
  const now = o.now ?? (() => performance.now());
  const renewEvery = Math.max(250, Math.floor(o.ttlMs / 3));
  let revision = 0;
  let confirmedAt = 0;
  while (!o.signal?.aborted) {
    const sentAt = now();
    const taken = await tryTake(kv, key, o.holder);
    revision = taken.revision;
    // A take answered after the TTL is ours on the server but already expired by our clock:
    // take it again at once (it is ours: tryTake renews it) rather than start a dead term.
    if (revision > 0 && now() - sentAt < o.ttlMs) {
      confirmedAt = sentAt;
      break;
    }
    if (revision === 0) await sleep(taken.vanished ? MIN_RETRY_MS : waitForHolder(taken.heldSince, o.ttlMs, renewEvery), o.signal);
  }
  if (o.signal?.aborted) throw new Error(`lease ${key}: aborted while waiting`);
  return hold(kv, key, o, revision, confirmedAt);
}

/** One attempt: the lease if it was free (or already ours), else null. Never waits. */
export async function tryAcquireLease(kv: KV, key: string, o: LeaseOptions): Promise<Lease | null> {
  const now = o.now ?? (() => performance.now());
  const sentAt = now();
  const { revision } = await tryTake(kv, key, o.holder);
  return revision > 0 && now() - sentAt < o.ttlMs ? hold(kv, key, o, revision, sentAt) : null;
}

/** Keeps a lease just taken at `revision` (confirmed as sent at `confirmedAt`) renewed. */
function hold(kv: KV, key: string, o: LeaseOptions, taken: number, confirmedAt: number): Lease {
  const now = o.now ?? (() => performance.now());
  const renewEvery = Math.max(250, Math.floor(o.ttlMs / 3));
  let revision = taken;
  const token = revision;

  let onLost!: () => void;
  const lost = new Promise<void>((r) => (onLost = r));
  let ended = false;
  /** When the oldest renewal still waiting for its answer was sent (undefined: none waiting). */
  let waitingSince: number | undefined;
  let inFlight = 0;
  let lastTick = now();
  let stalled = 0;
  // The gap up to now counts too: after a pause, work that wakes first calls valid() and ends
  // the lease before the timer's tick has measured the pause (a 40 s SIGSTOP logged stalledMs 0).
  const stalledSoFar = () => Math.max(stalled, now() - lastTick);
  const end = (why: string, err?: unknown) => {
    if (ended) return;
    ended = true;
    clearInterval(timer);
    stalled = stalledSoFar();
    const waitedMs = waitingSince === undefined ? undefined : Math.round(now() - waitingSince);
    if (why !== 'released') o.log?.warn({ key, fence: token, why, stalledMs: Math.round(stalled), waitedMs, err: err === undefined ? undefined : String(err) }, 'lease lost');
    onLost();
  };
  const expired = () => now() - confirmedAt >= o.ttlMs;
  // Invalid for good once expired: a slow renewal landing later must not make a holder that
  // others may already have counted out (and that stopped its work) valid again.
  const valid = () => {
    if (ended) return false;
    if (!expired()) return true;
    end('not renewed within the TTL (paused or cut off)');
    return false;
  };
  let lastRenewal = now();

  const confirmed = (rev: number, sentAt: number) => {
    revision = Math.max(revision, rev);
    if (sentAt > confirmedAt) {
      confirmedAt = sentAt;
      stalled = 0;
    }
  };
  const renew = async () => {
    if (!valid()) return end('not renewed within the TTL (paused or cut off)');
    const sentAt = now();
    try {
      const rev = await kv.update(key, o.holder, revision);
      if (!ended) confirmed(rev, sentAt);
    } catch (err) {
      if (ended) return;
      if (NOT_OURS.test(String(err))) {
        // An earlier renewal may have landed with its answer lost (or a parallel one won):
        // the key still carrying our holder id means it is ours at a newer revision.
        const entry = await kv.get(key).catch(() => null);
        if (ended) return;
        if (entry?.operation === 'PUT' && entry.string() === o.holder && entry.revision >= revision) {
          const again = now();
          confirmed(await kv.update(key, o.holder, entry.revision), again);
          return;
        }
        return end('taken over or expired', err);
      }
      // A timeout or a NATS restart: keep the lease and retry at the next tick, not a whole
      // period later; it ends only when the TTL has passed since the last confirmed renewal.
      o.log?.debug({ key, err: String(err) }, 'lease renewal failed; retrying');
      lastRenewal = -Infinity;
    }
  };
  // Ticks at a sixth of the TTL: renews every third, and notices an expiry soon after a pause.
  const timer = setInterval(() => {
    const t = now();
    stalled = Math.max(stalled, t - lastTick);
    lastTick = t;
    if (!valid()) return end('not renewed within the TTL (paused or cut off)');
    if (t - lastRenewal < renewEvery - renewEvery / 4) return;
    // One renewal at a time, unless it has waited a whole period (a NATS request stuck for
    // longer than the TTL must not be the lease's only chance): then one more joins it.
    if (inFlight > 1 || (inFlight === 1 && t - (waitingSince ?? t) < renewEvery)) return;
    inFlight++;
    waitingSince ??= t;
    lastRenewal = t;
    renew().then(
      () => settled(),
      (err: unknown) => {
        settled();
        // A failed re-check after "not ours" (NATS away) is retried like any failed renewal.
        if (!ended) o.log?.debug({ key, err: String(err) }, 'lease renewal failed; retrying');
        lastRenewal = -Infinity;
      },
    );
  }, Math.max(100, Math.floor(renewEvery / 2)));
  const settled = () => {
    inFlight--;
    waitingSince = inFlight === 0 ? undefined : now();
  };
  timer.unref();
  return {
    key,
    token,
    lost,
    valid,
    expired,
    stalledMs: () => Math.round(ended ? stalled : stalledSoFar()),
    async release() {
      end('released');
      try {
        await kv.delete(key, { previousSeq: revision });
      } catch {
        /* already taken over or expired */
      }
    },
  };
}

/** Shortest wait between two takes of a key whose holder may just have expired: the server removes it on its own timer. */
const MIN_RETRY_MS = 250;

/**
 * How long a replica waiting for a held lease sleeps before trying again. A live holder renews
 * every TTL/3, so its key is never older than that: the waiter looks again a renewal period
 * later. A holder that died leaves a key that expires at its last write + TTL (server time): the
 * waiter wakes just after that instead of up to a whole period late (a 15 s TTL took over in
 * 15–20 s; issue 17 asks for TTL + 2 s).
 */
export function waitForHolder(heldSince: number | undefined, ttlMs: number, renewEvery: number, nowMs = Date.now()): number {
  if (heldSince === undefined || !Number.isFinite(heldSince)) return renewEvery;
  const untilExpiry = heldSince + ttlMs - nowMs + 50;
  // Overdue by more than a period: our clock and the server's disagree; a key that old would be gone.
  if (untilExpiry < -renewEvery) return renewEvery;
  // Due (the server removes it on its own timer) or a clock a little ahead: a few looks per period.
  if (untilExpiry <= 0) return Math.max(MIN_RETRY_MS, Math.floor(renewEvery / 4));
  return Math.min(renewEvery, untilExpiry);
}

/**
 * One take: the revision (0: not ours), when the key was last written (server time) if it is
 * someone else's, or `vanished` when it expired between the take and the read (try again soon).
 */
async function tryTake(kv: KV, key: string, holder: string): Promise<{ revision: number; heldSince?: number; vanished?: boolean }> {
  try {
    return { revision: await kv.create(key, holder) };
  } catch {
    // Our own key left by an earlier run of this process (same holder id): take it back.
    const entry = await kv.get(key);
    if (entry && entry.operation === 'PUT' && entry.string() === holder) {
      try {
        return { revision: await kv.update(key, holder, entry.revision) };
      } catch {
        return { revision: 0 };
      }
    }
    if (!entry || entry.operation !== 'PUT') return { revision: 0, vanished: true };
    return { revision: 0, heldSince: entry.created.getTime() };
  }
}

/**
 * Deletes every lease whose holder belongs to `instance`, a gateway known to be dead (never call
 * it on a guess: a live holder would go on acting until its next renewal fails). Each delete is a
 * compare-and-set on the revision read, so a lease someone renewed or took since is left alone.
 * Returns the keys freed.
 */
export async function releaseLeasesOf(kv: KV, instance: string): Promise<string[]> {
  const keys: string[] = [];
  for await (const key of await kv.keys()) keys.push(key);
  const freed: string[] = [];
  for (const key of keys) {
    const entry = await kv.get(key);
    if (!entry || entry.operation !== 'PUT' || !heldByInstance(entry.string(), instance)) continue;
    try {
      await kv.delete(key, { previousSeq: entry.revision });
      freed.push(key);
    } catch (err) {
      if (!NOT_OURS.test(String(err))) throw err;
    }
  }
  return freed;
}
