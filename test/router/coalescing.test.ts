/**
 * Issue 16: messages of one conversation that queue up behind each other are applied to their
 * ticket with one compare-and-set, and everything else stays as it was: each message its own log
 * entry and events, in publish order, counted once, even when the batch fails half-way.
 *
 * Deterministic: the first message's routing is held (its processed marker waits) while the rest
 * of the burst is delivered, so they queue in its lane and are handed over together.
 */
import { afterAll, beforeAll, beforeEach, describe, expect, it, vi } from 'vitest';
import { startGateway, type TestGateway } from '../helpers/gateway.js';
import { chatMessage, publishEvent } from '../helpers/events.js';
import { metrics } from '../../src/core/metrics.js';
import { scanStream } from '../../src/core/stream-scan.js';
import { Streams } from '../../src/core/subjects.js';
import { IndexKeys } from '../../src/router/thread-keys.js';
import { Journal } from '../../src/router/journal.js';
import { Threader } from '../../src/router/threading.js';
import { MessageRouter, type QueuedMessage } from '../../src/router/inbound-messages.js';
import { NotOwnedError } from '../../src/router/inbound-consumer.js';
import type { InboundMessage, TicketEvent } from '../../src/core/schema.js';

let gw: TestGateway;
beforeAll(async () => {
  gw = await startGateway({});
});
afterAll(async () => gw?.stop());

const doneKey = (e: InboundMessage) => IndexKeys.platformMessage(e.channel, e.account, e.platform.messageId);
const counter = async (c: { get(): Promise<{ values: Array<{ value: number }> }> }) => (await c.get()).values.reduce((n, v) => n + v.value, 0);

async function logOf(ticketId: string) {
  return (await gw.gateway.router!.store.readLog(ticketId)).map((l) => l.entry);
}

/** Every ticket event of one ticket, in stream order. */
async function eventsOf(ticketId: string): Promise<TicketEvent[]> {
  const out: TicketEvent[] = [];
  await scanStream(gw.gateway.bus, Streams.events, { filter: 'omni.events.ticket.>' }, (m) => {
    const e = m.json<TicketEvent>();
    if (e.ticketId === ticketId) out.push(e);
  });
  return out;
}

/** Unacked deliveries across the inbound consumers: the burst is with the router once they all are. */
async function delivered(): Promise<number> {
  let n = 0;
  for await (const c of gw.gateway.bus.jsm.consumers.list(Streams.inbound)) n += c.num_ack_pending;
  return n;
}

/** Holds the routing of `first` (its processed marker, the last step) until `release` is called. */
function holdRouting(first: InboundMessage) {
  const store = gw.gateway.router!.store;
  const index = store.index.bind(store);
  let release!: () => void;
  const released = new Promise<void>((r) => (release = r));
  const spy = vi.spyOn(store, 'index').mockImplementation(async (key, ticketId) => {
    if (key === doneKey(first)) await released;
    return index(key, ticketId);
  });
  return { release, restore: () => spy.mockRestore() };
}

async function burst(chat: string, n: number): Promise<InboundMessage[]> {
  const all = Array.from({ length: n }, (_, i) => chatMessage({ chat, id: `${chat}-${i}`, text: `Сообщение ${i}` }));
  const hold = holdRouting(all[0]!);
  try {
    await publishEvent(gw.nc, all[0]!);
    for (const e of all.slice(1)) await publishEvent(gw.nc, e);
    // A bound for a hang: the burst is delivered in milliseconds.
    for (let waited = 0; (await delivered()) < n && waited < 20_000; waited += 50) await new Promise((r) => setTimeout(r, 50));
  } finally {
    hold.release();
    hold.restore();
  }
  return all;
}

describe('a burst from one customer', () => {
  it('shares ticket updates; log, events and counts are as if routed one by one', async () => {
    const before = await counter(metrics.coalesced);
    const all = await burst('burst', 40);
    const last = await gw.waitForEvent((e) => e.type === 'ticket.message' && (e.entry as any)?.event?.id === all.at(-1)!.id);
    const ids = all.map((e) => e.id);
    const log = await logOf(last.ticketId);
    expect(log.filter((e) => e.kind === 'inbound').map((e) => (e as { event: { id: string } }).event.id)).toEqual(ids);
    const ticket = (await gw.ticket(last.ticketId))!;
    expect(ticket.messageCount).toBe(40);
    expect(ticket.recentEvents).toEqual(ids.slice(-16));
    const events = await eventsOf(last.ticketId);
    expect(events.filter((e) => e.type === 'ticket.message').map((e) => (e.entry as { event: { id: string } }).event.id)).toEqual(ids);
    expect(events.filter((e) => e.type === 'ticket.created')).toHaveLength(1);
    // 39 queued behind the held one: at most 16 per update, so at least 39 - 3 shared an update.
    expect((await counter(metrics.coalesced)) - before).toBeGreaterThanOrEqual(36);
    for (const e of all) expect(await gw.gateway.router!.store.lookup(doneKey(e))).not.toBeNull();
  }, 60_000);

  it('reopens a closed ticket once, from the first of a batch; each event carries the status its message left', async () => {
    const opener = chatMessage({ chat: 'reopen', id: 'reopen-opener' });
    await publishEvent(gw.nc, opener);
    const opened = await gw.waitForEvent((e) => e.type === 'ticket.message' && (e.entry as any)?.event?.id === opener.id);
    const all = Array.from({ length: 6 }, (_, i) => chatMessage({ chat: 'reopen', id: `reopen-${i}` }));
    const before = await counter(metrics.coalesced);
    const hold = holdRouting(all[0]!);
    try {
      await publishEvent(gw.nc, all[0]!);
      await gw.waitForEvent((e) => e.type === 'ticket.message' && (e.entry as any)?.event?.id === all[0]!.id);
      // Resolved by an agent while the lane is busy: the batch queued behind finds it closed.
      await gw.gateway.router!.store.mutate(opened.ticketId, (t) => ({ ...t, status: 'resolved', closedAt: new Date().toISOString() }));
      for (const e of all.slice(1)) await publishEvent(gw.nc, e);
      for (let waited = 0; (await delivered()) < all.length && waited < 20_000; waited += 50) await new Promise((r) => setTimeout(r, 50));
    } finally {
      hold.release();
      hold.restore();
    }
    const last = await gw.waitForEvent((e) => e.type === 'ticket.message' && (e.entry as any)?.event?.id === all.at(-1)!.id);
    expect(last.ticketId).toBe(opened.ticketId);
    const statuses = (await logOf(opened.ticketId)).filter((e) => e.kind === 'status');
    expect(statuses).toEqual([expect.objectContaining({ from: 'resolved', to: 'open', reason: expect.stringContaining('customer wrote') })]);
    const messages = (await eventsOf(opened.ticketId)).filter((e) => e.type === 'ticket.message');
    expect(messages.map((e) => e.status)).toEqual(['new', 'new', 'open', 'open', 'open', 'open', 'open']);
    // Why each landed there, as routed one by one: only the first of the batch reopened it.
    const rules = (await logOf(opened.ticketId)).filter((e) => e.kind === 'inbound').map((e) => (e as { match: { rule: string } }).match.rule);
    expect(rules).toEqual(['new-ticket', 'open-conversation', 'reopened', 'open-conversation', 'open-conversation', 'open-conversation', 'open-conversation']);
    expect((await gw.ticket(opened.ticketId))!.messageCount).toBe(7);
    // The five queued behind the held one: one update for all of them.
    expect((await counter(metrics.coalesced)) - before).toBe(4);
  }, 60_000);

  it('a batch that fails half-way is routed again whole: nothing twice, nothing out of order', async () => {
    const chat = 'half-way';
    const all = Array.from({ length: 12 }, (_, i) => chatMessage({ chat, id: `${chat}-${i}` }));
    const store = gw.gateway.router!.store;
    const index = store.index.bind(store);
    let failures = 0;
    // The 8th message's marker fails once: the messages before it were routed whole, it and
    // those after it were counted on the ticket and logged, but have no marker.
    const spy = vi.spyOn(store, 'index').mockImplementation(async (key, ticketId) => {
      if (key === doneKey(all[0]!)) await new Promise((r) => setTimeout(r, 1_000));
      if (key === doneKey(all[7]!) && failures++ === 0) throw new Error('JetStream did not answer (test)');
      return index(key, ticketId);
    });
    try {
      for (const e of all) await publishEvent(gw.nc, e);
      const last = await gw.waitForEvent((e) => e.type === 'ticket.message' && (e.entry as any)?.event?.id === all.at(-1)!.id, 30_000);
      for (let waited = 0; (await delivered()) > 0 && waited < 20_000; waited += 50) await new Promise((r) => setTimeout(r, 50));
      expect(failures).toBeGreaterThan(1);
      const inbound = (await logOf(last.ticketId)).filter((e) => e.kind === 'inbound').map((e) => (e as { event: { id: string } }).event.id);
      expect(inbound).toEqual(all.map((e) => e.id));
      expect((await gw.ticket(last.ticketId))!.messageCount).toBe(all.length);
      const messages = (await eventsOf(last.ticketId)).filter((e) => e.type === 'ticket.message');
      expect(messages.map((e) => (e.entry as { event: { id: string } }).event.id)).toEqual(all.map((e) => e.id));
    } finally {
      spy.mockRestore();
    }
  }, 60_000);
});

describe('a batch, routed again', () => {
  /** The router's message routing on the test gateway's bus and ticket store, driven directly. */
  function messageRouter(hooks: ConstructorParameters<typeof MessageRouter>[4] = {}) {
    const store = gw.gateway.router!.store;
    return new MessageRouter(gw.gateway.bus, store, new Threader(store, { reopenWindowMs: 3_600_000, now: Date.now }), new Journal(gw.gateway.bus), hooks, { ticketPrefix: 'T-', csatWindowMs: 60_000, csatLowRating: 2 });
  }
  const queued = (e: InboundMessage): QueuedMessage => ({ e, suspect: false, settled: false, publishedNanos: 0 });
  /** What route() reported settled, across attempts: each message once (the routed metric counts it then). */
  let reported: QueuedMessage[] = [];
  const settled = (q: QueuedMessage) => reported.push(q);
  beforeEach(() => {
    reported = [];
  });

  it('starts nothing more once its unit is no longer ours; the next attempt skips what was settled', async () => {
    const router = messageRouter();
    const batch = ['lost-a', 'lost-b', 'lost-c'].map((chat) => queued(chatMessage({ chat, id: `${chat}-1` })));
    let asked = 0;
    // Ours for the first message: asked before routing it and again before its writes.
    await expect(router.route(batch, false, () => asked++ < 2, settled)).rejects.toBeInstanceOf(NotOwnedError);
    expect(batch.map((q) => q.settled)).toEqual([true, false, false]);
    expect(await gw.gateway.router!.store.lookup(doneKey(batch[1]!.e))).toBeNull();
    // Lost between its update and its writes (the replica froze while the update was on its way):
    // nothing is written; the next attempt finds the update recorded and writes the rest once.
    const late = [queued(chatMessage({ chat: 'lost-d', id: 'lost-d-1' }))];
    asked = 0;
    await expect(router.route(late, false, () => asked++ < 1, settled)).rejects.toBeInstanceOf(NotOwnedError);
    expect(late[0]!.settled).toBe(false);
    expect(await gw.gateway.router!.store.lookup(doneKey(late[0]!.e))).toBeNull();
    batch.push(...late);
    await router.route(batch, true, () => true, settled);
    expect(batch.every((q) => q.settled)).toBe(true);
    for (const q of batch) {
      const hit = await gw.gateway.router!.store.lookup(doneKey(q.e));
      const inbound = (await logOf(hit!.value)).filter((e) => e.kind === 'inbound');
      expect(inbound).toHaveLength(1);
    }
  }, 60_000);

  it('parks a loop-guarded message once although a message after it failed and was retried', async () => {
    const router = messageRouter();
    const store = gw.gateway.router!.store;
    const auto = { ...chatMessage({ chat: 'guarded', id: 'guarded-auto' }), automated: 'auto-reply' as const };
    const next = chatMessage({ chat: 'guarded', id: 'guarded-next' });
    const batch = [queued(auto), queued(next)];
    const parked = vi.spyOn(gw.gateway.bus.deadLetters, 'park');
    const index = store.index.bind(store);
    let failures = 0;
    const spy = vi.spyOn(store, 'index').mockImplementation(async (key, ticketId) => {
      if (key === doneKey(next) && failures++ === 0) throw new Error('JetStream did not answer (test)');
      return index(key, ticketId);
    });
    try {
      await expect(router.route(batch, false, () => true, settled)).rejects.toThrow('did not answer');
      await router.route(batch, true, () => true, settled);
      expect(parked.mock.calls.filter(([r]) => r.code === 'auto-reply')).toHaveLength(1);
      expect(batch.every((q) => q.settled)).toBe(true);
      expect(reported).toEqual(batch);
    } finally {
      spy.mockRestore();
      parked.mockRestore();
    }
  }, 60_000);

  it('runs the ticket-opened hook again when it failed: the processed markers come after it', async () => {
    const opened: string[] = [];
    const router = messageRouter({
      onTicketOpened: async (t) => {
        opened.push(t.id);
        if (opened.length === 1) throw new Error('acknowledgement not sent (test)');
      },
    });
    const batch = [0, 1, 2].map((i) => queued(chatMessage({ chat: 'hooked', id: `hooked-${i}` })));
    await expect(router.route(batch, false, () => true, settled)).rejects.toThrow('acknowledgement not sent');
    expect(await gw.gateway.router!.store.lookup(doneKey(batch[0]!.e))).toBeNull();
    await router.route(batch, true, () => true, settled);
    expect(opened).toHaveLength(2);
    expect(new Set(opened).size).toBe(1);
    for (const q of batch) expect(await gw.gateway.router!.store.lookup(doneKey(q.e))).not.toBeNull();
  }, 60_000);
});
