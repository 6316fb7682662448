import type { JsMsg } from '@nats-io/jetstream';
import type { Bus } from '../core/bus.js';
import type { Logger } from '../core/logger.js';

/** Parks a message the router cannot use on omni.dlq.router with the reason, and acks it. */
export async function park(bus: Bus, log: Logger, m: JsMsg, code: string, reason: string): Promise<void> {
  log.warn({ subject: m.subject, reason }, 'message parked on dead-letter subject');
  await bus.deadLetters.park({ source: 'router', subject: m.subject, code, reason, payload: m.data });
  m.ack();
}
