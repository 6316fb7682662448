/**
 * Long polling with our own offset loop instead of telegraf's launch(): an update is confirmed to
 * Telegram (the next getUpdates offset) only after its event is in JetStream, so a crash in
 * between makes Telegram serve it again and the event id dedups it. The loop runs only while this
 * replica holds the account's polling lease; losing the lease stops it until the lease is back.
 */
import type { Telegram } from 'telegraf';
import { errorMessage } from '../../core/errors.js';
import type { ConnectorContext, Fence, HealthTracker } from '../contract.js';
import type { TgUpdate } from './normalize.js';
import { telegramRetryWaitMs, type TelegramErrorLike } from './sender.js';
import { sleep, backoffMs } from '../../core/sleep.js';
import { AlbumUnit } from './album-unit.js';

/**
 * Telegram sends only what is asked for here (and remembers the last list). my_chat_member tells
 * us a user blocked or unblocked the bot, or a group removed or promoted it.
 */
export const ALLOWED_UPDATES = ['message', 'edited_message', 'my_chat_member'];
const OFFSET_KEY = 'offset';
interface Checkpoint {
  botId: number;
  offset: number;
}
/**
 * After this many failed attempts at one unit (an update, or the items of an album taken
 * together) it is parked, so one bad update cannot stall a bot.
 */
const POISON_ATTEMPTS = 5;
/** While an album past its window is only being stored, other updates are asked for this often. */
const STORING_POLL_S = 3;

/** What failed to be stored, as counted, logged and parked. */
interface FailedUnit {
  kind: 'update' | 'album';
  /** The failure count's key: `update:<id>`, or `album:<chat id>:<media_group_id>`. */
  key: string;
  /** Names it in the dead letter's reason. */
  what: string;
  log: Record<string, unknown>;
  payload: unknown;
}

export interface PollerDeps {
  api: Telegram;
  ctx: ConnectorContext;
  health: HealthTracker;
  timeoutS: number;
  /** From getMe: a checkpoint taken under another bot's token means nothing for this one. */
  botId: number;
  /** Publishes (or parks, or skips) one update; rejects when it could not be stored. */
  ingest(update: TgUpdate): Promise<void>;
  /**
   * The album an update belongs to, if any: its ingest waits for the rest of the album, so the
   * loop takes it and goes on (and keeps polling for the album's next items) instead of awaiting it.
   */
  albumKey(update: TgUpdate): string | undefined;
  /** How soon to ask Telegram again while an album is open (well within the album window). */
  albumPollMs: number;
  /** How long an album stays open after its newest item (config albumWaitMs). */
  albumWaitMs: number;
  redact(err: unknown): string;
}

function updateIdOf(update: TgUpdate): number | undefined {
  const id = (update as { update_id?: unknown } | null)?.update_id;
  return typeof id === 'number' ? id : undefined;
}

export class TelegramPoller {
  /** Failed attempts per unit, until it is stored or parked, within one lease session. */
  private readonly failures = new Map<string, number>();

  constructor(private readonly d: PollerDeps) {}

  /** Runs until `stop` aborts: wait for the lease, poll while holding it, repeat if it is lost. */
  async run(stop: AbortSignal): Promise<void> {
    const { ctx, health } = this.d;
    while (!stop.aborted) {
      // The host reports `standby` (with the holder's lease expiry) if another replica polls.
      health.set('starting', 'waiting for the polling lease');
      let lease;
      try {
        lease = await ctx.lease('polling');
      } catch (err) {
        if (stop.aborted) return;
        ctx.log.warn({ err: errorMessage(err) }, 'could not take the polling lease; retrying');
        await sleep(2000, stop);
        continue;
      }
      const session = new AbortController();
      const end = () => session.abort();
      stop.addEventListener('abort', end, { once: true });
      if (stop.aborted) end();
      let lost = false;
      void lease.lost.then(() => { // eslint-disable-line @typescript-eslint/no-floating-promises -- lease.lost only ever resolves
        lost = true;
        session.abort();
      });
      try {
        await this.d.api.deleteWebhook();
        await this.poll(session.signal, lease);
      } catch (err) {
        if (!session.signal.aborted) {
          const unauthorized = (err as TelegramErrorLike).code === 401;
          health.set(unauthorized ? 'auth_failed' : 'disconnected', `polling interrupted: ${this.d.redact(err)}`);
          await sleep(5000, stop);
        }
      } finally {
        stop.removeEventListener('abort', end);
        await lease.release();
      }
      if (lost && !stop.aborted) ctx.log.warn('polling lease lost; stopped polling until it is ours again');
    }
  }

  /**
   * The offset loop. The offset (what the next getUpdates confirms) passes an update only once it
   * and every update before it is stored, parked or deliberately skipped. Album items are taken
   * without waiting, and while an album is open the loop keeps asking, at `albumPollMs`, from the
   * oldest unconfirmed update on: Telegram serves the open album's items again (they are skipped
   * here) with whatever came since, so an album split across polls still becomes one message.
   */
  private async poll(signal: AbortSignal, lease: Fence): Promise<void> {
    const { api, health } = this.d;
    // Fencing: the offset checkpoint is written only while the lease is ours by the clock.
    const { ctx } = this.d;
    const state = ctx.state.fencedBy(lease);
    // Counts left by a session that ended mid-failure are stale: while the lease was not ours,
    // another replica may have stored or parked those units.
    this.failures.clear();
    let offset = await this.loadOffset();
    let persisted = offset;
    let failures = 0;
    /** What the last getUpdates served, from `offset` on, in Telegram's order. */
    let served: TgUpdate[] = [];
    /** Album items taken and not settled yet: update id → album key and outcome. */
    const inFlight = new Map<number, { album: string; stored: Promise<boolean>; takenAt: number }>();
    /** The unit each album's next item joins, until that unit settles. */
    const units = new Map<string, { unit: AlbumUnit; stored: Promise<boolean> }>();
    /**
     * Whether an album may still get items: one taken within the album window. Past it, an item in
     * flight is only being stored (a download, a publish waiting out a NATS outage), and asking
     * Telegram every albumPollMs for that long was 4–50 requests a second for nothing.
     */
    const albumOpen = () => {
      const now = performance.now();
      for (const f of inFlight.values()) if (now - f.takenAt < this.d.albumWaitMs) return true;
      return false;
    };
    /** Updates at or past `offset` that are stored, parked or skipped: the offset may pass them. */
    const done = new Set<number>();
    /** Passes the settled head of what was served: never an update in flight or not taken yet. */
    const advance = () => {
      let i = 0;
      for (; i < served.length; i++) {
        const id = updateIdOf(served[i]!);
        // An update without a numeric id cannot be confirmed on its own (Telegram never sends one).
        if (id === undefined) continue;
        if (!done.has(id)) break;
        // What Telegram served, not a maximum: a stale offset above this bot's ids must not stick.
        offset = id + 1;
      }
      served = served.slice(i);
      for (const id of done) if (id < offset) done.delete(id);
    };
    const checkpoint = async () => {
      if (offset === persisted) return;
      // Telegram learns the offset from the next getUpdates; the copy in KV lets a restart (or
      // another replica) resume without asking for what was confirmed.
      await state.put(OFFSET_KEY, JSON.stringify({ botId: this.d.botId, offset } satisfies Checkpoint)).then(
        () => (persisted = offset),
        (err) => ctx.log.warn({ err: errorMessage(err) }, 'could not checkpoint the Telegram offset; will retry'),
      );
    };
    const take = (id: number, album: string, update: TgUpdate) => {
      let current = units.get(album);
      if (!current || current.unit.closed) {
        const unit = new AlbumUnit(album);
        const stored = this.storeAlbum(unit, signal);
        current = { unit, stored };
        units.set(album, current);
        void stored.then((passable) => { // eslint-disable-line @typescript-eslint/no-floating-promises -- storeAlbum never rejects
          if (units.get(album)?.unit === unit) units.delete(album);
          for (const [itemId, item] of unit.items) {
            inFlight.delete(itemId);
            // Not stored: the offset stays below it, Telegram serves it again and it is taken again.
            if (passable || item.stored) done.add(itemId);
          }
        });
      }
      current.unit.add(id, update, this.ingest(update));
      inFlight.set(id, { album, stored: current.stored, takenAt: performance.now() });
    };
    health.set('connected');
    while (!signal.aborted) {
      const open = albumOpen();
      if (inFlight.size > 0) {
        // An album is open: ask again soon for its next items, or at once when it is settled. Past
        // its window it is only being stored (a download, a NATS outage, a backoff) and Telegram
        // would serve its items again at once, so asking without a pause was hundreds of requests
        // a second: ask when it settles, and for other chats' updates every few seconds meanwhile.
        const pauseMs = open ? this.d.albumPollMs : Math.min(Math.max(1, this.d.timeoutS), STORING_POLL_S) * 1000;
        await Promise.race([sleep(pauseMs, signal), ...[...inFlight.values()].map((f) => f.stored)]);
        if (signal.aborted) return;
      }
      advance();
      await checkpoint();
      // A getUpdates with an offset confirms the updates below it to Telegram: a holder that woke
      // past its lease (paused) must not, since another replica may be polling by now.
      if (!lease.valid()) return;
      let updates: TgUpdate[];
      try {
        // callApi rather than getUpdates(): it takes our abort signal, so stop() ends a long poll at once.
        const result = await api.callApi(
          'getUpdates',
          // No long poll while an album is open: its items are served again at once anyway.
          { offset, limit: 100, timeout: open ? 0 : this.d.timeoutS, allowed_updates: ALLOWED_UPDATES as never },
          { signal: signal as never }, // telegraf types its own AbortSignal; the native one works with node-fetch
        );
        updates = Array.isArray(result) ? (result as unknown as TgUpdate[]) : [];
        // Only undo what polling itself reported: a send-side rate_limited is the sender's to clear.
        if (failures > 0) health.set('connected');
        failures = 0;
      } catch (err) {
        if (signal.aborted) return;
        failures++;
        const e = err as TelegramErrorLike;
        const waitMs = telegramRetryWaitMs(e, failures, ctx.log, 'getUpdates');
        if (e.code === 401) health.set('auth_failed', 'Telegram rejected the bot token (getUpdates 401)');
        else if (e.code === 409) health.set('stalled', 'another poller or a webhook is active for this bot (409)');
        else if (e.code === 429) health.set('rate_limited', `getUpdates: retry after ${waitMs / 1000}s`);
        else if (failures >= 3) health.set('disconnected', `getUpdates failing: ${this.d.redact(err)}`);
        await sleep(waitMs, signal);
        continue;
      }
      served = updates;
      // Events keep the order Telegram served the updates in: an update waits while one before it
      // is in flight (an open album), and a new album waits behind a waiting update. An open
      // album's next item joins it wherever it comes.
      let behindInFlight = false;
      let behindWaiting = false;
      for (const update of updates) {
        if (signal.aborted) break;
        const id = updateIdOf(update);
        if (id !== undefined && done.has(id)) continue;
        if (id !== undefined && inFlight.has(id)) {
          behindInFlight = true;
          continue;
        }
        const album = id !== undefined ? this.d.albumKey(update) : undefined;
        if (album !== undefined) {
          if (behindWaiting && ![...inFlight.values()].some((f) => f.album === album)) continue;
          take(id!, album, update);
          behindInFlight = true;
          continue;
        }
        if (behindInFlight) {
          behindWaiting = true;
          continue;
        }
        if (!(await this.storeOne(update, signal))) break; // not stored: the offset stays, Telegram serves it again
        if (id !== undefined) done.add(id);
      }
      advance();
      await checkpoint();
    }
  }

  /**
   * The checkpointed offset if it was taken for this bot. A bare number is the format from before
   * checkpoints named their bot; it can only be taken as this bot's.
   */
  private async loadOffset(): Promise<number> {
    const { ctx, botId } = this.d;
    const stored = await ctx.state.get(OFFSET_KEY);
    if (!stored) return 0;
    let checkpoint: Partial<Checkpoint> | number;
    try {
      checkpoint = JSON.parse(stored.value) as Partial<Checkpoint> | number;
    } catch {
      checkpoint = NaN;
    }
    if (typeof checkpoint === 'number') return Number.isSafeInteger(checkpoint) && checkpoint > 0 ? checkpoint : 0;
    if (checkpoint?.botId !== botId) {
      // Update ids are per bot: the old bot's offset could be past every id the new one will serve.
      ctx.log.warn({ checkpointBotId: checkpoint?.botId, botId }, 'the Telegram offset checkpoint is for another bot (token changed?); starting from the updates Telegram still holds');
      return 0;
    }
    const offset = checkpoint.offset;
    return typeof offset === 'number' && Number.isSafeInteger(offset) && offset > 0 ? offset : 0;
  }

  /** Runs the connector's ingest; a synchronous throw is a rejection like any other. */
  private async ingest(update: TgUpdate): Promise<void> {
    await this.d.ingest(update);
  }

  /** True when the update is stored, parked or deliberately skipped, so its offset may advance. */
  private async storeOne(update: TgUpdate, signal: AbortSignal): Promise<boolean> {
    const id = update?.update_id ?? -1;
    const key = `update:${id}`;
    try {
      await this.ingest(update);
      this.failures.delete(key);
      return true;
    } catch (err) {
      return this.failed({ kind: 'update', key, what: `update ${id}`, log: { updateId: id }, payload: update }, err, signal);
    }
  }

  /**
   * True when every item of the unit is stored, or the ones that were not are parked: the offset
   * may pass them all. Otherwise the items that were not stored are read again (the stored ones
   * stay stored), and the album's attempts go on counting under its key.
   */
  private async storeAlbum(unit: AlbumUnit, signal: AbortSignal): Promise<boolean> {
    const failure = await unit.outcome;
    const key = `album:${unit.key}`;
    if (!failure) {
      this.failures.delete(key);
      return true;
    }
    const ids = failure.updates.map((u) => u.update_id);
    const what = `album ${unit.key} (updates ${ids.join(',')})`;
    return this.failed({ kind: 'album', key, what, log: { album: unit.key, updateIds: ids }, payload: failure.updates }, failure.err, signal);
  }

  /**
   * One failed attempt at a unit. At the threshold the unit is parked whole (an album as the list
   * of its items, which a replay publishes as one message): true, the offset may pass it. Else
   * false after a backoff, and Telegram serves it again.
   */
  private async failed(unit: FailedUnit, err: unknown, signal: AbortSignal): Promise<boolean> {
    if (signal.aborted) return false;
    const attempts = (this.failures.get(unit.key) ?? 0) + 1;
    this.failures.set(unit.key, attempts);
    this.d.ctx.log.warn({ ...unit.log, attempts, err: this.d.redact(err) }, `could not store a Telegram ${unit.kind}; it will be read again`);
    if (attempts >= POISON_ATTEMPTS) {
      try {
        await this.d.ctx.deadLetter(`telegram ${unit.what} failed ${POISON_ATTEMPTS} times: ${this.d.redact(err)}`, unit.payload);
        this.failures.delete(unit.key);
        return true;
      } catch {
        /* NATS is away: keep the unit with Telegram */
      }
    }
    await sleep(backoffMs(attempts, 500, 10_000), signal);
    return false;
  }
}
