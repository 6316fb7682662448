/**
 * Time-driven ticket automation, run by one replica (a lease):
 * - SLA timers: first response (ticket opened → first agent reply sent) and no answer (customer's
 *   last message → agent reply), counted in business hours. Each breach is written to the ticket
 *   log once, announced as ticket.sla, and escalated to a lead's chat on any channel when configured.
 * - Satisfaction requests: `csat.delay` after a ticket was resolved/closed, the customer is asked
 *   for a 1–5 rating (the router records the answer; see Router.rating).
 */
import { randomUUID } from 'node:crypto';
import type { Bus } from '../core/bus.js';
import { errorMessage } from '../core/errors.js';
import { acquireLease } from '../core/lease.js';
import { sleep } from '../core/sleep.js';
import { Supervisor, type LoopRun, type SupervisedLoop } from '../core/supervisor.js';
import type { Logger } from '../core/logger.js';
import { OutboundMessage, type ConversationRef, type LogEntry, type Ticket } from '../core/schema.js';
import { Subjects } from '../core/subjects.js';
import { metrics } from '../core/metrics.js';
import { businessMs, type BusinessHours } from './business-hours.js';
import type { Journal } from './journal.js';
import type { TicketStore } from './tickets.js';

export interface CsatOptions {
  enabled: boolean;
  delayMs: number;
  /** Sends the request through the ticket's own channel (an automated reply). */
  send: (ticket: Ticket) => Promise<void>;
}

export interface LifecycleOptions {
  enabled: boolean;
  csat?: CsatOptions;
  firstResponseMs: number;
  noAnswerMs: number;
  businessHours: BusinessHours | null;
  checkIntervalMs: number;
  escalate?: { channel: string; account: string; conversation: ConversationRef };
}

type Breach = { breach: 'first_response' | 'no_answer'; since: string; limitMs: number };

export class LifecycleWatcher {
  private loop?: SupervisedLoop;

  constructor(
    private readonly bus: Bus,
    private readonly store: TicketStore,
    private readonly journal: Journal,
    private readonly o: LifecycleOptions,
    private readonly log: Logger,
    private readonly leaseTtlMs: number,
    private readonly holder: string,
    private readonly supervisor = new Supervisor(log),
  ) {}

  start(): void {
    if (!this.o.enabled && !this.o.csat?.enabled) return;
    this.loop = this.supervisor.run('router.sla', (r) => this.scan(r));
  }

  async stop(): Promise<void> {
    await this.loop?.stop();
  }

  /**
   * One term as the scanning replica: wait for the lease, then check every `checkInterval` until
   * the lease is lost (the supervisor starts the next term) or the watcher stops. A check is
   * awaited before the next wait, so two checks never overlap.
   */
  private async scan({ signal, progress }: LoopRun): Promise<void> {
    const lease = await acquireLease(this.bus.kv.leases, 'router.sla', { ttlMs: this.leaseTtlMs, holder: this.holder, signal, log: this.log });
    let lost = false;
    void lease.lost.then(() => (lost = true));
    try {
      while (!signal.aborted && !lost) {
        try {
          await this.check();
          progress();
        } catch (err) {
          this.log.warn({ err: errorMessage(err) }, 'SLA check failed');
        }
        await Promise.race([sleep(this.o.checkIntervalMs, signal), lease.lost]);
      }
    } finally {
      await lease.release();
    }
    if (lost) throw new Error('lease router.sla lost; waiting to take it again');
  }

  /** One pass over open tickets; exposed for tests. */
  async check(now = Date.now()): Promise<number> {
    let found = 0;
    for (const t of await this.store.list()) {
      if (this.o.enabled) {
        for (const b of this.breaches(t, now)) if (await this.record(t, b)) found++;
      }
      if (this.o.csat?.enabled && (await this.requestRating(t, now))) found++;
    }
    return found;
  }

  /** Asks once per ticket, `delay` after close; marked first, so a restart never asks twice. */
  private async requestRating(t: Ticket, now: number): Promise<boolean> {
    const csat = this.o.csat!;
    if ((t.status !== 'resolved' && t.status !== 'closed') || !t.closedAt || t.csat?.requestedAt) return false;
    if (now - Date.parse(t.closedAt) < csat.delayMs) return false;
    let won = false;
    const updated = await this.store.mutate(t.id, (cur) => {
      if (cur.csat?.requestedAt || (cur.status !== 'resolved' && cur.status !== 'closed')) return null;
      won = true;
      cur.csat = { ...cur.csat, requestedAt: new Date(now).toISOString() };
      return cur;
    });
    if (!won || !updated) return false;
    await csat.send(updated);
    return true;
  }

  /** Tells the lead about a low rating (same escalation path as SLA breaches). */
  async lowRating(t: Ticket, rating: number): Promise<void> {
    if (!this.o.escalate) return;
    await this.notifyLead(t, `rating:${rating}`, `⭐ Низкая оценка ${rating}/5 по ${t.id} (${t.contact.displayName ?? t.contact.id}, ${t.channel}/${t.account}).`);
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
    const hours = Math.round((b.limitMs / 3_600_000) * 10) / 10;
    const what = b.breach === 'first_response' ? `нет первого ответа дольше ${hours} ч` : `клиент ждёт ответа дольше ${hours} ч`;
    const who = t.contact.displayName ?? t.contact.id;
    await this.notifyLead(t, `${b.breach}:${b.since}`, `⚠️ SLA ${t.id}: ${what} (${who}, ${t.channel}/${t.account}).`);
  }

  private async notifyLead(t: Ticket, cause: string, text: string): Promise<void> {
    const e = this.o.escalate!;
    const message = OutboundMessage.parse({
      v: 1,
      type: 'message.outbound',
      id: `${t.id}:sla:${cause}`,
      ticketId: t.id,
      channel: e.channel,
      account: e.account,
      conversation: e.conversation,
      text,
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
