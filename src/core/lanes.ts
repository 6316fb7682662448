/**
 * Keyed serial lanes: work for the same key runs one at a time in arrival order, work for
 * different keys runs concurrently. This is how per-conversation order coexists with
 * parallelism across conversations.
 */
export class KeyedLanes {
  private readonly tails = new Map<string, Promise<void>>();

  /** Number of keys with queued or running work. */
  get active(): number {
    return this.tails.size;
  }

  run(key: string, task: () => Promise<void>): Promise<void> {
    const previous = this.tails.get(key) ?? Promise.resolve();
    const current = previous.then(task, task);
    const tail = current.catch(() => {});
    this.tails.set(key, tail);
    void tail.then(() => { // eslint-disable-line @typescript-eslint/no-floating-promises -- tail already swallowed the task's rejection (the caller gets it from `current`)
      if (this.tails.get(key) === tail) this.tails.delete(key);
    });
    return current;
  }

  /** Resolves when everything queued so far has finished. */
  async idle(): Promise<void> {
    while (this.tails.size > 0) await Promise.all([...this.tails.values()]);
  }
}

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
