import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { jetstream } from '@nats-io/jetstream';
import { startGateway, type TestGateway } from '../helpers/gateway.js';
import { chatMessage, publishEvent } from '../helpers/events.js';
import { failWrites } from '../helpers/fail-writes.js';
import type { DeadLetter } from '../../src/core/schema.js';
import { metrics } from '../../src/core/metrics.js';
import { hashKey } from '../../src/core/subjects.js';
import { IndexKeys } from '../../src/router/thread-keys.js';
import { commandClaims } from '../../src/router/command-idempotency.js';
import type { HolderWatch } from '../../src/core/holder-watch.js';
import { Kvm } from '@nats-io/kv';

let gw: TestGateway;
beforeAll(async () => {
  gw = await startGateway({});
});
afterAll(async () => gw?.stop());

describe('exactly-once effect', () => {
  it('the same inbound published 3 times (past JetStream dedup) and redelivered after a nack yields one ticket and one log entry', async () => {
    const event = chatMessage({ chat: 'dup-chat', id: 'dup-1' });
    await publishEvent(gw.nc, event); // normal publish
    await publishEvent(gw.nc, event); // same Nats-Msg-Id: absorbed by JetStream
    await publishEvent(gw.nc, event, { msgID: false }); // republish without msg id: router must absorb it
    await publishEvent(gw.nc, event, { msgID: 'other-id' });
    const first = await gw.waitForEvent((e) => e.type === 'ticket.message' && (e.entry as any)?.event?.id === event.id);

    // Stop the router, take the next copy from its durable consumer and nak it: JetStream
    // redelivers it to the router when it is back.
    const router = gw.gateway.router!;
    await router.stop();
    await publishEvent(gw.nc, event, { msgID: 'third-id' });
    const js = jetstream(gw.nc);
    const durable = await js.consumers.get('OMNI_IN', 'router');
    const m = await durable.next({ expires: 3000 });
    expect(m?.json<{ id: string }>().id).toBe(event.id);
    m!.nak();
    await router.start();

    // A follow-up in the same conversation is processed after the duplicates (same lane).
    const follow = chatMessage({ chat: 'dup-chat', id: 'dup-2' });
    await publishEvent(gw.nc, follow);
    await gw.waitForEvent((e) => e.type === 'ticket.message' && (e.entry as any)?.event?.id === follow.id);

    const log = await gw.gateway.router!.store.readLog(first.ticketId);
    const inbound = log.filter((l) => l.entry.kind === 'inbound').map((l) => (l.entry as any).event.id);
    expect(inbound).toEqual([event.id, follow.id]);
    const tickets = (await gw.gateway.router!.store.list()).filter((t) => t.conversation.id === 'dup-chat');
    expect(tickets).toHaveLength(1);
    expect(tickets[0]!.messageCount).toBe(2);
    const created = await gw.waitForStreamMessage('OMNI_EVENTS', 'omni.events.ticket.created', (e: any) => e.ticketId === first.ticketId);
    expect(created).toBeTruthy();
  });
});

describe('the processed marker', () => {
  const duplicatesSeen = async () => (await metrics.duplicates.get()).values[0]?.value ?? 0;
  const loggedInbound = async (ticketId: string, eventId: string) =>
    (await gw.gateway.router!.store.readLog(ticketId)).filter((l) => l.entry.kind === 'inbound' && (l.entry as any).event.id === eventId);

  it('is read for a message old enough that a replay of it could have escaped the duplicate window', async () => {
    const old = chatMessage({ chat: 'replayed-after-hours', sentAt: new Date(Date.now() - 3_600_000).toISOString() });
    await publishEvent(gw.nc, old);
    const routed = await gw.waitForEvent((e) => e.type === 'ticket.message' && (e.entry as any)?.event?.id === old.id);
    const before = await duplicatesSeen();
    await publishEvent(gw.nc, old, { msgID: false }); // a connector replaying it: a new stream message
    const marker = chatMessage({ chat: 'replayed-after-hours' });
    await publishEvent(gw.nc, marker);
    await gw.waitForEvent((e) => e.type === 'ticket.message' && (e.entry as any)?.event?.id === marker.id);
    expect(await duplicatesSeen()).toBe(before + 1);
    expect(await loggedInbound(routed.ticketId, old.id)).toHaveLength(1);
  });

  it('is read for a fresh message whose time the sender wrote (a webhook client, a mail Date)', async () => {
    const webhook = chatMessage({ chat: 'sender-clock', sentAtBy: 'sender' });
    await publishEvent(gw.nc, webhook);
    const routed = await gw.waitForEvent((e) => e.type === 'ticket.message' && (e.entry as any)?.event?.id === webhook.id);
    const before = await duplicatesSeen();
    await publishEvent(gw.nc, webhook, { msgID: false });
    const marker = chatMessage({ chat: 'sender-clock' });
    await publishEvent(gw.nc, marker);
    await gw.waitForEvent((e) => e.type === 'ticket.message' && (e.entry as any)?.event?.id === marker.id);
    expect(await duplicatesSeen()).toBe(before + 1);
    expect(await loggedInbound(routed.ticketId, webhook.id)).toHaveLength(1);
  });

  it('is skipped for a fresh first delivery stamped by the platform, whose copies the other idempotent steps absorb', async () => {
    const fresh = chatMessage({ chat: 'fresh-copies' });
    await publishEvent(gw.nc, fresh);
    const routed = await gw.waitForEvent((e) => e.type === 'ticket.message' && (e.entry as any)?.event?.id === fresh.id);
    const before = await duplicatesSeen();
    await publishEvent(gw.nc, fresh, { msgID: false });
    await publishEvent(gw.nc, fresh, { msgID: 'another' });
    const marker = chatMessage({ chat: 'fresh-copies' });
    await publishEvent(gw.nc, marker);
    await gw.waitForEvent((e) => e.type === 'ticket.message' && (e.entry as any)?.event?.id === marker.id);
    expect(await duplicatesSeen()).toBe(before);
    expect(await loggedInbound(routed.ticketId, fresh.id)).toHaveLength(1);
    const ticket = await gw.gateway.router!.store.get(routed.ticketId, { fresh: true });
    expect(ticket!.value.messageCount).toBe(2);
  });
});

describe('malformed events', () => {
  it('parks bad JSON, wrong schema version and missing fields with the reason, and keeps routing', async () => {
    gw.nc.publish('omni.in.webhook.site', 'this is {not json');
    await gw.nc.flush();
    const js = jetstream(gw.nc);
    await js.publish('omni.in.webhook.site', '{"v":2,"type":"message.inbound","id":"x"}');
    const missing = chatMessage({ chat: 'bad', id: 'bad-1' }) as any;
    delete missing.sender;
    await js.publish('omni.in.webhook.site', JSON.stringify(missing));

    const letters: DeadLetter[] = [];
    for (const pred of [
      (d: DeadLetter) => d.reason === 'payload is not valid JSON',
      (d: DeadLetter) => /unsupported schema version 2/.test(d.reason),
      (d: DeadLetter) => /sender/.test(d.reason),
    ]) {
      letters.push(await gw.waitForStreamMessage<DeadLetter>('OMNI_DLQ', 'omni.dlq.router', pred));
    }
    expect(letters[0]!.payload).toBe('this is {not json');
    expect(letters[2]!.reason).toMatch(/invalid event: sender/);
    expect(letters.every((d) => d.subject === 'omni.in.webhook.site')).toBe(true);

    const ok = chatMessage({ chat: 'after-bad' });
    await publishEvent(gw.nc, ok);
    const routed = await gw.waitForEvent((e) => e.type === 'ticket.message' && (e.entry as any)?.event?.id === ok.id);
    expect(routed.ticketId).toMatch(/^T-/);
  });

  it('answers commands for unknown tickets and invalid bodies with specific errors', async () => {
    const unknown = await gw.request('omni.cmd.reply', { ticketId: 'T-999999', text: 'привет' });
    expect(unknown).toEqual({ ok: false, error: { code: 'ticket_not_found', message: 'no ticket with id T-999999', field: 'ticketId' } });
    const invalid = await gw.request('omni.cmd.status', { ticketId: 'T-1', status: 'archived' });
    expect(invalid.ok).toBe(false);
    expect(invalid.error.code).toBe('invalid_request');
    expect(invalid.error.field).toBe('status');
  });
});

describe('command idempotency under concurrency', () => {
  it('ten concurrent notes and status changes with one key act once and all get the same answer', async () => {
    const event = chatMessage({ chat: 'concurrent-key' });
    await publishEvent(gw.nc, event);
    const created = await gw.waitForEvent((e) => e.type === 'ticket.message' && (e.entry as any)?.event?.id === event.id);
    const notes = await Promise.all(Array.from({ length: 10 }, () => gw.request('omni.cmd.note', { ticketId: created.ticketId, text: 'один раз', idempotencyKey: 'same-note' })));
    expect(new Set(notes.map((n) => n.result.noteId)).size).toBe(1);
    expect(notes.filter((n) => !n.replayed)).toHaveLength(1);
    const statuses = await Promise.all(Array.from({ length: 10 }, () => gw.request('omni.cmd.status', { ticketId: created.ticketId, status: 'pending', idempotencyKey: 'same-status' })));
    expect(statuses.every((r) => r.ok)).toBe(true);
    const log = await gw.gateway.router!.store.readLog(created.ticketId);
    expect(log.filter((l) => l.entry.kind === 'note')).toHaveLength(1);
    expect(log.filter((l) => l.entry.kind === 'status')).toHaveLength(1);
  });
});

describe('an idempotency key claimed by a request still running', () => {
  it('answers in_progress while the claim is fresh, and takes over a claim left by a dead process', async () => {
    const event = chatMessage({ chat: 'claimed-key' });
    await publishEvent(gw.nc, event);
    const created = await gw.waitForEvent((e) => e.type === 'ticket.message' && (e.entry as any)?.event?.id === event.id);
    const kv = gw.gateway.bus!.kv.dedup;
    // What a request in flight (or one whose process died) leaves behind.
    await kv.put(`cmd.note.${hashKey(`${created.ticketId}\u0000busy-key`)}`, JSON.stringify({ pending: true, at: Date.now() }));
    const busy = await gw.request('omni.cmd.note', { ticketId: created.ticketId, text: 'занято', idempotencyKey: 'busy-key' });
    expect(busy).toMatchObject({ ok: false, error: { code: 'in_progress' } });

    // Taken for dead once this process has seen the claim unchanged for the stale time (its own
    // observation, not the claim's `at`: router/command-idempotency.ts), shortened here to 500 ms.
    (gw.gateway.commands as unknown as { claims: HolderWatch }).claims = commandClaims(500);
    await kv.put(`cmd.note.${hashKey(`${created.ticketId}\u0000dead-key`)}`, JSON.stringify({ pending: true, at: Date.now() - 120_000 }));
    const taken = await gw.request('omni.cmd.note', { ticketId: created.ticketId, text: 'после сбоя', idempotencyKey: 'dead-key' });
    expect(taken.ok).toBe(true);
    const replay = await gw.request('omni.cmd.note', { ticketId: created.ticketId, text: 'после сбоя', idempotencyKey: 'dead-key' });
    expect(replay).toMatchObject({ ok: true, replayed: true, result: { noteId: taken.result.noteId } });
  }, 20_000);
});

describe('internal notes and replies', () => {
  it('logs notes without sending them, and dispatches a reply once per idempotency key', async () => {
    const event = chatMessage({ chat: 'notes-chat' });
    await publishEvent(gw.nc, event);
    const created = await gw.waitForEvent((e) => e.type === 'ticket.message' && (e.entry as any)?.event?.id === event.id);
    const note = await gw.request('omni.cmd.note', { ticketId: created.ticketId, text: 'клиент VIP', author: { id: 'agent-1', name: 'Мария' } });
    expect(note.ok).toBe(true);
    const r1 = await gw.request('omni.cmd.reply', { ticketId: created.ticketId, text: 'Ответ', idempotencyKey: 'k-1' });
    const r2 = await gw.request('omni.cmd.reply', { ticketId: created.ticketId, text: 'Ответ', idempotencyKey: 'k-1' });
    expect(r2.result).toEqual(r1.result);
    expect(r2.replayed).toBe(true);
    const log = await gw.gateway.router!.store.readLog(created.ticketId);
    expect(log.map((l) => l.entry.kind)).toEqual(['inbound', 'note', 'outbound']);
    // The outbound stream got exactly one message for the connector.
    const out = await gw.waitForStreamMessage('OMNI_OUT', 'omni.out.webhook.site', (m: any) => m.ticketId === created.ticketId);
    expect(out.id).toBe(r1.result.outboundId);
    expect(out.replyTo).toBe(event.platform.messageId);
  });
});

describe('a step that failed half-way', () => {
  it('is retried in place: the next message of the conversation does not overtake it, and ticket.created is announced once, first', async () => {
    // The ticket is updated, then announcing it fails twice (as when the events stream's leader
    // is cut off): the first message must still be logged and announced before the second.
    const fault = failWrites(gw.gateway.router!.journal, 'emit', (type, ticket) => type === 'ticket.created' && ticket.conversation.id === 'half-way', 2);
    try {
      const first = chatMessage({ chat: 'half-way', text: 'первое' });
      const second = chatMessage({ chat: 'half-way', text: 'второе' });
      await publishEvent(gw.nc, first);
      await publishEvent(gw.nc, second);
      const routed = await gw.waitForEvent((e) => e.type === 'ticket.message' && (e.entry as any)?.event?.id === second.id, 30_000);
      expect(fault.failures()).toBe(2);
      const log = await gw.gateway.router!.store.readLog(routed.ticketId);
      expect(log.filter((l) => l.entry.kind === 'inbound').map((l) => (l.entry as any).event.id)).toEqual([first.id, second.id]);
      const created = await gw.waitForStreamMessage('OMNI_EVENTS', 'omni.events.ticket.created', (e: any) => e.ticketId === routed.ticketId);
      expect(created.entry.event.id).toBe(first.id);
      const ticket = (await gw.gateway.router!.store.list()).find((t) => t.id === routed.ticketId)!;
      expect(ticket.messageCount).toBe(2);
    } finally {
      fault.restore();
    }
  });
});

describe('a command that failed half-way', () => {
  it('a note retried with its idempotency key is logged once', async () => {
    const message = chatMessage({ chat: 'note-retried' });
    await publishEvent(gw.nc, message);
    const routed = await gw.waitForEvent((e) => e.type === 'ticket.message' && (e.entry as any)?.event?.id === message.id);
    const fault = failWrites(gw.gateway.router!.journal, 'emit', (type, ticket) => type === 'ticket.note' && ticket.id === routed.ticketId);
    try {
      const body = { ticketId: routed.ticketId, text: 'Клиенту перезвонить после 15:00', author: { id: 'agent-1' }, idempotencyKey: 'note-77' };
      const failed = await gw.request('omni.cmd.note', body);
      expect(failed.ok).toBe(false);
      const retried = await gw.request('omni.cmd.note', body);
      expect(retried.ok).toBe(true);
      const notes = (await gw.gateway.router!.store.readLog(routed.ticketId)).filter((l) => l.entry.kind === 'note');
      expect(notes).toHaveLength(1);
      expect((notes[0]!.entry as any).id).toBe(retried.result.noteId);
    } finally {
      fault.restore();
    }
  });

  it('a status change retried with its idempotency key after its log entry failed is logged once, with the status it replaced', async () => {
    const message = chatMessage({ chat: 'status-retried' });
    await publishEvent(gw.nc, message);
    const routed = await gw.waitForEvent((e) => e.type === 'ticket.message' && (e.entry as any)?.event?.id === message.id);
    // The ticket is closed, then its log entry fails (the log stream's leader cut off): the
    // command answers an error, and the client retries with the same key.
    const fault = failWrites(gw.gateway.router!.journal, 'append', (ticketId, entry) => ticketId === routed.ticketId && entry.kind === 'status');
    try {
      const body = { ticketId: routed.ticketId, status: 'closed', author: { id: 'agent-1' }, idempotencyKey: 'close-1' };
      expect((await gw.request('omni.cmd.status', body)).ok).toBe(false);
      const retried = await gw.request('omni.cmd.status', body);
      expect(retried.ok).toBe(true);
      expect(retried.result.from).toBe('new');
      const statuses = (await gw.gateway.router!.store.readLog(routed.ticketId)).filter((l) => l.entry.kind === 'status').map((l) => l.entry);
      expect(statuses).toMatchObject([{ from: 'new', to: 'closed' }]);
      await gw.waitForEvent((e) => e.type === 'ticket.status' && e.ticketId === routed.ticketId && e.status === 'closed');
      expect(fault.failures()).toBe(1);
    } finally {
      fault.restore();
    }
  });
});

describe('inside the duplicate window', () => {
  it('a redelivered message the ticket recorded, its marker missing, is not looked up in the log: JetStream drops its repeated writes', async () => {
    const message = chatMessage({ chat: 'inside-window' });
    await publishEvent(gw.nc, message);
    const routed = await gw.waitForEvent((e) => e.type === 'ticket.message' && (e.entry as any)?.event?.id === message.id);
    // As if the attempt died before its processed marker.
    const kv = await new Kvm(jetstream(gw.nc)).open('omni_threads');
    await kv.purge(IndexKeys.platformMessage(message.channel, message.account, message.platform.messageId));
    const router = gw.gateway.router!;
    const spy = vi.spyOn(router.journal, 'loggedSince');
    try {
      await router.stop();
      await publishEvent(gw.nc, message, { msgID: `${message.id}:copy` });
      const m = await (await jetstream(gw.nc).consumers.get('OMNI_IN', 'router')).next({ expires: 3000 });
      expect(m?.json<{ id: string }>().id).toBe(message.id);
      m!.nak();
      await router.start();
      const follow = chatMessage({ chat: 'inside-window' });
      await publishEvent(gw.nc, follow);
      await gw.waitForEvent((e) => e.type === 'ticket.message' && (e.entry as any)?.event?.id === follow.id);
      expect(spy).not.toHaveBeenCalled();
      const inbound = (await router.store.readLog(routed.ticketId)).filter((l) => l.entry.kind === 'inbound').map((l) => (l.entry as any).event.id);
      expect(inbound).toEqual([message.id, follow.id]);
    } finally {
      spy.mockRestore();
    }
  });
});

describe('stopping the command handler', () => {
  it('waits for the commands it is answering: a reply logged is also sent and answered, not cut off by the bus closing', async () => {
    const own = await startGateway({});
    const journal = own.gateway.router!.journal;
    try {
      await publishEvent(own.nc, chatMessage({ chat: 'stop-while-answering' }));
      const created = await own.waitForEvent((e) => e.type === 'ticket.created');
      let release!: () => void;
      const held = new Promise<void>((r) => (release = r));
      let reached!: () => void;
      const reachedAppend = new Promise<void>((r) => (reached = r));
      const append = journal.append.bind(journal);
      journal.append = async (ticketId, entry, msgID) => {
        if (entry.kind === 'outbound') {
          reached();
          await held;
        }
        return append(ticketId, entry, msgID);
      };
      const answer = own.request('omni.cmd.reply', { ticketId: created.ticketId, text: 'Ответ во время остановки' });
      await reachedAppend;
      let stopped = false;
      const stopping = own.gateway.commands!.stop().then(() => {
        stopped = true;
      });
      await new Promise((r) => setTimeout(r, 300));
      expect(stopped).toBe(false); // before: the loop ended at once, and the gateway closed the bus under the reply
      release();
      await stopping;
      expect(await answer).toMatchObject({ ok: true, result: { status: 'pending' } });
      const sent = await own.waitForStreamMessage('OMNI_OUT', 'omni.out.webhook.site', (m: any) => m.ticketId === created.ticketId);
      expect(sent.text).toBe('Ответ во время остановки');
    } finally {
      Reflect.deleteProperty(journal, 'append');
      await own.stop();
    }
  });
});
