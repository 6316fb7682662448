/**
 * The webhook channel's edges, run on the connector itself: a compressed body is refused naming
 * Content-Encoding (it was "not valid UTF-8"), a form naming Content-Type, a body in windows-1251
 * is read as such when declared (a charset it cannot read is named), and a callback that cannot be reached is recorded
 * with the network's cause and host:port (it was "callback unreachable: fetch failed").
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createServer, type AddressInfo } from 'node:net';
import { gzipSync } from 'node:zlib';
import { contentEncodingRefusal } from '../../../src/connectors/webhook/connector.js';
import { describeFetchFailure } from '../../../src/core/network-failure.js';
import { TransientDeliveryError } from '../../../src/core/errors.js';
import type { OutboundMessage } from '../../../src/core/schema.js';
import { sign } from '../../../src/core/signature.js';
import { encodeIn } from '../../helpers/charsets.js';
import { silentServer, type SilentServer } from '../../helpers/silent-server.js';
import { WEBHOOK_SECRET, webhookRig } from './rig.js';

const SECRET = WEBHOOK_SECRET;
const connector = (callbackUrl?: string, timeoutMs = 5_000) => webhookRig({ callbackUrl, timeoutMs });

const body = Buffer.from(JSON.stringify({ messageId: 'm-1', sender: { id: 'olga@client.ru' }, text: 'Заказ не пришёл' }));
const message = { id: 'out-1', conversation: { id: 'olga@client.ru' }, text: 'Ответ' } as unknown as OutboundMessage;

describe('webhook intake: Content-Encoding', () => {
  it('refuses a gzip (or any non-identity) body with 415 naming the header, parked, never published', async () => {
    const { c, post, letters, published } = connector();
    await c.start();
    for (const encoding of ['gzip', 'br', 'deflate', 'GZIP', 'identity, gzip']) {
      const res = await post(gzipSync(body), { 'content-encoding': encoding });
      expect(res.status, encoding).toBe(415);
      expect(res.body).toMatchObject({ error: 'unsupported_encoding', field: 'Content-Encoding', message: expect.stringMatching(/^Content-Encoding: .* is not accepted: send the body uncompressed/) });
    }
    expect(letters).toHaveLength(5);
    expect(published).toEqual([]);
    // identity (or none) is the body as it is.
    for (const headers of [{}, { 'content-encoding': 'identity' }, { 'content-encoding': '' }] as Array<Record<string, string>>) {
      expect((await post(body, headers)).status).toBe(202);
    }
  });

  it('says which coding, bounded and printable', () => {
    expect(contentEncodingRefusal(undefined)).toBeUndefined();
    expect(contentEncodingRefusal(' Identity ')).toBeUndefined();
    expect(contentEncodingRefusal('x-gzip')).toContain('Content-Encoding: x-gzip is not accepted');
    expect(contentEncodingRefusal(`${'z'.repeat(500)}\u0007`)!.length).toBeLessThan(200);
  });
});

describe('webhook intake: Content-Type', () => {
  it('refuses a form, multipart or XML body with 415 naming the header, parked; JSON, text/plain and none are read', async () => {
    const { c, post, letters, published } = connector();
    await c.start();
    const refused = ['application/x-www-form-urlencoded', 'multipart/form-data; boundary=x', 'application/xml', 'TEXT/HTML; charset=utf-8'];
    for (const type of refused) {
      const res = await post(body, { 'content-type': type });
      expect(res.status, type).toBe(415);
      expect(res.body).toMatchObject({ error: 'unsupported_media_type', field: 'Content-Type', message: expect.stringMatching(/^Content-Type: .* is not accepted: send the body as application\/json/) });
    }
    expect(letters).toHaveLength(refused.length);
    expect(published).toEqual([]);
    // A browser posts JSON as text/plain to spare itself a CORS preflight; fetch does for a string body.
    for (const type of ['application/json; charset=utf-8', 'text/plain;charset=UTF-8', 'application/vnd.api+json', '']) {
      expect((await post(body, { 'content-type': type })).status, type).toBe(202);
    }
  });
});

describe('webhook intake: charset', () => {
  const json = JSON.stringify({ messageId: 'cp-1', sender: { id: 'olga@client.ru', name: 'Ольга Ёлкина' }, text: 'Заказ не пришёл' });

  it('reads the body in the charset Content-Type declares (1C: windows-1251; KOI8-R), HMAC over the bytes as sent', async () => {
    for (const charset of ['windows-1251', 'koi8-r']) {
      const { c, post, published } = connector();
      await c.start();
      const raw = encodeIn(json, charset);
      const res = await post(raw, { authorization: '', 'x-omnigate-signature': sign(SECRET, raw), 'content-type': `application/json; charset=${charset}` });
      expect(res.status, charset).toBe(202);
      expect(published[0], charset).toMatchObject({ text: 'Заказ не пришёл', sender: { displayName: 'Ольга Ёлкина' } });
    }
  });

  it('refuses a charset it cannot read with 415 naming Content-Type and the charset, parked, never published', async () => {
    const { c, post, letters, published } = connector();
    await c.start();
    const res = await post(Buffer.from(json), { 'content-type': 'application/json; charset=x-klingon' });
    expect(res).toEqual({ status: 415, body: { error: 'unsupported_media_type', field: 'Content-Type', message: expect.stringMatching(/^Content-Type: charset=x-klingon is not a charset this server reads/) } });
    expect(letters).toEqual([expect.stringMatching(/^webhook body refused: Content-Type: charset=x-klingon/)]);
    expect(published).toEqual([]);
  });
});

describe('webhook callback: why it is unreachable', () => {
  let closedPort: number;
  let silent: SilentServer;
  beforeAll(async () => {
    const s = createServer();
    await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
    closedPort = (s.address() as AddressInfo).port;
    await new Promise((r) => s.close(r));
    silent = await silentServer();
  });
  afterAll(async () => silent?.close());

  const failure = (p: Promise<unknown>) => p.then(() => { throw new Error('expected a failure'); }, (e: unknown) => e as Error);

  it('names ECONNREFUSED and host:port, never the URL\'s password, path or query', async () => {
    const { c } = connector(`http://127.0.0.1:${closedPort}/hooks/omni?token=s3cr3t`);
    const err = await failure(c.send(message));
    expect(err).toBeInstanceOf(TransientDeliveryError);
    expect(err.message).toBe(`callback unreachable: ECONNREFUSED (connection refused: nothing listens there) at 127.0.0.1:${closedPort}`);
    for (const secret of ['s3cr3t', '/hooks']) expect(err.message).not.toContain(secret);
    // fetch refuses a URL with credentials in its own words, which quote the URL: not repeated.
    const withPassword = await failure(connector(`http://crm:pa55w0rd@127.0.0.1:${closedPort}/hooks?token=s3cr3t`).c.send(message));
    expect(withPassword.message).toMatch(new RegExp(`^callback unreachable: .* at 127\\.0\\.0\\.1:${closedPort}$`));
    for (const secret of ['pa55w0rd', 's3cr3t', 'crm:', '/hooks']) expect(withPassword.message).not.toContain(secret);
  });

  it('names a host that does not resolve, and a callback that never answers within timeoutMs', async () => {
    const dns = await failure(connector('https://no-such-host.invalid/cb').c.send(message));
    expect(dns.message).toMatch(/^callback unreachable: (ENOTFOUND|EAI_AGAIN) \(.*\) at no-such-host\.invalid:443$/);
    const slow = await failure(connector(`http://127.0.0.1:${silent.port}/cb`, 300).c.send(message));
    expect(slow.message).toBe(`callback unreachable: ETIMEDOUT (no answer within 300 ms, timeoutMs) at 127.0.0.1:${silent.port}`);
  });

  it('reads the code through undici\'s wrappers (cause, AggregateError) and falls back to a message without URLs', () => {
    const wrapped = new TypeError('fetch failed', { cause: new AggregateError([Object.assign(new Error('connect ECONNREFUSED ::1:80'), { code: 'ECONNREFUSED' })]) });
    expect(describeFetchFailure(wrapped, 'http://[::1]/x')).toBe('ECONNREFUSED (connection refused: nothing listens there) at [::1]:80');
    expect(describeFetchFailure(new Error('bad thing at https://u:p@h/q?t=1'), 'https://h.example:8443/q?t=1')).toBe('bad thing at <url> at h.example:8443');
  });
});
