/**
 * RFC 2047 encoded-words in UTF-7, as old mailers write them, in a Subject and a From name: they
 * stayed "+BCEERwRRBEI-" (libmime does not decode UTF-7); now the customer's words. The header
 * bytes below are written out by hand, not produced by the encoder the code decodes with.
 */
import { describe, expect, it } from 'vitest';
import { normalizeMail } from '../../../src/connectors/email/normalize.js';
import { normalizeDeps } from './normalize-deps.js';
import { SUPPORT } from './harness.js';
import { withUtf7WordsDecoded } from '../../../src/connectors/email/utf7-words.js';

const deps = normalizeDeps;

const mail = (headers: string[], body = 'Добрый день') =>
  Buffer.concat([Buffer.from([...headers, `To: ${SUPPORT}`, 'Message-ID: <u7-1@client.ru>', 'Date: Mon, 7 Dec 2026 10:00:00 +0300', 'MIME-Version: 1.0', 'Content-Type: text/plain; charset=utf-8', 'Content-Transfer-Encoding: 8bit', '', ''].join('\r\n')), Buffer.from(body)]);

async function read(raw: Buffer) {
  const n = await normalizeMail(raw, SUPPORT, deps);
  if (n.kind !== 'event') throw new Error(n.reason);
  return { subject: n.event.email!.subject, name: n.event.sender.displayName, from: n.event.sender.id, text: n.event.text };
}

describe('UTF-7 encoded-words', () => {
  it('decodes a Q-encoded subject and a B-encoded From name', async () => {
    const got = await read(mail([
      // "Пётр Иванов" in UTF-7, base64-encoded
      'From: =?utf-7?B?K0JCOEVVUVJDQkVBLSArQkJnRU1nUXdCRDBFUGdReS0=?= <petr@client.ru>',
      // "Re: Счёт на оплату"
      'Subject: =?UTF-7?Q?Re:_+BCEERwRRBEI-_+BD0EMA-_+BD4EPwQ7BDAEQgRD-?=',
    ]));
    expect(got).toEqual({ subject: 'Re: Счёт на оплату', name: 'Пётр Иванов', from: 'petr@client.ru', text: 'Добрый день' });
  });

  it('joins adjacent words, folded onto the next line, a shifted run split between them', async () => {
    // "Привет" split inside its base64 run: +BB8EQAQ4 | BDIENQRC-
    const got = await read(mail(['From: <petr@client.ru>', 'Subject: =?utf-7?Q?+BB8EQAQ4?=\r\n =?utf-7?Q?BDIENQRC-?= =?utf-8?B?0LzQuNGA?=']));
    expect(got.subject).toBe('Приветмир');
  });

  it('leaves the body, inner parts and other charsets as they are', () => {
    const raw = mail(['From: <petr@client.ru>', 'Subject: =?koi8-r?B?8NLJ18XU?='], 'пример: =?utf-7?Q?+AGE-?=');
    expect(withUtf7WordsDecoded(raw)).toBe(raw);
    const body = withUtf7WordsDecoded(mail(['From: <petr@client.ru>', 'Subject: =?utf-7?Q?+AGE-?='], 'пример: =?utf-7?Q?+AGE-?=')).toString('utf8');
    expect(body).toContain('Subject: =?utf-8?B?YQ==?=');
    expect(body.endsWith('пример: =?utf-7?Q?+AGE-?=')).toBe(true);
  });
});
