/**
 * Resolving or closing a ticket whose reply never reached the customer (outside trial: "failed
 * replies that look answered"). The close goes through — spam, duplicates and thanks said
 * elsewhere are closed too — but the answer warns naming the reply, the log's status entry
 * records it, and the ticket stays findable with failedReplies=true until the reply goes out.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { rmSync } from 'node:fs';
import { post, startApiHarness, type ApiHarness } from './support.js';
import { pgliteDir } from '../helpers/sql.js';

describe('closing a ticket over a reply that failed', () => {
  let h: ApiHarness;
  let dir: string;

  beforeAll(async () => {
    dir = await pgliteDir();
    h = await startApiHarness({ database: { dataDir: dir } });
  }, 120_000);
  afterAll(async () => {
    await h?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  const listed = async (ticketId: string, query = '') => ((await h.api(`/v1/tickets?limit=500${query}`)).body.tickets as Array<Record<string, unknown>>).find((t) => t.id === ticketId);

  it('resolves and closes with a warning naming the reply, logs it, and keeps the ticket among failed replies until the reply goes out', async () => {
    const ticketId = await h.openTicket('cf-blocked', 'cf-blocked@example.ru', 'Где мой заказ?');
    h.callbackStatus = (r) => (r.text === 'Заказ отправлен сегодня' ? 400 : 200);
    const sent = await h.api(`/v1/tickets/${ticketId}/replies`, post({ text: 'Заказ отправлен сегодня' }));
    expect(sent.status).toBe(202);
    const outboundId = sent.body.outboundId as string;
    await h.gw.waitForEvent((ev) => ev.type === 'ticket.delivery_failed' && ev.ticketId === ticketId);

    const resolved = await h.api(`/v1/tickets/${ticketId}/status`, post({ status: 'resolved', author: { id: 'agent-3' } }));
    expect(resolved.status).toBe(200);
    expect(resolved.body).toMatchObject({ ticketId, status: 'resolved' });
    expect(resolved.body.warnings).toEqual([
      { code: 'undelivered_reply', outboundId, at: expect.any(String), reason: expect.stringMatching(/^http_400/), message: expect.stringContaining(outboundId) },
    ]);

    // The log's status entry says the ticket was resolved with the reply undelivered.
    const { log } = (await h.api(`/v1/tickets/${ticketId}`)).body as { log: Array<Record<string, any>> };
    const change = log.filter((e) => e.kind === 'status' && e.to === 'resolved');
    expect(change).toHaveLength(1);
    expect(change[0]).toMatchObject({ author: { id: 'agent-3' }, reason: expect.stringContaining(outboundId), undeliveredReplies: [{ outboundId, reason: expect.stringMatching(/^http_400/) }] });

    // Still listed as a ticket whose customer has no answer, resolved or not.
    await expect.poll(async () => (await listed(ticketId, '&failedReplies=true'))?.status, { timeout: 30_000 }).toBe('resolved');
    expect((await listed(ticketId))!.failedReplies).toEqual([expect.objectContaining({ outboundId })]);
    expect((await h.api(`/v1/tickets/${ticketId}`)).body.ticket.failedReplies).toEqual([expect.objectContaining({ outboundId })]);

    // The volume report tells a resolve over an undelivered reply apart (today, Moscow time, is in the range).
    const day = (offset: number) => new Date(Date.now() + offset * 86_400_000).toISOString().slice(0, 10);
    await expect.poll(async () => (await h.api(`/v1/reports/volume?from=${day(-1)}&to=${day(2)}`)).body.rows, { timeout: 30_000 }).toEqual([
      expect.objectContaining({ group: 'all', resolved: 1, resolvedUndelivered: 1 }),
    ]);

    // Closed next: the same warning; retried with its key, the same answer.
    const closeOnce = () => h.api(`/v1/tickets/${ticketId}/status`, post({ status: 'closed' }, { 'idempotency-key': 'cf-close-1' }));
    const closed = await closeOnce();
    expect(closed.status).toBe(200);
    expect(closed.body.warnings).toEqual([expect.objectContaining({ code: 'undelivered_reply', outboundId })]);
    expect((await closeOnce()).body).toEqual(closed.body);
    await expect.poll(async () => (await listed(ticketId, '&failedReplies=true&status=closed'))?.id, { timeout: 30_000 }).toBe(ticketId);

    // The reply goes out after all (replayed from the dead letters): off the list, still closed.
    h.callbackStatus = () => 200;
    expect((await h.api(`/v1/dead-letters/replay?source=outbound&ticket=${encodeURIComponent(ticketId)}`, { method: 'POST' })).status).toBe(200);
    await h.gw.waitForEvent((ev) => ev.type === 'ticket.delivery' && ev.ticketId === ticketId && (ev.entry as { status?: { status?: string } })?.status?.status === 'sent');
    await expect.poll(async () => (await listed(ticketId)) ?? {}, { timeout: 30_000 }).not.toHaveProperty('failedReplies');
    expect((await h.api(`/v1/tickets/${ticketId}`)).body.ticket).toMatchObject({ status: 'closed' });
  });

  it('a close with every reply delivered (or none sent) answers no warning and logs no reason', async () => {
    h.callbackStatus = () => 200;
    const ticketId = await h.openTicket('cf-spam', 'cf-spam@example.ru', 'Купите рекламу');
    const closed = await h.api(`/v1/tickets/${ticketId}/status`, post({ status: 'closed' }));
    expect(closed.status).toBe(200);
    expect(closed.body).toEqual({ ticketId, from: 'new', status: 'closed' });
    const { log } = (await h.api(`/v1/tickets/${ticketId}`)).body as { log: Array<Record<string, any>> };
    const change = log.find((e) => e.kind === 'status' && e.to === 'closed')!;
    expect(change).not.toHaveProperty('undeliveredReplies');
    expect(change).not.toHaveProperty('reason');
  });
});
