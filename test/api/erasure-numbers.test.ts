/**
 * An erased ticket's number is never given again. An outside trial erased a customer, who then
 * wrote again: the router, which had their conversation's binding cached, found no record behind
 * it and took that for a crash between claiming a number and writing the ticket — and opened the
 * new conversation under the erased number (T-1056 twice). A helpdesk or webhook receiver that
 * still held T-1056 would have taken the new messages into the erased customer's ticket.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createLogger } from '../../src/core/logger.js';
import { Eraser } from '../../src/core/erasure.js';
import { IndexKeys } from '../../src/router/thread-keys.js';
import { startApiHarness, type ApiHarness } from './support.js';

let h: ApiHarness;
beforeAll(async () => {
  h = await startApiHarness();
}, 120_000);
afterAll(async () => h?.stop());

const eraser = () => new Eraser(h.gw.gateway.bus, createLogger({ level: 'silent' }));

describe('an erased ticket\'s number', () => {
  it('is not given to the customer\'s next conversation, though the router still had its binding cached', async () => {
    const first = await h.openTicket('c55-1', 'cust-55', 'Удалите мои данные');
    // Erased as the route does it on another replica: this router's caches are left as they were.
    await eraser().erase({ ticketIds: [first], identities: ['cust-55'] }, { reason: 'api', requestedBy: 'test' });
    const again = await h.openTicket('c55-2', 'cust-55', 'Здравствуйте, снова я');
    expect(again).not.toBe(first);
    const ticket = await h.gw.gateway.router!.store.get(again, { fresh: true });
    expect(ticket?.value.messageCount).toBe(1);
  });

  it('is not given either when the erasure stopped between the ticket and its binding: the binding is moved to a new number', async () => {
    const first = await h.openTicket('c56-1', 'cust-56', 'Первое обращение');
    const store = h.gw.gateway.router!.store;
    const ticket = (await store.get(first, { fresh: true }))!.value;
    // Only the record goes (as an erasure that died before purging the thread index would leave it).
    await h.gw.gateway.bus.kv.tickets.purge(first);
    const again = await h.openTicket('c56-2', 'cust-56', 'Второе');
    expect(again).not.toBe(first);
    const conversation = IndexKeys.conversation(ticket.channel, ticket.account, ticket.conversation.id, ticket.conversation.threadId);
    const bound = await h.gw.gateway.bus.kv.threads.get(IndexKeys.conversationEpoch(conversation, 0));
    expect(bound?.string()).toBe(again);
    // And the conversation goes on in the new ticket.
    expect(await h.openTicket('c56-3', 'cust-56', 'Третье')).toBe(again);
  });
});
