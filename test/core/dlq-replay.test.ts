/**
 * `omnigate dlq --replay` for every source, end to end: a parked raw mail goes back through the
 * email connector's parser (omni.replay.email.<account> on the running gateway), a failed send
 * goes out again under its original id, loop-guard drops and refusals of a connector without a
 * replay are refused with the reason, and the CLI lists letters without the config's secrets.
 */
import { spawn } from 'node:child_process';
import { createServer } from 'node:http';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { deadLetters } from '../../src/dlq.js';
import { loadNatsSection } from '../../src/core/config.js';
import { RAW_MAIL } from '../../src/connectors/email/intake.js';
import { chatMessage, publishEvent } from '../helpers/events.js';
import { writeConfig } from '../helpers/process.js';
import { plainMail } from '../connectors/email/mails.js';
import { post, startApiHarness, SITE_SECRET, type ApiHarness } from '../api/support.js';

let h: ApiHarness;
/** The helpdesk's webhook receiver: refuses until `crmUp`, records what it took. */
let crmUp = false;
const crmTook: Array<{ delivery: string; body: any }> = [];
const crm = createServer((req, res) => {
  const chunks: Buffer[] = [];
  req.on('data', (c: Buffer) => chunks.push(c));
  req.on('end', () => {
    if (!crmUp) return void res.writeHead(503).end();
    crmTook.push({ delivery: String(req.headers['x-omnigate-delivery']), body: JSON.parse(Buffer.concat(chunks).toString('utf8')) });
    res.writeHead(204).end();
  });
});
beforeAll(async () => {
  await new Promise<void>((r) => crm.listen(0, '127.0.0.1', r));
  const crmUrl = `http://127.0.0.1:${(crm.address() as { port: number }).port}/hook`;
  h = await startApiHarness({
    webhooks: [{ name: 'crm', url: crmUrl, secret: 'crm-secret-0123456789', events: ['ticket.created'], backoffBase: '20ms', backoffMax: '50ms', retryFor: '300ms' }],
  }, {
    moreConnectors: [{
      type: 'email',
      account: 'support',
      mailboxes: [{
        address: 'support@example.ru',
        // Nothing listens there: the replay does not need the mailbox, only the parser.
        imap: { host: '127.0.0.1', port: 9, secure: false, starttls: false, user: 'support@example.ru', pass: 'imap-pass-not-used' },
        smtp: { host: '127.0.0.1', port: 9, secure: false, starttls: false },
      }],
    }],
  });
});
afterAll(async () => {
  await h?.stop();
  crm.close();
});

const nats = () => loadNatsSection(undefined, { OMNIGATE_NATS__URL: h.gw.nats.url });
async function replay(source: string): Promise<string[]> {
  const lines: string[] = [];
  await deadLetters(nats(), { source, limit: 100, replay: true, out: (l) => lines.push(l) });
  return lines;
}

describe('replay of a parked raw mail', () => {
  it('goes through the email parser and opens a ticket; a second replay is a duplicate', async () => {
    const raw = plainMail({ messageId: '<replay-1@client.example.ru>', subject: 'Счёт не пришёл', text: 'Добрый день! Не пришёл счёт.' });
    // As intake parks a mail it could not publish (e.g. the parser failed before a fix).
    await h.gw.gateway.bus.deadLetters.park({
      source: 'connector', scope: 'email.support', subject: 'omni.in.email.support', code: 'invalid_mail',
      reason: 'email support@example.ru folder INBOX uid 7: parser failed', payload: raw, meta: { kind: RAW_MAIL, mailbox: 'support@example.ru' },
    });
    const lines = await replay('inbound.email.support');
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(/\tinbound\.email\.support\tomni\.in\.email\.support\temail support@example\.ru folder INBOX uid 7: parser failed\treplayed$/);
    const e = await h.gw.waitForEvent((ev) => ev.type === 'ticket.message' && (ev.entry as any).event.email?.subject === 'Счёт не пришёл');
    expect((e.entry as any).event.text).toContain('Не пришёл счёт');

    const again = await replay('inbound.email.support');
    expect(again[0]).toMatch(/\treplayed: already taken before \(a duplicate, or done already\): nothing new written$/);
    const log = await h.gw.gateway.router!.store.readLog(e.ticketId);
    expect(log.filter((l) => l.entry.kind === 'inbound')).toHaveLength(1);
  });

  it('is refused when the letter holds no raw mail or names a mailbox not configured', async () => {
    await h.gw.gateway.bus.deadLetters.park({
      source: 'connector', scope: 'email.support', subject: 'omni.in.email.support', code: 'unreadable_mail',
      reason: 'no content', payload: { mailbox: 'support@example.ru', uid: 9 }, meta: undefined,
    });
    await h.gw.gateway.bus.deadLetters.park({
      source: 'connector', scope: 'email.support', subject: 'omni.in.email.support', code: 'invalid_mail',
      reason: 'other mailbox', payload: plainMail({}), meta: { kind: RAW_MAIL, mailbox: 'sales@example.ru' },
    });
    const lines = await replay('inbound.email.support');
    expect(lines.find((l) => l.includes('\tno content\t'))).toMatch(/\trefused: the letter holds no raw mail/);
    expect(lines.find((l) => l.includes('\tother mailbox\t'))).toMatch(/\trefused: mailbox sales@example\.ru is not configured/);
  });
});

describe('replay of a failed send', () => {
  it('sends it again under its original id once the cause is fixed, and only once', async () => {
    const id = await h.openTicket('replay-out');
    h.callbackStatus = () => 400; // the channel refuses: a permanent failure, parked
    const r = await h.api(`/v1/tickets/${id}/replies`, post({ text: 'Счёт отправлен повторно' }));
    const outboundId = r.body.outboundId as string;
    expect(outboundId).toContain(`:${h.gw.gateway.bus.installationId}:`);
    await h.gw.waitForEvent((e) => e.type === 'ticket.delivery' && e.ticketId === id && (e.entry as any).status.status === 'failed');
    // The letter names its ticket: "which replies of T-… failed" is answered without opening payloads.
    await h.gw.waitForStreamMessage('OMNI_DLQ', 'omni.dlq.outbound.webhook.site', (d: any) => d.meta?.outboundId === outboundId && d.meta?.ticketId === id);

    h.callbackStatus = () => 200;
    const lines = await replay('outbound.webhook.site');
    expect(lines.find((l) => l.includes('http_400'))).toMatch(new RegExp(`\\treplayed: outbound ${outboundId.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}$`));
    const sent = await h.gw.waitForEvent((e) => e.type === 'ticket.delivery' && e.ticketId === id && (e.entry as any).status.status === 'sent');
    expect((sent.entry as any).status).toMatchObject({ outboundId, purpose: 'agent_reply' });
    expect(h.sent.filter((m) => m.id === outboundId)).toHaveLength(1);
    expect(h.sent.find((m) => m.id === outboundId)).toMatchObject({ purpose: 'agent_reply', text: expect.stringContaining('Счёт отправлен повторно') });
    // The failure had put the ticket back to open; the customer has the answer now and wrote nothing since.
    await expect.poll(async () => (await h.api(`/v1/tickets/${id}`)).body.ticket.status, { timeout: 20_000 }).toBe('pending');

    const again = await replay('outbound.webhook.site');
    expect(again.find((l) => l.includes('http_400'))).toMatch(/\trefused: outbound .* was sent since$/);
  });
});

describe('replay of a failed send that fails again', () => {
  it('is a second failure on the ticket: logged, announced, the ticket back to open, a letter of its own', async () => {
    const id = await h.openTicket('replay-out-again');
    h.callbackStatus = () => 400;
    const outboundId = (await h.api(`/v1/tickets/${id}/replies`, post({ text: 'Ответ, который не дойдёт дважды' }))).body.outboundId as string;
    const failedOnce = (e: any) => e.type === 'ticket.delivery_failed' && e.ticketId === id;
    await h.gw.waitForEvent(failedOnce);
    await h.gw.waitForStreamMessage('OMNI_DLQ', 'omni.dlq.outbound.webhook.site', (d: any) => d.meta?.outboundId === outboundId);
    // An agent answers something else meanwhile: the ticket is pending again, its last delivery sent.
    h.callbackStatus = () => 200;
    await h.api(`/v1/tickets/${id}/replies`, post({ text: 'Другой ответ' }));
    await h.gw.waitForEvent((e) => e.type === 'ticket.delivery' && e.ticketId === id && (e.entry as any).status.status === 'sent');
    h.callbackStatus = () => 400;
    const lines = await replay('outbound.webhook.site');
    expect(lines.filter((l) => l.endsWith(`\treplayed: outbound ${outboundId}`))).toHaveLength(1);
    // Within the duplicate window of the first failure: before, its ids made this one a duplicate.
    const again = await h.gw.waitForEvent((e) => failedOnce(e) && (e.entry as any).status.round === 1);
    expect((again.entry as any).status).toMatchObject({ outboundId, status: 'failed', round: 1 });
    expect(again.status).toBe('open');
    await h.gw.waitForStreamMessage('OMNI_DLQ', 'omni.dlq.outbound.webhook.site', (d: any) => d.meta?.outboundId === outboundId && / \(replay 1\)$/.test(d.reason));
    const ticket = (await h.api(`/v1/tickets/${id}`)).body.ticket;
    expect(ticket).toMatchObject({ status: 'open', lastDelivery: { status: 'failed', outboundId } });
  });
});

describe('replay of a webhook delivery parked after its retry budget', () => {
  it('is POSTed once more by the dispatcher, with its original delivery id', async () => {
    const id = await h.openTicket('replay-hook');
    const letter = await h.gw.waitForStreamMessage('OMNI_DLQ', 'omni.dlq.webhook.crm', (d: any) => JSON.parse(d.payload).ticketId === id, 20_000);
    expect(letter).toMatchObject({ code: 'retries_exhausted', meta: { type: 'ticket.created' } });
    expect(crmTook).toEqual([]);

    crmUp = true;
    const lines = await replay('webhook.crm');
    expect(lines.length).toBeGreaterThan(0);
    for (const l of lines) expect(l).toMatch(/\tretry budget exhausted after \d+ attempts?: receiver answered 503\treplayed$/);
    // Every parked event went out once more (earlier tests opened tickets too); this one once.
    expect(crmTook).toHaveLength(lines.length);
    expect(crmTook.filter((t) => t.body.ticketId === id)).toEqual([
      { delivery: `crm-${letter.meta.sequence}`, body: expect.objectContaining({ type: 'ticket.created', ticketId: id }) },
    ]);
  });
});

describe('letters that cannot be replayed', () => {
  it('refuses loop-guard drops and a connector without a replay, saying why', async () => {
    const auto = { ...chatMessage({ chat: 'replay-auto' }), automated: 'auto-reply' };
    await publishEvent(h.gw.nc, auto);
    await h.gw.waitForStreamMessage('OMNI_DLQ', 'omni.dlq.router.ignored', (d: any) => d.payload.includes('replay-auto'));
    const guard = await replay('router.ignored');
    expect(guard.find((l) => l.includes('loop guard'))).toMatch(/\trefused: dropped on purpose by the loop guard/);

    const res = await fetch(`${h.gw.httpUrl}/connectors/webhook/site/messages`, { method: 'POST', headers: { authorization: `Bearer ${SITE_SECRET}` }, body: '{not json' });
    expect(res.status).toBe(400);
    await h.gw.waitForStreamMessage('OMNI_DLQ', 'omni.dlq.inbound.webhook.site');
    const refused = await replay('inbound.webhook.site');
    expect(refused[0]).toMatch(/\trefused: the webhook connector takes no replays: what it refused was refused to its sender/);
  });
});

describe('omnigate dlq (the CLI)', () => {
  it('lists letters with only the nats section usable: the secrets of the rest may be unset', async () => {
    const file = writeConfig({
      nats: { url: h.gw.nats.url },
      api: { tokens: [{ name: 'helpdesk', token: '${HELPDESK_TOKEN}' }] },
      connectors: [{ type: 'telegram', account: 'main', token: '${TELEGRAM_TOKEN}' }],
    });
    const root = new URL('../..', import.meta.url).pathname;
    const env = { ...process.env };
    delete env.HELPDESK_TOKEN;
    delete env.TELEGRAM_TOKEN;
    const child = spawn(process.execPath, ['--import', 'tsx', join(root, 'src/cli.ts'), 'dlq', '--source', 'router.ignored', '--config', file], { cwd: root, env });
    let out = '';
    let err = '';
    child.stdout.on('data', (c: Buffer) => (out += c.toString()));
    child.stderr.on('data', (c: Buffer) => (err += c.toString()));
    const code = await new Promise<number | null>((resolve) => child.on('exit', resolve));
    expect(err).toMatch(/omnigate: \d+ dead letter\(s\)/);
    expect(code).toBe(0);
    expect(out).toMatch(/\trouter\.ignored\tomni\.in\.webhook\.site\tloop guard: auto-reply message opens no ticket/);
  });
});
