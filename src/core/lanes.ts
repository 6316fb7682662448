/** What a coalescing lane runs: one batch of items queued under one key, in arrival order. */
export type BatchRunner<T> = (items: T[]) => Promise<void>;

/**
 * A runner that is told how each batch ended, instead of a promise per item: a hot path (the
 * router's intake, ~one item per inbound message) pays one call per batch, not a promise, its
 * callbacks and a microtask per item.
 */
export interface BatchSink<T> {
  run: BatchRunner<T>;
  /** After `run` settled: `failure` when it threw. Must not throw. */
  settled(items: T[], failure?: { err: unknown }): void;
}

interface Queued<T> {
  item: T;
  sink: BatchSink<T>;
  /** Only for run(): its caller's promise. */
  resolve?: () => void;
  reject?: (err: unknown) => void;
}

/**
 * Keyed serial lanes that hand everything queued under a key to one run, in arrival order: the
 * first item of an idle lane starts at once, and what arrives while it runs is taken together
 * next. A conversation's messages that queued up behind each other (a customer writing several
 * lines while the router was behind) are then routed with one ticket update instead of one each.
 * Only consecutive items with the same sink (or runner) are batched (one per consumer run), at
 * most `maxBatch` at a time.
 */
export class CoalescingLanes<T> {
  private readonly queues = new Map<string, Array<Queued<T>>>();
  private readonly draining = new Set<Promise<void>>();
  /** run()'s callers give a runner; its sink is made once, so their items still batch together. */
  private readonly sinks = new WeakMap<BatchRunner<T>, BatchSink<T>>();

  constructor(private readonly maxBatch: number) {}

  /** Number of keys with queued or running work. */
  get active(): number {
    return this.queues.size;
  }

  /** Queues `item` under `key`; `sink` hears how its batch ended. */
  enqueue(key: string, item: T, sink: BatchSink<T>): void {
    this.push(key, { item, sink });
  }

  /** Queues `item` under `key`; the promise settles with its batch. */
  run(key: string, item: T, runner: BatchRunner<T>): Promise<void> {
    let sink = this.sinks.get(runner);
    if (!sink) this.sinks.set(runner, (sink = { run: runner, settled: () => {} }));
    const s = sink;
    return new Promise<void>((resolve, reject) => this.push(key, { item, sink: s, resolve, reject }));
  }

  /** Resolves when everything queued so far has finished. */
  async idle(): Promise<void> {
    while (this.draining.size > 0) await Promise.all([...this.draining]);
  }

  private push(key: string, q: Queued<T>): void {
    const queued = this.queues.get(key);
    if (queued) {
      queued.push(q);
      return;
    }
    const queue = [q];
    this.queues.set(key, queue);
    const drain = this.drain(key, queue).finally(() => this.draining.delete(drain));
    this.draining.add(drain);
  }

  /** Never rejects: a batch's failure goes to its sink and its items' promises. */
  private async drain(key: string, queue: Array<Queued<T>>): Promise<void> {
    while (queue.length > 0) {
      const sink = queue[0]!.sink;
      let n = 1;
      while (n < queue.length && n < this.maxBatch && queue[n]!.sink === sink) n++;
      const batch = queue.splice(0, n);
      const items = batch.map((b) => b.item);
      let failure: { err: unknown } | undefined;
      try {
        await sink.run(items);
      } catch (err) {
        failure = { err };
      }
      try {
        sink.settled(items, failure);
      } catch (err) {
        // A defect in the sink: the lane must go on (items behind wait for it), and the error
        // must not vanish: thrown where the process's uncaught-exception handling reports it.
        queueMicrotask(() => {
          throw err;
        });
      }
      for (const b of batch) {
        if (failure) b.reject?.(failure.err);
        else b.resolve?.();
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
    if (this.tryAcquire()) return;
    await new Promise<void>((resolve) => this.waiting.push(resolve));
  }

  /** A free slot taken at once (true), or none free (false): no promise when there is one. */
  tryAcquire(): boolean {
    if (this.used >= this.limit) return false;
    this.used++;
    return true;
  }

  release(): void {
    const next = this.waiting.shift();
    if (next) next();
    else this.used--;
  }
}
