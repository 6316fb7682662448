/**
 * Messages to the lead (SLA breaches, low ratings): an ordinary outbound message on any
 * configured connector, tracked until it arrives. The publish is retried while NATS refuses it;
 * the connector's outbound runner retries the send itself; its final outcome (omni.status) comes
 * back through DeliveryRecorder and is written on the ticket (`escalations`), in the ticket log
 * (an `escalation` entry) and counted in omnigate_escalations_total{outcome}.
 */
import type { Bus } from '../core/bus.js';
import { errorMessage } from '../core/errors.js';
import type { Logger } from '../core/logger.js';
import { metrics } from '../core/metrics.js';
import { OutboundMessage, type ConversationRef, type DeliveryStatus, type LogEntry, type Ticket } from '../core/schema.js';
import { backoffMs, sleep } from '../core/sleep.js';
import { Subjects } from '../core/subjects.js';
import { applyOwned } from './automation.js';
import type { Journal } from './journal.js';
import type { TicketStore } from './tickets.js';

export interface EscalationTarget {
  channel: string;
  account: string;
  conversation: ConversationRef;
}

/** Escalation ids are `<ticket>:<installation>:sla:<cause>`: DeliveryRecorder recognises their outcomes by it. */
export const isEscalationId = (outboundId: string): boolean => outboundId.includes(':sla:');

const KEEP = 20;
const PUBLISH_ATTEMPTS = 6;

/** How an escalation that never reached the outbound stream is recorded: it may be published again. */
const NOT_PUBLISHED = 'not published: ';

export class Escalator {
  constructor(
    private readonly bus: Bus,
    private readonly store: TicketStore,
    private readonly journal: Journal,
    readonly target: EscalationTarget,
    private readonly log: Logger,
    private readonly signal: AbortSignal,
  ) {}

  get targetName(): string {
    return `${this.target.channel}/${this.target.account}/${this.target.conversation.id}`;
  }

  /** Records the escalation as pending on the ticket, then publishes it (retried); a publish that never succeeds is recorded failed. */
  async send(t: Ticket, reason: string, cause: string, text: string): Promise<void> {
    const id = `${t.id}:${this.bus.installationId}:sla:${cause}`;
    const at = new Date().toISOString();
    const stored = await this.store.mutate(t.id, (cur) => {
      const prior = cur.escalations?.find((e) => e.id === id);
      // Never published (NATS was down): pending again, and published now.
      if (prior?.outcome === 'failed' && prior.detail?.startsWith(NOT_PUBLISHED)) {
        cur.escalations = cur.escalations!.map((e) => (e.id === id ? { id, reason: e.reason, at: e.at, outcome: 'pending' as const } : e));
        return cur;
      }
      if (prior) return null;
      cur.escalations = [...(cur.escalations ?? []), { id, reason, at, outcome: 'pending' as const }].slice(-KEEP);
      return cur;
    });
    // Sent before and settled by the lead's channel (a report finished again after a failure further on): nothing to send.
    if (stored?.escalations?.some((e) => e.id === id && e.outcome !== 'pending')) return;
    const message = OutboundMessage.parse({
      v: 1,
      type: 'message.outbound',
      id,
      ticketId: t.id,
      channel: this.target.channel,
      account: this.target.account,
      conversation: this.target.conversation,
      text,
      author: { id: 'omnigate', name: 'SLA' },
      createdAt: at,
      automated: true,
      purpose: 'sla_alert',
    });
    let lastError = '';
    for (let attempt = 0; attempt < PUBLISH_ATTEMPTS && !this.signal.aborted; attempt++) {
      try {
        // Nats-Msg-Id = the escalation id: a retry after a lost ack is stored once.
        await this.bus.publishJson(Subjects.outbound(this.target.channel, this.target.account), message, id);
        return;
      } catch (err) {
        lastError = errorMessage(err);
        this.log.warn({ ticketId: t.id, escalation: id, attempt: attempt + 1, err: lastError }, 'escalation publish failed; retrying');
        await sleep(backoffMs(attempt, 500, 8_000), this.signal);
      }
    }
    await recordEscalationOutcome(this.store, this.journal, this.log, { id, ticketId: t.id, outcome: 'failed', detail: `${NOT_PUBLISHED}${lastError || 'stopped'}`, target: this.targetName });
  }
}

/**
 * The final outcome of an escalation: on the ticket, in its log, in the metric. Called for a
 * connector's delivery status and for a publish that never succeeded. Idempotent per id and outcome.
 */
export async function recordEscalationOutcome(
  store: TicketStore,
  journal: Journal,
  log: Logger,
  o: { id: string; ticketId: string; outcome: 'delivered' | 'failed'; detail?: string; target: string },
): Promise<void> {
  const at = new Date().toISOString();
  const stored = await applyOwned(store, o.ticketId, (t) => {
    const list = t.escalations ?? [];
    const found = list.find((e) => e.id === o.id);
    if (found && found.outcome !== 'pending') return null;
    const entry = { id: o.id, reason: found?.reason ?? o.id.split(':sla:')[1]?.split(':')[0] ?? 'unknown', at: found?.at ?? at, outcome: o.outcome, detail: o.detail };
    t.escalations = [...list.filter((e) => e.id !== o.id), entry].slice(-KEEP);
    return t;
  });
  if (!stored) return; // recorded before (a redelivered status), or the ticket is gone
  const reason = stored.escalations?.find((e) => e.id === o.id)?.reason ?? 'unknown';
  const entry: LogEntry = { kind: 'escalation', at, id: o.id, reason, target: o.target, outcome: o.outcome, detail: o.detail };
  await journal.append(o.ticketId, entry, `esc:${o.id}:${o.outcome}`);
  metrics.escalations.inc({ outcome: o.outcome });
  if (o.outcome === 'failed') log.warn({ ticketId: o.ticketId, escalation: o.id, target: o.target, detail: o.detail }, 'escalation could not be delivered');
  else log.info({ ticketId: o.ticketId, escalation: o.id, target: o.target }, 'escalation delivered');
}

/** What a connector's delivery status means for an escalation, or undefined when it settles nothing. */
export function escalationOutcome(s: DeliveryStatus): 'delivered' | 'failed' | undefined {
  if (!isEscalationId(s.outboundId)) return undefined;
  return s.status === 'failed' ? 'failed' : 'delivered';
}
