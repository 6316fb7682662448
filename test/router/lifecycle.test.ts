import { createServer, type Server } from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startGateway, type TestGateway } from '../helpers/gateway.js';
import { chatMessage, publishEvent } from '../helpers/events.js';
import { failWrites } from '../helpers/fail-writes.js';
import { registry } from '../../src/core/metrics.js';
import type { Ticket } from '../../src/core/schema.js';

const H = 3_600_000;
const SECRET = 'lifecycle-secret-0123456789';

/** The helpdesk and the lead's chat behind the webhook channel: records callbacks; the lead's side can fail. */
class Callbacks {
  readonly got: Record<string, Array<{ text: string; ticketId?: string }>> = { site: [], leads: [] };
  leads: 'ok' | 'down' = 'ok';
  refused = 0;
  private server!: Server;
  port = 0;
  async start(): Promise<void> {
    this.server = createServer((req, res) => {
      let body = '';
      req.on('data', (d) => (body += d));
      req.on('end', () => {
        const account = req.url!.split('/').pop()!;
        if (account === 'leads' && this.leads === 'down') {
          this.refused++;
          return void res.writeHead(503).end('down');
        }
        const m = JSON.parse(body) as { text: string; ticketId?: string };
        this.got[account]!.push(m);
        res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ id: `cb-${Math.random()}` }));
      });
    });
    await new Promise<void>((r) => this.server.listen(0, '127.0.0.1', r));
    this.port = (this.server.address() as { port: number }).port;
  }
  connectors() {
    return ['site', 'leads'].map((account) => ({ type: 'webhook', account, secret: SECRET, callbackUrl: `http://127.0.0.1:${this.port}/cb/${account}` }));
  }
  stop(): void {
    this.server.close();
  }
}

async function until<T>(what: string, probe: () => Promise<T | undefined> | T | undefined, timeoutMs = 30_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await probe();
    if (v !== undefined && v !== false) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

async function metric(name: string, labels: string): Promise<number> {
  const text = await registry.metrics();
  const line = text.split('\n').find((l) => l.startsWith(`${name}{${labels}}`));
  return line ? Number(line.split(' ').pop()) : 0;
}

/**
 * An agent's answer that reached the customer (the satisfaction request rates it): replied, and
 * reported sent as a connector would (where one sends it too, the repeat is recognised).
 */
async function answered(gw: TestGateway, ticketId: string, account = 'site'): Promise<void> {
  const outboundId = (await gw.request('omni.cmd.reply', { ticketId, text: 'Исправили' })).result.outboundId as string;
  const { jetstream } = await import('@nats-io/jetstream');
  await jetstream(gw.nc).publish(`omni.status.webhook.${account}`, JSON.stringify({ v: 1, type: 'delivery.status', channel: 'webhook', account, attempts: 1, at: new Date().toISOString(), outboundId, ticketId, status: 'sent' }), { msgID: `status:${outboundId}:sent` });
  const deadline = Date.now() + 30_000;
  while (!(await gw.ticket(ticketId))?.firstResponseAt) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for the first response on ${ticketId}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

describe('lifecycle watcher: SLA (scans driven by the test clock)', () => {
  let gw: TestGateway;
  const cb = new Callbacks();
  beforeAll(async () => {
    await cb.start();
    gw = await startGateway({
      connectors: cb.connectors(),
      router: { sla: { enabled: true, firstResponse: '1h', noAnswer: '90m', businessHours: null, checkInterval: '1h', escalate: { channel: 'webhook', account: 'leads', conversationId: 'lead-chat' } } },
    });
  });
  afterAll(async () => {
    await gw?.stop();
    cb.stop();
  });

  it('reports a first-response breach once, in the log and as an event, escalates in human units, and records the delivery', async () => {
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
    expect(escalation.text).toBe(`⚠️ SLA ${created.ticketId}: нет первого ответа дольше 1 ч (Покупатель, webhook/site).`);
    const ticket = await until('the escalation recorded as delivered', async () => {
      const t = await gw.ticket(created.ticketId);
      return t?.escalations?.[0]?.outcome === 'delivered' ? t : undefined;
    });
    expect(ticket.escalations![0]).toMatchObject({ reason: 'first_response', outcome: 'delivered' });
  });

  it('starts the no-answer timer only after the first agent reply, and writes «1 ч 30 мин»', async () => {
    await publishEvent(gw.nc, chatMessage({ chat: 'sla-2' }));
    const created = await gw.waitForEvent((ev) => ev.type === 'ticket.message' && (ev.entry as any)?.event?.conversation?.id === 'sla-2');
    const sla = gw.gateway.sla!;
    await gw.request('omni.cmd.reply', { ticketId: created.ticketId, text: 'Смотрим' });
    await until('the first response', async () => (await gw.ticket(created.ticketId))?.firstResponseAt);
    await publishEvent(gw.nc, chatMessage({ chat: 'sla-2', text: 'Ну что там?' }));
    await until('the customer message', async () => ((await gw.ticket(created.ticketId))?.messageCount ?? 0) >= 2);
    expect(await sla.check(Date.now() + 80 * 60_000)).toBe(0);
    expect(await sla.check(Date.now() + 100 * 60_000)).toBe(1);
    const alert = await gw.waitForStreamMessage('OMNI_OUT', 'omni.out.webhook.leads', (m: any) => m.ticketId === created.ticketId);
    expect(alert.text).toContain('клиент ждёт ответа дольше 1 ч 30 мин');
  });

  it('decides a breach on the ticket as stored, not on the scan\'s stale copy', async () => {
    await publishEvent(gw.nc, chatMessage({ chat: 'sla-3' }));
    const opened = await gw.waitForEvent((ev) => ev.type === 'ticket.message' && (ev.entry as any)?.event?.conversation?.id === 'sla-3');
    const stale = (await gw.ticket(opened.ticketId))!;
    await gw.request('omni.cmd.reply', { ticketId: opened.ticketId, text: 'Уже отвечаем' });
    await until('the first response', async () => (await gw.ticket(opened.ticketId))?.firstResponseAt);
    // The scan read the ticket before the answer; the compare-and-set re-judges the stored record.
    expect(gw.gateway.sla!.sla!.breaches(stale, Date.now() + 2 * H)).toHaveLength(1);
    expect(await gw.gateway.sla!.sla!.scan([stale], Date.now() + 2 * H)).toBe(0);
    const t = (await gw.ticket(opened.ticketId))!;
    expect(t.sla?.firstResponseBreachedAt).toBeUndefined();
    expect(t.escalations).toBeUndefined();
  });

  it('a breach marked whose log entry then failed is reported by the next pass: one entry, one event, one alert', async () => {
    await publishEvent(gw.nc, chatMessage({ chat: 'sla-4' }));
    const opened = await gw.waitForEvent((ev) => ev.type === 'ticket.message' && (ev.entry as any)?.event?.conversation?.id === 'sla-4');
    // The breach is marked on the ticket, then its log entry fails (the log stream's leader cut
    // off). Before, the mark stayed and nothing else ever happened: no entry, no event, no alert.
    const fault = failWrites(gw.gateway.router!.journal, 'append', (ticketId, entry) => ticketId === opened.ticketId && entry.kind === 'sla');
    try {
      const sla = gw.gateway.sla!;
      await sla.check(Date.now() + 61 * 60_000);
      expect(fault.failures()).toBe(1);
      expect((await gw.ticket(opened.ticketId))?.sla?.unreported).toHaveLength(1);
      await sla.check(Date.now() + 62 * 60_000);
      const t = (await gw.ticket(opened.ticketId))!;
      expect(t.sla?.unreported).toBeUndefined();
      expect(t.escalations).toHaveLength(1);
      const entries = (await gw.gateway.router!.store.readLog(opened.ticketId)).filter((l) => l.entry.kind === 'sla');
      expect(entries).toMatchObject([{ entry: { breach: 'first_response' } }]);
      await gw.waitForEvent((ev) => ev.type === 'ticket.sla' && ev.ticketId === opened.ticketId);
      const alert = await gw.waitForStreamMessage('OMNI_OUT', 'omni.out.webhook.leads', (m: any) => m.ticketId === opened.ticketId);
      expect(alert.text).toContain('нет первого ответа');
      expect(await sla.check(Date.now() + 5 * H)).toBe(0);
      // The lead was told once, across the failed and the finishing pass.
      await until('the escalation delivered', async () => ((await gw.ticket(opened.ticketId))?.escalations?.[0]?.outcome === 'delivered' ? true : undefined));
      expect(cb.got.leads!.filter((m) => m.text.includes(opened.ticketId))).toHaveLength(1);
    } finally {
      fault.restore();
    }
  });
});

describe('lifecycle watcher: satisfaction (scans driven by the test clock)', () => {
  let gw: TestGateway;
  const cb = new Callbacks();
  beforeAll(async () => {
    await cb.start();
    gw = await startGateway({
      connectors: cb.connectors(),
      router: {
        csat: { enabled: true, delay: '1h', lowRating: 3 },
        sla: { checkInterval: '1h', escalate: { channel: 'webhook', account: 'leads', conversationId: 'lead-chat' } },
      },
    });
  });
  afterAll(async () => {
    await gw?.stop();
    cb.stop();
  });

  it('asks for a rating after close, once, records a bare 1–5 answer without reopening, and alerts the lead on a low one', async () => {
    const e = chatMessage({ chat: 'csat-1', from: 'client-csat' });
    await publishEvent(gw.nc, e);
    const created = await gw.waitForEvent((ev) => ev.type === 'ticket.created');
    await answered(gw, created.ticketId);
    await gw.request('omni.cmd.status', { ticketId: created.ticketId, status: 'resolved' });
    const watcher = gw.gateway.sla!;
    expect(await watcher.check(Date.now() + 30 * 60_000)).toBe(0);
    expect(await watcher.check(Date.now() + 2 * H)).toBe(1);
    expect(await watcher.check(Date.now() + 3 * H)).toBe(0); // asked once
    const request = await gw.waitForStreamMessage('OMNI_OUT', 'omni.out.webhook.site', (m: any) => m.ticketId === created.ticketId && m.purpose === 'satisfaction_request');
    expect(request.automated).toBe(true);
    expect(request.text).toContain(created.ticketId);
    const asked = (await gw.ticket(created.ticketId))!;
    expect(asked.csat?.sentAt).toBeTruthy();
    expect(asked.csat?.sendingUntil).toBeUndefined();

    await publishEvent(gw.nc, chatMessage({ chat: 'csat-1', from: 'client-csat', text: '2' }));
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

describe('through the HTTP channel, timers in seconds', () => {
  let gw: TestGateway;
  const cb = new Callbacks();
  beforeAll(async () => {
    await cb.start();
    gw = await startGateway({
      connectors: cb.connectors(),
      outbound: { maxAttempts: 3, backoffBase: '100ms', backoffMax: '200ms' },
      router: {
        language: 'ru',
        csat: { enabled: true, delay: '1s', lowRating: 2 },
        sla: { enabled: true, firstResponse: '2s', noAnswer: '2s', businessHours: null, checkInterval: '1s', escalate: { channel: 'webhook', account: 'leads', conversationId: 'lead-chat' } },
      },
    });
  });
  afterAll(async () => {
    await gw?.stop();
    cb.stop();
  });

  let n = 0;
  async function post(sender: string, text: string): Promise<void> {
    const res = await fetch(`${gw.httpUrl}/connectors/webhook/site/messages`, {
      method: 'POST',
      headers: { authorization: `Bearer ${SECRET}`, 'content-type': 'application/json' },
      body: JSON.stringify({ messageId: `http-${++n}-${Date.now()}`, sender: { id: sender, name: 'Клиент' }, text }),
    });
    expect(res.status).toBe(202);
  }

  /** Opens a ticket, answers it (so no SLA timer runs), resolves it and waits for the satisfaction request. */
  async function resolvedAndAsked(sender: string): Promise<Ticket> {
    await post(sender, 'Не проходит оплата');
    const created = await gw.waitForEvent((e) => e.type === 'ticket.message' && (e.entry as any)?.event?.sender?.id === sender, 30_000);
    await gw.request('omni.cmd.reply', { ticketId: created.ticketId, text: 'Исправили' });
    await until('the first response', async () => (await gw.ticket(created.ticketId))?.firstResponseAt);
    await gw.request('omni.cmd.status', { ticketId: created.ticketId, status: 'resolved' });
    await until('the satisfaction request at the callback', () => cb.got.site!.find((m) => m.ticketId === created.ticketId && /Оцените/.test(m.text)));
    return (await until('the request recorded', async () => {
      const t = await gw.ticket(created.ticketId);
      return t?.csat?.sentAt ? t : undefined;
    }))!;
  }

  it('a complaint that starts with a digit is a message: it reopens the ticket and records no rating', async () => {
    const t = await resolvedAndAsked('complaint@example.ru');
    await post('complaint@example.ru', '5 минут назад снова списали деньги!');
    await gw.waitForEvent((e) => e.type === 'ticket.status' && e.ticketId === t.id && e.status === 'open', 30_000);
    const after = (await gw.ticket(t.id))!;
    expect(after.csat?.rating).toBeUndefined();
    expect(after.status).toBe('open');
  });

  it('does not ask to rate an answer the customer never got: the ticket was closed while its last reply had failed', async () => {
    await publishEvent(gw.nc, chatMessage({ chat: 'csat-failed', from: 'client-csat-failed', account: 'unserved' }));
    const created = await gw.waitForEvent((ev) => ev.type === 'ticket.created' && ev.conversation?.id === 'csat-failed');
    const outboundId = (await gw.request('omni.cmd.reply', { ticketId: created.ticketId, text: 'Ответ, который не дойдёт' })).result.outboundId as string;
    // An account no connector serves: the only outcome of the reply is the one reported here.
    const { jetstream } = await import('@nats-io/jetstream');
    await jetstream(gw.nc).publish('omni.status.webhook.unserved', JSON.stringify({ v: 1, type: 'delivery.status', channel: 'webhook', account: 'unserved', attempts: 1, at: new Date().toISOString(), outboundId, ticketId: created.ticketId, status: 'failed', reason: 'blocked_by_user: the user blocked the bot' }));
    await gw.waitForEvent((ev) => ev.type === 'ticket.delivery_failed' && ev.ticketId === created.ticketId);
    await gw.request('omni.cmd.status', { ticketId: created.ticketId, status: 'closed' });
    const t = (await gw.ticket(created.ticketId))!;
    const satisfaction = gw.gateway.sla!.satisfaction!;
    expect(satisfaction.due(t, Date.now() + 2 * H)).toBe(false);
    expect(await satisfaction.request(created.ticketId, Date.now() + 2 * H)).toBe(false);
    expect((await gw.ticket(created.ticketId))!.csat).toBeUndefined();
  });

  it('does not ask to rate help never given, nor once the channel\'s reply window closed', async () => {
    await publishEvent(gw.nc, chatMessage({ chat: 'csat-unanswered', from: 'client-spam' }));
    const spam = await gw.waitForEvent((ev) => ev.type === 'ticket.created' && ev.conversation?.id === 'csat-unanswered');
    await gw.request('omni.cmd.status', { ticketId: spam.ticketId, status: 'closed' });
    const satisfaction = gw.gateway.sla!.satisfaction!;
    const unanswered = (await gw.ticket(spam.ticketId))!;
    expect(unanswered.firstResponseAt).toBeUndefined();
    expect(satisfaction.due(unanswered, Date.now() + 2 * H)).toBe(false);
    // Answered, closed, and the customer's last message 24 hours old by the time it is due (WhatsApp).
    const answeredTicket = { ...unanswered, firstResponseAt: new Date().toISOString() };
    expect(satisfaction.due(answeredTicket, Date.now() + 2 * H)).toBe(true);
    expect(satisfaction.due({ ...answeredTicket, replyWindowEndsAt: new Date(Date.now() + H).toISOString() }, Date.now() + 2 * H)).toBe(false);
    expect(satisfaction.due({ ...answeredTicket, replyWindowEndsAt: new Date(Date.now() + 3 * H).toISOString() }, Date.now() + 2 * H)).toBe(true);
  });

  it('a star scale is a rating: recorded, the ticket stays resolved', async () => {
    const t = await resolvedAndAsked('stars@example.ru');
    await post('stars@example.ru', '⭐⭐⭐⭐');
    const rating = await gw.waitForEvent((e) => e.type === 'ticket.rating' && e.ticketId === t.id, 30_000);
    expect(rating.entry).toMatchObject({ rating: 4, low: false });
    expect((await gw.ticket(t.id))!.status).toBe('resolved');
  });

  it('an escalation the lead\'s channel cannot take is retried, then recorded failed on the ticket and counted', async () => {
    const failedBefore = await metric('omnigate_escalations_total', 'outcome="failed"');
    cb.leads = 'down';
    try {
      await post('waiting@example.ru', 'Алло?');
      const created = await gw.waitForEvent((e) => e.type === 'ticket.message' && (e.entry as any)?.event?.sender?.id === 'waiting@example.ru', 30_000);
      await gw.waitForEvent((e) => e.type === 'ticket.sla' && e.ticketId === created.ticketId, 30_000);
      const t = await until('the escalation recorded failed', async () => {
        const x = await gw.ticket(created.ticketId);
        return x?.escalations?.find((e) => e.outcome === 'failed') ? x : undefined;
      });
      expect(t.escalations!.find((e) => e.outcome === 'failed')).toMatchObject({ reason: 'first_response' });
      const log = await gw.gateway.router!.store.readLog(created.ticketId);
      expect(log.map((l) => l.entry).filter((e) => e.kind === 'delivery' && e.status.ticketId === created.ticketId && e.status.status === 'failed')).toHaveLength(1);
      expect(log.map((l) => l.entry)).toContainEqual(expect.objectContaining({ kind: 'escalation', outcome: 'failed', reason: 'first_response' }));
      expect(await metric('omnigate_escalations_total', 'outcome="failed"')).toBeGreaterThan(failedBefore);
      expect(cb.refused).toBeGreaterThanOrEqual(3); // outbound.maxAttempts tries before giving up
    } finally {
      cb.leads = 'ok';
    }
  });

  it('the first-response alert reaches the lead, in human units', async () => {
    await post('slow@example.ru', 'Ответьте, пожалуйста');
    const created = await gw.waitForEvent((e) => e.type === 'ticket.message' && (e.entry as any)?.event?.sender?.id === 'slow@example.ru', 30_000);
    const alert = await until('the alert at the lead\'s callback', () => cb.got.leads!.find((m) => m.ticketId === created.ticketId));
    expect(alert.text).toBe(`⚠️ SLA ${created.ticketId}: нет первого ответа дольше 2 с (Клиент, webhook/site).`);
    await until('recorded delivered', async () => (await gw.ticket(created.ticketId))?.escalations?.some((e) => e.outcome === 'delivered'));
  });
});

describe('separate loops', () => {
  let gw: TestGateway;
  beforeAll(async () => {
    gw = await startGateway({ router: { csat: { enabled: true, delay: '1s' }, sla: { enabled: true, businessHours: null, checkInterval: '1s' } } });
  });
  afterAll(async () => gw?.stop());

  it('a failing SLA pass does not stop satisfaction requests', async () => {
    const errorsBefore = await metric('omnigate_lifecycle_errors_total', 'loop="sla"');
    gw.gateway.sla!.sla!.scan = async () => {
      throw new Error('simulated SLA failure');
    };
    await publishEvent(gw.nc, chatMessage({ chat: 'loops-1' }));
    const opened = await gw.waitForEvent((e) => e.type === 'ticket.message' && (e.entry as any)?.event?.conversation?.id === 'loops-1');
    await answered(gw, opened.ticketId);
    await gw.request('omni.cmd.status', { ticketId: opened.ticketId, status: 'closed' });
    const request = await gw.waitForStreamMessage('OMNI_OUT', 'omni.out.webhook.site', (m: any) => m.ticketId === opened.ticketId && m.purpose === 'satisfaction_request', 30_000);
    expect(request.text).toMatch(/Оцените/);
    await until('the SLA loop counted its failures', async () => (await metric('omnigate_lifecycle_errors_total', 'loop="sla"')) > errorsBefore);
  });
});
