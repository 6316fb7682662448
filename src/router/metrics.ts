import { reasonCode } from '../core/errors.js';
import { metrics } from '../core/metrics.js';

/** The router's view of the process metrics; hot-path calls are label lookups, nothing more. */
export class RouterMetrics {
  observeRouted(channel: string, account: string, publishedNanos: number): void {
    metrics.eventsIn.inc({ channel, account });
    const seconds = (Date.now() * 1e6 - publishedNanos) / 1e9;
    if (seconds >= 0) metrics.routingLatency.observe({ channel }, seconds);
  }

  observeDelivery(channel: string, account: string, status: string, reason?: string): void {
    if (status === 'sent') metrics.eventsOut.inc({ channel, account });
    else if (status === 'failed') metrics.deliveryFailures.inc({ channel, account, reason: reasonCode(reason) });
  }
}
