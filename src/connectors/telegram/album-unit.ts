/**
 * The items of one album that the poller takes while it is open, settled as one unit: the poller
 * counts failed attempts and parks per unit (polling.ts). Counting per item let a failing album's
 * items take turns at the counter (each failure of the album was a failure of every item), so it
 * never reached the poison threshold and held the bot's offset for ever. Each item's ingest
 * settles with the connector's album it joined (album.ts); an item taken after that album was
 * flushed makes another, and the unit waits for all of them.
 */
import type { TgUpdate } from './normalize.js';

export interface AlbumFailure {
  /** The items not stored, in Telegram's order. The others are stored and stay so. */
  updates: TgUpdate[];
  /** The first failure: the log's and the dead letter's reason. */
  err: unknown;
}

export class AlbumUnit {
  /** Update id → the item, and whether it was stored (unset while its ingest is pending). */
  readonly items = new Map<number, { update: TgUpdate; stored?: boolean }>();
  private pending = 0;
  private firstError?: { err: unknown };
  private settle!: (failure: AlbumFailure | undefined) => void;
  /** Resolves (never rejects) once no item is pending: undefined when every item was stored. */
  readonly outcome = new Promise<AlbumFailure | undefined>((resolve) => (this.settle = resolve));

  constructor(readonly key: string) {}

  /** Once settled, the unit's attempt is over: a later item of the album starts the next unit. */
  get closed(): boolean {
    return this.items.size > 0 && this.pending === 0;
  }

  add(id: number, update: TgUpdate, ingest: Promise<void>): void {
    const item: { update: TgUpdate; stored?: boolean } = { update };
    this.items.set(id, item);
    this.pending++;
    void ingest // eslint-disable-line @typescript-eslint/no-floating-promises -- both branches handle the outcome; neither throws
      .then(
        () => (item.stored = true),
        (err: unknown) => {
          item.stored = false;
          this.firstError ??= { err };
        },
      )
      .then(() => {
        if (--this.pending === 0) this.settle(this.failure());
      });
  }

  private failure(): AlbumFailure | undefined {
    if (!this.firstError) return undefined;
    const updates = [...this.items].filter(([, i]) => i.stored === false).sort(([a], [b]) => a - b).map(([, i]) => i.update);
    return { updates, err: this.firstError.err };
  }
}
