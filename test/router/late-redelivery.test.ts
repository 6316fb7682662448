/**
 * A step that died after some of its writes landed, redelivered later than the streams' duplicate
 * window (a gateway restarted minutes after a kill -9): the log gets what was missing and nothing
 * twice. JetStream's Nats-Msg-Id dedup no longer covers that, so the router reads the ticket's
 * recent log (journal.ts loggedSince). Here `nats.duplicateWindow` is 1 s and each case waits it
 * out; the crash is staged by removing what the dead attempt would not have written.
 */
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { jetstream, jetstreamManager } from '@nats-io/jetstream';
import { Kvm } from '@nats-io/kv';
import { startGateway, type TestGateway } from '../helpers/gateway.js';
import { chatMessage, publishEvent } from '../helpers/events.js';
import { failWrites } from '../helpers/fail-writes.js';
import { PATIENT } from '../helpers/nats-server.js';
import { IndexKeys } from '../../src/router/thread-keys.js';
import { Consumers } from '../../src/core/subjects.js';
import type { LogEntry } from '../../src/core/schema.js';

let gw: TestGateway;
const WINDOW_MS = 1000;

beforeAll(async () => {
  gw = await startGateway({ nats: { duplicateWindow: `${WINDOW_MS}ms` } });
});
afterAll(async () => gw?.stop());

/** Publishes a customer message and waits until it is routed: the message and its ticket.message event. */
async function route(o: Parameters<typeof chatMessage>[0]) {
  const message = chatMessage(o);
  await publishEvent(gw.nc, message);
  const routed = await gw.waitForEvent((e) => e.type === 'ticket.message' && (e.entry as any)?.event?.id === message.id);
  return { message, routed };
}

const pastTheWindow = () => new Promise((r) => setTimeout(r, WINDOW_MS + 1500));

async function logOf(ticketId: string): Promise<Array<{ seq: number; entry: LogEntry }>> {
  return gw.gateway.router!.store.readLog(ticketId);
}

/** The log sequence and Nats-Msg-Id of each of a ticket's entries. */
async function logIds(ticketId: string): Promise<Array<{ seq: number; id: string }>> {
  const jsm = await jetstreamManager(gw.nc, PATIENT);
  const out: Array<{ seq: number; id: string }> = [];
  for (const { seq } of await logOf(ticketId)) {
    const m = await jsm.streams.getMessage('OMNI_LOG', { seq });
    out.push({ seq, id: m!.header.get('Nats-Msg-Id') });
  }
  return out;
}

/** Removes an index entry the dead attempt never wrote (its processed marker). */
async function dropIndexKey(key: string): Promise<void> {
  const kv = await new Kvm(jetstream(gw.nc, PATIENT)).open('omni_threads');
  await kv.purge(key);
}

/** Stops the router, puts `payload` on `subject` and makes JetStream redeliver it: the copy arrives marked redelivered. */
async function redeliver(stream: string, durable: string, subject: string, payload: unknown): Promise<void> {
  const router = gw.gateway.router!;
  await router.stop();
  const js = jetstream(gw.nc, PATIENT);
  await js.publish(subject, JSON.stringify(payload));
  const consumer = await js.consumers.get(stream, durable);
  const m = await consumer.next({ expires: 5000 });
  expect(m).toBeTruthy();
  m!.nak();
  await router.start();
}

describe('a redelivery later than the duplicate window', () => {
  it('of a message whose ticket update and log entry landed but whose reopen entry and processed marker did not: the reopen is logged once, the message once', async () => {
    const { routed: opened } = await route({ chat: 'late-reopen' });
    expect((await gw.request('omni.cmd.status', { ticketId: opened.ticketId, status: 'closed' })).ok).toBe(true);

    // The sender's clock, so the router reads the processed marker for it (mayBeProcessed).
    const again = chatMessage({ chat: 'late-reopen', sentAtBy: 'sender' });
    await publishEvent(gw.nc, again);
    await gw.waitForEvent((e) => e.type === 'ticket.status' && e.id === `ticket.status:reopen:${again.id}`);
    // The crash: the burst got as far as the message's log entry; the reopen entry and the marker never landed.
    const reopenEntry = (await logIds(opened.ticketId)).find((l) => l.id === `log:reopen:${again.id}`)!;
    const jsm = await jetstreamManager(gw.nc, PATIENT);
    await jsm.streams.deleteMessage('OMNI_LOG', reopenEntry.seq);
    await dropIndexKey(IndexKeys.platformMessage(again.channel, again.account, again.platform.messageId));
    await pastTheWindow();

    await publishEvent(gw.nc, again, { msgID: `${again.id}:redelivered` });
    await route({ chat: 'late-reopen' });

    const ids = (await logIds(opened.ticketId)).map((l) => l.id);
    expect(ids.filter((id) => id === `log:${again.id}`)).toHaveLength(1);
    expect(ids.filter((id) => id === `log:reopen:${again.id}`)).toHaveLength(1);
    const ticket = await gw.ticket(opened.ticketId);
    expect(ticket?.messageCount).toBe(3);
    expect(ticket?.status).toBe('open');
  });

  it('of a message that was routed whole but for its processed marker: logged once', async () => {
    const { message, routed } = await route({ chat: 'late-whole', sentAtBy: 'sender' });
    await dropIndexKey(IndexKeys.platformMessage(message.channel, message.account, message.platform.messageId));
    await pastTheWindow();

    await publishEvent(gw.nc, message, { msgID: `${message.id}:redelivered` });
    const { message: follow } = await route({ chat: 'late-whole' });

    const inbound = (await logOf(routed.ticketId)).filter((l) => l.entry.kind === 'inbound').map((l) => (l.entry as any).event.id);
    expect(inbound).toEqual([message.id, follow.id]);
    expect((await gw.ticket(routed.ticketId))?.messageCount).toBe(2);
  });

  it('of an edit whose log entry landed but whose done marker did not: logged once', async () => {
    const { message: original, routed } = await route({ chat: 'late-edit' });
    const edit = {
      v: 1, type: 'message.edited', id: `${original.id}:edit-1`, channel: original.channel, account: original.account,
      conversation: original.conversation, sender: original.sender, targetPlatformMessageId: original.platform.messageId,
      text: 'Исправлено: заказ № 4412', platform: { messageId: original.platform.messageId }, receivedAt: new Date().toISOString(),
    };
    await publishEvent(gw.nc, edit);
    await gw.waitForEvent((e) => e.type === 'ticket.edited' && e.id === `ticket.edited:${edit.id}`);
    await dropIndexKey(IndexKeys.changeEvent(edit.id));
    await pastTheWindow();

    await redeliver('OMNI_IN', 'router', `omni.in.${edit.channel}.${edit.account}`, edit);
    await route({ chat: 'late-edit' });

    const edits = (await logOf(routed.ticketId)).filter((l) => l.entry.kind === 'edited');
    expect(edits).toHaveLength(1);
  });

  it('of a delivery status recorded before (JetStream redelivers it, as after a crash before its ack): logged once, applied once', async () => {
    const { message, routed } = await route({ chat: 'late-status' });
    const status = {
      v: 1, type: 'delivery.status', outboundId: `${routed.ticketId}:reply-1`, ticketId: routed.ticketId, channel: message.channel,
      account: message.account, status: 'sent', platformMessageId: 'out-77', at: new Date().toISOString(), purpose: 'agent_reply',
    };
    await redeliver('OMNI_STATUS', Consumers.routerStatus, `omni.status.${message.channel}.${message.account}`, status);
    await gw.waitForEvent((e) => e.type === 'ticket.delivery' && e.id === `ticket.delivery:dlv:${status.outboundId}:sent`);
    const before = await gw.ticket(routed.ticketId);
    await pastTheWindow();

    await redeliver('OMNI_STATUS', Consumers.routerStatus, `omni.status.${message.channel}.${message.account}`, status);
    await route({ chat: 'late-status' });
    await expect.poll(async () => (await jetstreamManager(gw.nc, PATIENT)).consumers.info('OMNI_STATUS', Consumers.routerStatus).then((i) => i.num_ack_pending + i.num_pending)).toBe(0);

    const deliveries = (await logOf(routed.ticketId)).filter((l) => l.entry.kind === 'delivery');
    expect(deliveries).toHaveLength(1);
    expect((await gw.ticket(routed.ticketId))?.appliedSeq).toBe(before?.appliedSeq);
  });

  it('of a delivery status published again as a new message (a platform resending its receipt after a crash): logged once, applied once', async () => {
    const { message, routed } = await route({ chat: 'late-receipt' });
    const status = {
      v: 1, type: 'delivery.status', outboundId: `${routed.ticketId}:reply-2`, ticketId: routed.ticketId, channel: message.channel,
      account: message.account, status: 'delivered', platformMessageId: 'out-78', at: new Date().toISOString(), purpose: 'agent_reply',
    };
    const js = jetstream(gw.nc, PATIENT);
    const subject = `omni.status.${message.channel}.${message.account}`;
    await js.publish(subject, JSON.stringify(status), { msgID: `status:${status.outboundId}:delivered` });
    await gw.waitForEvent((e) => e.type === 'ticket.delivery' && e.id === `ticket.delivery:dlv:${status.outboundId}:delivered`);
    const before = await gw.ticket(routed.ticketId);
    await pastTheWindow();

    await js.publish(subject, JSON.stringify(status), { msgID: `status:${status.outboundId}:delivered` });
    await route({ chat: 'late-receipt' });
    await expect.poll(async () => (await jetstreamManager(gw.nc, PATIENT)).consumers.info('OMNI_STATUS', Consumers.routerStatus).then((i) => i.num_ack_pending + i.num_pending)).toBe(0);

    expect((await logOf(routed.ticketId)).filter((l) => l.entry.kind === 'delivery')).toHaveLength(1);
    expect((await gw.ticket(routed.ticketId))?.appliedSeq).toBe(before?.appliedSeq);
  });
});

describe('a retry later than the duplicate window', () => {
  it('of a status command whose log entry landed but whose announcement failed: logged once', async () => {
    const { routed } = await route({ chat: 'late-close' });
    const fault = failWrites(gw.gateway.router!.journal, 'emit', (type, ticket) => type === 'ticket.status' && ticket.id === routed.ticketId);
    try {
      const body = { ticketId: routed.ticketId, status: 'closed', author: { id: 'agent-1' }, idempotencyKey: 'late-close-1' };
      expect((await gw.request('omni.cmd.status', body)).ok).toBe(false);
      await pastTheWindow();
      expect((await gw.request('omni.cmd.status', body)).ok).toBe(true);
      expect(fault.failures()).toBe(1);
    } finally {
      fault.restore();
    }
    const statuses = (await logOf(routed.ticketId)).filter((l) => l.entry.kind === 'status');
    expect(statuses).toHaveLength(1);
  });

  it('of a note whose log entry landed but whose announcement failed: logged once', async () => {
    const { routed } = await route({ chat: 'late-note' });
    const fault = failWrites(gw.gateway.router!.journal, 'emit', (type, ticket) => type === 'ticket.note' && ticket.id === routed.ticketId);
    try {
      const body = { ticketId: routed.ticketId, text: 'Перезвонить', author: { id: 'agent-1' }, idempotencyKey: 'late-note-1' };
      expect((await gw.request('omni.cmd.note', body)).ok).toBe(false);
      await pastTheWindow();
      expect((await gw.request('omni.cmd.note', body)).ok).toBe(true);
    } finally {
      fault.restore();
    }
    expect((await logOf(routed.ticketId)).filter((l) => l.entry.kind === 'note')).toHaveLength(1);
  });

  it('of a failed reply reported again with a fresh time: the back-to-open entry is not written twice', async () => {
    const { message, routed } = await route({ chat: 'late-failed-reply' });
    const reply = await gw.request('omni.cmd.reply', { ticketId: routed.ticketId, text: 'Ответ, который не дойдёт' });
    const outboundId = reply.result.outboundId as string;
    const js = jetstream(gw.nc, PATIENT);
    const report = () => js.publish(`omni.status.${message.channel}.${message.account}`, JSON.stringify({
      v: 1, type: 'delivery.status', outboundId, ticketId: routed.ticketId, channel: message.channel, account: message.account,
      status: 'failed', reason: 'blocked_by_user: the user blocked the bot', at: new Date().toISOString(), purpose: 'agent_reply',
    }), { msgID: `status:${outboundId}:failed:${Date.now()}` });
    await report();
    await gw.waitForEvent((e) => e.type === 'ticket.status' && e.ticketId === routed.ticketId);
    await pastTheWindow();
    await report();
    await route({ chat: 'late-failed-reply' });
    await expect.poll(async () => (await jetstreamManager(gw.nc, PATIENT)).consumers.info('OMNI_STATUS', Consumers.routerStatus).then((i) => i.num_ack_pending + i.num_pending)).toBe(0);
    const entries = (await logOf(routed.ticketId)).map((l) => l.entry.kind);
    expect(entries.filter((k) => k === 'status')).toHaveLength(1);
    expect(entries.filter((k) => k === 'delivery')).toHaveLength(1);
  });
});

describe('what the log lookup costs and keeps', () => {
  it('is never made for fresh messages, nor for the message that opened its ticket', async () => {
    const spy = vi.spyOn(gw.gateway.router!.journal, 'loggedSince');
    try {
      const messages = Array.from({ length: 12 }, (_, i) => chatMessage({ chat: `fresh-${i % 3}` }));
      for (const m of messages) await publishEvent(gw.nc, m);
      for (const m of messages) await gw.waitForEvent((e) => e.type === 'ticket.message' && (e.entry as any)?.event?.id === m.id);
      expect(spy).not.toHaveBeenCalled();
    } finally {
      spy.mockRestore();
    }
  });

  it('never holds back an event: a coalesced batch retried after its first event failed announces every message, though later log entries had landed', async () => {
    const journal = gw.gateway.router!.journal;
    const emit = journal.emit.bind(journal);
    const spy = vi.spyOn(journal, 'loggedSince');
    const opener = chatMessage({ chat: 'retried-batch', text: 'нулевое' });
    const first = chatMessage({ chat: 'retried-batch', text: 'первое' });
    const second = chatMessage({ chat: 'retried-batch', text: 'второе' });
    let failures = 0;
    let release!: () => void;
    const held = new Promise<void>((r) => (release = r));
    // The opener's announcement waits until the next two are queued behind it, so its lane hands
    // them over as one batch. Then the events stream refuses the first one's event once while the
    // log stores both entries (two streams, two leaders): the retry finds both logged and must
    // still announce both.
    journal.emit = async (type, ticket, causeId, entry) => {
      if (type === 'ticket.message' && causeId === opener.id) await held;
      if (type === 'ticket.message' && causeId === first.id && failures < 1) {
        failures++;
        throw new Error('injected: events stream unavailable');
      }
      return emit(type, ticket, causeId, entry);
    };
    try {
      await publishEvent(gw.nc, opener);
      await publishEvent(gw.nc, first);
      await publishEvent(gw.nc, second);
      await new Promise((r) => setTimeout(r, 500));
      release();
      const announced = await gw.waitForEvent((e) => e.type === 'ticket.message' && (e.entry as any)?.event?.id === first.id, 30_000);
      await gw.waitForEvent((e) => e.type === 'ticket.message' && (e.entry as any)?.event?.id === second.id, 30_000);
      expect(failures).toBe(1);
      expect(spy).toHaveBeenCalledTimes(1);
      const logged = await spy.mock.results[0]!.value;
      expect([...logged.keys()]).toEqual(expect.arrayContaining([`log:${first.id}`, `log:${second.id}`]));
      const inbound = (await logOf(announced.ticketId)).filter((l) => l.entry.kind === 'inbound').map((l) => (l.entry as any).event.id);
      expect(inbound).toEqual([opener.id, first.id, second.id]);
    } finally {
      journal.emit = emit;
      spy.mockRestore();
    }
  });
});
