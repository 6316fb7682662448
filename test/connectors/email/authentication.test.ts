/**
 * Authentication-Results (RFC 8601) as real receiving servers write them, read into the verdict
 * the router acts on: which header counts (topmost; topmost listed one with trustedAuthServIds),
 * and when a pass is believed.
 */
import { simpleParser } from 'mailparser';
import { describe, expect, it } from 'vitest';
import { authenticationOf, parseAuthenticationResults, type AuthenticationPolicy } from '../../../src/connectors/email/authentication.js';

const NONE: AuthenticationPolicy = { trustedAuthServIds: [], requireAuthenticatedSender: false };

async function verdict(headers: string[], policy = NONE, from = 'ivan@romashka.ru') {
  const raw = [...headers.map((h) => `Authentication-Results: ${h}`), `From: ${from}`, 'To: support@example.ru', 'Subject: x', '', 'x', ''].join('\r\n');
  return authenticationOf(await simpleParser(raw), from, policy);
}

const GMAIL_FAIL = 'mx.google.com;\r\n       spf=fail (google.com: domain of ivan@romashka.ru does not designate 203.0.113.7 as permitted sender) smtp.mailfrom=ivan@romashka.ru;\r\n       dmarc=fail (p=NONE sp=NONE dis=NONE) header.from=romashka.ru';
const GMAIL_PASS = 'mx.google.com;\r\n       dkim=pass header.i=@romashka.ru header.s=mail header.b=Xy12AbCd;\r\n       spf=pass (google.com: domain of ivan@romashka.ru designates 77.88.21.1 as permitted sender) smtp.mailfrom=ivan@romashka.ru;\r\n       dmarc=pass (p=REJECT sp=REJECT dis=NONE) header.from=romashka.ru';
const YANDEX_SOFTFAIL = 'mxfront5o.mail.yandex.net; spf=softfail (mxfront5o.mail.yandex.net: domain of romashka.ru does not designate 203.0.113.7 as permitted sender, rule=[~all]) smtp.mail=ivan@romashka.ru; dkim=none';
const MAILRU_PASS = 'mxs.mail.ru; spf=pass (mx123.i.mail.ru: domain of romashka.ru designates 77.88.21.1 as permitted sender) smtp.mailfrom=ivan@romashka.ru smtp.helo=forward1.romashka.ru; dkim=pass header.d=romashka.ru; dmarc=pass header.from=ivan@romashka.ru';
const M365_FAIL = 'spf=fail (sender IP is 203.0.113.7) smtp.mailfrom=romashka.ru; dkim=none (message not signed) header.d=none;dmarc=fail action=none header.from=romashka.ru;compauth=fail reason=001';

describe('Authentication-Results', () => {
  it('parses comments holding ";", ":" and "=", folded lines, versions and quoted values', () => {
    const h = parseAuthenticationResults('MX.Example.RU 1; dkim/1=pass (good; signature) header.d="romashka.ru"; spf=pass (a=b; c) smtp.mailfrom=ivan@romashka.ru; none');
    expect(h.authServId).toBe('mx.example.ru');
    expect(h.results.map((r) => [r.method, r.result, Object.fromEntries(r.props)])).toEqual([
      ['dkim', 'pass', { 'header.d': 'romashka.ru' }],
      ['spf', 'pass', { 'smtp.mailfrom': 'ivan@romashka.ru' }],
    ]);
    expect(parseAuthenticationResults(M365_FAIL).authServId).toBeUndefined();
  });

  it('without trustedAuthServIds the topmost header counts only to refuse', async () => {
    expect(await verdict([GMAIL_FAIL])).toEqual({ verdict: 'fail', by: 'mx.google.com', trusted: false, dmarc: 'fail', spf: 'fail' });
    expect(await verdict([YANDEX_SOFTFAIL])).toMatchObject({ verdict: 'fail', spf: 'softfail', dkim: 'none' });
    expect(await verdict([M365_FAIL])).toMatchObject({ verdict: 'fail', dmarc: 'fail' });
    // A pass nobody vouches for: the sender may have written it.
    expect(await verdict([GMAIL_PASS])).toMatchObject({ verdict: 'none', dmarc: 'pass', trusted: false });
    // Only the topmost: a forger's fail below a real pass changes nothing, its pass below a fail neither.
    expect((await verdict([GMAIL_PASS, GMAIL_FAIL]))!.verdict).toBe('none');
    expect((await verdict([GMAIL_FAIL, GMAIL_PASS]))!.verdict).toBe('fail');
    expect(await verdict([])).toBeUndefined();
  });

  it('with trustedAuthServIds the topmost listed header counts both ways; others are ignored', async () => {
    const policy = { trustedAuthServIds: ['mxs.mail.ru'], requireAuthenticatedSender: true };
    expect(await verdict([GMAIL_FAIL, MAILRU_PASS], policy)).toEqual({ verdict: 'pass', by: 'mxs.mail.ru', trusted: true, dmarc: 'pass', spf: 'pass', dkim: 'pass', required: true });
    expect(await verdict([GMAIL_PASS], policy)).toEqual({ verdict: 'none', required: true });
    expect((await verdict([MAILRU_PASS.replace(/pass/g, 'fail'), MAILRU_PASS], policy))!.verdict).toBe('fail');
  });

  it('judges spf and dkim by alignment with the From when there is no dmarc pass or fail', async () => {
    const trust = { trustedAuthServIds: ['mx.example.ru'], requireAuthenticatedSender: false };
    const v = async (h: string) => (await verdict([`mx.example.ru; ${h}`], trust))!;
    // The forger's own signature vouches for nothing about romashka.ru.
    expect(await v('spf=softfail smtp.mailfrom=ivan@romashka.ru; dkim=pass header.d=evil.example')).toMatchObject({ verdict: 'fail', dkim: 'unaligned' });
    expect((await v('spf=softfail smtp.mailfrom=ivan@romashka.ru; dkim=pass header.d=mail.romashka.ru')).verdict).toBe('pass');
    expect((await v('dmarc=none header.from=romashka.ru; spf=fail smtp.mailfrom=ivan@romashka.ru')).verdict).toBe('fail');
    expect((await v('spf=pass smtp.mailfrom=bounce@romashka.ru')).verdict).toBe('pass');
    expect((await v('spf=pass smtp.mailfrom=bounce@evil.example')).verdict).toBe('none');
    expect((await v('spf=neutral smtp.mailfrom=ivan@romashka.ru')).verdict).toBe('none');
    // dmarc decides over both.
    expect((await v('dmarc=fail header.from=romashka.ru; dkim=pass header.d=romashka.ru')).verdict).toBe('fail');
  });
});
