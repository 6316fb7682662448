/**
 * A call that got no answer is said as the network said it, through each library that calls out
 * (undici's fetch, telegraf, the Slack client), never with the URL's password, path or token:
 * these were "fetch failed", "request to https://…/bot<token>/getMe failed" and "A request error
 * occurred" before.
 */
import { beforeAll, describe, expect, it } from 'vitest';
import { createServer, type AddressInfo } from 'node:net';
import { Telegram } from 'telegraf';
import { WebClient } from '@slack/web-api';
import { describeFetchFailure, networkCause } from '../../src/core/network-failure.js';
import { FetchableUrl } from '../../src/core/config-units.js';

/** A port nothing listens on: taken, then let go. */
let closedPort: number;
beforeAll(async () => {
  const s = createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  closedPort = (s.address() as AddressInfo).port;
  await new Promise((r) => s.close(r));
});

const REFUSED = 'ECONNREFUSED (connection refused: nothing listens there)';

describe('network failures, through the libraries that call out', () => {
  it('fetch (webhook channel, WhatsApp Cloud, Zammad, RT): the cause and host:port, no password or query', async () => {
    const url = `http://user:s3cret@127.0.0.1:${closedPort}/hook?token=abc`;
    const err = await fetch(url.replace('user:s3cret@', '')).catch((e: unknown) => e);
    const said = describeFetchFailure(err, url);
    expect(said).toBe(`${REFUSED} at 127.0.0.1:${closedPort}`);
    // A server that takes the connection and never answers: our own timeout, not the network's.
    const silent = createServer(() => {});
    await new Promise<void>((r) => silent.listen(0, '127.0.0.1', r));
    try {
      const timeout = await fetch(`http://127.0.0.1:${(silent.address() as AddressInfo).port}/`, { signal: AbortSignal.timeout(50) }).catch((e: unknown) => e);
      expect(describeFetchFailure(timeout, 'https://crm.example/x', 50, 'timeoutMs')).toBe('ETIMEDOUT (no answer within 50 ms, timeoutMs) at crm.example:443');
    } finally {
      silent.close();
    }
  });

  it('telegraf: the cause, never the bot token its URLs carry', async () => {
    const token = '123456:AAE-secret-token';
    const api = new Telegram(token, { apiRoot: `http://127.0.0.1:${closedPort}` });
    const err = await api.getMe().catch((e: unknown) => e);
    expect(networkCause(err)).toBe(REFUSED);
    expect(describeFetchFailure(err, `http://127.0.0.1:${closedPort}`)).not.toContain('secret');
    expect(describeFetchFailure(err, `http://127.0.0.1:${closedPort}`)).toBe(`${REFUSED} at 127.0.0.1:${closedPort}`);
  });

  it('the Slack client: the cause under its request error', async () => {
    const client = new WebClient('xoxb-test', { slackApiUrl: `http://127.0.0.1:${closedPort}/api/`, retryConfig: { retries: 0 } });
    const err = await client.chat.postMessage({ channel: 'C1', text: 'x' }).catch((e: unknown) => e);
    expect(networkCause(err)).toBe(REFUSED);
  });

  it('a port fetch never calls is said as such, and refused by the config', async () => {
    const err = await fetch('http://127.0.0.1:6000/').catch((e: unknown) => e);
    expect(describeFetchFailure(err, 'http://127.0.0.1:6000/')).toBe('bad port (HTTP clients refuse to call this port: it belongs to another protocol; use another) at 127.0.0.1:6000');
    expect(FetchableUrl.safeParse('http://crm.example:6667/hook').error?.issues[0]?.message).toBe('port 6667 is one HTTP clients refuse to call (it belongs to another protocol): use another port');
    expect(FetchableUrl.safeParse('https://crm.example:8443/hook').success).toBe(true);
    expect(FetchableUrl.safeParse('http://crm.example:0/hook').error?.issues[0]?.message).toBe('port 0 is no port anything listens on: give the real one');
    expect(FetchableUrl.safeParse('http://crm.example:8080/a:0/').success).toBe(true);
  });

  it('an error without a network cause keeps its message, URLs taken out', () => {
    expect(networkCause(new Error('boom'))).toBeUndefined();
    expect(describeFetchFailure(new Error('bad thing at https://u:p@h/q?t=1'), 'https://h.example:8443/q?t=1')).toBe('bad thing at <url> at h.example:8443');
    expect(describeFetchFailure(new Error('x'), 'not a url')).toBe('x at (the configured URL)');
  });
});
