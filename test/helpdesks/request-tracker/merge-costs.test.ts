/**
 * Request Tracker merges, at the adapter's level (real RT 5, real nats-server for the media
 * store, the poller and the writer driven directly):
 *  - the poller asks RT for a ticket's merged-in tickets once, again only after a merge, not on
 *    every agent transaction; an answer's file is read from RT and stored once however many
 *    tickets the answer goes to, each of them with a reference of its own;
 *  - a customer message for an RT ticket an agent merged away is written to the surviving ticket
 *    by its own id, logged, and announced there once in a comment naming the merge.
 */
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { jetstream } from '@nats-io/jetstream';
import { Objm, type ObjectStore } from '@nats-io/obj';
import { pino } from 'pino';
import { MediaStore } from '../../../src/core/media.js';
import type { TicketEvent } from '../../../src/core/schema.js';
import { RtClient } from '../../../src/helpdesks/request-tracker/client.js';
import { RtPoller } from '../../../src/helpdesks/request-tracker/poller.js';
import { RtWriter } from '../../../src/helpdesks/request-tracker/adapter.js';
import { RequestTrackerOptions } from '../../../src/helpdesks/request-tracker/options.js';
import type { AgentAnswer, HelpdeskContext } from '../../../src/helpdesks/contract.js';
import { helpdeskTexts } from '../../../src/helpdesks/texts.js';
import { startNats, type TestNats } from '../../helpers/nats-server.js';
import { rtCall, rtInstalled, startRt, type TestRt } from '../../helpers/request-tracker.js';

const PDF = Buffer.concat([Buffer.from('%PDF-1.4\n'), Buffer.alloc(3000, 5)]);
let rt: TestRt;
let nats: TestNats;
let nc: NatsConnection;
let bucket: ObjectStore;
let client: RtClient;

beforeAll(async () => {
  await Promise.all([startRt().then((r) => (rt = r)), startNats().then((n) => (nats = n))]);
  nc = await connect({ servers: nats.url });
  bucket = await new Objm(jetstream(nc)).create('rt_merge_media');
  client = new RtClient({ url: rt.url, token: rt.token });
}, 240_000);
afterAll(async () => {
  await nc?.close();
  await nats?.stop();
  await rt?.stop();
});

const options = (rt: TestRt) => RequestTrackerOptions.parse({ url: rt.url, token: rt.token, user: 'root', startFrom: 0 });

async function omnigateTicket(ticketId: string): Promise<number> {
  return client.createTicket({ queue: 'General', subject: `customer ${ticketId}`, requestors: ['root'], content: 'first message', customFields: { 'External ID': ticketId } });
}

async function merge(from: number, into: number): Promise<void> {
  const res = await fetch(`${rt.url}/REST/1.0/ticket/${from}/merge/${into}`, { method: 'POST', body: new URLSearchParams({ user: rt.agentUser, pass: rt.agentPassword }) });
  expect(await res.text()).toContain('Merge completed');
}

const agent = async (path: string, body: unknown) => expect((await rtCall(rt, 'agent', 'POST', path, body)).status).toBe(201);

/** RT REST calls made while `fn` runs, by path without the query. */
async function rtRequests(fn: () => Promise<unknown>): Promise<string[]> {
  const real = globalThis.fetch;
  const seen: string[] = [];
  const spy = vi.spyOn(globalThis, 'fetch').mockImplementation((input, init) => {
    const url = String(input instanceof Request ? input.url : input);
    if (url.startsWith(rt.rest2)) seen.push(url.slice(rt.rest2.length).split('?')[0]!);
    return real(input, init);
  });
  try {
    await fn();
  } finally {
    spy.mockRestore();
  }
  return seen;
}

describe.skipIf(!rtInstalled())('request-tracker: merged tickets', () => {
  it('the poller searches for merged tickets once per ticket and merge, and reads and stores a file once for every ticket it goes to', async () => {
    const a = await omnigateTicket('T-501');
    const b = await omnigateTicket('T-502');
    const answers: AgentAnswer[] = [];
    const state = new Map<string, string>();
    const ctx: Pick<HelpdeskContext, 'takeAnswer' | 'taken' | 'state' | 'log' | 'signal'> = {
      takeAnswer: async (answer) => (answers.push(answer), { outcome: 'taken', ticketId: answer.ticketId!, replayed: false }),
      taken: async () => false,
      state: { get: async (k) => (state.has(k) ? { value: state.get(k)!, revision: 1 } : null), put: async (k, v) => (state.set(k, v), 1), delete: async (k) => void state.delete(k) },
      log: pino({ level: 'silent' }),
      signal: new AbortController().signal,
    };
    const media = new MediaStore(bucket, 1 << 20, 'helpdesk.rt');
    const puts = vi.spyOn(media, 'put');
    const poller = new RtPoller(client, options(rt), ctx, media, () => {});
    const signal = new AbortController().signal;
    await poller.pass(signal); // the tickets' own creation: nothing to take

    await agent(`/ticket/${a}/comment`, { Content: 'before the merge', ContentType: 'text/plain' });
    const before = await rtRequests(() => poller.pass(signal));
    await merge(b, a);
    await agent(`/ticket/${a}/correspond`, {
      Content: 'Акт во вложении',
      ContentType: 'text/plain',
      Attachments: [{ FileName: 'act.pdf', FileType: 'application/pdf', FileContent: PDF.toString('base64') }],
    });
    await agent(`/ticket/${a}/comment`, { Content: 'internal 1', ContentType: 'text/plain' });
    await agent(`/ticket/${a}/comment`, { Content: 'internal 2', ContentType: 'text/plain' });
    const calls = await rtRequests(() => poller.pass(signal));
    await agent(`/ticket/${a}/comment`, { Content: 'internal 3', ContentType: 'text/plain' });
    const later = await rtRequests(() => poller.pass(signal));

    // Everything reached both tickets' customers (the first comment only the one of A).
    expect(answers.map((x) => [x.ticketId, x.kind, 'text' in x ? x.text : x.status])).toEqual([
      ['T-501', 'note', 'before the merge'],
      ['T-501', 'reply', 'Акт во вложении'], ['T-502', 'reply', 'Акт во вложении'],
      ['T-501', 'note', 'internal 1'], ['T-502', 'note', 'internal 1'],
      ['T-501', 'note', 'internal 2'], ['T-502', 'note', 'internal 2'],
      ['T-501', 'note', 'internal 3'], ['T-502', 'note', 'internal 3'],
    ]);
    // One search for A's merged tickets before the merge, one after it (for three transactions), none for the last comment.
    expect([before, calls, later].map((c) => c.filter((p) => p === '/tickets').length)).toEqual([1, 1, 0]);
    // The file: read from RT once, stored once; one reference per ticket, both naming the same bytes.
    expect(calls.filter((p) => p.startsWith('/attachment/'))).toHaveLength(1);
    expect(calls.filter((p) => /^\/transaction\/\d+\/attachments$/.test(p))).toHaveLength(3); // one per correspond/comment
    expect(puts).toHaveBeenCalledTimes(1);
    const files = answers.filter((x) => x.kind === 'reply').flatMap((x) => (x.kind === 'reply' ? (x.attachments ?? []) : []));
    expect(files).toHaveLength(2);
    expect(new Set(files.map((f) => f.objectKey)).size).toBe(1);
    expect(new Set(files.map((f) => f.ref)).size).toBe(2);
    expect(await Promise.all(files.map(async (f) => (await media.lookup(f.ref!))?.ticketId))).toEqual(['T-501', 'T-502']);
    const objects = (await bucket.list()).map((o) => o.name.split('/')[0]);
    expect(objects.sort()).toEqual(['ref', 'ref', 'sha256']);
    expect(Buffer.from((await media.get(files[0]!.objectKey))!).equals(PDF)).toBe(true);
  }, 120_000);

  it('a customer message for an RT ticket merged away is written to the surviving ticket, logged, and announced there once', async () => {
    const a = await omnigateTicket('T-601');
    const b = await omnigateTicket('T-602');
    await merge(b, a);
    const lines: Array<Record<string, unknown>> = [];
    const log = pino({ level: 'info' }, { write: (s: string) => void lines.push(JSON.parse(s) as Record<string, unknown>) });
    const media = new MediaStore(bucket, 1 << 20, 'helpdesk.rt');
    const writer = new RtWriter(client, options(rt), media, log, () => {}, helpdeskTexts('en'));
    const message = (n: number) =>
      ({
        v: 1, type: 'ticket.message', id: `ev-${n}`, ticketId: 'T-602', ticketNumber: 602, channel: 'telegram', account: 'bot1', status: 'open', at: new Date().toISOString(),
        entry: { kind: 'inbound', event: { text: `customer message ${n}`, attachments: [] } },
      }) as unknown as TicketEvent;

    const calls = await rtRequests(() => writer.apply(message(1), { ticket: { externalId: String(b), url: '' }, uncertain: false }));
    expect(calls).toContain(`/ticket/${a}/correspond`);
    expect(calls).not.toContain(`/ticket/${b}/correspond`);
    await writer.apply(message(2), { ticket: { externalId: String(b), url: '' }, uncertain: false });
    // An attempt that may have landed is looked for where RT recorded it: not written twice.
    await writer.apply(message(2), { ticket: { externalId: String(b), url: '' }, uncertain: true });

    const parts = async (type: string) => {
      const txns = (await client.transactionsAfter(0, { types: [type] })).filter((t) => t.ticketId === a);
      return Promise.all(txns.map(async (t) => (await client.transactionParts(t.id)).map((p) => p.content ?? '').join('').trim()));
    };
    expect((await parts('Correspond')).filter((t) => t.startsWith('customer message'))).toEqual(['customer message 1', 'customer message 2']);
    const notices = (await parts('Comment')).filter((t) => t.includes('merged into this one'));
    expect(notices).toEqual([`omnigate ticket #602 was written to ticket #${b}, which was merged into this one: its customer's messages and omnigate's notes about it are written here from now on.`]);
    const warned = lines.filter((l) => l.survivingRtTicket === a && l.rtTicket === b);
    expect(warned).toHaveLength(3);
    expect(warned[0]!.msg).toBe(`RT ticket ${b} was merged into ${a}: writing this event there`);

    // After a restart (a new writer), the comment among our last ones there is not written again.
    const again = new RtWriter(client, options(rt), media, log, () => {}, helpdeskTexts('en'));
    await again.apply(message(3), { ticket: { externalId: String(b), url: '' }, uncertain: false });
    expect((await parts('Comment')).filter((t) => t.includes('merged into this one'))).toHaveLength(1);
  }, 120_000);
});
