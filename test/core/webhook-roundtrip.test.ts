import { createServer } from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startGateway, type TestGateway } from '../helpers/gateway.js';
import { verify } from '../../src/core/signature.js';

const SECRET = 'test-secret-0123456789';

describe('webhook channel end to end', () => {
  let gw: TestGateway;
  const received: Array<{ body: string; sig?: string }> = [];
  const landed: string[] = [];
  const callback = createServer((req, res) => {
    let body = '';
    req.on('data', (d) => (body += d));
    req.on('end', () => {
      // An http:// address that moved: fetch used to follow it as a GET without the reply and call that "sent".
      if (req.url === '/moved') return void res.writeHead(301, { location: '/landing' }).end();
      if (req.url === '/landing') {
        landed.push(`${req.method} ${body}`);
        return void res.writeHead(200, { 'content-type': 'application/json' }).end('{"id":"landing-1"}');
      }
      received.push({ body, sig: req.headers['x-omnigate-signature'] as string });
      res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ id: `cb-${received.length}` }));
    });
  });

  beforeAll(async () => {
    await new Promise<void>((r) => callback.listen(0, '127.0.0.1', r));
    const port = (callback.address() as { port: number }).port;
    gw = await startGateway({
      connectors: [
        { type: 'webhook', account: 'site', secret: SECRET, callbackUrl: `http://127.0.0.1:${port}/cb` },
        { type: 'webhook', account: 'moved', secret: SECRET, callbackUrl: `http://127.0.0.1:${port}/moved` },
      ],
    });
  });
  afterAll(async () => {
    await gw?.stop();
    callback.close();
  });

  it('opens a ticket from a POST and sends the reply back to the callback, signed', async () => {
    const res = await fetch(`${gw.httpUrl}/connectors/webhook/site/messages`, {
      method: 'POST',
      headers: { authorization: `Bearer ${SECRET}`, 'content-type': 'application/json' },
      body: JSON.stringify({ messageId: 'm1', sender: { id: 'ivan@example.ru', name: 'Иван Петров' }, text: 'Не работает касса' }),
    });
    expect(res.status).toBe(202);
    const created = await gw.waitForEvent((e) => e.type === 'ticket.created');
    expect(created.ticketId).toMatch(/^T-\d+$/);
    const reply = await gw.request('omni.cmd.reply', { ticketId: created.ticketId, text: 'Здравствуйте! Уже смотрим.' });
    expect(reply.ok).toBe(true);
    const delivered = await gw.waitForEvent((e) => e.type === 'ticket.delivery');
    expect(delivered.entry?.kind).toBe('delivery');
    expect(received).toHaveLength(1);
    expect(verify(SECRET, received[0]!.body, received[0]!.sig).ok).toBe(true);
    expect(JSON.parse(received[0]!.body).text).toBe('Здравствуйте! Уже смотрим.');
  });

  it('a callback that answers with a redirect fails the reply for good, naming it, and nothing is sent on to where it points', async () => {
    const res = await fetch(`${gw.httpUrl}/connectors/webhook/moved/messages`, {
      method: 'POST',
      headers: { authorization: `Bearer ${SECRET}`, 'content-type': 'application/json' },
      body: JSON.stringify({ messageId: 'moved-1', sender: { id: 'olga@example.ru' }, text: 'Ответьте, пожалуйста' }),
    });
    expect(res.status).toBe(202);
    const created = await gw.waitForEvent((e) => e.type === 'ticket.created' && e.account === 'moved');
    expect((await gw.request('omni.cmd.reply', { ticketId: created.ticketId, text: 'Важный ответ' })).ok).toBe(true);
    const failed = await gw.waitForEvent((e) => e.type === 'ticket.delivery_failed' && e.ticketId === created.ticketId);
    expect(JSON.stringify(failed.entry)).toMatch(/callbackUrl answered 301, a redirect to another path on the same host \(not shown: a path may hold a token\): not followed/);
    expect(landed).toEqual([]);
  });

  it('parks a message too large for a NATS message with the reason and the head of the body, and goes on', async () => {
    const text = 'Очень длинное письмо. '.repeat(30_000); // ~660k characters, ~1.2 MB as UTF-8
    const raw = JSON.stringify({ messageId: 'huge-1', sender: { id: 'big@example.ru' }, text });
    const res = await fetch(`${gw.httpUrl}/connectors/webhook/site/messages`, {
      method: 'POST',
      headers: { authorization: `Bearer ${SECRET}`, 'content-type': 'application/json' },
      body: raw,
    });
    expect(res.status).toBe(400);
    const refusal = (await res.json()) as { error: string; message: string; field?: string };
    expect(refusal).toMatchObject({ error: 'invalid_event', field: 'text' });
    expect(refusal.message).toMatch(/over the \d+-byte limit of a NATS message; its largest field is text/);
    const letter = await gw.waitForStreamMessage<any>('OMNI_DLQ', 'omni.dlq.inbound.webhook.site', (d: any) => /byte limit/.test(d.reason));
    // Refusals are bounded: the head (deadLetters.maxPayloadBytes, 256 KB by default) and the size, not 1.2 MB.
    expect(letter).toMatchObject({ truncated: true, payloadBytes: Buffer.byteLength(raw) });
    expect(letter.payloadObjectKey).toBeUndefined();
    expect(raw.startsWith(letter.payload)).toBe(true);
    expect(Buffer.byteLength(JSON.stringify(letter.payload))).toBeLessThanOrEqual(256 * 1024);

    const after = await fetch(`${gw.httpUrl}/connectors/webhook/site/messages`, {
      method: 'POST',
      headers: { authorization: `Bearer ${SECRET}`, 'content-type': 'application/json' },
      body: JSON.stringify({ messageId: 'after-huge', sender: { id: 'big@example.ru' }, text: 'Короткое' }),
    });
    expect(after.status).toBe(202);
  });
});
