/**
 * Replies waiting on OMNI_OUT, per outbound consumer (`out-<channel>-<account>`). A reply stays
 * there until its connector sends it: one whose connector this gateway does not run (removed
 * from the config, or a typo in its account) waits silently, `pending` on the ticket, until
 * `nats.retention` drops it, never reported failed. An outside ops trial removed a connector
 * with six replies retrying and nothing said so; the backlog is now a metric and, at start, a
 * warning naming the consumer.
 */
import type { Bus } from '../core/bus.js';
import type { Logger } from '../core/logger.js';
import { metrics } from '../core/metrics.js';
import { Consumers, Streams } from '../core/subjects.js';

export interface OutboundQueue {
  /** The durable consumer: `out-<channel>-<account>`. */
  durable: string;
  /** Not yet delivered, plus delivered and not yet settled. */
  waiting: number;
}

export async function outboundQueues(bus: Bus): Promise<OutboundQueue[]> {
  const out: OutboundQueue[] = [];
  for await (const c of bus.jsm.consumers.list(Streams.outbound)) {
    if (c.config.durable_name?.startsWith('out-')) out.push({ durable: c.config.durable_name, waiting: c.num_pending + c.num_ack_pending });
  }
  return out;
}

/** The outbound consumers the gauge was last set for: one deleted since is removed, not left at its last value. */
let sampled = new Set<string>();

/** `omnigate_consumer_lag{consumer="out-<channel>-<account>"}` for every outbound consumer, run here or not. */
export async function sampleOutboundLag(bus: Bus): Promise<OutboundQueue[]> {
  const queues = await outboundQueues(bus);
  const now = new Set(queues.map((q) => q.durable));
  for (const gone of sampled) if (!now.has(gone)) metrics.consumerLag.remove({ consumer: gone });
  for (const q of queues) metrics.consumerLag.set({ consumer: q.durable }, q.waiting);
  sampled = now;
  return queues;
}

/** Warns about replies queued for connectors this gateway does not run; returns them. */
export async function warnStrandedReplies(bus: Bus, log: Logger, running: ReadonlyArray<{ channel: string; account: string }>): Promise<OutboundQueue[]> {
  const ours = new Set(running.map((r) => Consumers.outbound(r.channel, r.account)));
  const stranded = (await sampleOutboundLag(bus)).filter((q) => q.waiting > 0 && !ours.has(q.durable));
  for (const q of stranded) {
    log.warn(
      { consumer: q.durable, waiting: q.waiting },
      'replies are waiting for a connector this gateway does not run: they go out once it is configured again (here or on another replica), and are dropped unsent after nats.retention',
    );
  }
  return stranded;
}
