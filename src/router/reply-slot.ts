/**
 * One reply of a ticket at a time between "which reply came before it" and "it is recorded as the
 * ticket's newest": the reply command reads `lastOutbound`, logs and publishes the reply naming it
 * (core/reply-order.ts), then records itself as `lastOutbound`. Two replies of one ticket accepted
 * a few ms apart (two agents, a helpdesk adapter sending two comments) both read the same
 * predecessor, were both published naming it, and the runners sent them in either order. Held
 * here, the second reads the first as its predecessor, so the send order is the order of the slot.
 *
 * Shared by every replica through a create-only key in the dedup bucket; inside one process the
 * replies of a ticket queue in the order they arrived, so they do not race each other for the key.
 */
import type { Bus } from '../core/bus.js';
import { isCasConflict } from '../core/bus.js';
import { errorMessage } from '../core/errors.js';
import type { Logger } from '../core/logger.js';
import { HolderWatch, SERVER_AGE_MS } from '../core/holder-watch.js';
import { sleep } from '../core/sleep.js';
import { hashKey } from '../core/subjects.js';

/** Polls for a slot another replica holds, growing to the max. */
const POLL_MS = 10;
const POLL_MAX_MS = 100;
/**
 * A slot seen unchanged for this long is taken over: its holder died between taking it and
 * releasing it. The holder's work is a log append and a publish, each retried through a NATS
 * election (seconds); a holder slower than this and alive lets the next reply go in either order
 * with its own. Measured on this process's monotonic clock from when it first saw that revision
 * (core/holder-watch.ts), never by comparing the holder's clock with ours: a replica whose clock
 * ran 20 s behind wrote slots that looked stale the moment they were taken.
 */
export const REPLY_SLOT_STALE_MS = 15_000;

/**
 * How long a reply waits for its ticket's slot before it is answered `in_progress` with nothing
 * done: under the API's command timeout (10 s), so a client told 503 never has its reply go out
 * later (a retry without an idempotency key would then send it twice).
 */
export const REPLY_SLOT_WAIT_MS = 5_000;

interface SlotValue {
  /** When it was taken (ms, by the holder's clock): for the log only. */
  at: number;
}

export interface HeldSlot {
  release(): Promise<void>;
}

export class ReplySlots {
  /** Ticket id → the end of this process's queue for its slot. */
  private readonly queues = new Map<string, Promise<void>>();
  /** Slots another holder has, since when we see them unchanged (one waiter per ticket here: queues). */
  private readonly watched: HolderWatch;

  constructor(
    private readonly bus: Bus,
    private readonly log: Logger,
    staleMs = REPLY_SLOT_STALE_MS,
  ) {
    // A slot stored long ago (SERVER_AGE_MS) is taken at once. It was four stale times (60 s): a
    // replica whose clock ran a minute ahead took every live slot at once (review of stop 47). A
    // slot left by a replica that died minutes ago is now taken after being seen unchanged for
    // the stale time: the first reply waits, and may be answered in_progress, as within that time.
    this.watched = new HolderWatch(staleMs, Math.max(SERVER_AGE_MS, staleMs));
  }

  /** The ticket's slot, once every earlier holder released it; null when `signal` or REPLY_SLOT_WAIT_MS ended the wait (nothing was done). */
  async acquire(ticketId: string, signal?: AbortSignal): Promise<HeldSlot | null> {
    const deadline = Date.now() + REPLY_SLOT_WAIT_MS;
    const before = this.queues.get(ticketId) ?? Promise.resolve();
    let leave!: () => void;
    const turn = new Promise<void>((resolve) => (leave = resolve));
    const tail = before.then(() => turn);
    this.queues.set(ticketId, tail);
    const done = () => {
      leave();
      if (this.queues.get(ticketId) === tail) this.queues.delete(ticketId);
    };
    try {
      if (!(await settlesBy(before, deadline))) {
        done();
        return null;
      }
      const revision = await this.take(ticketId, deadline, signal);
      if (revision === null) {
        done();
        return null;
      }
      return {
        release: async () => {
          try {
            await this.bus.kv.dedup.delete(slotKey(ticketId), { previousSeq: revision }).catch((err: unknown) =>
              this.log.warn({ ticketId, err: errorMessage(err) }, "could not release a ticket's reply slot; its next reply waits until it goes stale"));
          } finally {
            done();
          }
        },
      };
    } catch (err) {
      done();
      throw err;
    }
  }

  /** Takes the shared key: its revision, or null when `signal` ended the wait. */
  private async take(ticketId: string, deadline: number, signal?: AbortSignal): Promise<number | null> {
    const kv = this.bus.kv.dedup;
    const key = slotKey(ticketId);
    for (let poll = 0; ; poll++) {
      const value = JSON.stringify({ at: Date.now() } satisfies SlotValue);
      try {
        return await kv.create(key, value);
      } catch (err) {
        if (!isCasConflict(err)) throw err;
      }
      const held = await kv.get(key);
      if (!held || held.operation !== 'PUT') continue; // released meanwhile
      if (this.watched.stale(key, held.revision, held.created)) {
        try {
          const revision = await this.bus.guardedUpdate('dedup', key, value, held.revision);
          this.watched.forget(key);
          this.log.warn({ ticketId, heldSince: takenAt(held), storedAt: held.created.toISOString() }, "took over a ticket's reply slot left by a replica that did not release it");
          return revision;
        } catch (err) {
          if (!isCasConflict(err)) throw err;
          continue;
        }
      }
      if (signal?.aborted || Date.now() >= deadline) return null;
      await sleep(Math.min(POLL_MAX_MS, POLL_MS * (poll + 1)), signal);
      if (signal?.aborted) return null;
    }
  }

}

/** The holder's own note of when it took the slot, for the log (its clock, maybe wrong). */
function takenAt(held: { json<T>(): T }): string | undefined {
  try {
    const at = held.json<SlotValue>().at;
    return Number.isFinite(at) ? new Date(at).toISOString() : undefined;
  } catch {
    return undefined; // a value written by hand or by another tool: the log says nothing of it
  }
}

export function slotKey(ticketId: string): string {
  return `reply-slot.${hashKey(ticketId)}`;
}

/** Whether `p` settles before `deadline` (ms); it is not cancelled either way. */
async function settlesBy(p: Promise<void>, deadline: number): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<false>((resolve) => (timer = setTimeout(() => resolve(false), Math.max(0, deadline - Date.now()))));
  try {
    return await Promise.race([p.then(() => true as const), late]);
  } finally {
    clearTimeout(timer);
  }
}
