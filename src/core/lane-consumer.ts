/**
 * A durable pull consumer whose messages are handled in keyed lanes: one at a time per key, in
 * stream order, many keys at once, at most `concurrency` handlers running. The outbound runner
 * (key = conversation) and the webhook dispatcher (key = ticket) are both this loop.
 *
 * Every message taken from the consumer is held — queued in its lane or running — until its
 * handler settles it, and the server is told we are working on all of them (one timer, every
 * third of ack_wait). Without that, messages queued behind a slow head (a receiver down for an
 * hour) would pass their ack deadline, come back as copies, and run again after newer ones.
 * A copy of a message we still hold (a keep-alive lost in a network blip) is dropped. The
 * concurrency slot is taken inside the lane, so one stuck key holds one slot, not all of them.
 */
import type { ConsumerConfig, ConsumerMessages, JsMsg } from '@nats-io/jetstream';
import type { Bus } from './bus.js';
import { KeyedLanes, Semaphore } from './lanes.js';

export interface LaneConsumerOptions<T> {
  stream: string;
  config: Partial<ConsumerConfig> & { durable_name: string; ack_wait: number };
  concurrency: number;
  /** The work item, or null when the message was already settled (parked, skipped). */
  decode: (m: JsMsg) => T | null | Promise<T | null>;
  laneOf: (item: T) => string;
  handle: (m: JsMsg, item: T) => Promise<void>;
  /** `handle` threw: the message must come back (nak) after whatever the caller logs. */
  onError: (m: JsMsg, item: T, err: unknown) => void;
  /**
   * How long a pull request stays open on the server. A leased consumer sets it below its lease
   * TTL: a holder frozen mid-pull must stop attracting messages before another replica takes over.
   */
  pullExpiresMs?: number;
}

export class LaneConsumer<T> {
  private messages?: ConsumerMessages;
  private loop?: Promise<void>;
  private keepAlive?: NodeJS.Timeout;
  private readonly lanes = new KeyedLanes();
  /** Stream sequence → the message we hold for it. */
  private readonly held = new Map<number, JsMsg>();

  constructor(
    private readonly bus: Bus,
    private readonly o: LaneConsumerOptions<T>,
  ) {}

  /** Messages taken from the server and not yet settled. */
  get holding(): number {
    return this.held.size;
  }

  async start(): Promise<void> {
    await this.bus.ensureConsumer(this.o.stream, this.o.config);
    const consumer = await this.bus.js.consumers.get(this.o.stream, this.o.config.durable_name);
    this.messages = await consumer.consume({ max_messages: this.o.concurrency, ...(this.o.pullExpiresMs ? { expires: this.o.pullExpiresMs } : {}) });
    const ackWaitMs = this.o.config.ack_wait / 1_000_000;
    this.keepAlive = setInterval(() => {
      for (const m of this.held.values()) m.working();
    }, Math.max(100, ackWaitMs / 3));
    const sem = new Semaphore(this.o.concurrency);
    this.loop = (async () => {
      for await (const m of this.messages!) {
        const seq = m.seq;
        if (this.held.has(seq)) continue; // a copy: the original is still ours and will be settled
        const item = await this.o.decode(m);
        if (item === null) continue;
        this.held.set(seq, m);
        void this.lanes
          .run(this.o.laneOf(item), async () => {
            await sem.acquire();
            try {
              await this.o.handle(m, item);
            } finally {
              sem.release();
            }
          })
          .catch((err) => this.o.onError(m, item, err))
          .finally(() => this.held.delete(seq));
      }
    })();
  }

  /** Stop pulling; what is held finishes (handlers decide whether to nak long waits). */
  async stop(): Promise<void> {
    this.messages?.stop();
    await this.loop?.catch(() => {});
    await this.lanes.idle();
    clearInterval(this.keepAlive);
  }
}
