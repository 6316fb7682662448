/**
 * The lag of a leased durable (a webhook's, a helpdesk's) as every replica reports it: the
 * durable is one for the cluster, so the holder and the standbys report the same number, and
 * alerts take the max over replicas (deploy/observability/alerts.yml). A replica that cannot
 * read it now says so (NaN) instead of repeating its last reading: a trial's standbys went on
 * showing 109–202 while 187–437 events waited, and `max by (consumer)` took that for the truth
 * while the holder read NaN. Prometheus' max skips NaN, so one replica that can read the durable
 * is enough for the alert.
 */
import type { JetStreamManager } from '@nats-io/jetstream';

/** num_pending + num_ack_pending of the durable, or NaN when its info could not be had. */
export async function durableLag(jsm: JetStreamManager, stream: string, durable: string): Promise<number> {
  try {
    const info = await jsm.consumers.info(stream, durable);
    return info.num_pending + info.num_ack_pending;
  } catch {
    return Number.NaN; // unknown, not 0 and not the last reading; /readyz and the loops say why
  }
}
