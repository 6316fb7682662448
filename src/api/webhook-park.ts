/**
 * A webhook event given up on, parked on omni.dlq.webhook.<name> with the reason (the dispatcher,
 * webhooks.ts, decides when): past its retry budget, or at once when retrying cannot help.
 */
import type { JsMsg } from '@nats-io/jetstream';
import type { Bus } from '../core/bus.js';
import { presetDeadLetters } from '../core/dead-letter.js';
import { errorMessage } from '../core/errors.js';
import type { Logger } from '../core/logger.js';
import { metrics } from '../core/metrics.js';
import { sleep } from '../core/sleep.js';
import type { PostOutcome } from './webhook-post.js';

export interface ParkContext {
  bus: Bus;
  log: Logger;
  webhook: string;
  /** How long to wait before the caller tries again when the dead-letter stream did not take it. */
  pauseMs: number;
  signal: AbortSignal;
}

/** The code of a delivery parked after its retry budget (other codes: PostOutcome's `permanent`). */
const RETRIES_EXHAUSTED = 'retries_exhausted';

/**
 * The webhook's alert series at 0 from the start: the alerts use increase()/rate(), which see no
 * rise in a series that first appears at 1, so the first parked delivery would not fire them.
 */
export function presetWebhookSeries(webhook: string): void {
  metrics.webhookRetries.inc({ webhook }, 0);
  metrics.webhookParked.inc({ webhook }, 0);
  presetDeadLetters('webhook', [RETRIES_EXHAUSTED]);
}

/** Parks an event; false (after a pause) when the dead-letter stream did not take it. */
export async function parkEvent(c: ParkContext, m: JsMsg, type: string, attempt: number, failed: Extract<PostOutcome, { ok: false }>): Promise<boolean> {
  const { problem, permanent } = failed;
  try {
    await c.bus.deadLetters.park({
      source: 'webhook', scope: c.webhook, subject: m.subject, code: permanent ?? RETRIES_EXHAUSTED,
      reason: permanent ? `not retried: ${problem}` : `retry budget exhausted after ${attempt} attempt${attempt === 1 ? '' : 's'}: ${problem}`, payload: m.data,
      meta: { type, sequence: String(m.info.streamSequence) },
    });
  } catch (err) {
    c.log.warn({ webhook: c.webhook, err: errorMessage(err) }, 'parking a webhook event failed; trying again');
    await sleep(c.pauseMs, c.signal);
    return false;
  }
  metrics.webhookParked.inc({ webhook: c.webhook });
  c.log.error({ webhook: c.webhook, problem }, permanent ? 'webhook delivery parked at once: retrying cannot help' : 'webhook delivery parked after the retry budget');
  return true;
}
