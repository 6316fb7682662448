import type { JsMsg } from '@nats-io/jetstream';
import type { Bus } from '../core/bus.js';
import { deadLetter } from '../core/dead-letter.js';
import type { Logger } from '../core/logger.js';
import { metrics } from '../core/metrics.js';

/** Parks a message the router cannot use on omni.dlq.router with the reason, and acks it. */
export async function park(bus: Bus, log: Logger, m: JsMsg, reason: string): Promise<void> {
  metrics.parked.inc({ source: 'router' });
  log.warn({ subject: m.subject, reason }, 'message parked on dead-letter subject');
  await deadLetter(bus, 'router', m.subject, reason, m.data);
  m.ack();
}
