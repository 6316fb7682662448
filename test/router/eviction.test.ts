/**
 * Eviction of closed tickets from KV (tickets.evictClosedAfter, src/router/eviction.ts) against a
 * real nats-server and read model: the record and every index key naming the ticket leave KV, a
 * new message in the conversation opens a new ticket with a new number and says why, the log and
 * SQL keep the old ticket, the API answers 410 for it, and a sweep stopped at any step leaves
 * nothing that misroutes (the next pass finishes it).
 */
import { testTempDir } from '../helpers/temp-dirs.js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { startGateway, type TestGateway } from '../helpers/gateway.js';
import { chatMessage, emailMessage, publishEvent } from '../helpers/events.js';
import type { InboundMessage, LogEntry, TicketEvent } from '../../src/core/schema.js';
import { Buckets } from '../../src/core/subjects.js';
import { TicketEvictor, type EvictionStep } from '../../src/router/eviction.js';
import { IndexKeys } from '../../src/router/thread-keys.js';
import { TicketStore } from '../../src/router/tickets.js';
import { Threader } from '../../src/router/threading.js';
import { ticketsToEvict } from '../../src/read-model/erasure.js';
import { loadConfig, ConfigError } from '../../src/core/config.js';
import { createLogger } from '../../src/core/logger.js';

const TOKEN = 'eviction-test-token-0123456789';
let gw: TestGateway;

beforeAll(async () => {
  // The sweeper's own loop runs once at start (nothing is due then); the tests sweep with a clock
  // set a day ahead, so what they closed a moment ago is "closed longer than evictClosedAfter".
  gw = await startGateway({ router: { reopenWindow: '1s' }, tickets: { evictClosedAfter: '2h' }, api: { tokens: [{ name: 't', token: TOKEN }] } });
});
afterAll(async () => gw?.stop());

const DAY = 86_400_000;

async function route(event: InboundMessage): Promise<TicketEvent> {
  await publishEvent(gw.nc, event);
  return gw.waitForEvent((e) => e.type === 'ticket.message' && (e.entry as { event?: { id: string } })?.event?.id === event.id);
}

function matchOf(e: TicketEvent) {
  return (e.entry as Extract<LogEntry, { kind: 'inbound' }>).match;
}

async function close(id: string): Promise<void> {
  const r = await gw.request('omni.cmd.status', { ticketId: id, status: 'closed' });
  expect(r.ok).toBe(true);
}

async function live(id: string) {
  return (await gw.gateway.router!.store.get(id, { fresh: true }))?.value ?? null;
}

/** Every omni_threads key whose value names the ticket (the whole bucket, as erasure reads it). */
async function keysNaming(id: string): Promise<string[]> {
  const kv = gw.gateway.bus.kv.threads;
  const out: string[] = [];
  for await (const k of await kv.keys()) {
    const e = await kv.get(k);
    if (e && e.operation === 'PUT' && e.string() === id) out.push(k);
  }
  return out;
}

/** Subjects the KV stream still holds for a key (a delete or purge marker counts). */
async function subjectsLeft(bucket: string, key: string): Promise<number> {
  const info = await gw.gateway.bus.jsm.streams.info(`KV_${bucket}`, { subjects_filter: `$KV.${bucket}.${key}` });
  return Object.keys(info.state.subjects ?? {}).length;
}

async function sweep(o: { beforeStep?: (step: EvictionStep, id: string) => void | Promise<void> } = {}) {
  await gw.gateway.readModel!.caughtUp(10_000);
  if (!o.beforeStep) return gw.gateway.evictor!.sweep(Date.now() + DAY);
  // A sweeper of its own with the failure hook, on the same store and read model (and cursor).
  const readModel = gw.gateway.readModel!;
  const evictor = new TicketEvictor(gw.gateway.bus, gw.gateway.router!.store, {
    evictClosedAfterMs: 2 * 3_600_000, sweepIntervalMs: 3_600_000, leaseTtlMs: 3000, holder: 'test',
    candidates: async (cursor, cutoff, limit) => ticketsToEvict(await readModel.database(), cursor, cutoff, limit),
    caughtUp: () => readModel.caughtUp(5000),
    beforeStep: o.beforeStep,
  }, createLogger({ level: 'silent' }));
  return evictor.sweep(Date.now() + DAY);
}

async function sqlRow(id: string) {
  const db = await gw.gateway.readModel!.database();
  const [row] = await db.query<{ id: string; status: string; number: number }>('SELECT id, status, number FROM tickets WHERE id = $1', [id]);
  return row;
}

async function api(path: string): Promise<{ status: number; body: any }> {
  const r = await fetch(`${gw.httpUrl}${path}`, { headers: { authorization: `Bearer ${TOKEN}` } });
  return { status: r.status, body: await r.json() };
}

describe('eviction of closed tickets from KV', () => {
  it('evicts a closed chat ticket whole; the next message opens a new ticket with a new number and says why', async () => {
    const first = await route(chatMessage({ chat: 'ev-chat', text: 'hello' }));
    const second = await route(chatMessage({ chat: 'ev-chat', text: 'more' }));
    expect(second.ticketId).toBe(first.ticketId);
    const old = first.ticketId;
    // Another conversation stays open: nothing of it may go.
    const other = await route(chatMessage({ chat: 'ev-other' }));
    await close(old);
    expect((await keysNaming(old)).length).toBeGreaterThanOrEqual(3); // the binding and two processed markers

    const r = await sweep();
    expect(r.evicted).toBeGreaterThanOrEqual(1);
    expect(await live(old)).toBeNull();
    expect(await keysNaming(old)).toEqual([]);
    // Gone from the stream too: no delete marker per evicted key.
    expect(await subjectsLeft(Buckets.tickets, old)).toBe(0);

    const again = await route(chatMessage({ chat: 'ev-chat', text: 'back after a month' }));
    expect(again.ticketId).not.toBe(old);
    expect(Number(again.ticketId.slice(2))).toBeGreaterThan(Number(old.slice(2)));
    expect(matchOf(again).rule).toBe('new-ticket');
    expect(matchOf(again).value).toContain(`${old} was closed long ago and evicted`);
    const next = await route(chatMessage({ chat: 'ev-chat', text: 'and again' }));
    expect(next.ticketId).toBe(again.ticketId);
    expect(matchOf(next).rule).toBe('open-conversation');

    // Nothing else lost: the open conversation keeps its ticket and its messages land there.
    expect((await live(other.ticketId))?.status).toBe('new');
    expect((await route(chatMessage({ chat: 'ev-other' }))).ticketId).toBe(other.ticketId);

    // The log and SQL keep the evicted ticket; the API says what happened to it.
    await gw.gateway.readModel!.caughtUp(10_000);
    expect(await sqlRow(old)).toMatchObject({ id: old, status: 'closed' });
    const listed = await api(`/v1/tickets?status=closed`);
    expect(listed.status).toBe(200);
    expect(JSON.stringify(listed.body)).toContain(old);
    const got = await api(`/v1/tickets/${old}`);
    expect(got.status).toBe(410);
    expect(got.body.error).toMatchObject({ code: 'ticket_evicted', field: 'id' });
    const log = await api(`/v1/tickets/${old}/log`);
    expect(log.status).toBe(200);
    expect(log.body.evicted).toBe(true);
    expect(log.body.log.filter((e: LogEntry) => e.kind === 'inbound')).toHaveLength(2);
    expect((await api(`/v1/tickets/T-999999/log`)).status).toBe(404);
    const reply = await gw.request('omni.cmd.reply', { ticketId: old, text: 'too late' });
    expect(reply).toMatchObject({ ok: false, error: { code: 'ticket_evicted', field: 'ticketId' } });

    // A second pass finds nothing more to do (the cursor moved past it).
    expect((await sweep()).evicted).toBe(0);
  });

  it('evicts a closed email ticket; a reply to it opens a new ticket naming the evicted one', async () => {
    const root = await route(emailMessage({ messageId: '<ev-root@client.ru>', from: 'olga@client.ru', subject: 'Заказ' }));
    await close(root.ticketId);
    await sweep();
    expect(await live(root.ticketId)).toBeNull();
    expect(await keysNaming(root.ticketId)).toEqual([]);
    const reply = await route(emailMessage({ messageId: '<ev-r2@client.ru>', from: 'olga@client.ru', inReplyTo: '<ev-root@client.ru>', subject: `RE: Заказ [#${root.ticketId}]` }));
    expect(reply.ticketId).not.toBe(root.ticketId);
    expect(matchOf(reply).rule).toBe('new-ticket');
    expect(matchOf(reply).value).toContain(`names ${root.ticketId}, closed long ago and evicted`);
  });

  it('a ticket opened for a Message-ID another sender held leaves no key behind: the next such mail gets a new number, not the evicted one', async () => {
    const reused = '<ev-reused@crm.example>';
    const mail = (from: string, n: string) => ({ ...emailMessage({ messageId: reused, from, subject: `Счёт ${n}` }), id: `email:support:ev-reused-${n}`, platform: { messageId: `ev-reused-${n}` } });
    const anna = await route(mail('anna@client.ru', '1'));
    const boris = await route(mail('boris@other.ru', '2'));
    expect(boris.ticketId).not.toBe(anna.ticketId);
    await close(boris.ticketId);
    await sweep();
    expect(await live(boris.ticketId)).toBeNull();
    expect(await keysNaming(boris.ticketId)).toEqual([]);
    const again = await route(mail('boris@other.ru', '3'));
    expect([anna.ticketId, boris.ticketId]).not.toContain(again.ticketId);
  });

  it('keeps a ticket that changed while it was being evicted', async () => {
    const t = await route(chatMessage({ chat: 'ev-changed' }));
    await close(t.ticketId);
    await sweep({
      beforeStep: async (step, id) => {
        if (step === 'record' && id === t.ticketId) expect((await gw.request('omni.cmd.status', { ticketId: id, status: 'open' })).ok).toBe(true);
      },
    });
    expect((await live(t.ticketId))?.status).toBe('open');
  });

  for (const step of ['floor', 'indexes', 'record'] as const) {
    it(`a sweep that fails before its "${step}" step misroutes nothing, and the next pass finishes`, async () => {
      const chat = `ev-crash-${step}`;
      const t = await route(chatMessage({ chat }));
      await route(chatMessage({ chat }));
      await close(t.ticketId);
      await new Promise((r) => setTimeout(r, 1100)); // past the 1 s reopen window: the next message opens a new ticket either way
      await expect(sweep({ beforeStep: (s, id) => {
        if (s === step && id === t.ticketId) throw new Error(`injected failure before ${s}`);
      } })).rejects.toThrow(/injected failure/);
      // Routing now, with the eviction half done: a new ticket that exists, whatever the state.
      const during = await route(chatMessage({ chat }));
      expect(during.ticketId).not.toBe(t.ticketId);
      expect(await live(during.ticketId)).not.toBeNull();
      // The next pass finishes the old ticket and leaves the new one alone.
      await sweep();
      expect(await live(t.ticketId)).toBeNull();
      expect(await keysNaming(t.ticketId)).toEqual([]);
      const after = await route(chatMessage({ chat }));
      expect(after.ticketId).toBe(during.ticketId);
      expect(matchOf(after).rule).toBe('open-conversation');
      expect(await sqlRow(t.ticketId)).toMatchObject({ status: 'closed' });
    });
  }

  it('never binds a new ticket below the floor when an older ticket outlived the evicted newer one (an agent reopened it)', async () => {
    const t0 = await route(chatMessage({ chat: 'ev-floor' }));
    await close(t0.ticketId);
    await new Promise((r) => setTimeout(r, 1200)); // past the 1 s reopen window
    const t1 = await route(chatMessage({ chat: 'ev-floor' }));
    expect(t1.ticketId).not.toBe(t0.ticketId);
    expect((await gw.request('omni.cmd.status', { ticketId: t0.ticketId, status: 'open' })).ok).toBe(true);
    await close(t1.ticketId);
    await sweep(); // T1 goes, the floor rises past its epoch; T0, open, stays
    expect(await live(t1.ticketId)).toBeNull();
    await close(t0.ticketId);
    await new Promise((r) => setTimeout(r, 1200));
    // A replica walking from epoch 0 (cold, or after taking the partition over) finds T0 closed past the window.
    const threader = new Threader(new TicketStore(gw.gateway.bus, 'T-', 1001), { reopenWindowMs: 1000, now: Date.now });
    const res = await threader.resolve(chatMessage({ chat: 'ev-floor' }));
    const conversation = IndexKeys.conversation('webhook', 'site', 'ev-floor');
    expect(res).toMatchObject({ kind: 'new', conversationKey: IndexKeys.conversationEpoch(conversation, 2) });
  });

  it('a restarted router (empty caches) threads an evicted conversation the same way', async () => {
    const t = await route(chatMessage({ chat: 'ev-restart' }));
    await close(t.ticketId);
    await sweep();
    // What a fresh process knows: nothing cached, epoch 0 to start from.
    const threader = new Threader(new TicketStore(gw.gateway.bus, 'T-', 1001), { reopenWindowMs: 1000, now: Date.now });
    const res = await threader.resolve(chatMessage({ chat: 'ev-restart' }));
    const conversation = IndexKeys.conversation('webhook', 'site', 'ev-restart');
    expect(res).toMatchObject({ kind: 'new', conversationKey: IndexKeys.conversationEpoch(conversation, 1) });
    expect(res.kind === 'new' && res.previous).toBeFalsy();
    expect(res.match.value).toContain(`${t.ticketId} was closed long ago and evicted`);
  });
});

describe('tickets.evictClosedAfter', () => {
  it('must be longer than the reopen window (or 0)', () => {
    const dir = testTempDir('omnigate-evict-');
    const file = join(dir, 'c.yaml');
    writeFileSync(file, 'router:\n  reopenWindow: 7d\ntickets:\n  evictClosedAfter: 3d\n');
    expect(() => loadConfig(file, {})).toThrow(ConfigError);
    expect(() => loadConfig(file, {})).toThrow(/tickets\.evictClosedAfter.*reopenWindow/);
    writeFileSync(file, 'tickets:\n  evictClosedAfter: 0\n');
    expect(loadConfig(file, {}).config.tickets.evictClosedAfter).toBe(0);
    writeFileSync(file, '{}\n');
    expect(loadConfig(file, {}).config.tickets.evictClosedAfter).toBe(30 * DAY);
  });
});
