/**
 * An attachment whose base64 is broken (a line of garbage, padding in the middle) was stored as
 * the bytes mailparser's decoder made of it, silently. Now the mail is still taken, its other
 * files stored, and a line under the text names the file that could not be read.
 */
import { describe, expect, it } from 'vitest';
import { normalizeMail, type NormalizeDeps } from '../../../src/connectors/email/normalize.js';
import type { Attachment } from '../../../src/core/schema.js';
import type { MediaStore } from '../../../src/core/media.js';

const SUPPORT = 'support@example.ru';
const stored: string[] = [];
const media = {
  maxBytes: 1 << 20,
  put: (data: Uint8Array, meta: { name: string; mimeType: string; kind: string }) => (stored.push(meta.name), Promise.resolve({ ...meta, size: data.byteLength, status: 'stored' } as Attachment)),
  failed: (meta: { name: string; mimeType: string; kind: string }, reason: string) => ({ ...meta, size: 0, status: 'failed', error: reason }) as Attachment,
} as unknown as MediaStore;
const deps: NormalizeDeps = {
  channel: 'email', account: 'support', media, maxAttachmentBytes: 1 << 20, maxBodyChars: 100_000,
  ours: { addresses: new Set([SUPPORT]), domains: new Set(['example.ru']) }, ownAddresses: [SUPPORT],
};

const good = Buffer.from('%PDF-1.4 счёт').toString('base64');
const mail = (damaged: string) => Buffer.from([
  'From: Ольга <olga@client.ru>', `To: ${SUPPORT}`, 'Subject: =?utf-8?B?0KHRh9GR0YI=?=', 'Message-ID: <b64-1@client.ru>', 'Date: Mon, 7 Dec 2026 10:00:00 +0300',
  'MIME-Version: 1.0', 'Content-Type: multipart/mixed; boundary="b1"', '',
  '--b1', 'Content-Type: text/plain; charset=utf-8', 'Content-Transfer-Encoding: 8bit', '', 'Счёт во вложении', '',
  '--b1', 'Content-Type: application/pdf; name="=?utf-8?B?0YHRh9GR0YIucGRm?="', 'Content-Disposition: attachment; filename="=?utf-8?B?0YHRh9GR0YIucGRm?="', 'Content-Transfer-Encoding: base64', '', damaged, '',
  '--b1', 'Content-Type: text/plain; name="ok.txt"', 'Content-Disposition: attachment; filename="ok.txt"', 'Content-Transfer-Encoding: base64', '', good, '',
  '--b1--', '',
].join('\r\n'), 'utf8');

async function read(raw: Buffer) {
  stored.length = 0;
  const n = await normalizeMail(raw, SUPPORT, deps);
  if (n.kind !== 'event') throw new Error(n.reason);
  return { text: n.event.text, files: (n.event.attachments ?? []).map((a) => a.name), stored: [...stored] };
}

describe('an attachment whose base64 is broken', () => {
  it.each([
    ['a line of garbage', `JVBERi0xLjQK!!!! mangled by a relay !!!!\r\n${good}`],
    ['8-bit text inserted', `JVBERi0x\r\nОшибка сервера\r\nLjQK`],
    ['cut one character into a quartet', 'JVBERi0xL'],
  ])('%s: the mail is taken, the file named under the text, not stored', async (_what, damaged) => {
    const got = await read(mail(damaged));
    expect(got.files).toEqual(['ok.txt']);
    expect(got.stored).toEqual(['ok.txt']);
    expect(got.text).toBe('Счёт во вложении\n\n[the attachment «счёт.pdf» could not be read: its base64 encoding is broken (damaged on the way), so it was not stored; ask the sender to send it again]');
  });

  it('valid base64, wrapped and padded (every line on its own, as some encoders do), is stored as before', async () => {
    const wrapped = Buffer.from('x'.repeat(200)).toString('base64').replace(/.{76}/g, '$&\r\n');
    const perLine = ['счёт, ', 'страница 2'].map((l) => Buffer.from(l).toString('base64')).join('\r\n');
    for (const body of [wrapped, perLine]) {
      const got = await read(mail(body));
      expect(got.files).toEqual(['счёт.pdf', 'ok.txt']);
      expect(got.text).toBe('Счёт во вложении');
    }
  });
});
