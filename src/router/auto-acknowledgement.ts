/**
 * The automatic acknowledgement of a newly opened ticket (router.autoAcknowledge): sent as a
 * reply through the command handler, so it is logged, ordered and idempotent like an agent's,
 * and rationed per sender so two mail robots answering each other stop within the hour.
 */
import type { Bus } from '../core/bus.js';
import { isCasConflict } from '../core/bus.js';
import type { Logger } from '../core/logger.js';
import type { Ticket } from '../core/schema.js';
import { hashKey } from '../core/subjects.js';
import type { CommandHandler } from './commands.js';

export interface AutoAckOptions {
  enabled: boolean;
  /**
   * The text for one ticket, rendered as it is sent: {ticket} is the ticket id, {name} the
   * customer's name, and the wording depends on whether the team is at work right now.
   */
  render: (vars: { ticket: string; name: string }) => string;
  /** At most this many acknowledgements per sender per hour: the last guard against mail loops. */
  perSenderPerHour: number;
}

/** One acknowledgement in a sender's hourly window. */
interface AckSlot {
  ticket?: string;
  at: number;
}

/**
 * Sends the auto-acknowledgement for a newly opened ticket, at most `perSenderPerHour` per sender
 * (a sliding window kept in KV with compare-and-set, so replicas share it).
 */
export async function autoAcknowledge(
  bus: Bus,
  commands: CommandHandler,
  o: AutoAckOptions,
  ticket: Ticket,
  senderKey: string,
  log: Logger,
): Promise<void> {
  if (!o.enabled) return;
  const key = `autoack.${hashKey(senderKey.toLowerCase())}`;
  const hourAgo = Date.now() - 3_600_000;
  for (;;) {
    const entry = await bus.kv.dedup.get(key);
    // Each slot names its ticket: the routing of a new ticket's first message is retried after a
    // failure further on (its hook runs again), and a retry must reuse its slot, not take another
    // (three retries used up a sender's hour). Bare numbers are slots of earlier versions.
    const stored = entry && entry.operation === 'PUT' ? (entry.json() as Array<number | AckSlot>) : [];
    const slots = stored.map((x): AckSlot => (typeof x === 'number' ? { at: x } : x)).filter((x) => x.at > hourAgo);
    if (slots.some((x) => x.ticket === ticket.id)) break;
    if (slots.length >= o.perSenderPerHour) {
      log.info({ ticketId: ticket.id }, 'auto-acknowledgement skipped: sender over the hourly limit');
      return;
    }
    const next = JSON.stringify([...slots, { ticket: ticket.id, at: Date.now() } satisfies AckSlot]);
    try {
      if (entry && entry.operation === 'PUT') await bus.guardedUpdate('dedup', key, next, entry.revision);
      else await bus.kv.dedup.create(key, next);
      break;
    } catch (err) {
      if (!isCasConflict(err)) throw err;
    }
  }
  const text = o.render({ ticket: ticket.id, name: ticket.contact.displayName ?? '' });
  const result = await commands.reply(
    { ticketId: ticket.id, text, idempotencyKey: 'auto-acknowledgement', author: { id: 'omnigate', name: 'auto-acknowledgement' } },
    { purpose: 'acknowledgement' },
  );
  if (!result.ok) log.warn({ ticketId: ticket.id, error: result.error }, 'auto-acknowledgement failed');
}
