/**
 * Every platform's webhook body goes through one bounded reader (json-input.ts parseWebhookJson):
 * the Slack Events API and Zammad's webhook parsed with JSON.parse alone, so a signed body nested
 * 10,000 deep got past the edge (Telegram's and WhatsApp Cloud's were bounded already). Slack's
 * is parked and refused for good (no retry), as a body that is not JSON; Zammad's is a 400 naming
 * the limit (a helpdesk has no dead letters: the poller takes what the delivery was about).
 */
import { createHmac } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { eventsEndpoint } from '../../src/connectors/slack/events-api.js';
import { readLetter } from '../../src/connectors/slack/replay.js';
import { ZammadIntake } from '../../src/helpdesks/zammad/intake.js';
import type { RawRequest, RawResponse } from '../../src/core/http.js';

const deep = (n: number) => Buffer.from(`{"type":"event_callback","event_id":"Ev1","event":${'['.repeat(n)}1${']'.repeat(n)}}`);
const quiet = { debug: () => undefined, info: () => undefined, warn: () => undefined, error: () => undefined };

function request(rawBody: Buffer, headers: Record<string, string>): RawRequest {
  return { method: 'POST', path: '/', query: {}, params: {}, rawBody, headers } as RawRequest;
}

describe('Slack Events API', () => {
  const SECRET = 'slack-signing-secret';
  const signed = (body: Buffer) => {
    const ts = String(Math.floor(Date.now() / 1000));
    const sig = createHmac('sha256', SECRET).update(`v0:${ts}:`).update(body).digest('hex');
    return request(body, { 'x-slack-signature': `v0=${sig}`, 'x-slack-request-timestamp': ts });
  };
  const endpoint = () => {
    const letters: string[] = [];
    const events: unknown[] = [];
    const handle = eventsEndpoint({
      signingSecret: SECRET,
      log: quiet as never,
      onEvent: async (body) => void events.push(body),
      deadLetter: async (reason) => void letters.push(reason),
      ready: async () => true,
    });
    return { handle, letters, events };
  };

  it('parks a body nested deeper than 32 levels and refuses it for good, as one that is not JSON', async () => {
    const { handle, letters, events } = endpoint();
    const res: RawResponse = await handle(signed(deep(10_000)));
    expect(res).toMatchObject({ status: 400, headers: { 'x-slack-no-retry': '1' }, body: { error: 'invalid_json', field: 'body' } });
    expect(letters).toEqual(['slack event body refused: JSON nested 10001 levels deep; at most 32 allowed']);
    expect(events).toEqual([]);
    // Its replay refuses it too, rather than walking it.
    expect(readLetter(deep(10_000))).toMatchObject({ ok: false, reason: expect.stringContaining('nested too deep') });
  });

  it('takes a body within the limit', async () => {
    const { handle, letters, events } = endpoint();
    expect((await handle(signed(deep(20)))).status).toBe(200);
    expect(letters).toEqual([]);
    expect(events).toHaveLength(1);
  });
});

describe('Zammad webhook', () => {
  const SECRET = 'zammad-hmac-token';
  const intake = () => {
    const routes = new Map<string, (req: RawRequest) => Promise<RawResponse>>();
    const warned: string[] = [];
    const ctx = { id: 'zammad', log: { ...quiet, warn: (_o: unknown, msg: string) => void warned.push(msg) }, http: { route: (_m: string, path: string, h: (req: RawRequest) => Promise<RawResponse>) => routes.set(path, h) } };
    const z = new ZammadIntake({ o: { webhook: { secret: SECRET } } } as never, ctx as never);
    z.mount();
    const post = (body: Buffer) => routes.get(z.path)!(request(body, { 'x-hub-signature': `sha1=${createHmac('sha1', SECRET).update(body).digest('hex')}` }));
    return { post, warned };
  };

  it('refuses a body nested deeper than 32 levels with 400 naming the limit, logged', async () => {
    const { post, warned } = intake();
    const res = await post(Buffer.from(`{"ticket":{"id":7,"tags":${'['.repeat(5000)}${']'.repeat(5000)}}}`));
    expect(res).toMatchObject({ status: 400, body: { error: 'invalid_json', field: 'body', message: 'JSON nested 5002 levels deep; at most 32 allowed' } });
    expect(warned).toEqual(['Zammad webhook refused: body is not readable JSON']);
    expect(await post(Buffer.from('{"ticket":'))).toMatchObject({ status: 400, body: { message: 'body is not valid JSON' } });
    // Within the limit and without a ticket: read, and passed over as before.
    expect(await post(Buffer.from('{"custom":[[["x"]]]}'))).toMatchObject({ status: 200, body: { ignored: expect.any(String) } });
  });
});
