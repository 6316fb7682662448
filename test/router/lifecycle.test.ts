import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startGateway, type TestGateway } from '../helpers/gateway.js';
import { chatMessage, publishEvent } from '../helpers/events.js';

const H = 3_600_000;

describe('lifecycle watcher: SLA', () => {
  let gw: TestGateway;
  beforeAll(async () => {
    gw = await startGateway({
      router: { sla: { enabled: true, firstResponse: '1h', noAnswer: '2h', businessHours: null, checkInterval: '1h', escalate: { channel: 'webhook', account: 'leads', conversationId: 'lead-chat' } } },
    });
  });
  afterAll(async () => gw?.stop());

  it('reports a first-response breach once, in the log and as an event, and escalates to the lead', async () => {
    const e = chatMessage({ chat: 'sla-1' });
    await publishEvent(gw.nc, e);
    const created = await gw.waitForEvent((ev) => ev.type === 'ticket.created');
    const sla = gw.gateway.sla!;
    expect(await sla.check(Date.now() + 30 * 60_000)).toBe(0); // 30 min: within the hour
    expect(await sla.check(Date.now() + 61 * 60_000)).toBe(1);
    expect(await sla.check(Date.now() + 5 * H)).toBe(0); // reported once
    const event = await gw.waitForEvent((ev) => ev.type === 'ticket.sla' && ev.ticketId === created.ticketId);
    expect(event.entry).toMatchObject({ kind: 'sla', breach: 'first_response', limitMs: H, escalatedTo: 'webhook/leads/lead-chat' });
    const escalation = await gw.waitForStreamMessage('OMNI_OUT', 'omni.out.webhook.leads', (m: any) => m.ticketId === created.ticketId);
    expect(escalation.conversation.id).toBe('lead-chat');
    expect(escalation.text).toMatch(new RegExp(`SLA ${created.ticketId}: нет первого ответа дольше 1 ч`));
  });
});

describe('lifecycle watcher: satisfaction', () => {
  let gw: TestGateway;
  beforeAll(async () => {
    gw = await startGateway({
      router: {
        csat: { enabled: true, delay: '1h', lowRating: 3 },
        sla: { checkInterval: '1h', escalate: { channel: 'webhook', account: 'leads', conversationId: 'lead-chat' } },
      },
    });
  });
  afterAll(async () => gw?.stop());

  it('asks for a rating after close, records a bare 1–5 answer without reopening, and alerts the lead on a low one', async () => {
    const e = chatMessage({ chat: 'csat-1', from: 'client-csat' });
    await publishEvent(gw.nc, e);
    const created = await gw.waitForEvent((ev) => ev.type === 'ticket.created');
    await gw.request('omni.cmd.status', { ticketId: created.ticketId, status: 'resolved' });
    const watcher = gw.gateway.sla!;
    expect(await watcher.check(Date.now() + 30 * 60_000)).toBe(0);
    expect(await watcher.check(Date.now() + 2 * H)).toBe(1);
    expect(await watcher.check(Date.now() + 3 * H)).toBe(0); // asked once
    const request = await gw.waitForStreamMessage('OMNI_OUT', 'omni.out.webhook.site', (m: any) => m.ticketId === created.ticketId);
    expect(request.automated).toBe(true);
    expect(request.text).toContain(created.ticketId);

    await publishEvent(gw.nc, chatMessage({ chat: 'csat-1', from: 'client-csat', text: '2, долго отвечали' }));
    const rating = await gw.waitForEvent((ev) => ev.type === 'ticket.rating' && ev.ticketId === created.ticketId);
    expect(rating.entry).toMatchObject({ kind: 'rating', rating: 2, low: true });
    expect(rating.status).toBe('resolved');
    const ticket = await gw.ticket(created.ticketId);
    expect(ticket!.status).toBe('resolved');
    expect(ticket!.csat).toMatchObject({ rating: 2 });
    const alert = await gw.waitForStreamMessage('OMNI_OUT', 'omni.out.webhook.leads', (m: any) => m.ticketId === created.ticketId);
    expect(alert.text).toMatch(/Низкая оценка 2\/5/);

    // Anything after the rating is a message again: it reopens the ticket.
    await publishEvent(gw.nc, chatMessage({ chat: 'csat-1', from: 'client-csat', text: '5' }));
    await gw.waitForEvent((ev) => ev.type === 'ticket.status' && ev.ticketId === created.ticketId && ev.status === 'open');
  });
});
