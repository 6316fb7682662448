/**
 * The helpdesk host's durable records, per configured helpdesk `<id>`:
 *
 * - omni_state `helpdesk.<id>.ticket.<ticket>` → the helpdesk ticket (JSON ExternalTicket), and
 *   `helpdesk.<id>.external.<helpdesk ticket>` → the omnigate ticket id (the way back for answers).
 *   Kept as long as the ticket: purged after the helpdesk ticket was removed on `ticket.erased`.
 * - omni_dedup `helpdesk.<id>.event.<hash>`: `started` while an event is being applied, `done`
 *   after. A redelivered `done` event is skipped; a `started` one is applied with `uncertain`.
 * - omni_dedup `helpdesk.<id>.answer.<hash>`: an agent answer taken (the command's result). The
 *   dedup bucket's TTL (`nats.dedupTtl`, 30 days) bounds both; the router's command idempotency
 *   (same TTL) is the second guard on answers.
 * - omni_dedup `helpdesk.<id>.erased.<ticket>`: the ticket was erased. An event the router
 *   published for it while the erasure ran (a message of the person being erased) must not open
 *   the helpdesk ticket again; kept for the dedup bucket's TTL, long past any such straggler.
 * - omni_state `helpdesk.<id>.s.<key>`: the adapter's own state (poll cursors).
 */
import type { KV } from '@nats-io/kv';
import { isCasConflict } from '../core/bus.js';
import { hashKey, kvSafe } from '../core/subjects.js';
import type { ExternalTicket, HelpdeskState } from './contract.js';

export class HelpdeskRecords {
  constructor(
    private readonly id: string,
    private readonly state: KV,
    private readonly dedup: KV,
  ) {}

  private key(kind: string, value: string): string {
    return `helpdesk.${kvSafe(this.id)}.${kind}.${kvSafe(value)}`;
  }

  async lookup(ticketId: string): Promise<ExternalTicket | null> {
    const e = await this.state.get(this.key('ticket', ticketId));
    return e && e.operation === 'PUT' ? (e.json() as ExternalTicket) : null;
  }

  async ticketOf(externalId: string): Promise<string | null> {
    const e = await this.state.get(this.key('external', externalId));
    return e && e.operation === 'PUT' ? e.string() : null;
  }

  /** The way back first: an answer arriving in between finds its ticket either way. */
  async record(ticketId: string, ticket: ExternalTicket): Promise<void> {
    await this.state.put(this.key('external', ticket.externalId), ticketId);
    await this.state.put(this.key('ticket', ticketId), JSON.stringify(ticket));
  }

  /**
   * The ticket was erased: both ways of the mapping go, with their history (a purge; a delete
   * would keep the old values in the bucket's history). After the helpdesk ticket was removed.
   */
  async forget(ticketId: string, externalId: string): Promise<void> {
    await this.state.purge(this.key('ticket', ticketId));
    await this.state.purge(this.key('external', externalId));
  }

  /** Remembers that `ticketId` was erased: later events of it are not written (see above). */
  async markErased(ticketId: string): Promise<void> {
    await this.dedup.put(this.key('erased', ticketId), '1');
  }

  async wasErased(ticketId: string): Promise<boolean> {
    const e = await this.dedup.get(this.key('erased', ticketId));
    return e?.operation === 'PUT';
  }

  /**
   * Marks an event as being applied. `done`: it was applied before (skip it); `uncertain`: an
   * earlier attempt started and never finished (it may have reached the helpdesk); `first`.
   */
  async begin(eventId: string): Promise<'first' | 'uncertain' | 'done'> {
    const key = `helpdesk.${kvSafe(this.id)}.event.${hashKey(eventId)}`;
    try {
      await this.dedup.create(key, 'started');
      return 'first';
    } catch (err) {
      if (!isCasConflict(err)) throw err;
      const e = await this.dedup.get(key);
      if (e?.operation === 'PUT' && e.string() === 'done') return 'done';
      return 'uncertain';
    }
  }

  async finish(eventId: string): Promise<void> {
    await this.dedup.put(`helpdesk.${kvSafe(this.id)}.event.${hashKey(eventId)}`, 'done');
  }

  /** Forget an attempt that provably did not reach the helpdesk (it refused), so a replay starts clean. */
  async abandon(eventId: string): Promise<void> {
    await this.dedup.delete(`helpdesk.${kvSafe(this.id)}.event.${hashKey(eventId)}`);
  }

  async taken(answerId: string): Promise<boolean> {
    const e = await this.dedup.get(`helpdesk.${kvSafe(this.id)}.answer.${hashKey(answerId)}`);
    return !!e && e.operation === 'PUT';
  }

  async markTaken(answerId: string, result: string): Promise<void> {
    await this.dedup.put(`helpdesk.${kvSafe(this.id)}.answer.${hashKey(answerId)}`, result);
  }

  /** The adapter's own key space. */
  adapterState(): HelpdeskState {
    const k = (key: string) => `helpdesk.${kvSafe(this.id)}.s.${kvSafe(key)}`;
    return {
      get: async (key) => {
        const e = await this.state.get(k(key));
        return e && e.operation === 'PUT' ? { value: e.string(), revision: e.revision } : null;
      },
      put: (key, value) => this.state.put(k(key), value),
      delete: (key) => this.state.delete(k(key)),
    };
  }
}
