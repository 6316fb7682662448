/**
 * The console's HTTP side without a browser, against a real gateway: the static files (relative
 * redirect, security headers), the session, connectors gathered from every replica over NATS
 * (two gateways on one nats-server), dead-letter filters and refusals, and the ticket event tail
 * as server-sent events.
 */
import { readFileSync } from 'node:fs';
import { pathToFileURL } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startGateway, type TestGateway } from '../helpers/gateway.js';
import { startNats, type TestNats } from '../helpers/nats-server.js';
import { chatMessage, publishEvent } from '../helpers/events.js';
import { ThreadMatch } from '../../src/core/schema.js';

const OPS = 'ops-token-api-0123456789ab';
const VIEWER = 'viewer-token-api-012345678';
const config = {
  api: { tokens: [{ name: 'ops', token: OPS }, { name: 'viewer', token: VIEWER, readOnly: true }] },
  connectors: [{ type: 'webhook', account: 'site', secret: 'site-secret-0123456789abcdef' }],
};

let nats: TestNats;
let gw: TestGateway;
let second: TestGateway;

const get = async (path: string, token = OPS) => {
  const r = await fetch(`${gw.httpUrl}${path}`, { headers: { authorization: `Bearer ${token}` } });
  return { status: r.status, body: (await r.json()) as any };
};
const post = async (path: string, token = OPS) => {
  const r = await fetch(`${gw.httpUrl}${path}`, { method: 'POST', headers: { authorization: `Bearer ${token}` } });
  return { status: r.status, body: (await r.json()) as any };
};

beforeAll(async () => {
  nats = await startNats();
  gw = await startGateway(config, { nats });
  // A second replica on the same bus: it stands by for the lease-holding connectors, and answers too.
  second = await startGateway(config, { nats });
}, 120_000);
afterAll(async () => {
  await second?.stop();
  await gw?.stop();
  await nats?.stop();
}, 120_000);

describe('console static files', () => {
  it('redirects /console relatively and serves the page with a strict CSP, without a token', async () => {
    const r = await fetch(`${gw.httpUrl}/console`, { redirect: 'manual' });
    expect(r.status).toBe(308);
    expect(r.headers.get('location')).toBe('console/');
    const page = await fetch(`${gw.httpUrl}/console/`);
    expect(page.status).toBe(200);
    expect(page.headers.get('content-type')).toBe('text/html; charset=utf-8');
    expect(page.headers.get('content-security-policy')).toContain("script-src 'self'");
    const html = await page.text();
    expect(html).toContain('src="console.js"');
    expect(html).not.toMatch(/(src|href)="\//); // relative URLs only: works under a path prefix
    const js = await fetch(`${gw.httpUrl}/console/console.js`);
    expect(js.headers.get('content-type')).toBe('text/javascript; charset=utf-8');
    expect(await js.text()).not.toMatch(/fetch\(['"`]\//);
    expect((await fetch(`${gw.httpUrl}/console/../package.json`)).status).toBe(404);
    expect((await fetch(`${gw.httpUrl}/console/nothing.js`)).status).toBe(404);
  });
});

describe('console texts', () => {
  it('has every text in English and Russian, and every key the page uses', async () => {
    const assets = new URL('../../src/console/assets/', import.meta.url);
    const { TEXTS } = (await import(pathToFileURL(new URL('i18n.js', assets).pathname).href)) as { TEXTS: Record<'en' | 'ru', Record<string, string>> };
    expect(Object.keys(TEXTS.ru).sort()).toEqual(Object.keys(TEXTS.en).sort());
    const source = readFileSync(new URL('console.js', assets), 'utf8') + readFileSync(new URL('index.html', assets), 'utf8');
    const used = [...source.matchAll(/\bt\('([\w.-]+)'|data-i18n="([\w.-]+)"|\['(?:[\w.-]+)'(?:, '[\w.-]+')*\]/g)].flatMap((m) => (m[1] ?? m[2] ?? '').split(',')).filter(Boolean);
    const listed = [...source.matchAll(/'((?:channels|dl|tickets)\.[\w]+)'/g)].map((m) => m[1]!);
    const missing = [...new Set([...used, ...listed])].filter((k) => !(k in TEXTS.en));
    expect(missing).toEqual([]);
    // Every threading rule the router can record is explained, in both languages.
    for (const rule of ThreadMatch.shape.rule.options) {
      expect(TEXTS.en[`rule.${rule}`], rule).toBeTruthy();
      expect(TEXTS.ru[`rule.${rule}`], rule).toBeTruthy();
    }
  });

  it('says the server\'s refusals in Russian on a Russian page, naming the field; English keeps the server\'s words', async () => {
    const assets = new URL('../../src/console/assets/', import.meta.url);
    const { refusalText } = (await import(pathToFileURL(new URL('i18n.js', assets).pathname).href)) as { refusalText: (lang: string, r: Record<string, unknown>) => string };
    const throttled = { status: 429, code: 'too_many_auth_failures', message: 'too many wrong tokens from this address: refused without checking for 42 s (api.authThrottle)', retryAfterS: 42 };
    expect(refusalText('ru', throttled)).toBe('Слишком много неверных токенов с этого адреса: попробуйте через 42 с.');
    expect(refusalText('en', throttled)).toBe(throttled.message);
    expect(refusalText('ru', { status: 401, code: 'unauthorized', message: 'invalid bearer token' })).toBe('Шлюз не принял токен.');
    expect(refusalText('ru', { status: 404, code: 'not_found', message: 'no dead letter at sequence 5' })).toBe('Не найдено.');
    expect(refusalText('ru', { status: 400, code: 'invalid_request', message: 'seq must be a positive integer', field: 'seq' })).toBe('Значение не принято: поле «seq».');
    expect(refusalText('ru', { status: 400, code: 'invalid_request', message: 'x' })).toBe('Запрос отклонён как неверный.');
    // A code the console has no text for, or no JSON at all (a proxy's page): what there is.
    expect(refusalText('ru', { status: 409, code: 'in_progress', message: 'still processing' })).toBe('still processing');
    expect(refusalText('ru', { status: 502, message: 'HTTP 502' })).toBe('HTTP 502');
  });
});

describe('console API', () => {
  it('says who the token is', async () => {
    expect(await get('/v1/session')).toEqual({ status: 200, body: { token: 'ops', readOnly: false, ticketPrefix: 'T-' } });
    expect((await get('/v1/session', VIEWER)).body.readOnly).toBe(true);
    expect((await get('/v1/session', 'wrong-token-0000000000')).status).toBe(401);
  });

  it('lists connectors from every replica, with last event time and lease holders', async () => {
    const posted = await fetch(`${gw.httpUrl}/connectors/webhook/site/messages`, {
      method: 'POST', headers: { authorization: 'Bearer site-secret-0123456789abcdef', 'content-type': 'application/json' },
      body: JSON.stringify({ type: 'message', messageId: 'form-1', conversationId: 'visitor-1', sender: { id: 'visitor-1' }, text: 'Здравствуйте' }),
    });
    expect(posted.status).toBeLessThan(300);
    const { status, body } = await get('/v1/connectors');
    expect(status).toBe(200);
    expect(body.replicas).toHaveLength(2);
    expect(body.replicas).toEqual(expect.arrayContaining([gw.gateway.connectors.instanceId, second.gateway.connectors.instanceId]));
    const site = body.connectors.find((c: any) => c.channel === 'webhook' && c.account === 'site');
    expect(site.replicas).toHaveLength(2);
    const mine = site.replicas.find((r: any) => r.replica === gw.gateway.connectors.instanceId);
    expect(mine.state).toBe('connected');
    expect(Date.parse(mine.lastEventAt)).toBeGreaterThan(Date.now() - 60_000);
  });

  it('restarts a connector on the replica hosting it; unknown ones are 404, read-only tokens 403', async () => {
    const r = await post('/v1/connectors/webhook/site/restart');
    expect(r.status).toBe(200);
    // Both replicas run the webhook channel (it takes no lease): both restart it.
    expect(r.body.results.map((x: any) => x.replica).sort()).toEqual([gw.gateway.connectors.instanceId, second.gateway.connectors.instanceId].sort());
    expect(r.body.results.every((x: any) => x.restarted)).toBe(true);
    // The connector's route was mounted again by the new instance and still takes posts.
    const posted = await fetch(`${gw.httpUrl}/connectors/webhook/site/messages`, {
      method: 'POST', headers: { authorization: 'Bearer site-secret-0123456789abcdef', 'content-type': 'application/json' },
      body: JSON.stringify({ type: 'message', messageId: 'form-2', conversationId: 'visitor-2', sender: { id: 'visitor-2' }, text: 'После перезапуска' }),
    });
    expect(posted.status).toBeLessThan(300);
    await gw.waitForEvent((e) => e.type === 'ticket.created' && e.conversation?.id === 'visitor-2', 20_000);
    expect((await post('/v1/connectors/telegram/nobody/restart')).status).toBe(404);
    expect((await post('/v1/connectors/bad.name/x/restart')).status).toBe(400);
    expect((await post('/v1/connectors/webhook/site/restart', VIEWER)).status).toBe(403);
  }, 60_000);

  it('filters dead letters by source prefix and reason, and refuses a replay of everything', async () => {
    const bus = gw.gateway.bus;
    await bus.deadLetters.park({ source: 'connector', scope: 'email.support', subject: 'omni.in.email.support', code: 'invalid_mail', reason: 'parser failed on uid 7', payload: 'raw mail' });
    await bus.deadLetters.park({ source: 'connector', scope: 'webhook.site', subject: 'omni.in.webhook.site', code: 'invalid_payload', reason: 'text: required', payload: '{}' });
    await bus.deadLetters.park({ source: 'router', subject: 'omni.in.webhook.site', code: 'routing_failed', reason: 'store unavailable', payload: JSON.stringify(chatMessage({ chat: 'dl-api-1' })) });
    const inbound = await get('/v1/dead-letters?source=inbound');
    expect(inbound.body.letters.map((l: any) => l.source)).toEqual(['inbound.webhook.site', 'inbound.email.support']);
    const email = await get('/v1/dead-letters?source=inbound.email');
    expect(email.body.letters.map((l: any) => l.code)).toEqual(['invalid_mail']);
    // A reply that failed for good names its ticket: listed with it, and found by it.
    await bus.deadLetters.park({ source: 'outbound', scope: 'webhook.site', subject: 'omni.out.webhook.site', code: 'http_400', reason: 'http 400', payload: '{}', meta: { outboundId: 'out-77', ticketId: 'T-77' } });
    const ofTicket = await get('/v1/dead-letters?ticket=T-77');
    expect(ofTicket.body.letters).toEqual([expect.objectContaining({ source: 'outbound.webhook.site', ticketId: 'T-77', code: 'http_400' })]);
    expect((await get('/v1/dead-letters?source=outbound&ticket=T-78')).body.letters).toEqual([]);
    expect((await get('/v1/dead-letters?ticket=%20t-77')).body.letters).toHaveLength(1); // as typed into a search box
    // A time filter, as the CLI's --since: letters parked before it are left out.
    expect((await get(`/v1/dead-letters?ticket=T-77&since=${encodeURIComponent(new Date(Date.now() + 60_000).toISOString())}`)).body.letters).toEqual([]);
    expect((await get(`/v1/dead-letters?ticket=T-77&since=${encodeURIComponent(new Date(Date.now() - 60_000).toISOString())}`)).body.letters).toHaveLength(1);
    expect((await get('/v1/dead-letters?since=yesterday')).body.error).toMatchObject({ field: 'since' });
    const byReason = await get('/v1/dead-letters?reason=STORE');
    expect(byReason.body.letters.map((l: any) => l.code)).toEqual(['routing_failed']);
    const one = await get(`/v1/dead-letters/${email.body.letters[0].seq}`);
    expect(one.body).toMatchObject({ source: 'inbound.email.support', payload: 'raw mail', payloadEncoding: 'utf8' });
    expect((await get('/v1/dead-letters/999999')).status).toBe(404);
    expect((await get('/v1/dead-letters?source=a b')).status).toBe(400);
    // An empty part names no subject: the server refused the consumer, and this was a 500.
    for (const source of ['a..b', 'inbound.', '.a', '.']) {
      const empty = await get(`/v1/dead-letters?source=${source}`);
      expect(empty.status, source).toBe(400);
      expect(empty.body.error).toMatchObject({ code: 'invalid_request', field: 'source', message: expect.stringContaining('none empty') });
    }
    // An unknown parameter is refused naming it (it was ignored, and every letter listed).
    const since = await get('/v1/dead-letters?since=zz');
    expect(since.status).toBe(400);
    expect(since.body.error).toMatchObject({ code: 'invalid_request', field: 'since' });
    expect((await post('/v1/dead-letters/replay')).status).toBe(400);
    // Numbers in digits only (review of stop 47): Number() read 0x10 as 16 and `true` as 1.
    for (const [query, field] of [['limit=0x10', 'limit'], ['limit=1e1', 'limit'], ['upTo=true', 'upTo'], ['upTo=0x1F', 'upTo']]) {
      const bad = await get(`/v1/dead-letters?${query}`);
      expect(bad.status, query).toBe(400);
      expect(bad.body.error, query).toMatchObject({ code: 'invalid_request', field });
      expect((await post(`/v1/dead-letters/replay?source=router&${query}`)).status, query).toBe(400);
    }

    // A filtered replay: the router letter goes back in and opens a ticket.
    const replayed = await post('/v1/dead-letters/replay?source=router&reason=routing_failed');
    expect(replayed.body.results).toEqual([{ seq: byReason.body.letters[0].seq, outcome: 'replayed' }]);
    await gw.waitForEvent((e) => e.type === 'ticket.created' && e.conversation?.id === 'dl-api-1', 20_000);
  }, 60_000);

  it('a flood of one source does not hide another source\'s letters; upTo bounds a page to what was shown', async () => {
    const bus = gw.gateway.bus;
    const letter = (reason: string) => ({ source: 'router' as const, subject: 'omni.in.webhook.site', code: 'routing_failed', reason, payload: '{}' });
    await bus.deadLetters.park(letter('before the flood'));
    // A webhook receiver down for a day: more letters of its own than a listing looks at.
    for (let i = 0; i < 5_200; i += 400) {
      await Promise.all(Array.from({ length: 400 }, (_, k) => bus.deadLetters.park({ source: 'webhook', scope: 'crm', subject: 'omni.events.ticket.message', code: 'http_500', reason: `receiver down ${i + k}`, payload: '{}' })));
    }
    const router = await get('/v1/dead-letters?source=router&reason=before the flood');
    expect(router.body.letters.map((l: any) => l.reason)).toEqual(['before the flood']);
    // The flooding source itself: its 5,000 newest, found by bisection on the server's counts.
    const crm = await get('/v1/dead-letters?source=webhook.crm&limit=500');
    expect(crm.body.scanned).toBe(5_000);
    expect(crm.body.letters).toHaveLength(500);
    const newest = crm.body.letters[0].seq;
    const older = await get(`/v1/dead-letters?source=webhook.crm&limit=10&upTo=${newest - 100}`);
    expect(older.body.letters[0].seq).toBe(newest - 100);
    await bus.deadLetters.park(letter('after the page was shown'));
    const page = await get(`/v1/dead-letters?source=router&upTo=${router.body.letters[0].seq}`);
    expect(page.body.letters.map((l: any) => l.reason)).not.toContain('after the page was shown');
    expect(page.body.letters[0].seq).toBe(router.body.letters[0].seq);
  }, 120_000);

  it('tails ticket events as server-sent events', async () => {
    const abort = new AbortController();
    const res = await fetch(`${gw.httpUrl}/v1/events/tickets`, { headers: { authorization: `Bearer ${VIEWER}` }, signal: abort.signal });
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toBe('text/event-stream; charset=utf-8');
    const reader = res.body!.pipeThrough(new TextDecoderStream()).getReader();
    let text = '';
    text += (await reader.read()).value; // the opening comment: the consumer exists from here on
    await publishEvent(gw.nc, chatMessage({ chat: 'sse-chat-1', text: 'Событие для потока' }));
    while (!text.includes('sse-chat-1')) text += (await reader.read()).value;
    abort.abort();
    const block = text.split('\n\n').find((b) => b.includes('sse-chat-1'))!;
    expect(block).toMatch(/^id: \d+\nevent: ticket\ndata: \{/);
    const event = JSON.parse(block.split('\ndata: ')[1]!);
    expect(event).toMatchObject({ type: 'ticket.created', conversation: { id: 'sse-chat-1' } });
  }, 30_000);

  it('keeps at most 32 ticket event streams open per replica: the next is a 503 with Retry-After until one closes', async () => {
    // Each stream holds a consumer and the events it took ahead of its client: with no cap, any
    // token (read-only included) could open enough stalled streams to exhaust memory.
    const open = async () => {
      const abort = new AbortController();
      const res = await fetch(`${gw.httpUrl}/v1/events/tickets`, { headers: { authorization: `Bearer ${VIEWER}` }, signal: abort.signal });
      if (res.status === 200) await res.body!.getReader().read(); // the opening comment: counted from here on
      return { res, abort };
    };
    const streams = [];
    for (let i = 0; i < 32; i++) streams.push(await open());
    expect(streams.map((s) => s.res.status)).toEqual(Array(32).fill(200));
    const refused = await open();
    expect(refused.res.status).toBe(503);
    expect(refused.res.headers.get('retry-after')).toBe('30');
    expect(((await refused.res.json()) as any).error).toMatchObject({ code: 'unavailable', message: expect.stringContaining('32 ticket event streams') });
    streams.pop()!.abort.abort();
    await expect.poll(async () => {
      const again = await open();
      again.abort.abort();
      return again.res.status;
    }, { timeout: 10_000 }).toBe(200);
    for (const s of streams) s.abort.abort();
  }, 60_000);
});
