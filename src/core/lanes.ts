/** What a coalescing lane runs: one batch of items queued under one key, in arrival order. */
export type BatchRunner<T> = (items: T[]) => Promise<void>;

/**
 * Keyed serial lanes that hand everything queued under a key to one run, in arrival order: the
 * first item of an idle lane starts at once, and what arrives while it runs is taken together
 * next. A conversation's messages that queued up behind each other (a customer writing several
 * lines while the router was behind) are then routed with one ticket update instead of one each.
 * Only consecutive items with the same runner are batched (one per consumer run), at most
 * `maxBatch` at a time. Each item's promise settles with its batch.
 */
export class CoalescingLanes<T> {
  private readonly queues = new Map<string, Array<{ item: T; runner: BatchRunner<T>; resolve: () => void; reject: (err: unknown) => void }>>();
  private readonly draining = new Set<Promise<void>>();

  constructor(private readonly maxBatch: number) {}

  /** Number of keys with queued or running work. */
  get active(): number {
    return this.queues.size;
  }

  run(key: string, item: T, runner: BatchRunner<T>): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      const queued = this.queues.get(key);
      if (queued) {
        queued.push({ item, runner, resolve, reject });
        return;
      }
      const queue = [{ item, runner, resolve, reject }];
      this.queues.set(key, queue);
      const drain = this.drain(key, queue).finally(() => this.draining.delete(drain));
      this.draining.add(drain);
    });
  }

  /** Resolves when everything queued so far has finished. */
  async idle(): Promise<void> {
    while (this.draining.size > 0) await Promise.all([...this.draining]);
  }

  /** Never rejects: a batch's failure goes to its items' promises. */
  private async drain(key: string, queue: Array<{ item: T; runner: BatchRunner<T>; resolve: () => void; reject: (err: unknown) => void }>): Promise<void> {
    while (queue.length > 0) {
      const runner = queue[0]!.runner;
      let n = 1;
      while (n < queue.length && n < this.maxBatch && queue[n]!.runner === runner) n++;
      const batch = queue.splice(0, n);
      try {
        await runner(batch.map((b) => b.item));
        for (const b of batch) b.resolve();
      } catch (err) {
        for (const b of batch) b.reject(err);
      }
    }
    this.queues.delete(key);
  }
}

/**
 * Keyed serial lanes of single tasks: work for the same key runs one at a time in arrival order,
 * work for different keys runs concurrently. This is how per-conversation order coexists with
 * parallelism across conversations. CoalescingLanes with batches of one: a task of an idle lane
 * starts at once (synchronously, inside run()).
 */
export class KeyedLanes {
  private readonly lanes = new CoalescingLanes<() => Promise<void>>(1);

  /** Number of keys with queued or running work. */
  get active(): number {
    return this.lanes.active;
  }

  run(key: string, task: () => Promise<void>): Promise<void> {
    return this.lanes.run(key, task, runTask);
  }

  /** Resolves when everything queued so far has finished. */
  idle(): Promise<void> {
    return this.lanes.idle();
  }
}

const runTask: BatchRunner<() => Promise<void>> = ([task]) => task!();

/** A counting semaphore bounding work in flight. */
export class Semaphore {
  private waiting: Array<() => void> = [];
  private used = 0;
  constructor(private readonly limit: number) {}

  async acquire(): Promise<void> {
    if (this.used < this.limit) {
      this.used++;
      return;
    }
    await new Promise<void>((resolve) => this.waiting.push(resolve));
  }

  release(): void {
    const next = this.waiting.shift();
    if (next) next();
    else this.used--;
  }
}
