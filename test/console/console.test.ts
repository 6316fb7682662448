/**
 * /console in a real Chromium (Debian's /usr/bin/chromium driven by playwright-core) against a
 * real gateway (nats-server, router, API) with the WhatsApp Web connector on the fake socket its
 * own tests use, reached through a reverse proxy that mounts the gateway under a path prefix
 * (so every URL of the page must be relative). Screenshots of every screen are written to
 * docs/console/ when OMNIGATE_CONSOLE_SCREENSHOTS=1 (how the committed ones were made).
 */
import { testTempDir } from '../helpers/temp-dirs.js';
import { existsSync, mkdirSync } from 'node:fs';
import { createServer, request, type Server } from 'node:http';
import { join } from 'node:path';
import { chromium, type Browser, type Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { setSocketFactory } from '../../src/connectors/whatsapp/socket.js';
import { DisconnectReason } from '../../src/connectors/whatsapp/baileys.js';
import { startGateway, type TestGateway } from '../helpers/gateway.js';
import { startNats, type TestNats } from '../helpers/nats-server.js';
import { chatMessage, publishEvent } from '../helpers/events.js';
import { MediaServer, SocketPool } from '../connectors/whatsapp/fake-socket.js';
import { ME, waConfig } from '../connectors/whatsapp/harness.js';

const CHROMIUM = '/usr/bin/chromium';
const OPS = 'ops-token-0123456789abcdef';
const VIEWER = 'viewer-token-0123456789abc';
const PREFIX = '/ops/omnigate';
const SHOTS = process.env.OMNIGATE_CONSOLE_SCREENSHOTS === '1' ? join(import.meta.dirname, '../../docs/console') : testTempDir('omnigate-console-shots-');
const haveChromium = existsSync(CHROMIUM);
if (!haveChromium) console.warn(`console browser tests skipped: ${CHROMIUM} is missing (apt-get install chromium; .ci/run installs it)`);

let nats: TestNats;
let media: MediaServer;
let pool: SocketPool;
let gw: TestGateway;
let proxy: Server;
let browser: Browser;
let base: string;

/** Mounts the gateway under PREFIX, as a reverse proxy in front of it would (streams, SSE included). */
function startProxy(target: string): Promise<Server> {
  const to = new URL(target);
  const server = createServer((req, res) => {
    if (!req.url?.startsWith(`${PREFIX}/`)) return void res.writeHead(404).end('outside the prefix');
    const upstream = request({ host: to.hostname, port: to.port, method: req.method, path: req.url.slice(PREFIX.length), headers: req.headers }, (up) => {
      res.writeHead(up.statusCode ?? 502, up.headers);
      up.pipe(res);
    });
    upstream.on('error', () => res.destroy());
    req.pipe(upstream);
  });
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve(server)));
}

async function shot(page: Page, name: string): Promise<void> {
  mkdirSync(SHOTS, { recursive: true });
  await page.screenshot({ path: join(SHOTS, `${name}.png`), fullPage: true });
}

async function signIn(page: Page, token: string): Promise<void> {
  await page.goto(`${base}/console`);
  // Keyboard only: the field has a label, Enter submits.
  await page.getByLabel(/API token|API-токен/).fill(token);
  await page.keyboard.press('Enter');
  await page.locator('#who').filter({ hasText: /\S/ }).waitFor();
}

beforeAll(async () => {
  if (!haveChromium) return;
  nats = await startNats();
  media = new MediaServer();
  await media.start();
  pool = new SocketPool(media);
  setSocketFactory(pool.factory);
  const wa = waConfig();
  gw = await startGateway({
    ...wa,
    api: { tokens: [{ name: 'ops', token: OPS }, { name: 'viewer', token: VIEWER, readOnly: true }] },
  }, { nats });
  proxy = await startProxy(gw.httpUrl);
  base = `http://127.0.0.1:${(proxy.address() as { port: number }).port}${PREFIX}`;
  browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox', '--disable-dev-shm-usage', '--disable-gpu'] });
}, 120_000);

afterAll(async () => {
  await browser?.close();
  proxy?.close();
  await gw?.stop();
  setSocketFactory(undefined);
  await media?.stop();
  await nats?.stop();
}, 120_000);

describe.skipIf(!haveChromium)('console in Chromium', () => {
  let page: Page;

  it('signs in with a token behind a path prefix; a wrong token is refused', async () => {
    const context = await browser.newContext({ locale: 'en-GB', viewport: { width: 1280, height: 860 } });
    page = await context.newPage();
    await page.goto(`${base}/console`);
    expect(page.url()).toBe(`${base}/console/`);
    await expect.poll(() => page.locator('h1').textContent()).toBe('Sign in to omnigate');
    expect(await page.locator('#nav').isHidden()).toBe(true);
    await shot(page, 'sign-in');
    await page.getByLabel('API token').fill('not-a-token-at-all-000');
    await page.getByRole('button', { name: 'Sign in' }).click();
    await page.getByRole('alert').waitFor();
    expect(await page.getByRole('alert').textContent()).toContain('refused');
    await signIn(page, OPS);
    expect(await page.locator('#who').textContent()).toBe('Signed in as ops');
    await page.locator('tr[data-connector="whatsapp/wa1"]').waitFor();
  }, 60_000);

  it('shows the WhatsApp QR replaced as it rotates and the state moving to connected', async () => {
    const s1 = await pool.nth(1);
    s1.ev.emit('connection.update', { connection: 'connecting' });
    s1.ev.emit('connection.update', { qr: '2@first-qr-ref,bm9pc2U=,aWRlbnRpdHk=,YWR2' });
    const state = page.locator('tr[data-connector="whatsapp/wa1"] [data-state]').first();
    await expect.poll(() => state.getAttribute('data-state'), { timeout: 20_000 }).toBe('pairing_needed');
    await page.getByRole('link', { name: 'Pairing' }).click();
    await expect.poll(() => page.locator('#qr').getAttribute('data-qr'), { timeout: 20_000 }).toBe('2@first-qr-ref,bm9pc2U=,aWRlbnRpdHk=,YWR2');
    expect(await page.locator('#pairing-code').textContent()).toBe('OMNI2GAT');
    const firstSrc = await page.locator('#qr').getAttribute('src');
    expect(await page.locator('#qr').evaluate((img) => { const i = img as unknown as { complete: boolean; naturalWidth: number }; return i.complete && i.naturalWidth > 0; })).toBe(true);
    await shot(page, 'whatsapp-pairing');

    // WhatsApp rotates the code: the page replaces it by itself.
    s1.ev.emit('connection.update', { qr: '2@second-qr-ref,bm9pc2U=,aWRlbnRpdHk=,YWR2' });
    await expect.poll(() => page.locator('#qr').getAttribute('data-qr'), { timeout: 20_000 }).toBe('2@second-qr-ref,bm9pc2U=,aWRlbnRpdHk=,YWR2');
    expect(await page.locator('#qr').getAttribute('src')).not.toBe(firstSrc);

    // The phone scanned: creds stored, restart, the new socket opens.
    s1.ev.emit('creds.update', { me: { id: ME, lid: '99887766:7@lid', name: 'Поддержка' }, registered: true });
    s1.close(DisconnectReason.restartRequired, 'restart required');
    const s2 = await pool.nth(2);
    s2.ev.emit('connection.update', { connection: 'open' });
    await expect.poll(() => page.locator('#pairing-state').getAttribute('data-state'), { timeout: 20_000 }).toBe('connected');
    expect(await page.locator('#pairing-status').textContent()).toBe('Connected: the phone is linked.');
    expect(await page.locator('#qr').isHidden()).toBe(true);

    await page.getByRole('link', { name: 'Back to channels' }).click();
    await expect.poll(() => state.getAttribute('data-state'), { timeout: 20_000 }).toBe('connected');
    const row = page.locator('tr[data-connector="whatsapp/wa1"]');
    expect(await row.locator('td').nth(3).textContent()).toContain('pairing_needed'); // last problem shown
    expect(await row.locator('td').nth(4).textContent()).toContain('whatsapp.wa1.'); // lease key and holder
    await shot(page, 'channels');
  }, 90_000);

  it('restarts a connector from the channels screen', async () => {
    const before = pool.sockets.length;
    await page.getByRole('button', { name: 'Restart whatsapp/wa1' }).click();
    await expect.poll(() => page.locator('#toast').textContent(), { timeout: 40_000 }).toMatch(/^Restart of whatsapp\/wa1 done on replica /);
    const fresh = await pool.nth(before + 1, 30_000);
    fresh.ev.emit('connection.update', { connection: 'open' });
    const state = page.locator('tr[data-connector="whatsapp/wa1"] [data-state]').first();
    await expect.poll(() => state.getAttribute('data-state'), { timeout: 20_000 }).toBe('connected');
  }, 90_000);

  let ticketId = '';
  it('replays a dead letter and sees it become a ticket', async () => {
    const event = chatMessage({ channel: 'webhook', account: 'site', chat: 'dl-chat-1', from: 'customer-42', text: 'Заказ 123 так и не пришёл' });
    // As the router parks an event it could not take (here: before a fix was deployed).
    await gw.gateway.bus.deadLetters.park({ source: 'router', subject: 'omni.in.webhook.site', code: 'routing_failed', reason: 'routing failed: ticket store unavailable', payload: JSON.stringify(event) });
    await page.getByRole('link', { name: 'Dead letters' }).click();
    await page.getByLabel('Source').fill('router');
    await page.getByRole('button', { name: 'Show' }).click();
    const row = page.locator('#dl-results tbody tr').first();
    await row.waitFor();
    expect(await row.textContent()).toContain('routing_failed');
    await shot(page, 'dead-letters');
    await row.getByRole('link').click();
    await page.locator('#dl-replay').waitFor();
    expect(await page.locator('pre').textContent()).toContain('Заказ 123');
    await page.locator('#dl-replay').click();
    await expect.poll(() => page.locator('#dl-outcome li').getAttribute('data-outcome'), { timeout: 20_000 }).toBe('replayed');
    await shot(page, 'dead-letter');
    const created = await gw.waitForEvent((e) => e.type === 'ticket.created' && e.conversation?.id === 'dl-chat-1', 20_000);
    ticketId = created.ticketId;

    await page.getByRole('link', { name: 'Tickets' }).click();
    await page.getByLabel('Ticket number, contact or text').fill('customer-42');
    await page.keyboard.press('Enter');
    await page.locator(`tr[data-ticket="${ticketId}"]`).waitFor();
    await page.getByLabel('Ticket number, contact or text').fill(String(created.ticketNumber));
    await page.keyboard.press('Enter');
    await page.locator(`tr[data-ticket="${ticketId}"]`).waitFor();
    await shot(page, 'tickets');
  }, 90_000);

  it('opens the ticket and reads why each message was threaded there', async () => {
    const second = chatMessage({ channel: 'webhook', account: 'site', chat: 'dl-chat-1', from: 'customer-42', text: 'Номер заказа 123, оплачен вчера' });
    await publishEvent(gw.nc, second);
    await gw.waitForEvent((e) => e.type === 'ticket.message' && e.ticketId === ticketId);
    const edit = {
      v: 1, type: 'message.edited', id: `webhook:site:edit:${second.platform.messageId}:1`, channel: 'webhook', account: 'site',
      conversation: second.conversation, sender: second.sender, targetPlatformMessageId: second.platform.messageId, text: 'Номер заказа 124, оплачен вчера',
      platform: { messageId: second.platform.messageId }, receivedAt: new Date().toISOString(),
    };
    await publishEvent(gw.nc, edit);
    await gw.waitForEvent((e) => e.type === 'ticket.edited' && e.ticketId === ticketId);
    const note = await fetch(`${gw.httpUrl}/v1/tickets/${ticketId}/notes`, {
      method: 'POST', headers: { authorization: `Bearer ${OPS}`, 'content-type': 'application/json' }, body: JSON.stringify({ text: 'Проверить оплату в банке', author: { id: 'anna', name: 'Анна' } }),
    });
    expect(note.status).toBe(201);
    const reply = await fetch(`${gw.httpUrl}/v1/tickets/${ticketId}/replies`, {
      method: 'POST', headers: { authorization: `Bearer ${OPS}`, 'content-type': 'application/json' }, body: JSON.stringify({ text: 'Здравствуйте! Проверяем оплату, ответим в течение часа.', author: { id: 'anna', name: 'Анна' } }),
    });
    expect(reply.status).toBe(202);
    const { outboundId } = (await reply.json()) as { outboundId: string };
    // The site's chat widget reports the reply delivered (as a connector would).
    gw.nc.publish('omni.status.webhook.site', JSON.stringify({ v: 1, type: 'delivery.status', outboundId, ticketId, channel: 'webhook', account: 'site', status: 'delivered', attempts: 1, at: new Date().toISOString() }));
    await gw.waitForEvent((e) => e.type === 'ticket.delivery' && e.ticketId === ticketId);
    await page.locator(`tr[data-ticket="${ticketId}"] a`).click();
    const log = page.locator('#ticket-log');
    await log.waitFor();
    const rules = await log.locator('li[data-kind="inbound"] .why').evaluateAll((els) => els.map((e) => e.getAttribute('data-rule')));
    expect(rules).toEqual(['new-ticket', 'open-conversation']);
    const whys = await log.locator('li[data-kind="inbound"] .why').allTextContents();
    expect(whys[0]).toContain('Threaded here by new-ticket');
    expect(whys[1]).toMatch(/Threaded here by open-conversation: .*dl-chat-1/);
    // Whose words the edit puts there: the sender, as on the message itself.
    expect(await log.locator('li[data-kind="edited"] .meta').allTextContents()).toContain('edited · Покупатель (customer-42)');
    expect(await log.locator('li[data-kind="note"]').textContent()).toContain('Проверить оплату');
    expect(await log.locator('li[data-kind="outbound"]').textContent()).toContain('Reply by Анна');
    expect(await log.locator('li[data-kind="delivery"]').textContent()).toContain('Delivery: delivered');
    // No failed replies: nothing in their place (an absent part was once written as the text "null").
    expect(await page.locator('#failed-replies').count()).toBe(0);
    expect(await page.locator('#main').evaluate((main) => [...main.childNodes].filter((n) => n.nodeType === 3 /* a text node */).map((n) => n.textContent))).toEqual([]);
    expect(await page.locator('#main').innerText()).not.toMatch(/\bnull\b/);
    await shot(page, 'ticket');
  }, 60_000);

  it('keeps a reply that never reached the customer in sight, with a link to its dead letters and a mark in the list', async () => {
    await publishEvent(gw.nc, chatMessage({ channel: 'webhook', account: 'site', chat: 'failed-chat-1', from: 'customer-77', text: 'Где мой заказ?' }));
    const { ticketId: failedTicket } = await gw.waitForEvent((e) => e.type === 'ticket.created' && e.conversation?.id === 'failed-chat-1');
    const reply = await fetch(`${gw.httpUrl}/v1/tickets/${failedTicket}/replies`, {
      method: 'POST', headers: { authorization: `Bearer ${OPS}`, 'content-type': 'application/json' }, body: JSON.stringify({ text: 'Заказ в пути' }),
    });
    const { outboundId } = (await reply.json()) as { outboundId: string };
    gw.nc.publish('omni.status.webhook.site', JSON.stringify({ v: 1, type: 'delivery.status', outboundId, ticketId: failedTicket, channel: 'webhook', account: 'site', status: 'failed', reason: 'http_410: widget closed', attempts: 1, at: new Date().toISOString() }));
    await gw.waitForEvent((e) => e.type === 'ticket.delivery_failed' && e.ticketId === failedTicket);
    await page.goto(`${base}/console/#/ticket/${encodeURIComponent(failedTicket)}`);
    const box = page.locator('#failed-replies');
    await box.waitFor();
    expect(await box.textContent()).toContain('Replies that did not reach the customer: 1');
    expect(await box.textContent()).toContain('http_410: widget closed');
    expect(await box.locator('a').getAttribute('href')).toBe(`#/dead-letters?source=outbound&ticket=${encodeURIComponent(failedTicket)}`);

    // The list marks it too, and shows until when a ticket with a reply window (WhatsApp) may be
    // answered freely; customer text stays text (a name made of markup renders no element).
    const windowEnds = new Date(Date.now() + 24 * 3_600_000).toISOString();
    const markup = chatMessage({ channel: 'webhook', account: 'site', chat: 'window-chat-1', text: 'Посылка не пришла' });
    markup.sender.displayName = '<img src=x onerror="document.title=\'pwned\'">';
    markup.replyWindowEndsAt = windowEnds;
    await publishEvent(gw.nc, markup);
    const { ticketId: windowTicket } = await gw.waitForEvent((e) => e.type === 'ticket.created' && e.conversation?.id === 'window-chat-1');
    await page.goto(`${base}/console/#/tickets?r=${Date.now()}`);
    const failedRow = page.locator(`tr[data-ticket="${failedTicket}"]`);
    await failedRow.waitFor();
    expect(await failedRow.locator('.failed-mark').textContent()).toBe('failed replies: 1');
    expect(await failedRow.locator('.reply-window').count()).toBe(0);
    const windowRow = page.locator(`tr[data-ticket="${windowTicket}"]`);
    expect(await windowRow.locator('.reply-window').textContent()).toMatch(/^free-form reply until /);
    expect(await windowRow.locator('.reply-window time').getAttribute('datetime')).toBe(windowEnds);
    expect(await windowRow.locator('.failed-mark').count()).toBe(0);
    expect(await windowRow.textContent()).toContain('<img src=x onerror=');
    expect(await page.locator('#ticket-results img').count()).toBe(0);
    expect(await page.title()).not.toBe('pwned');
  }, 60_000);

  it('tails ticket events live', async () => {
    await page.getByRole('link', { name: 'Live' }).click();
    await expect.poll(() => page.locator('#live-status').textContent(), { timeout: 20_000 }).toBe('Connected: new ticket events appear here.');
    await publishEvent(gw.nc, chatMessage({ channel: 'webhook', account: 'site', chat: 'live-chat-1', text: 'Добрый день, вопрос по доставке' }));
    const item = page.locator('#live-list li[data-type="ticket.created"]').first();
    await item.waitFor({ timeout: 20_000 });
    expect(await item.textContent()).toContain('вопрос по доставке');
    await shot(page, 'live');
  }, 60_000);

  it('a read-only token sees but cannot act: no buttons, and the server refuses (403)', async () => {
    await gw.gateway.bus.deadLetters.park({ source: 'router', subject: 'omni.in.webhook.site', code: 'routing_failed', reason: 'parked for the read-only check', payload: JSON.stringify(chatMessage({ channel: 'webhook', account: 'site', chat: 'ro-chat' })) });
    const context = await browser.newContext({ locale: 'en-GB' });
    const ro = await context.newPage();
    await signIn(ro, VIEWER);
    expect(await ro.locator('#who').textContent()).toBe('Signed in as viewer (read-only)');
    await ro.locator('tr[data-connector="whatsapp/wa1"]').waitFor();
    expect(await ro.getByRole('button', { name: /Restart/ }).count()).toBe(0);
    await ro.goto(`${base}/console/#/dead-letters?reason=read-only`);
    const row = ro.locator('#dl-results tbody tr').first();
    await row.waitFor();
    expect(await ro.locator('#dl-replay-all').count()).toBe(0);
    const seq = await row.getAttribute('data-seq');
    await row.getByRole('link').click();
    // The payload may hold personal data: a read-only token is told it is withheld instead.
    await ro.getByText('a read-only token sees no payload', { exact: false }).waitFor();
    expect(await ro.locator('pre').count()).toBe(0);
    expect(await ro.locator('#dl-replay').count()).toBe(0);
    // The page hides the button; the server is what enforces it.
    const refused = await ro.evaluate(async ([s, token]) => {
      const r = await fetch(`../v1/dead-letters/${s}/replay`, { method: 'POST', headers: { authorization: `Bearer ${token}` } });
      return { status: r.status, body: await r.json() };
    }, [seq, VIEWER] as const);
    expect(refused).toEqual({ status: 403, body: { error: { code: 'forbidden', message: 'token "viewer" is read-only' } } });
    const restart = await fetch(`${gw.httpUrl}/v1/connectors/whatsapp/wa1/restart`, { method: 'POST', headers: { authorization: `Bearer ${VIEWER}` } });
    expect(restart.status).toBe(403);
    await context.close();
  }, 60_000);

  it('speaks Russian to a Russian browser and switches language on request', async () => {
    const context = await browser.newContext({ locale: 'ru-RU' });
    const ru = await context.newPage();
    await ru.goto(`${base}/console/`);
    await expect.poll(() => ru.locator('h1').textContent()).toBe('Вход в omnigate');
    expect(await ru.locator('html').getAttribute('lang')).toBe('ru');
    await signIn(ru, OPS);
    await expect.poll(() => ru.locator('h1').textContent()).toBe('Каналы');
    // The server's refusals are written in English: the Russian page says them in Russian, a
    // validation refusal naming its field (the server's text was shown as it came before).
    const go = (hash: string) => ru.evaluate((to) => { (globalThis as unknown as { location: { hash: string } }).location.hash = to; }, hash);
    await go('#/dead-letters?source=a..b');
    await expect.poll(() => ru.getByRole('alert').textContent()).toBe('Запрос не удался: Значение не принято: поле «source».');
    await go('#/dead-letters/987654321');
    await expect.poll(() => ru.getByRole('alert').textContent()).toBe('Запрос не удался: Не найдено.');
    // Statuses and states in Russian, the code in the title (and beside it where logs and docs name it).
    await go('#/channels');
    await expect.poll(() => ru.locator('h1').textContent()).toBe('Каналы');
    const wa = ru.locator('tr[data-connector="whatsapp/wa1"]');
    await expect.poll(() => wa.locator('[data-state="connected"]').textContent(), { timeout: 20_000 }).toBe('подключён');
    expect(await wa.locator('[data-state="connected"]').getAttribute('title')).toBe('connected');
    expect(await wa.locator('td').nth(3).textContent()).toMatch(/нужна привязка\s*pairing_needed/);
    await go('#/dead-letters?source=router');
    await expect.poll(() => ru.locator('#dl-results tbody tr').first().locator('td').nth(2).textContent()).toBe('маршрутизатор router');
    await go(`#/ticket/${ticketId}`);
    await ru.locator('#ticket-log').waitFor();
    expect(await ru.locator('#main dd .state').getAttribute('title')).toBe('pending');
    expect(await ru.locator('#main dd .state').textContent()).toBe('ждёт клиента');
    expect(await ru.locator('#ticket-log li[data-kind="delivery"]').textContent()).toContain('Доставка: доставлено');
    await go('#/tickets');
    await ru.locator('#ticket-results tbody tr').first().waitFor();
    expect(await ru.locator('#ticket-status option').allTextContents()).toEqual(['любой', 'новое', 'открыто', 'ждёт клиента', 'решено', 'закрыто']);
    expect(await ru.locator('#ticket-results tbody .state').first().textContent()).toMatch(/^[а-яё ]+$/);
    await go('#/channels');
    await expect.poll(() => ru.locator('h1').textContent()).toBe('Каналы');
    await ru.getByLabel('Язык').selectOption('en');
    await expect.poll(() => ru.locator('h1').textContent()).toBe('Channels');
    expect(await ru.locator('html').getAttribute('lang')).toBe('en');
    // The heading of a new screen takes focus, so keyboard and screen-reader users start there.
    expect(await ru.evaluate(() => (globalThis as unknown as { document: { activeElement?: { id: string } } }).document.activeElement?.id)).toBe('screen-title');
    await context.close();
  }, 60_000);

  it('pages the ticket list and says so when NATS is away (a failing screen replaces the one before)', async () => {
    for (let i = 0; i < 60; i++) await publishEvent(gw.nc, chatMessage({ chat: `page-chat-${i}`, text: `Заявка ${i}` }));
    await gw.waitForEvent((e) => e.type === 'ticket.created' && e.conversation?.id === 'page-chat-59', 30_000);
    const page = await browser.newPage();
    await signIn(page, OPS);
    await expect.poll(async () => {
      await page.goto(`${base}/console/#/tickets?r=${Date.now()}`);
      await page.locator('#ticket-results table, #ticket-results p').first().waitFor();
      return page.locator('#ticket-results tbody tr').count();
    }, { timeout: 30_000 }).toBe(50);
    await page.locator('#tickets-more').click();
    await expect.poll(() => page.locator('#ticket-results tbody tr').count()).toBeGreaterThan(50);
    // NATS away: a banner on every screen, and a screen that cannot load says so in its own place.
    await nats.kill('SIGTERM');
    try {
      await page.locator('#outage').filter({ hasText: /NATS/ }).waitFor({ timeout: 20_000 });
      await page.goto(`${base}/console/#/dead-letters/1`);
      await expect.poll(() => page.locator('h1').textContent(), { timeout: 30_000 }).toBe('Could not open this screen');
      expect(await page.locator('#ticket-results').count()).toBe(0);
      // A slow failing screen left behind does not overwrite the one opened meanwhile.
      await page.goto(`${base}/console/#/ticket/T-1001`);
      await page.waitForTimeout(300);
      await page.goto(`${base}/console/#/channels`);
      await expect.poll(() => page.locator('#main').textContent(), { timeout: 30_000 }).toContain('replicas cannot be asked');
      await page.waitForTimeout(12_000); // past the ticket screen's request timeout
      expect(await page.locator('#main').textContent()).toContain('replicas cannot be asked');
    } finally {
      await nats.restart();
    }
    await page.locator('#outage').waitFor({ state: 'hidden', timeout: 60_000 });
    await page.close();
  }, 180_000);
});
