/**
 * A durable pull consumer whose messages are handled in keyed lanes: one at a time per key, in
 * stream order, many keys at once, at most `concurrency` in flight. The outbound runner (key =
 * conversation) and the webhook dispatcher (key = ticket) are both this loop.
 */
import type { ConsumerConfig, ConsumerMessages, JsMsg } from '@nats-io/jetstream';
import type { Bus } from './bus.js';
import { KeyedLanes, Semaphore } from './lanes.js';

export interface LaneConsumerOptions<T> {
  stream: string;
  config: Partial<ConsumerConfig> & { durable_name: string };
  concurrency: number;
  /** The work item, or null when the message was already settled (parked, skipped). */
  decode: (m: JsMsg) => T | null | Promise<T | null>;
  laneOf: (item: T) => string;
  handle: (m: JsMsg, item: T) => Promise<void>;
  /** `handle` threw: the message must come back (nak) after whatever the caller logs. */
  onError: (m: JsMsg, item: T, err: unknown) => void;
}

export class LaneConsumer<T> {
  private messages?: ConsumerMessages;
  private loop?: Promise<void>;
  private readonly lanes = new KeyedLanes();

  constructor(
    private readonly bus: Bus,
    private readonly o: LaneConsumerOptions<T>,
  ) {}

  async start(): Promise<void> {
    await this.bus.ensureConsumer(this.o.stream, this.o.config);
    const consumer = await this.bus.js.consumers.get(this.o.stream, this.o.config.durable_name);
    this.messages = await consumer.consume({ max_messages: this.o.concurrency });
    const sem = new Semaphore(this.o.concurrency);
    this.loop = (async () => {
      for await (const m of this.messages!) {
        await sem.acquire();
        const item = await this.o.decode(m);
        if (item === null) {
          sem.release();
          continue;
        }
        void this.lanes
          .run(this.o.laneOf(item), () => this.o.handle(m, item))
          .catch((err) => this.o.onError(m, item, err))
          .finally(() => sem.release());
      }
    })();
  }

  /** Stop pulling; what is in flight finishes (handlers decide whether to nak long waits). */
  async stop(): Promise<void> {
    this.messages?.stop();
    await this.loop?.catch(() => {});
    await this.lanes.idle();
  }
}
