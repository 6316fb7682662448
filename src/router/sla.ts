/**
 * SLA timers: first response (ticket opened → first agent reply sent) and no answer (the
 * customer's last message → an agent reply), counted in business time. The no-answer clock
 * starts only once an agent has answered at all: before that, the first-response timer covers
 * the wait. Each breach is marked on the ticket by compare-and-set (so it is reported once, also
 * across a restart), escalated to the lead if it is still true right before sending, written to
 * the log and announced as ticket.sla. The mark lists the breach as unreported until all of that
 * is done: a failure or a crash on the way leaves it for the next pass, which finishes it (the
 * escalation keeps its id, the log entry and event theirs), rather than a breach marked and never
 * told to anyone.
 */
import type { Logger } from '../core/logger.js';
import { metrics } from '../core/metrics.js';
import type { LogEntry, Ticket } from '../core/schema.js';
import type { Texts } from '../core/texts.js';
import { applyOwned } from './automation.js';
import { businessMs, type BusinessHours } from './business-hours.js';
import type { Escalator } from './escalation.js';
import type { Journal } from './journal.js';
import type { TicketStore } from './tickets.js';

export interface SlaOptions {
  firstResponseMs: number;
  noAnswerMs: number;
  businessHours: BusinessHours | null;
}

const BREACH_KINDS = ['first_response', 'no_answer'] as const;
type BreachKind = (typeof BREACH_KINDS)[number];
type Unreported = NonNullable<NonNullable<Ticket['sla']>['unreported']>[number];
export interface Breach {
  breach: BreachKind;
  since: string;
  limitMs: number;
}

export class SlaTimers {
  constructor(
    private readonly store: TicketStore,
    private readonly journal: Journal,
    private readonly o: SlaOptions,
    private readonly texts: Texts,
    private readonly log: Logger,
    private readonly escalator?: Escalator,
  ) {
    // At 0 from the start: OmnigateSlaBreaches uses increase(), which sees no rise in a series
    // that first appears at 1, so the first breach after a start would not fire it.
    for (const breach of BREACH_KINDS) metrics.slaBreaches.inc({ breach }, 0);
  }

  /**
   * Tickets with a breach not fully reported: candidates of the next pass whatever the read model
   * says (it stops listing a ticket once its entry is logged, or once it is answered). Filled when
   * a report fails and, at the start of each scanning term, from every ticket's record (the term
   * may follow a crash or another replica's); emptied as their lists empty or the ticket goes.
   */
  private readonly unreported = new Set<string>();

  /** Ticket ids the next pass must look at besides the due ones (see unreported). */
  retryIds(): string[] {
    return [...this.unreported];
  }

  /** Remembers the tickets among `tickets` whose records list unreported breaches (a term's start). */
  rememberUnreported(tickets: Ticket[]): void {
    for (const t of tickets) if (t.sla?.unreported?.length) this.unreported.add(t.id);
  }

  /** A ticket id the pass was asked to look at but that is gone: nothing left to report. */
  forget(ticketId: string): void {
    this.unreported.delete(ticketId);
  }

  /**
   * One pass; returns the breaches recorded. A ticket that fails is logged and the pass goes on.
   * `valid` is the scanner's lease: once false (ran out by the clock), nothing more is written.
   */
  async scan(tickets: Ticket[], now: number, valid: () => boolean = () => true): Promise<number> {
    let found = 0;
    for (const t of tickets) {
      let left = 0;
      for (const u of t.sla?.unreported ?? []) {
        if (!valid()) return found;
        await this.report(t, u).catch((err: unknown) => {
          left++;
          this.log.warn({ ticketId: t.id, breach: u.breach, err: String(err) }, 'SLA breach not reported; next pass retries');
        });
      }
      if (left > 0) this.unreported.add(t.id);
      else this.unreported.delete(t.id);
      for (const b of this.breaches(t, now)) {
        if (!valid()) return found; // fenced: another replica may scan by now
        try {
          if (await this.record(t.id, b, now)) found++;
        } catch (err) {
          this.log.warn({ ticketId: t.id, breach: b.breach, err: String(err) }, 'SLA breach not recorded; next pass retries');
        }
      }
    }
    return found;
  }

  /** The breaches the ticket shows at `now` that are not marked yet. Pure. */
  breaches(t: Ticket, now: number): Breach[] {
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

  /** Marks the breach, listed as unreported (decided on the ticket as stored, by compare-and-set), then reports it. */
  private async record(ticketId: string, b: Breach, now: number): Promise<boolean> {
    const at = new Date().toISOString();
    const updated = await applyOwned(this.store, ticketId, (t) => {
      // Judged again on the record being replaced: an answer or a close since the scan read it wins.
      const still = this.breaches(t, now).find((x) => x.breach === b.breach && x.since === b.since);
      if (!still) return null;
      const sla = { ...t.sla };
      if (b.breach === 'first_response') sla.firstResponseBreachedAt = at;
      else sla.noAnswerBreachedFor = b.since;
      sla.unreported = [...(sla.unreported ?? []), { breach: b.breach, since: b.since, at, limitMs: b.limitMs }];
      t.sla = sla;
      return t;
    });
    if (!updated) return false;
    this.log.warn({ ticketId, breach: b.breach, limitMs: b.limitMs }, 'SLA breached');
    metrics.slaBreaches.inc({ breach: b.breach });
    try {
      await this.report(updated, updated.sla!.unreported!.at(-1)!);
    } catch (err) {
      this.unreported.add(ticketId);
      this.log.warn({ ticketId, breach: b.breach, err: String(err) }, 'SLA breach marked but not reported yet; next pass retries');
    }
    return true;
  }

  /**
   * Escalates (if still true), logs and announces a marked breach, then clears it from the
   * ticket's unreported list. Escalation first: once the log entry is in, the read model no longer
   * offers the ticket as due. Each step is idempotent (the escalation id, the log entry's id, looked
   * up past the duplicate window, the event's id).
   */
  private async report(t: Ticket, u: Unreported): Promise<void> {
    if (this.escalator) await this.escalate(t, u);
    const entry: LogEntry = { kind: 'sla', at: u.at, breach: u.breach, since: u.since, limitMs: u.limitMs, escalatedTo: this.escalator?.targetName };
    const cause = `sla:${u.breach}:${u.since}`;
    const markedAt = Date.parse(u.at) * 1e6;
    const logged = await this.journal.loggedIfDedupLapsed(t.id, markedAt);
    await Promise.all([this.journal.appendUnlessLogged(t.id, entry, cause, logged), this.journal.emit('ticket.sla', t, cause, entry)]);
    await applyOwned(this.store, t.id, (cur) => {
      const list = cur.sla?.unreported ?? [];
      const left = list.filter((x) => x.breach !== u.breach || x.since !== u.since);
      if (left.length === list.length) return null;
      cur.sla = { ...cur.sla, unreported: left.length > 0 ? left : undefined };
      return cur;
    });
  }

  /**
   * Re-reads the ticket right before sending: an agent who answered (or a close) meanwhile makes
   * the alert moot. A customer who wrote again is still waiting, so that alert stands.
   */
  private async escalate(marked: Ticket, b: Breach): Promise<void> {
    const current = (await this.store.get(marked.id, { fresh: true }))?.value;
    const moot = !current || (current.status !== 'new' && current.status !== 'open') || (b.breach === 'first_response' ? !!current.firstResponseAt : !!current.lastOutboundAt && current.lastOutboundAt >= b.since);
    if (moot) {
      metrics.escalations.inc({ outcome: 'skipped' });
      this.log.info({ ticketId: marked.id, breach: b.breach }, 'escalation skipped: the ticket was answered or closed since the breach');
      return;
    }
    const text = this.texts.render(b.breach === 'first_response' ? 'slaFirstResponse' : 'slaNoAnswer', {
      ticket: current.id,
      limit: this.texts.duration(b.limitMs),
      contact: current.contact.displayName ?? current.contact.id,
      channel: `${current.channel}/${current.account}`,
    });
    await this.escalator!.send(current, b.breach, `${b.breach}:${b.since}`, text);
  }
}
