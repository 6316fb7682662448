/**
 * Idempotency keys of bus commands (commands.ts): a command sent again with the same key runs
 * once and answers the first result, also when its first attempt died half-way or is still
 * running on another replica. Claims and results are kept in the dedup bucket.
 */
import type { Bus } from '../core/bus.js';
import { isCasConflict } from '../core/bus.js';
import { errorMessage } from '../core/errors.js';
import { HolderWatch, SERVER_AGE_MS } from '../core/holder-watch.js';
import type { Logger } from '../core/logger.js';
import { sleep } from '../core/sleep.js';
import { hashKey } from '../core/subjects.js';
import type { CommandResult } from './commands.js';

const CLAIM_POLL_MS = 50;
// Shorter than the API's 10 s command timeout, so an HTTP client gets in_progress rather than 503.
const CLAIM_WAIT_MS = 5_000;
/**
 * A claim this process has seen unchanged this long (its monotonic clock, core/holder-watch.ts)
 * was left by a process that died mid-command. Not by the claim's `at` against our clock: a
 * replica whose clock ran 2 minutes behind wrote claims the others took over at once, and the
 * command ran twice (a reply sent twice).
 */
export const CLAIM_STALE_MS = 30_000;
/** What one router process has seen of other attempts' claims (one per CommandHandler). */
export function commandClaims(staleMs = CLAIM_STALE_MS): HolderWatch {
  return new HolderWatch(staleMs, Math.max(SERVER_AGE_MS, staleMs));
}

/** An idempotency key's claim while its command runs (the stored result replaces it). */
interface Claim {
  pending: true;
  /** When this attempt began (ms, by its replica's clock: for `earlierAttemptAt`, never for staleness). */
  at: number;
  /** The attempt failed: the next request with the key takes over at once. */
  interrupted?: true;
  /** When the first attempt began, if this one took over (ms). */
  firstAt?: number;
}

/**
 * Runs `act` once per idempotency key and stores its result; a replay returns the stored result.
 * The key is claimed with a KV create (compare-and-set), so two concurrent requests with one key
 * never both act: the second waits up to CLAIM_WAIT_MS for the first one's result, then answers
 * `in_progress` (retry later with the same key). A claim `claims` has seen unchanged for
 * CLAIM_STALE_MS (left by a process that died mid-command) is taken over, and so at once is one whose attempt failed
 * (marked `interrupted`). `act` is then told when the first attempt began (ms): it may have
 * logged its entry longer ago than the duplicate window.
 *
 * `signal` (the commands loop stopping) ends a wait for another attempt's claim at once with
 * `in_progress`: the wait holds nothing of this replica's, and a claim left by a replica killed
 * mid-command stays fresh until seen unchanged for CLAIM_STALE_MS, so every retry of that key waited here in turn and
 * held this replica's stop past shutdownTimeout.
 */
export async function runOnce(bus: Bus, log: Logger, claims: HolderWatch, kind: string, key: string | undefined, act: (earlierAttemptAt?: number) => Promise<CommandResult>, signal?: AbortSignal): Promise<CommandResult> {
  if (!key) return act();
  const kv = bus.kv.dedup;
  const marker = `cmd.${kind}.${hashKey(key)}`;
  const waitingSince = performance.now();
  for (;;) {
    const at = Date.now();
    let revision = 0;
    let earlierAttemptAt: number | undefined;
    try {
      revision = await kv.create(marker, JSON.stringify({ pending: true, at } satisfies Claim));
    } catch (err) {
      if (!isCasConflict(err)) throw err;
      const prior = await kv.get(marker);
      if (!prior || prior.operation !== 'PUT') continue;
      const value = prior.json() as (CommandResult & { ok: true }) | Claim;
      if (!('pending' in value)) return { ...value, replayed: true };
      if (!value.interrupted && !claims.stale(marker, prior.revision, prior.created)) {
        // By the clock, not by polls: each poll is two KV round trips, and under load 100 polls
        // took 7–9 s, close to the API's command timeout.
        if (signal?.aborted || performance.now() - waitingSince >= CLAIM_WAIT_MS) {
          return { ok: false, error: { code: 'in_progress', message: 'a request with this idempotency key is still being processed; retry later with the same key' } };
        }
        await sleep(CLAIM_POLL_MS, signal);
        continue;
      }
      // The holder died mid-command, or its attempt failed: take the claim over, once.
      earlierAttemptAt = value.firstAt ?? value.at;
      try {
        revision = await bus.guardedUpdate('dedup', marker, JSON.stringify({ pending: true, at, firstAt: earlierAttemptAt } satisfies Claim), prior.revision);
        claims.forget(marker);
      } catch (e) {
        if (!isCasConflict(e)) throw e;
        continue;
      }
    }
    let result: CommandResult;
    try {
      result = await act(earlierAttemptAt);
    } catch (err) {
      // Kept, not deleted: the retry must know an attempt ran, which may have written already.
      const interrupted: Claim = { pending: true, interrupted: true, at, firstAt: earlierAttemptAt ?? at };
      await bus.guardedUpdate('dedup', marker, JSON.stringify(interrupted), revision).catch((e: unknown) =>
        log.warn({ kind, err: errorMessage(e) }, 'could not mark a failed command attempt; its retry waits for the claim to go stale'));
      throw err;
    }
    // A refused command (unknown ticket, invalid body) wrote nothing and is not remembered: it
    // may succeed later. After an earlier attempt that may have written, the claim stays
    // interrupted, so a later retry still knows when to look from.
    if (result.ok) await kv.put(marker, JSON.stringify(result));
    else if (earlierAttemptAt !== undefined) {
      const interrupted: Claim = { pending: true, interrupted: true, at, firstAt: earlierAttemptAt };
      await bus.guardedUpdate('dedup', marker, JSON.stringify(interrupted), revision).catch((e: unknown) =>
        log.warn({ kind, err: errorMessage(e) }, 'could not keep a refused command retry\'s claim; a later retry waits for it to go stale'));
    } else await kv.delete(marker, { previousSeq: revision }).catch(() => {});
    return result;
  }
}
