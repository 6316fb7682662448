/**
 * Prometheus metrics, one registry for the process. Names follow Prometheus conventions
 * (omnigate_ prefix, _total counters, _seconds histograms); docs/api.md lists them.
 */
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';

export const registry = new Registry();
// The standard names (process_cpu_seconds_total, nodejs_heap_size_used_bytes, ...) so stock
// Node.js dashboards and alerts work; a prefix here produced omnigate_process_process_*.
collectDefaultMetrics({ register: registry });

/** Run before every scrape of omnigate_loop_stalled (supervisor.ts registers each loop's). */
const scrapeSamplers = new Set<() => void>();

/** Calls `sample` before every scrape until the returned function is called. */
export function sampleAtScrape(sample: () => void): () => void {
  scrapeSamplers.add(sample);
  return () => {
    scrapeSamplers.delete(sample);
  };
}

export const metrics = {
  eventsIn: new Counter({ name: 'omnigate_events_in_total', help: 'Inbound events routed into tickets', labelNames: ['channel', 'account'], registers: [registry] }),
  eventsOut: new Counter({ name: 'omnigate_events_out_total', help: 'Outbound messages sent by connectors', labelNames: ['channel', 'account'], registers: [registry] }),
  deliveryFailures: new Counter({ name: 'omnigate_delivery_failures_total', help: 'Outbound messages that failed for good', labelNames: ['channel', 'account', 'reason'], registers: [registry] }),
  routingLatency: new Histogram({
    name: 'omnigate_routing_latency_seconds',
    help: 'From JetStream publish of an inbound event to its ticket log entry',
    labelNames: ['channel'],
    buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
    registers: [registry],
  }),
  ticketsCreated: new Counter({ name: 'omnigate_tickets_created_total', help: 'Tickets opened', registers: [registry] }),
  duplicates: new Counter({ name: 'omnigate_duplicate_events_total', help: 'Inbound events dropped as already seen (JetStream dedup at the connector, processed marker at the router)', labelNames: ['channel'], registers: [registry] }),
  coalesced: new Counter({ name: 'omnigate_coalesced_messages_total', help: 'Inbound messages whose ticket update was shared with an earlier message of the same conversation that queued up with it (one compare-and-set for several)', registers: [registry] }),
  // Every refusal, stored or not: source is router, connector, outbound, webhook or loop-guard.
  parked: new Counter({ name: 'omnigate_dead_letters_total', help: 'Dead letters (refusals) by source and reason, whether stored or suppressed by the rate limit', labelNames: ['source', 'reason'], registers: [registry] }),
  deadLettersSuppressed: new Counter({ name: 'omnigate_dead_letters_suppressed_total', help: 'Dead letters counted but not stored: the source was over its rate limit', labelNames: ['source', 'reason'], registers: [registry] }),
  deadLetterBytes: new Gauge({ name: 'omnigate_dead_letter_bytes', help: 'Bytes held by the dead-letter stream OMNI_DLQ (sampled)', registers: [registry] }),
  ignored: new Counter({ name: 'omnigate_loop_guard_total', help: 'Automated messages (auto-replies, bounces, our own echoes) dropped by a loop guard, in a connector or the router', labelNames: ['channel'], registers: [registry] }),
  skippedUpdates: new Counter({ name: 'omnigate_skipped_updates_total', help: 'Platform updates a connector deliberately did not turn into events, by reason', labelNames: ['channel', 'reason'], registers: [registry] }),
  inboundStrays: new Counter({ name: 'omnigate_inbound_strays_total', help: 'Inbound messages found on subjects no router reads: moved to their partition, parked, or left for the next sweep (dead letters rate-limited)', labelNames: ['outcome'], registers: [registry] }),
  routingErrors: new Counter({ name: 'omnigate_routing_errors_total', help: 'Routing attempts that failed and were retried', registers: [registry] }),
  consumerLag: new Gauge({ name: 'omnigate_consumer_lag', help: 'Messages not yet acknowledged by a durable consumer', labelNames: ['consumer'], registers: [registry] }),
  webhookRetries: new Counter({ name: 'omnigate_webhook_retries_total', help: 'Webhook deliveries retried', labelNames: ['webhook'], registers: [registry] }),
  webhookParked: new Counter({ name: 'omnigate_webhook_parked_total', help: 'Webhook deliveries parked: after the retry budget, or at once for a redirect', labelNames: ['webhook'], registers: [registry] }),
  readModelLag: new Gauge({ name: 'omnigate_read_model_lag', help: 'Ticket-log entries (OMNI_LOG) not yet applied to the SQL read model (sampled by the replica applying them); NaN while the database is still opening (its checkpoint unknown)', registers: [registry] }),
  embeddedNatsRestarts: new Counter({ name: 'omnigate_embedded_nats_restarts_total', help: "Restarts of the embedded nats-server because its JetStream stopped answering (silent) or turned itself off (off), as a full disk leaves it", labelNames: ['reason'], registers: [registry] }),
  apiAuthFailures: new Counter({ name: 'omnigate_api_auth_failures_total', help: 'Requests to token routes and the web-form intake that failed authentication: a wrong token or channel secret presented (refused, 401) or an address over api.authThrottle refused unchecked (throttled, 429)', labelNames: ['outcome'], registers: [registry] }),
  logLinesDropped: new Counter({ name: 'omnigate_log_lines_dropped_total', help: 'Log lines dropped because stdout was not taking them (over 16 MB waiting)', registers: [registry] }),
  readModelApplied: new Counter({ name: 'omnigate_read_model_entries_total', help: 'Ticket-log entries the SQL projection handled, by outcome (applied, duplicate, orphan, invalid, refused)', labelNames: ['outcome'], registers: [registry] }),
  helpdeskEvents: new Counter({ name: 'omnigate_helpdesk_events_total', help: 'Ticket events handled by a helpdesk adapter, by outcome (applied, ignored, echo, done, parked)', labelNames: ['helpdesk', 'outcome'], registers: [registry] }),
  // 1 on the helpdesk's current state on this replica, 0 on the others: `auth_failed` (a rotated
  // token) was only in /readyz (with a token) and the log, nothing Prometheus could alert on.
  helpdeskState: new Gauge({ name: 'omnigate_helpdesk_state', help: '1 on the helpdesk adapter\'s current state on this replica, 0 on the others', labelNames: ['helpdesk', 'state'], registers: [registry] }),
  helpdeskRetries: new Counter({ name: 'omnigate_helpdesk_retries_total', help: 'Ticket events retried because the helpdesk did not take them (down, 5xx, 429)', labelNames: ['helpdesk'], registers: [registry] }),
  helpdeskAnswers: new Counter({ name: 'omnigate_helpdesk_answers_total', help: 'Agent answers from a helpdesk, by kind (reply, note, status) and outcome (taken, replayed, unknown_ticket, refused)', labelNames: ['helpdesk', 'kind', 'outcome'], registers: [registry] }),
  helpdeskSync: new Histogram({
    name: 'omnigate_helpdesk_sync_seconds',
    help: 'One ticket event applied to the helpdesk, from the first attempt to success (retries included)',
    labelNames: ['helpdesk'],
    buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 60, 600],
    registers: [registry],
  }),
  ticketsOpen: new Gauge({ name: 'omnigate_tickets', help: 'Tickets by status', labelNames: ['status'], registers: [registry] }),
  firstResponse: new Histogram({
    name: 'omnigate_first_response_seconds',
    help: 'Ticket opened → first agent reply sent (wall time)',
    labelNames: ['channel'],
    buckets: [60, 300, 900, 1800, 3600, 7200, 14400, 28800, 86400, 259200],
    registers: [registry],
  }),
  replyWait: new Histogram({
    name: 'omnigate_reply_wait_seconds',
    help: "Customer's last message → agent reply sent: how long customers wait (wall time)",
    labelNames: ['channel'],
    buckets: [60, 300, 900, 1800, 3600, 7200, 14400, 28800, 86400, 259200],
    registers: [registry],
  }),
  escalations: new Counter({
    name: 'omnigate_escalations_total',
    help: 'Messages to the lead (SLA breaches, low ratings) by outcome: delivered, failed (not deliverable after retries), skipped (no longer true when due)',
    labelNames: ['outcome'],
    registers: [registry],
  }),
  lifecycleErrors: new Counter({ name: 'omnigate_lifecycle_errors_total', help: 'Failed passes of a lifecycle loop (sla, satisfaction); the loop goes on', labelNames: ['loop'], registers: [registry] }),
  slaBreaches: new Counter({ name: 'omnigate_sla_breaches_total', help: 'SLA breaches', labelNames: ['breach'], registers: [registry] }),
  // One series per connector that keeps its identity across state changes (alerts with `for:` work),
  // plus an enum-style state gauge: 1 on the current state, 0 on every other.
  connectorUp: new Gauge({ name: 'omnigate_connector_up', help: '1 when the connector is connected (or only rate limited)', labelNames: ['channel', 'account'], registers: [registry] }),
  connectorState: new Gauge({ name: 'omnigate_connector_state', help: '1 on the connector\'s current state, 0 on the others', labelNames: ['channel', 'account', 'state'], registers: [registry] }),
  // Supervised loops (src/core/supervisor.ts): consumers, watches, lease holders, scanners.
  loopState: new Gauge({ name: 'omnigate_loop_state', help: '1 on the supervised loop\'s current state (running, restarting, failed), 0 on the others', labelNames: ['loop', 'state'], registers: [registry] }),
  loopRestarts: new Counter({ name: 'omnigate_loop_restarts_total', help: 'Times a supervised loop ended or failed and was restarted', labelNames: ['loop'], registers: [registry] }),
  loopProgress: new Gauge({ name: 'omnigate_loop_last_progress_timestamp_seconds', help: 'Unix time a supervised loop last reported progress', labelNames: ['loop'], registers: [registry] }),
  // A stall begins by time passing, not by an event: asked of the loops at every scrape.
  loopStalled: new Gauge({
    name: 'omnigate_loop_stalled',
    help: '1 while a supervised loop has had work waiting (messages held, commands failing) and made no progress for its stall threshold (router.stallAfter); 0 otherwise',
    labelNames: ['loop'],
    registers: [registry],
    collect() {
      for (const sample of scrapeSamplers) sample();
    },
  }),
  connectorRequired: new Gauge({ name: 'omnigate_connector_required', help: '1 when config marks the connector required: readiness then depends on it', labelNames: ['channel', 'account'], registers: [registry] }),
  connectorStandbyUntil: new Gauge({ name: 'omnigate_connector_standby_until_timestamp_seconds', help: 'While standing by for a lease another replica holds: Unix time that lease runs out unless renewed (0 otherwise)', labelNames: ['channel', 'account'], registers: [registry] }),
};

// Present from the start: an alert on increase() sees no rise from a series that first appears with the first stray.
for (const outcome of ['moved', 'parked', 'left']) metrics.inboundStrays.inc({ outcome }, 0);
for (const outcome of ['refused', 'throttled']) metrics.apiAuthFailures.inc({ outcome }, 0);
for (const reason of ['silent', 'off']) metrics.embeddedNatsRestarts.inc({ reason }, 0);
