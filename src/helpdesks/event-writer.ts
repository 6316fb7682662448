/**
 * What one ticket event does to one helpdesk (contract.ts says who does what): the helpdesk ticket
 * opened from the first event that needs it and linked both ways, the rest applied by the adapter,
 * echoes of what came from this helpdesk skipped, an erased ticket removed there and forgotten
 * here. Idempotent per event id (mapping.ts records). Knows nothing of leases, consumers or
 * retries: hosted-helpdesk.ts delivers the events to it and decides what a failure means.
 */
import type { Bus } from '../core/bus.js';
import type { Logger } from '../core/logger.js';
import type { TicketErasedEvent, TicketEvent, TicketStreamEvent } from '../core/schema.js';
import {
  HelpdeskRefusedError,
  firstMessageOf,
  helpdeskAuthorPrefix,
  type ExternalTicket,
  type HelpdeskAdapter,
} from './contract.js';
import type { HelpdeskRecords } from './mapping.js';
import { linkTicket } from './answers.js';

export type PushOutcome = 'applied' | 'ignored' | 'echo' | 'done';

export class HelpdeskWriter {
  private readonly prefix: string;

  constructor(
    /** The configured helpdesk `id`. */
    private readonly id: string,
    /** Its adapter type (`zammad`), for what an operator is told. */
    private readonly type: string,
    private readonly adapter: HelpdeskAdapter,
    private readonly records: HelpdeskRecords,
    private readonly bus: Bus,
    private readonly log: Logger,
  ) {
    this.prefix = helpdeskAuthorPrefix(id);
  }

  /** One event to the helpdesk (see contract.ts); idempotent per event id. */
  async push(event: TicketStreamEvent): Promise<PushOutcome> {
    if (event.type === 'ticket.erased') return this.erase(event);
    const author = authorOf(event);
    if (author?.startsWith(this.prefix)) {
      this.log.debug({ helpdesk: this.id, ticketId: event.ticketId, event: event.type, author }, 'not written back: taken from this helpdesk (echo)');
      return 'echo';
    }
    const begun = await this.records.begin(event.id);
    if (begun === 'done') return 'done';
    let ticket = await this.records.lookup(event.ticketId);
    // The router announces the first message twice: as ticket.created and as ticket.message
    // (rule new-ticket). ensureTicket writes it, from whichever comes first; the other is done.
    const firstId = firstMessageOf(event)?.id;
    const firstMessage = event.type === 'ticket.created' || firstId !== undefined;
    if (!ticket && (await this.records.wasErased(event.ticketId))) {
      // Published while the ticket's erasure ran (it had announced the ticket, its record not yet
      // gone): writing it would open the erased person's helpdesk ticket again, for good.
      this.log.info({ helpdesk: this.id, ticketId: event.ticketId, event: event.type }, 'event of an erased ticket: not written to the helpdesk');
      await this.records.finish(event.id);
      return 'ignored';
    }
    if (!ticket) {
      ticket = await this.adapter.ensureTicket(event);
      // Linked before the mapping is recorded: a crash in between links again (same value).
      await linkTicket(this.bus, this.id, event.ticketId, ticket);
      // Which message opened it: a first message that comes later (parked, then replayed) is not it.
      await this.records.record(event.ticketId, { ...ticket, openedWith: firstId ?? '' });
      this.log.info({ helpdesk: this.id, ticketId: event.ticketId, externalId: ticket.externalId, from: event.type }, 'helpdesk ticket linked');
      if (firstMessage) {
        await this.records.finish(event.id);
        return 'applied';
      }
    } else if (firstMessage) {
      // Written when the ticket was opened with it (mappings from before openedWith count as that).
      if (ticket.openedWith === undefined || ticket.openedWith === firstId) {
        await this.records.finish(event.id);
        return 'done';
      }
      // The ticket was opened from a later event while this first message was parked: it is
      // written now, as a message, once for both of its announcements. (It was dropped as "done".)
      return this.writeLateFirstMessage(event, ticket, firstId!);
    }
    const outcome = await this.adapter.apply(event, { ticket, uncertain: begun === 'uncertain' });
    this.log.debug({ helpdesk: this.id, ticketId: event.ticketId, event: event.type, outcome }, 'event synced');
    await this.records.finish(event.id);
    return outcome;
  }

  /**
   * The omnigate ticket was erased: the helpdesk ticket goes (as far as its API allows), then the
   * mapping, which the adapter needed to find it (erasure leaves omni_state to this). A ticket
   * the helpdesk never got has no mapping: nothing to remove.
   */
  private async erase(event: TicketErasedEvent): Promise<'applied' | 'ignored' | 'done'> {
    const begun = await this.records.begin(event.id);
    if (begun === 'done') return 'done';
    const ticket = await this.records.lookup(event.ticketId);
    // First: an event of the ticket that comes after this one finds no mapping and must not make one.
    await this.records.markErased(event.ticketId);
    if (ticket) {
      if (!this.adapter.erase) throw new HelpdeskRefusedError('erase_unsupported', `the ${this.type} adapter cannot remove helpdesk ticket ${ticket.externalId}: delete it by hand`);
      await this.adapter.erase(ticket, event.ticketId);
      await this.records.forget(event.ticketId, ticket.externalId);
      this.log.info({ helpdesk: this.id, ticketId: event.ticketId, externalId: ticket.externalId, erasureId: event.erasureId }, 'ticket erased: helpdesk ticket removed, mapping forgotten');
    }
    await this.records.finish(event.id);
    return ticket ? 'applied' : 'ignored';
  }

  private async writeLateFirstMessage(event: TicketEvent, ticket: ExternalTicket, firstId: string): Promise<'applied' | 'ignored' | 'done'> {
    const key = `first-message:${firstId}`;
    const begun = await this.records.begin(key);
    let outcome: 'applied' | 'ignored' | 'done' = 'done';
    if (begun !== 'done') {
      outcome = await this.adapter.apply({ ...event, type: 'ticket.message' }, { ticket, uncertain: begun === 'uncertain' });
      await this.records.finish(key);
      this.log.info({ helpdesk: this.id, ticketId: event.ticketId, event: event.type, outcome }, 'first message written after the ticket was opened from a later event (it had been held back)');
    }
    await this.records.finish(event.id);
    return outcome;
  }

}

/** Who made the change an event announces (replies, notes, status changes), if anyone. */
function authorOf(event: TicketEvent): string | undefined {
  const e = event.entry;
  if (!e) return undefined;
  if (e.kind === 'outbound') return e.message.author.id;
  if (e.kind === 'note' || e.kind === 'status') return e.author.id;
  return undefined;
}
