/**
 * SLA timers: first response (ticket opened → first agent reply sent) and no answer (customer's
 * last message → agent reply), counted in business hours. One replica watches (a lease); each
 * breach is written to the ticket log once, announced as ticket.sla, and escalated to a lead's
 * chat on any connected channel when configured.
 */
import { randomUUID } from 'node:crypto';
import type { Bus } from '../core/bus.js';
import { errorMessage } from '../core/errors.js';
import { acquireLease, type Lease } from '../core/lease.js';
import type { Logger } from '../core/logger.js';
import { OutboundMessage, type ConversationRef, type LogEntry, type Ticket } from '../core/schema.js';
import { Subjects } from '../core/subjects.js';
import { metrics } from '../core/metrics.js';
import { businessMs, type BusinessHours } from './business-hours.js';
import type { Journal } from './journal.js';
import type { TicketStore } from './tickets.js';

export interface SlaOptions {
  enabled: boolean;
  firstResponseMs: number;
  noAnswerMs: number;
  businessHours: BusinessHours | null;
  checkIntervalMs: number;
  escalate?: { channel: string; account: string; conversation: ConversationRef };
}

type Breach = { breach: 'first_response' | 'no_answer'; since: string; limitMs: number };

export class SlaWatcher {
  private timer?: NodeJS.Timeout;
  private lease?: Lease;
  private readonly abort = new AbortController();
  private running?: Promise<void>;

  constructor(
    private readonly bus: Bus,
    private readonly store: TicketStore,
    private readonly journal: Journal,
    private readonly o: SlaOptions,
    private readonly log: Logger,
    private readonly leaseTtlMs: number,
    private readonly holder: string,
  ) {}

  start(): void {
    if (!this.o.enabled) return;
    this.running = (async () => {
      this.lease = await acquireLease(this.bus.kv.leases, 'router.sla', { ttlMs: this.leaseTtlMs, holder: this.holder, signal: this.abort.signal, log: this.log }).catch(() => undefined);
      if (!this.lease) return;
      const tick = () => void this.check().catch((err) => this.log.warn({ err: errorMessage(err) }, 'SLA check failed'));
      tick();
      this.timer = setInterval(tick, this.o.checkIntervalMs);
    })();
  }

  async stop(): Promise<void> {
    this.abort.abort();
    clearInterval(this.timer);
    await this.running;
    await this.lease?.release();
  }

  /** One pass over open tickets; exposed for tests. */
  async check(now = Date.now()): Promise<number> {
    let found = 0;
    for (const t of await this.store.list()) {
      for (const b of this.breaches(t, now)) {
        if (await this.record(t, b)) found++;
      }
    }
    return found;
  }

  private breaches(t: Ticket, now: number): Breach[] {
    if (t.status !== 'new' && t.status !== 'open') return [];
    const out: Breach[] = [];
    if (!t.firstResponseAt && !t.sla?.firstResponseBreachedAt && businessMs(Date.parse(t.createdAt), now, this.o.businessHours) > this.o.firstResponseMs) {
      out.push({ breach: 'first_response', since: t.createdAt, limitMs: this.o.firstResponseMs });
    }
    const waiting = t.lastInboundAt && (!t.lastOutboundAt || t.lastOutboundAt < t.lastInboundAt);
    if (t.firstResponseAt && waiting && t.sla?.noAnswerBreachedFor !== t.lastInboundAt && businessMs(Date.parse(t.lastInboundAt!), now, this.o.businessHours) > this.o.noAnswerMs) {
      out.push({ breach: 'no_answer', since: t.lastInboundAt!, limitMs: this.o.noAnswerMs });
    }
    return out;
  }

  /** Marks the breach on the ticket (compare-and-set: once, even with a restart mid-way), then logs and escalates. */
  private async record(ticket: Ticket, b: Breach): Promise<boolean> {
    let won = false;
    const at = new Date().toISOString();
    const updated = await this.store.mutate(ticket.id, (t) => {
      const sla = { ...t.sla };
      if (b.breach === 'first_response') {
        if (sla.firstResponseBreachedAt || t.firstResponseAt) return null;
        sla.firstResponseBreachedAt = at;
      } else {
        if (sla.noAnswerBreachedFor === b.since) return null;
        sla.noAnswerBreachedFor = b.since;
      }
      won = true;
      t.sla = sla;
      return t;
    });
    if (!won || !updated) return false;
    const escalatedTo = this.o.escalate ? `${this.o.escalate.channel}/${this.o.escalate.account}/${this.o.escalate.conversation.id}` : undefined;
    const entry: LogEntry = { kind: 'sla', at, breach: b.breach, since: b.since, limitMs: b.limitMs, escalatedTo };
    const cause = `sla:${b.breach}:${b.since}`;
    await this.journal.append(ticket.id, entry, cause);
    await this.journal.emit('ticket.sla', updated, cause, entry);
    this.log.warn({ ticketId: ticket.id, breach: b.breach }, 'SLA breached');
    metrics.slaBreaches.inc({ breach: b.breach });
    if (this.o.escalate) await this.escalate(updated, b);
    return true;
  }

  private async escalate(t: Ticket, b: Breach): Promise<void> {
    const e = this.o.escalate!;
    const hours = Math.round((b.limitMs / 3_600_000) * 10) / 10;
    const what = b.breach === 'first_response' ? `нет первого ответа дольше ${hours} ч` : `клиент ждёт ответа дольше ${hours} ч`;
    const who = t.contact.displayName ?? t.contact.id;
    const message = OutboundMessage.parse({
      v: 1,
      type: 'message.outbound',
      id: `${t.id}:sla:${b.breach}:${b.since}`,
      ticketId: t.id,
      channel: e.channel,
      account: e.account,
      conversation: e.conversation,
      text: `⚠️ SLA ${t.id}: ${what} (${who}, ${t.channel}/${t.account}).`,
      author: { id: 'omnigate', name: 'SLA' },
      createdAt: new Date().toISOString(),
      automated: true,
    });
    await this.bus.publishJson(Subjects.outbound(e.channel, e.account), message, message.id);
  }
}

export function newHolderId(): string {
  return `${process.pid}-${randomUUID().slice(0, 8)}`;
}
