/**
 * Albums: Telegram delivers each photo or file of an album as its own update, all with one
 * `media_group_id`, and usually only the first carries the caption (and so the mention that
 * admits it in a group). Items are held here briefly, until `waitMs` passed without another item
 * of the group, and then judged and published together as one message. Each item's ingest
 * resolves (or rejects) with the whole album, so no item is confirmed to Telegram before the
 * album is stored, and a failed album is served again whole.
 */
import type { TgUpdate } from './normalize.js';

interface Pending {
  updates: TgUpdate[];
  timer?: NodeJS.Timeout;
  done: Promise<void>;
  resolve: () => void;
  reject: (err: unknown) => void;
}

export class AlbumBuffer {
  private readonly groups = new Map<string, Pending>();

  constructor(
    private readonly waitMs: number,
    /** Judges and publishes one album; its outcome is every item's. */
    private readonly publish: (updates: TgUpdate[]) => Promise<void>,
  ) {}

  /** The album key of an update that belongs to one (new messages only: an edit stands alone). */
  static keyOf(u: TgUpdate): string | undefined {
    const m = u?.message;
    return m?.media_group_id && m.chat ? `${m.chat.id}:${m.media_group_id}` : undefined;
  }

  add(key: string, update: TgUpdate): Promise<void> {
    let p = this.groups.get(key);
    if (!p) {
      let resolve!: () => void;
      let reject!: (err: unknown) => void;
      const done = new Promise<void>((res, rej) => ((resolve = res), (reject = rej)));
      p = { updates: [], done, resolve, reject };
      this.groups.set(key, p);
    }
    // A redelivered item (webhook retry, a poll after a failure) is the same item, and no new one:
    // the album is flushed when its window passed without a new item.
    if (p.updates.some((u) => u.update_id === update.update_id)) return p.done;
    p.updates.push(update);
    clearTimeout(p.timer);
    const pending = p;
    pending.timer = setTimeout(() => void this.flush(key, pending), this.waitMs); // eslint-disable-line @typescript-eslint/no-floating-promises -- flush settles `done` and never rejects itself
    return pending.done;
  }

  /** Publishes every album held now (stop: nothing is left waiting on a timer). */
  async flushAll(): Promise<void> {
    await Promise.all([...this.groups.entries()].map(([key, p]) => {
      clearTimeout(p.timer);
      return this.flush(key, p);
    }));
  }

  private async flush(key: string, p: Pending): Promise<void> {
    if (this.groups.get(key) !== p) return;
    this.groups.delete(key);
    try {
      await this.publish([...p.updates].sort((a, b) => (a.message?.message_id ?? 0) - (b.message?.message_id ?? 0)));
      p.resolve();
    } catch (err) {
      p.reject(err);
    }
  }
}

/**
 * How long an album's "addressed to the bot" decision is remembered after it was published: an
 * item that comes later (past the window, or past a poll of 100 updates) is judged as the album
 * was, not skipped in a group for lacking the mention the first caption had.
 */
export const ADDRESSED_ALBUM_MEMORY_MS = 10 * 60_000;

/** Keys remembered for a while, at most `max` of them (the oldest go first). */
export class RecentKeys {
  private readonly until = new Map<string, number>();

  constructor(
    private readonly ttlMs: number,
    private readonly max: number,
  ) {}

  remember(key: string): void {
    this.until.delete(key);
    this.until.set(key, Date.now() + this.ttlMs);
    for (const oldest of this.until.keys()) {
      if (this.until.size <= this.max) break;
      this.until.delete(oldest);
    }
  }

  has(key: string): boolean {
    const until = this.until.get(key);
    if (until === undefined) return false;
    if (until > Date.now()) return true;
    this.until.delete(key);
    return false;
  }
}
