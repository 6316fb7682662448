/**
 * Slack retries an Events API delivery (x-slack-retry-num) when we have not answered within 3 s,
 * and redelivers Socket Mode envelopes that were not acknowledged: often while the first attempt
 * is still downloading a file or waiting for JetStream. Keyed by `event_id`, a retry joins the
 * attempt in flight instead of repeating users.info and downloads, and a retry of an event we
 * already stored is answered at once. JetStream (Nats-Msg-Id) and the router's processed markers
 * remain the durable dedup; this only saves work and keeps answers fast.
 */
export class EventDedup {
  private readonly inFlight = new Map<string, Promise<void>>();
  /** event_id → when it was stored; insertion order doubles as age order for eviction. */
  private readonly done = new Map<string, number>();

  constructor(
    private readonly keepMs = 10 * 60_000,
    private readonly maxDone = 20_000,
  ) {}

  /**
   * Runs `work` once per event id at a time. Resolves when the event is stored (by this call,
   * a concurrent one, or earlier); rejects when the attempt failed, so the caller does not ack
   * and Slack tries again.
   */
  run(eventId: string | undefined, work: () => Promise<void>): Promise<void> {
    if (!eventId) return work();
    const storedAt = this.done.get(eventId);
    if (storedAt !== undefined && Date.now() - storedAt < this.keepMs) return Promise.resolve();
    const running = this.inFlight.get(eventId);
    if (running) return running;
    const attempt = work().then(
      () => {
        this.inFlight.delete(eventId);
        this.remember(eventId);
      },
      (err: unknown) => {
        this.inFlight.delete(eventId);
        throw err;
      },
    );
    this.inFlight.set(eventId, attempt);
    return attempt;
  }

  private remember(eventId: string): void {
    this.done.delete(eventId);
    this.done.set(eventId, Date.now());
    if (this.done.size <= this.maxDone) return;
    const cutoff = Date.now() - this.keepMs;
    for (const [id, at] of this.done) {
      if (this.done.size <= this.maxDone && at >= cutoff) break;
      this.done.delete(id);
    }
  }
}
