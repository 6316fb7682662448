/**
 * Satisfaction requests: `delay` (clock time, not business time) after a ticket was resolved or
 * closed, the customer is asked once for a 1–5 rating in the ticket's own channel.
 *
 * The request cannot contradict the ticket:
 * 1. it is decided by compare-and-set on the ticket as stored (still resolved/closed, never
 *    asked), which records `csat.requestedAt` and `csat.sendingUntil` in the same write;
 * 2. while `sendingUntil` stands, the router does not reopen the ticket: a customer message
 *    arriving then waits (TicketBusyError) and is judged after the request — as a rating if it
 *    is one, else it reopens. So no request goes out after a reopen;
 * 3. the ticket is read again right before sending (an agent may have reopened it): if it is no
 *    longer closed the claim is withdrawn and nothing is sent;
 * 4. once sent, `csat.sentAt` is written and the hold lifted.
 * A process that dies mid-way leaves `sendingUntil` to expire; the next pass sends again (the
 * reply command's idempotency key sends it at most once) if the ticket is still closed.
 */
import { CLOSED_STATUSES, type Ticket } from '../core/schema.js';
import type { Logger } from '../core/logger.js';
import { errorMessage } from '../core/errors.js';
import { applyOwned } from './automation.js';
import type { TicketStore } from './tickets.js';

/** How long a customer message waits for a request being sent; longer only if the sender died. */
export const SENDING_HOLD_MS = 15_000;

/** Thrown by the router's ticket update while a satisfaction request is being sent: wait and retry. */
export class TicketBusyError extends Error {
  constructor(readonly ticketId: string) {
    super(`ticket ${ticketId}: a satisfaction request is being sent`);
    this.name = 'TicketBusyError';
  }
}

/** Whether a request is being sent right now (the router holds a reopen until it is out). */
export function requestInFlight(t: Ticket, now: number): boolean {
  return !!t.csat?.sendingUntil && Date.parse(t.csat.sendingUntil) > now;
}

export interface SatisfactionOptions {
  delayMs: number;
  /** The rating window: a ticket closed longer than `delay` + this ago is not asked any more (too late to rate). */
  windowMs?: number;
  /** Sends the request through the ticket's own channel (an automated reply); throws when it was not sent. */
  send: (ticket: Ticket) => Promise<void>;
}

export class SatisfactionRequests {
  constructor(
    private readonly store: TicketStore,
    private readonly o: SatisfactionOptions,
    private readonly log: Logger,
  ) {}

  async scan(tickets: Ticket[], now: number, valid: () => boolean = () => true): Promise<number> {
    let sent = 0;
    for (const t of tickets) {
      if (!this.due(t, now)) continue;
      if (!valid()) return sent; // fenced: the lease ran out by the clock; another replica may ask by now
      try {
        if (await this.request(t.id, now)) sent++;
      } catch (err) {
        this.log.warn({ ticketId: t.id, err: errorMessage(err) }, 'satisfaction request failed; next pass retries');
      }
    }
    return sent;
  }

  /**
   * Closed for `delay`, and never asked — or asked by a process that died before it was sent. Not
   * while the agent's last reply failed: the customer never got the answer they would rate. Not
   * when no agent's answer ever reached them (spam, a duplicate closed unanswered: "rate our help"
   * for help never given). Not once the channel's reply window closed (WhatsApp's 24 hours): a
   * free-form request would fail, and be counted and alerted on as a failed delivery. Pure.
   */
  due(t: Ticket, now: number): boolean {
    if (!CLOSED_STATUSES.has(t.status) || !t.closedAt || now - Date.parse(t.closedAt) < this.o.delayMs) return false;
    if (this.o.windowMs !== undefined && now - Date.parse(t.closedAt) > this.o.delayMs + this.o.windowMs && !t.csat?.requestedAt) return false;
    if (t.lastDelivery?.status === 'failed' || !t.firstResponseAt) return false;
    if (t.replyWindowEndsAt && now > Date.parse(t.replyWindowEndsAt)) return false;
    if (!t.csat?.requestedAt) return true;
    // Resumed only when a hold was left to expire: records from before holds existed were sent.
    return !t.csat.sentAt && !!t.csat.sendingUntil && !requestInFlight(t, Date.now());
  }

  /** Claims, re-checks, sends and records one request; true when it was sent by this call. */
  async request(ticketId: string, now: number): Promise<boolean> {
    const claimed = await applyOwned(this.store, ticketId, (t) => {
      if (!this.due(t, now)) return null;
      t.csat = { ...t.csat, requestedAt: t.csat?.requestedAt ?? new Date(now).toISOString(), sendingUntil: new Date(Date.now() + SENDING_HOLD_MS).toISOString() };
      return t;
    });
    if (!claimed) return false;
    try {
      const current = (await this.store.get(ticketId, { fresh: true }))?.value;
      if (!current || !CLOSED_STATUSES.has(current.status)) {
        await this.release(ticketId, 'withdrawn');
        this.log.info({ ticketId }, 'satisfaction request withdrawn: the ticket was reopened before it was sent');
        return false;
      }
      await this.o.send(current);
    } catch (err) {
      await this.release(ticketId, 'withdrawn');
      throw err;
    }
    await this.release(ticketId, 'sent');
    this.log.info({ ticketId }, 'satisfaction request sent');
    return true;
  }

  /** Lifts the hold: the request is sent (recorded), or withdrawn (the ticket may be asked when it closes again). */
  private async release(ticketId: string, how: 'sent' | 'withdrawn'): Promise<void> {
    const at = new Date().toISOString();
    await this.store.mutate(ticketId, (t) => {
      if (!t.csat) return null;
      const { sendingUntil: _hold, ...rest } = t.csat;
      t.csat = how === 'sent' ? { ...rest, sentAt: at } : { ...rest, requestedAt: undefined };
      return t;
    });
  }
}
