/**
 * Issue 16, in one process and deterministic: an inbound message that is still being routed when
 * its ack_wait passes, or whose routing failed after the ticket was updated, must count once and
 * keep its place in the conversation.
 */
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { startGateway, type TestGateway } from '../helpers/gateway.js';
import { chatMessage, publishEvent } from '../helpers/events.js';
import { metrics } from '../../src/core/metrics.js';
import { IndexKeys } from '../../src/router/thread-keys.js';
import type { InboundMessage } from '../../src/core/schema.js';

let gw: TestGateway;
beforeAll(async () => {
  gw = await startGateway({ router: { ackWait: '1s' } });
});
afterAll(async () => gw?.stop());

const doneKey = (e: InboundMessage) => IndexKeys.platformMessage(e.channel, e.account, e.platform.messageId);
const duplicates = async () => (await metrics.duplicates.get()).values.reduce((n, v) => n + v.value, 0);

async function inboundLog(ticketId: string): Promise<string[]> {
  return (await gw.gateway.router!.store.readLog(ticketId)).filter((l) => l.entry.kind === 'inbound').map((l) => (l.entry as { event: { id: string } }).event.id);
}

describe('a message past its ack_wait while it is routed', () => {
  it('is kept alive: no copy comes back while it is held, it counts once', async () => {
    const store = gw.gateway.router!.store;
    const slow = chatMessage({ chat: 'stalled', id: 'stalled-1' });
    const index = store.index.bind(store);
    // The processed marker (the last step) takes three ack_waits.
    const spy = vi.spyOn(store, 'index').mockImplementation(async (key, ticketId) => {
      if (key === doneKey(slow)) await new Promise((r) => setTimeout(r, 3_500));
      return index(key, ticketId);
    });
    try {
      const before = await duplicates();
      await publishEvent(gw.nc, slow);
      const routed = await gw.waitForEvent((e) => e.type === 'ticket.message' && (e.entry as any)?.event?.id === slow.id);
      const next = chatMessage({ chat: 'stalled', id: 'stalled-2' });
      await publishEvent(gw.nc, next);
      await gw.waitForEvent((e) => e.type === 'ticket.message' && (e.entry as any)?.event?.id === next.id, 20_000);
      expect(await inboundLog(routed.ticketId)).toEqual([slow.id, next.id]);
      expect((await gw.ticket(routed.ticketId))!.messageCount).toBe(2);
      // No copy was redelivered and routed (it would have met the processed marker).
      expect(await duplicates()).toBe(before);
    } finally {
      spy.mockRestore();
    }
  }, 60_000);
});

describe('a routing that fails after the ticket was updated', () => {
  it('is retried in place: newer messages of the conversation wait, the event counts once', async () => {
    const store = gw.gateway.router!.store;
    const first = chatMessage({ chat: 'failing', id: 'failing-0' });
    const index = store.index.bind(store);
    let failed = 0;
    // The marker write fails once: the ticket counted the event and the log has it, the marker does not.
    const spy = vi.spyOn(store, 'index').mockImplementation(async (key, ticketId) => {
      if (key === doneKey(first) && failed++ === 0) throw new Error('JetStream did not answer (test)');
      return index(key, ticketId);
    });
    try {
      await publishEvent(gw.nc, first);
      // More than a ticket remembers in recentEvents: had they passed the failed one, its retry would count again.
      const rest = Array.from({ length: 24 }, (_, i) => chatMessage({ chat: 'failing', id: `failing-${i + 1}` }));
      for (const e of rest) await publishEvent(gw.nc, e);
      const last = await gw.waitForEvent((e) => e.type === 'ticket.message' && (e.entry as any)?.event?.id === rest.at(-1)!.id, 30_000);
      // Late copies, had there been any, come back within a few ack_waits.
      await new Promise((r) => setTimeout(r, 3_000));
      expect(failed).toBeGreaterThan(1);
      expect(await inboundLog(last.ticketId)).toEqual([first, ...rest].map((e) => e.id));
      expect((await gw.ticket(last.ticketId))!.messageCount).toBe(rest.length + 1);
    } finally {
      spy.mockRestore();
    }
  }, 60_000);
});
