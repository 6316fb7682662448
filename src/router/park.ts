import type { JsMsg } from '@nats-io/jetstream';
import type { Bus } from '../core/bus.js';
import { UNREAD_SUBJECT } from '../core/dead-letter.js';
import type { Logger } from '../core/logger.js';

/**
 * Every code the router parks with (here and in router.ts, deliveries.ts, strays.ts): the set is
 * fixed, so the router creates their series at 0 when it starts (presetDeadLetters). `too_large`:
 * routing the message would write a ticket record or event over the server's max_payload.
 */
export const ROUTER_DEAD_LETTER_CODES = ['invalid_json', 'invalid_event', 'unsupported_version', 'invalid_status', 'unknown_ticket', 'unknown_target', 'foreign_target', 'too_large', UNREAD_SUBJECT] as const;
export type RouterDeadLetterCode = (typeof ROUTER_DEAD_LETTER_CODES)[number];

/** Parks a message the router cannot use on omni.dlq.router with the reason, and acks it. */
export async function park(bus: Bus, log: Logger, m: JsMsg, code: RouterDeadLetterCode, reason: string): Promise<void> {
  log.warn({ subject: m.subject, reason }, 'message parked on dead-letter subject');
  await bus.deadLetters.park({ source: 'router', subject: m.subject, code, reason, payload: m.data });
  m.ack();
}
