/**
 * Compare-and-set paths with a conflict forced in the middle: another writer changes the ticket
 * between our read and our write, so the decision runs again on fresh data. What the caller does
 * afterwards (log entries, events, metrics, the command's answer) must follow the run whose write
 * landed, not the one that lost.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Ticket } from '../../src/core/schema.js';
import { metrics } from '../../src/core/metrics.js';
import { chatMessage, publishEvent } from '../helpers/events.js';
import { post, startApiHarness, until, type ApiHarness } from '../api/support.js';

let h: ApiHarness;
beforeAll(async () => {
  h = await startApiHarness();
});
afterAll(async () => h?.stop());

/**
 * The next compare-and-set write of `ticketId` first lets `interfere` write the ticket as another
 * replica would (the revision moves, so our write fails and the decision is made again).
 */
function conflictOnNextWrite(ticketId: string, interfere: (t: Ticket) => void): { fired: () => boolean } {
  const kv = (h.gw.gateway.router!.store as unknown as { tickets: { update(k: string, v: string, r: number): Promise<number> } }).tickets;
  const original = kv.update.bind(kv);
  let fired = false;
  kv.update = async (key, value, revision) => {
    if (!fired && key === ticketId) {
      fired = true;
      kv.update = original;
      const bucket = h.gw.gateway.bus.kv.tickets;
      const current = (await bucket.get(key))!;
      const t = current.json<Ticket>();
      interfere(t);
      await bucket.update(key, JSON.stringify(t), current.revision);
    }
    return original(key, value, revision);
  };
  return { fired: () => fired };
}

const status = (id: string, s: string) => h.api(`/v1/tickets/${id}/status`, post({ status: s }));
const logOf = async (id: string) => (await h.gw.gateway.router!.store.readLog(id)).map((l) => l.entry);

describe('router: inbound message', () => {
  it('does not log a reopen when the ticket was reopened by someone else between read and write', async () => {
    const first = chatMessage({ chat: 'cas-reopen', text: 'Не работает касса' });
    await publishEvent(h.gw.nc, first);
    const opened = await h.gw.waitForEvent((e) => e.type === 'ticket.message' && (e.entry as any).event.id === first.id);
    const id = opened.ticketId;
    expect((await status(id, 'closed')).status).toBe(200);

    // Our router still has the closed ticket cached and decides "reopen"; an agent reopens it first.
    const conflict = conflictOnNextWrite(id, (t) => {
      t.status = 'open';
      t.closedAt = undefined;
    });
    const again = chatMessage({ chat: 'cas-reopen', text: 'Всё ещё не работает' });
    await publishEvent(h.gw.nc, again);
    await h.gw.waitForEvent((e) => e.type === 'ticket.message' && (e.entry as any).event.id === again.id);
    expect(conflict.fired()).toBe(true);

    const entries = await logOf(id);
    const reopens = entries.filter((e) => e.kind === 'status' && e.author.id === 'router');
    expect(reopens).toEqual([]);
    expect((await h.gw.gateway.router!.store.get(id, { fresh: true }))!.value.status).toBe('open');
    expect(entries.filter((e) => e.kind === 'inbound')).toHaveLength(2);
  });
});

describe('commands: status', () => {
  it('reports the status it actually replaced when another writer changed it in between', async () => {
    const id = await h.openTicket('cas-status-1');
    const conflict = conflictOnNextWrite(id, (t) => {
      t.status = 'pending';
    });
    const r = await status(id, 'resolved');
    expect(conflict.fired()).toBe(true);
    expect(r.body).toMatchObject({ from: 'pending', status: 'resolved' });
    const change = (await logOf(id)).filter((e) => e.kind === 'status');
    expect(change).toEqual([expect.objectContaining({ from: 'pending', to: 'resolved' })]);
  });

  it('logs nothing when the other writer already set the same status', async () => {
    const id = await h.openTicket('cas-status-2');
    const conflict = conflictOnNextWrite(id, (t) => {
      t.status = 'closed';
      t.closedAt = new Date().toISOString();
    });
    const r = await status(id, 'closed');
    expect(conflict.fired()).toBe(true);
    expect(r.body).toMatchObject({ from: 'closed', status: 'closed' });
    expect((await logOf(id)).filter((e) => e.kind === 'status')).toEqual([]);
  });
});

describe('commands: reply', () => {
  it('leaves a ticket closed meanwhile closed, and answers with its real status', async () => {
    const id = await h.openTicket('cas-reply');
    const conflict = conflictOnNextWrite(id, (t) => {
      t.status = 'closed';
      t.closedAt = new Date().toISOString();
    });
    const r = await h.api(`/v1/tickets/${id}/replies`, post({ text: 'Готово' }));
    expect(r.status).toBe(202);
    expect(conflict.fired()).toBe(true);
    expect(r.body.status).toBe('closed');
    expect((await h.gw.gateway.router!.store.get(id, { fresh: true }))!.value.status).toBe('closed');
  });
});

describe('router: delivery outcome', () => {
  it('observes the first response once, from the run whose write landed', async () => {
    const id = await h.openTicket('cas-delivery');
    const count = async () => (await metrics.firstResponse.get()).values.find((v) => v.metricName === 'omnigate_first_response_seconds_count' && v.labels.channel === 'webhook')?.value ?? 0;
    const before = await count();
    let conflict: { fired: () => boolean } | undefined;
    // Armed when the channel receives the reply: the next write of the ticket is the delivery's.
    h.callbackStatus = (reply) => {
      if (reply.ticketId === id && !conflict) conflict = conflictOnNextWrite(id, (t) => void t.participants.push('colleague@example.ru'));
      return 200;
    };
    const r = await h.api(`/v1/tickets/${id}/replies`, post({ text: 'Перезагрузите кассу' }));
    expect(r.status).toBe(202);
    await h.gw.waitForEvent((e) => e.type === 'ticket.delivery' && e.ticketId === id);
    h.callbackStatus = () => 200;
    expect(conflict?.fired()).toBe(true);
    await until(async () => (await count()) === before + 1, 'the first-response observation');
    const t = (await h.gw.gateway.router!.store.get(id, { fresh: true }))!.value;
    expect(t.firstResponseAt).toBeTruthy();
    // Both writers' changes are there: ours was decided again on top of theirs.
    expect(t.participants).toContain('colleague@example.ru');
  });
});
