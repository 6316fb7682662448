/**
 * Compare-and-set for automated actions (SLA marks, satisfaction requests). Whether this call's
 * change is the one stored is read from the record the write returned — it carries this call's
 * own operation id — never from a flag set inside the callback, which mutate() may run several
 * times against fresher copies of the ticket.
 */
import { randomUUID } from 'node:crypto';
import type { Ticket } from '../core/schema.js';
import type { TicketStore } from './tickets.js';

/** Applies `change` (null: leave the ticket alone); returns the stored ticket if this call's change won, else null. */
export async function applyOwned(store: TicketStore, id: string, change: (t: Ticket) => Ticket | null): Promise<Ticket | null> {
  const op = randomUUID();
  const stored = await store.mutate(id, (t) => {
    const next = change(t);
    if (next) next.automationOp = op;
    return next;
  });
  return stored?.automationOp === op ? stored : null;
}
