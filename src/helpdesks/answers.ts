/**
 * Agents' answers into omnigate, on any replica: the helpdesk ticket is mapped back to its
 * omnigate ticket and the command goes on the bus (omni.cmd.reply / .note / .status, the path the
 * REST API takes) with the idempotency key `helpdesk:<id>:<answer id>`, so a webhook retried by
 * the helpdesk, or a poll overlapping a webhook, takes the answer once. The author is
 * `helpdesk:<id>:<agent id>`: the host knows the resulting ticket events as its own echo.
 */
import type { Bus } from '../core/bus.js';
import type { Logger } from '../core/logger.js';
import { errorMessage } from '../core/errors.js';
import { metrics } from '../core/metrics.js';
import { KeyedLanes } from '../core/lanes.js';
import { Subjects } from '../core/subjects.js';
import { helpdeskAuthorPrefix, type AgentAnswer, type AnswerOutcome, type ExternalTicket } from './contract.js';
import type { HelpdeskRecords } from './mapping.js';

/** Shorter than a helpdesk's webhook timeout (Zammad: 30 s read), so we answer it ourselves. */
const COMMAND_TIMEOUT_MS = 10_000;

type CommandAnswer = { ok: true; result: Record<string, unknown>; replayed?: boolean } | { ok: false; error: { code: string; message: string; field?: string } };

/** Codes after which the same command can never succeed: the answer is parked, not retried. */
const PERMANENT = new Set(['invalid_request', 'outside_reply_window']);

async function command(bus: Bus, name: 'reply' | 'note' | 'status' | 'link', body: unknown): Promise<CommandAnswer> {
  const m = await bus.nc.request(Subjects.command(name), JSON.stringify(body), { timeout: COMMAND_TIMEOUT_MS });
  return m.json<CommandAnswer>();
}

/** Stores the helpdesk ticket on the omnigate ticket (`externalRefs`, shown by the API). */
export async function linkTicket(bus: Bus, id: string, ticketId: string, ticket: ExternalTicket): Promise<void> {
  const r = await command(bus, 'link', { ticketId, system: id, externalId: ticket.externalId, url: ticket.url });
  if (!r.ok) throw new Error(`linking ${ticketId} to ${id} ticket ${ticket.externalId} failed: ${r.error.code}: ${r.error.message}`);
}

export class AnswerTaker {
  private readonly lanes = new KeyedLanes();

  constructor(
    private readonly bus: Bus,
    private readonly id: string,
    private readonly records: HelpdeskRecords,
    private readonly log: Logger,
    /** Tells the helpdesk ticket's agents that an answer of theirs was not sent, where the adapter can. */
    private readonly notSent: (externalId: string, ticketId: string) => Promise<void> = async () => {},
  ) {}

  take(answer: AgentAnswer): Promise<AnswerOutcome> {
    let outcome!: AnswerOutcome;
    return this.lanes.run(answer.externalId, async () => {
      outcome = await this.takeNow(answer);
    }).then(() => {
      const label = outcome.outcome === 'taken' && outcome.replayed ? 'replayed' : outcome.outcome;
      metrics.helpdeskAnswers.inc({ helpdesk: this.id, kind: answer.kind, outcome: label });
      return outcome;
    });
  }

  idle(): Promise<void> {
    return this.lanes.idle();
  }

  private async resolve(answer: AgentAnswer): Promise<string | null> {
    const mapped = await this.records.ticketOf(answer.externalId);
    if (mapped) return mapped;
    if (!answer.ticketId) return null;
    // The helpdesk named our ticket (custom field) before the mapping was recorded: trust it only
    // when that ticket is not linked to another helpdesk ticket.
    const forward = await this.records.lookup(answer.ticketId);
    return !forward || forward.externalId === answer.externalId ? answer.ticketId : null;
  }

  /**
   * Linked, but omnigate's ticket is gone (erased on request or by retention). A public answer
   * was dropped with one info line and the agent believed the customer had it: now a warning,
   * and a note on the helpdesk ticket saying it was not sent. Marked taken, so a poller does not
   * offer it (and write the note) again.
   */
  private async gone(answer: AgentAnswer, ticketId: string): Promise<AnswerOutcome> {
    if (answer.kind === 'reply') {
      this.log.warn({ helpdesk: this.id, ticketId, externalId: answer.externalId, answer: answer.id }, 'agent answer NOT sent: omnigate no longer has its ticket (erased); the agents are told on the helpdesk ticket');
      await this.notSent(answer.externalId, ticketId);
    } else {
      this.log.info({ helpdesk: this.id, ticketId, externalId: answer.externalId, answer: answer.id, kind: answer.kind }, 'agent answer ignored: omnigate no longer has its ticket (erased)');
    }
    await this.records.markTaken(answer.id, JSON.stringify({ gone: ticketId }));
    return { outcome: 'ticket_gone', ticketId };
  }

  private async takeNow(answer: AgentAnswer): Promise<AnswerOutcome> {
    const ticketId = await this.resolve(answer);
    if (!ticketId) {
      this.log.info({ helpdesk: this.id, externalId: answer.externalId, answer: answer.id }, 'answer ignored: the helpdesk ticket is not linked to an omnigate ticket');
      return { outcome: 'unknown_ticket' };
    }
    const idempotencyKey = `helpdesk:${this.id}:${answer.id}`;
    const author = { id: `${helpdeskAuthorPrefix(this.id)}${answer.agent.id}`, name: answer.agent.name };
    const body =
      answer.kind === 'reply'
        ? { ticketId, text: answer.text, html: answer.html, attachments: answer.attachments ?? [], idempotencyKey, author }
        : answer.kind === 'note'
          ? { ticketId, text: answer.text, idempotencyKey, author }
          : { ticketId, status: answer.status, idempotencyKey, author };
    const r = await command(this.bus, answer.kind, body);
    if (r.ok) {
      await this.records.markTaken(answer.id, JSON.stringify(r.result));
      this.log.info({ helpdesk: this.id, ticketId, externalId: answer.externalId, answer: answer.id, kind: answer.kind, replayed: r.replayed ?? false }, 'agent answer taken from the helpdesk');
      return { outcome: 'taken', ticketId, replayed: r.replayed ?? false };
    }
    if (r.error.code === 'ticket_not_found') return this.gone(answer, ticketId);
    if (PERMANENT.has(r.error.code)) {
      const reason = `${r.error.code}: ${r.error.message}`;
      this.log.warn({ helpdesk: this.id, ticketId, answer: answer.id, reason }, 'agent answer refused by omnigate: parked');
      await this.bus.deadLetters.park({
        source: 'helpdesk', scope: this.id, subject: Subjects.command(answer.kind), code: `answer_${r.error.code}`,
        reason: `answer ${answer.id} on ${answer.externalId} (${ticketId}): ${reason}`, payload: body, meta: { ticketId, answerId: answer.id },
      });
      // Marked taken: a poller must not offer it again and again.
      await this.records.markTaken(answer.id, JSON.stringify({ refused: reason }));
      return { outcome: 'refused', reason };
    }
    throw new Error(`omnigate did not take answer ${answer.id}: ${r.error.code}: ${errorMessage(r.error.message)}`);
  }
}
