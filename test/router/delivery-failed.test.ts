/**
 * A reply that failed for good is visible on the ticket: back to `open` with lastDelivery failed
 * and the reason, listed in failedReplies until a replay of it is sent, counted as unanswered by the SLA watcher, announced as ticket.delivery_failed.
 * And ticket.created carries the conversation, the contact and the first message, valid against
 * the published JSON Schema. Router and a real nats-server; statuses published as a connector would.
 */
import { readFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { z } from 'zod';
import { startGateway, type TestGateway } from '../helpers/gateway.js';
import { chatMessage, publishEvent } from '../helpers/events.js';
import { failWrites } from '../helpers/fail-writes.js';
import type { DeliveryStatus, LogEntry } from '../../src/core/schema.js';

const H = 60 * 60_000;
let gw: TestGateway;

beforeAll(async () => {
  gw = await startGateway({
    router: { sla: { enabled: true, firstResponse: '1h', noAnswer: '2h', businessHours: null, checkInterval: '1h', escalate: { channel: 'webhook', account: 'leads', conversationId: 'lead-chat' } } },
    // The escalation target must be a configured connector (config check); nothing is sent to it here.
    connectors: [{ type: 'webhook', account: 'leads', secret: 'leads-secret-0123456789', callbackUrl: 'http://127.0.0.1:59/never' }],
  });
});
afterAll(async () => gw?.stop());

async function reportStatus(s: Omit<DeliveryStatus, 'v' | 'type' | 'channel' | 'account' | 'attempts' | 'at'> & { at?: string }) {
  const status: DeliveryStatus = { v: 1, type: 'delivery.status', channel: 'webhook', account: 'site', attempts: 1, at: new Date().toISOString(), ...s };
  const { jetstream } = await import('@nats-io/jetstream');
  await jetstream(gw.nc).publish(`omni.status.webhook.site`, JSON.stringify(status), { msgID: `status:${s.outboundId}:${s.status}` });
}

/** A customer's ticket (one message in `chat`) and the agent replies sent to it, in order. */
async function ticketWithReplies(chat: string, texts: [string, string]): Promise<{ ticketId: string; outboundIds: [string, string] }> {
  await publishEvent(gw.nc, chatMessage({ chat, from: `client-${chat}` }));
  const { ticketId } = await gw.waitForEvent((e) => e.type === 'ticket.created' && e.conversation?.id === chat);
  const reply = async (text: string) => (await gw.request('omni.cmd.reply', { ticketId, text })).result.outboundId as string;
  const first = await reply(texts[0]);
  return { ticketId, outboundIds: [first, await reply(texts[1])] };
}

describe('failed delivery on the ticket', () => {
  it('ticket.created carries conversation, contact and the first message, and validates against its JSON Schema', async () => {
    const first = chatMessage({ chat: 'created-1', from: 'client-created', text: 'Первое сообщение', kind: 'group' });
    await publishEvent(gw.nc, first);
    const created = await gw.waitForEvent((e) => e.type === 'ticket.created' && e.conversation?.id === 'created-1');
    expect(created.conversation).toMatchObject({ id: 'created-1', kind: 'group' });
    expect(created.contact).toMatchObject({ id: 'client-created', displayName: 'Покупатель' });
    const entry = created.entry as Extract<LogEntry, { kind: 'inbound' }>;
    expect(entry).toMatchObject({ kind: 'inbound', match: { rule: 'new-ticket' } });
    expect(entry.event).toMatchObject({ id: first.id, text: 'Первое сообщение' });
    const published = JSON.parse(readFileSync(new URL('../../docs/schema/ticket-event.json', import.meta.url), 'utf8')) as Record<string, unknown>;
    const schema = z.fromJSONSchema(published as never);
    const wire = JSON.parse(JSON.stringify(created)) as unknown;
    expect(schema.safeParse(wire).success).toBe(true);
    const { ticketId: _dropped, ...withoutId } = wire as Record<string, unknown>;
    expect(schema.safeParse(withoutId).success).toBe(false); // the schema does check
    expect((published.required as string[]) ?? []).toEqual(expect.arrayContaining(['type', 'ticketId']));
    expect(Object.keys(published.properties as object)).toEqual(expect.arrayContaining(['conversation', 'contact', 'entry']));
  });

  it('a failed reply puts a pending ticket back to open with the reason, announces it, and the SLA sees no answer', async () => {
    await publishEvent(gw.nc, chatMessage({ chat: 'fail-1', from: 'client-fail' }));
    const created = await gw.waitForEvent((e) => e.type === 'ticket.created' && e.conversation?.id === 'fail-1');
    const ticketId = created.ticketId;
    // A second ticket whose reply is still on its way: pending, and no SLA breach for it.
    await publishEvent(gw.nc, chatMessage({ chat: 'fail-2', from: 'client-waiting' }));
    const other = await gw.waitForEvent((e) => e.type === 'ticket.created' && e.conversation?.id === 'fail-2');
    await gw.request('omni.cmd.reply', { ticketId: other.ticketId, text: 'Ответ в пути' });

    const reply = await gw.request('omni.cmd.reply', { ticketId, text: 'Ответ, который не дойдёт' });
    expect(reply).toMatchObject({ ok: true, result: { status: 'pending' } });
    const outboundId = reply.result.outboundId as string;
    await reportStatus({ outboundId, ticketId, status: 'failed', reason: 'blocked_by_user: the user blocked the bot' });

    const failed = await gw.waitForEvent((e) => e.type === 'ticket.delivery_failed' && e.ticketId === ticketId);
    expect(failed.status).toBe('open');
    expect(failed.lastDelivery).toMatchObject({ status: 'failed', reason: 'blocked_by_user: the user blocked the bot', outboundId });
    expect((failed.entry as Extract<LogEntry, { kind: 'delivery' }>).status).toMatchObject({ status: 'failed', outboundId });
    const statusEvent = await gw.waitForEvent((e) => e.type === 'ticket.status' && e.ticketId === ticketId);
    expect(statusEvent.entry).toMatchObject({ kind: 'status', from: 'pending', to: 'open', reason: expect.stringContaining('blocked_by_user') });
    const ticket = await gw.ticket(ticketId);
    expect(ticket).toMatchObject({ status: 'open', lastDelivery: { status: 'failed', reason: 'blocked_by_user: the user blocked the bot' } });
    expect(ticket!.firstResponseAt).toBeUndefined();
    expect(ticket!.lastOutboundAt).toBeUndefined();

    // Two hours on: the failed ticket breaches first response (as does the untouched one from the
    // test above); the pending one does not.
    expect(await gw.gateway.sla!.check(Date.now() + 2 * H)).toBe(2);
    const breach = await gw.waitForEvent((e) => e.type === 'ticket.sla' && e.ticketId === ticketId);
    expect(breach.entry).toMatchObject({ kind: 'sla', breach: 'first_response' });
    expect((await gw.ticket(other.ticketId))!.sla).toBeUndefined();

    // A later reply that is sent clears it, and the ticket is pending again.
    const again = await gw.request('omni.cmd.reply', { ticketId, text: 'Пишем ещё раз' });
    await reportStatus({ outboundId: again.result.outboundId, ticketId, status: 'sent', platformMessageId: 'pm-2' });
    await gw.waitForEvent((e) => e.type === 'ticket.delivery' && e.ticketId === ticketId && (e.entry as Extract<LogEntry, { kind: 'delivery' }>).status.status === 'sent');
    const after = await gw.ticket(ticketId);
    expect(after).toMatchObject({ status: 'pending', lastDelivery: { status: 'sent', outboundId: again.result.outboundId } });
    expect(after!.lastDelivery!.reason).toBeUndefined();
    // The first reply never reached the customer: still listed, though the newest outcome is `sent`.
    expect(after!.failedReplies).toEqual([{ outboundId, at: expect.any(String), reason: 'blocked_by_user: the user blocked the bot' }]);
    expect(failed.failedReplies).toEqual(after!.failedReplies);

    // A replay of it that goes out takes it off.
    await reportStatus({ outboundId, ticketId, status: 'sent', platformMessageId: 'pm-1', round: 1 });
    await gw.waitForEvent((e) => e.type === 'ticket.delivery' && e.ticketId === ticketId && (e.entry as Extract<LogEntry, { kind: 'delivery' }>).status.outboundId === outboundId && (e.entry as Extract<LogEntry, { kind: 'delivery' }>).status.status === 'sent');
    expect((await gw.ticket(ticketId))!.failedReplies).toBeUndefined();
  });

  it('once its failed replies were replayed and sent, a ticket the failures reopened goes back to the status they replaced, with the reason logged', async () => {
    const { ticketId, outboundIds: [first, second] } = await ticketWithReplies('replayed-1', ['Первый ответ', 'Второй ответ']);
    const dlv = (e: { entry?: unknown }) => (e.entry as Extract<LogEntry, { kind: 'delivery' }>).status;
    await reportStatus({ outboundId: first, ticketId, status: 'failed', reason: 'network: timeout' });
    await gw.waitForEvent((e) => e.type === 'ticket.delivery_failed' && e.ticketId === ticketId);
    await reportStatus({ outboundId: second, ticketId, status: 'failed', reason: 'network: timeout' });
    await expect.poll(async () => (await gw.ticket(ticketId))?.failedReplies?.length, { timeout: 20_000 }).toBe(2);
    expect((await gw.ticket(ticketId))?.status).toBe('open');

    // The first replayed and sent: the second still never reached the customer, the ticket stays open.
    await reportStatus({ outboundId: first, ticketId, status: 'sent', round: 1 });
    await gw.waitForEvent((e) => e.type === 'ticket.delivery' && e.ticketId === ticketId && dlv(e).outboundId === first && dlv(e).status === 'sent');
    expect(await gw.ticket(ticketId)).toMatchObject({ status: 'open', failedReplies: [{ outboundId: second }] });

    // The last one sent: the customer has every answer, the ticket waits for them again.
    await reportStatus({ outboundId: second, ticketId, status: 'sent', round: 1 });
    const back = await gw.waitForEvent((e) => e.type === 'ticket.status' && e.ticketId === ticketId && (e.entry as Extract<LogEntry, { kind: 'status' }>).to === 'pending');
    expect(back.entry).toMatchObject({ kind: 'status', from: 'open', to: 'pending', author: { id: 'router' }, reason: expect.stringContaining(`reply ${second} was sent after all (replay 1)`) });
    const t = (await gw.ticket(ticketId))!;
    expect(t).toMatchObject({ status: 'pending' });
    expect(t.failedReplies).toBeUndefined();
    const statuses = (await gw.gateway.router!.store.readLog(ticketId)).filter((l) => l.entry.kind === 'status').map((l) => l.entry);
    expect(statuses).toMatchObject([{ from: 'pending', to: 'open' }, { from: 'open', to: 'pending' }]);
  });

  it('a customer message after the failure keeps the ticket open when the failed reply is sent after all', async () => {
    const { ticketId, outboundIds: [, second] } = await ticketWithReplies('replayed-2', ['Первый ответ', 'Второй ответ']);
    await reportStatus({ outboundId: second, ticketId, status: 'failed', reason: 'network: timeout' });
    await gw.waitForEvent((e) => e.type === 'ticket.delivery_failed' && e.ticketId === ticketId);
    await publishEvent(gw.nc, chatMessage({ chat: 'replayed-2', from: 'client-replayed-2', text: 'Вы мне так и не ответили' }));
    await expect.poll(async () => (await gw.ticket(ticketId))?.messageCount, { timeout: 20_000 }).toBe(2);
    await reportStatus({ outboundId: second, ticketId, status: 'sent', round: 1 });
    await expect.poll(async () => (await gw.ticket(ticketId))?.failedReplies, { timeout: 20_000 }).toBeUndefined();
    expect((await gw.ticket(ticketId))?.status).toBe('open');
  });

  it('a reply that fails after it was sent (a late failed status, a bounce) answers nothing: first response undone, the SLA sees no answer', async () => {
    await publishEvent(gw.nc, chatMessage({ chat: 'late-fail-1', from: 'client-late-fail' }));
    const created = await gw.waitForEvent((e) => e.type === 'ticket.created' && e.conversation?.id === 'late-fail-1');
    const ticketId = created.ticketId;
    const outboundId = (await gw.request('omni.cmd.reply', { ticketId, text: 'Ответ, который вернётся' })).result.outboundId as string;
    const sentAt = new Date().toISOString();
    await reportStatus({ outboundId, ticketId, status: 'sent', platformMessageId: 'pm-late-fail-1', at: sentAt });
    await expect.poll(async () => (await gw.ticket(ticketId))?.firstResponseAt, { timeout: 20_000 }).toBe(sentAt);
    expect((await gw.ticket(ticketId))?.lastAnswer).toMatchObject({ outboundId, platformMessageId: 'pm-late-fail-1' });
    // The channel reports it undeliverable afterwards: as a bounce naming the platform id.
    const bounce = { ...chatMessage({ chat: 'mailer-daemon', from: 'mailer-daemon' }), bounceOf: { platformMessageId: 'pm-late-fail-1', reason: 'smtp; 550 5.1.1 User unknown' } };
    await publishEvent(gw.nc, bounce);
    const failed = await gw.waitForEvent((e) => e.type === 'ticket.delivery_failed' && e.ticketId === ticketId);
    // The bounce is this reply's outcome, under its id: a helpdesk tracking replies by id sees it failed.
    expect(failed.lastDelivery).toMatchObject({ status: 'failed', outboundId, reason: expect.stringContaining('bounced: smtp; 550') });
    const t = (await gw.ticket(ticketId))!;
    expect(t).toMatchObject({ status: 'open' });
    expect(t.firstResponseAt).toBeUndefined();
    expect(t.lastOutboundAt).toBeUndefined();
    expect(t.lastAnswer).toMatchObject({ outboundId, undone: true });
    expect(gw.gateway.sla!.sla!.breaches(t, Date.now() + 2 * H).map((b) => b.breach)).toContain('first_response');
    // The same bounce processed again names the same reply: no second, different failure.
    const again = { ...bounce, id: `${bounce.id}-again`, platform: { ...bounce.platform, messageId: `${bounce.platform.messageId}-again` } };
    await publishEvent(gw.nc, again);
    await new Promise((r) => setTimeout(r, 1_000));
    const failures = (await gw.gateway.router!.store.readLog(ticketId)).filter((l) => l.entry.kind === 'delivery' && l.entry.status.status === 'failed');
    expect(failures.map((l) => (l.entry as Extract<LogEntry, { kind: 'delivery' }>).status.outboundId)).toEqual([outboundId]);
  });

  it('an earlier answer applied after a later one is what remains when the later one fails', async () => {
    const { ticketId, outboundIds: [first, second] } = await ticketWithReplies('late-fail-2', ['Первый', 'Второй']);
    const firstAt = new Date().toISOString();
    const secondAt = new Date(Date.parse(firstAt) + 1_000).toISOString();
    // The later answer's outcome arrives first, then the earlier one's, then the later one fails.
    await reportStatus({ outboundId: second, ticketId, status: 'sent', at: secondAt });
    await expect.poll(async () => (await gw.ticket(ticketId))?.lastOutboundAt, { timeout: 20_000 }).toBe(secondAt);
    await reportStatus({ outboundId: first, ticketId, status: 'sent', at: firstAt });
    await expect.poll(async () => (await gw.ticket(ticketId))?.firstResponseAt, { timeout: 20_000 }).toBe(firstAt);
    await reportStatus({ outboundId: second, ticketId, status: 'failed', reason: 'undeliverable: 131026' });
    await expect.poll(async () => (await gw.ticket(ticketId))?.lastAnswer?.undone, { timeout: 20_000 }).toBe(true);
    // Before: lastOutboundAt went back to "never", though the first answer was sent.
    expect(await gw.ticket(ticketId)).toMatchObject({ lastOutboundAt: firstAt, firstResponseAt: firstAt });
  });

  it('two outcomes of one ticket handled at once: the one logged first and applied second is not lost', async () => {
    const { ticketId, outboundIds: [first, second] } = await ticketWithReplies('both-1', ['Первый ответ', 'Второй ответ']);
    // The first reply's "sent" is logged first, then held up writing its platform-id index
    // entry; the second's "failed" is logged after it and applied meanwhile. Before, the first
    // was then judged applied (its log sequence below the highest applied) and dropped: no
    // first response, no lastOutboundAt, for an answer the customer got.
    const store = gw.gateway.router!.store;
    const index = store.index.bind(store);
    let held = 0;
    store.index = async (key, value, o) => {
      if (value === ticketId && held++ === 0) await new Promise((r) => setTimeout(r, 1_000));
      return index(key, value, o);
    };
    try {
      const sentAt = new Date().toISOString();
      await reportStatus({ outboundId: first, ticketId, status: 'sent', platformMessageId: 'pm-both-1', at: sentAt });
      await reportStatus({ outboundId: second, ticketId, status: 'failed', reason: 'network: timeout' });
      await gw.waitForEvent((e) => e.type === 'ticket.delivery_failed' && e.ticketId === ticketId);
      await expect.poll(async () => (await gw.ticket(ticketId))?.firstResponseAt, { timeout: 20_000 }).toBe(sentAt);
      const t = (await gw.ticket(ticketId))!;
      expect(t.lastOutboundAt).toBe(sentAt);
      expect(t.recentDeliveries).toHaveLength(2);
      expect(held).toBeGreaterThan(0);
    } finally {
      Reflect.deleteProperty(store, 'index');
    }
  });

  it('an outcome whose ticket update failed is applied on redelivery, after a later outcome was applied', async () => {
    const { ticketId, outboundIds: [first, second] } = await ticketWithReplies('both-2', ['Первый ответ', 'Второй ответ']);
    // The first outcome is logged, its ticket update fails once (NATS busy) and it is nak'ed for a
    // second; the second outcome is logged and applied meanwhile. The redelivered first one finds
    // its entry logged (a duplicate) below the highest sequence applied: before, it was skipped.
    const store = gw.gateway.router!.store;
    const apply = store.apply.bind(store);
    let failed = 0;
    store.apply = ((id: string, ...rest: Parameters<typeof apply> extends [string, ...infer R] ? R : never) => {
      if (id === ticketId && failed++ === 0) return Promise.reject(new Error('injected: the tickets bucket has no leader'));
      return apply(id, ...rest);
    }) as typeof store.apply;
    try {
      const sentAt = new Date().toISOString();
      await reportStatus({ outboundId: first, ticketId, status: 'sent', at: sentAt });
      await expect.poll(() => failed, { timeout: 10_000 }).toBeGreaterThan(0);
      const laterAt = new Date(Date.parse(sentAt) + 1_000).toISOString();
      await reportStatus({ outboundId: second, ticketId, status: 'sent', at: laterAt });
      await expect.poll(async () => (await gw.ticket(ticketId))?.recentDeliveries?.length, { timeout: 20_000 }).toBe(2);
      const t = (await gw.ticket(ticketId))!;
      // Applied second, still the first response; the later answer stays the last one.
      expect(t.firstResponseAt).toBe(sentAt);
      expect(t.lastOutboundAt).toBe(laterAt);
      const deliveries = (await store.readLog(ticketId)).filter((l) => l.entry.kind === 'delivery');
      expect(deliveries).toHaveLength(2);
    } finally {
      Reflect.deleteProperty(store, 'apply');
    }
  });

  it('a failed reply whose back-to-open entry failed to be written: the redelivered status writes it, once', async () => {
    await publishEvent(gw.nc, chatMessage({ chat: 'fail-3', from: 'client-fail-3' }));
    const created = await gw.waitForEvent((e) => e.type === 'ticket.created' && e.conversation?.id === 'fail-3');
    const ticketId = created.ticketId;
    const reply = await gw.request('omni.cmd.reply', { ticketId, text: 'Ответ, который не дойдёт' });
    const outboundId = reply.result.outboundId as string;
    // The ticket is put back to open, then its status entry fails (the log stream's leader cut
    // off): the status is nak'ed, redelivered, and finds its ticket update already made.
    const fault = failWrites(gw.gateway.router!.journal, 'append', (id, entry) => id === ticketId && entry.kind === 'status');
    try {
      await reportStatus({ outboundId, ticketId, status: 'failed', reason: 'blocked_by_user: the user blocked the bot' });
      const statusEvent = await gw.waitForEvent((e) => e.type === 'ticket.status' && e.ticketId === ticketId, 30_000);
      expect(statusEvent.entry).toMatchObject({ kind: 'status', from: 'pending', to: 'open' });
      expect(fault.failures()).toBe(1);
      // Its event went out with the failed attempt; the entry comes with the redelivery (nak 1 s).
      const statuses = async () => (await gw.gateway.router!.store.readLog(ticketId)).filter((l) => l.entry.kind === 'status').map((l) => l.entry);
      await expect.poll(statuses, { timeout: 20_000 }).toHaveLength(1);
      const jsm = await (await import('@nats-io/jetstream')).jetstreamManager(gw.nc);
      await expect.poll(async () => jsm.consumers.info('OMNI_STATUS', 'router-status').then((i) => i.num_ack_pending + i.num_pending), { timeout: 20_000 }).toBe(0);
      expect(await statuses()).toMatchObject([{ from: 'pending', to: 'open', reason: expect.stringContaining('blocked_by_user') }]);
      expect((await gw.ticket(ticketId))?.status).toBe('open');
    } finally {
      fault.restore();
    }
  });
});
