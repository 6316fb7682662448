/**
 * Outlook's winmail.dat (TNEF): the reader on hostile input (truncated at every byte, lying
 * lengths, too many files), what is kept and said when something is not unpacked, and mails
 * through the real path (Dovecot, the connector, the router, the object store).
 */
import { createHash, randomBytes } from 'node:crypto';
import { Objm } from '@nats-io/obj';
import { describe, expect, it } from 'vitest';
import { parseTnef } from '../../../src/connectors/email/tnef.js';
import { decompressRtf } from '../../../src/connectors/email/rtf-compressed.js';
import { unpackWinmail } from '../../../src/connectors/email/winmail.js';
import { mailboxGateway } from './harness.js';
import { uniqueId } from './mails.js';
import { ATT, attribute, cp1251, outlookMail, rtfUncompressed, SPEC_LZFU, tnefStream, winmailDat } from './tnef-encoder.js';

const sha256 = (b: Uint8Array) => createHash('sha256').update(b).digest('hex');
const PNG = Buffer.concat([Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]), randomBytes(3000)]);
const PDF = Buffer.concat([Buffer.from('%PDF-1.4\n'), randomBytes(5000)]);

/** A winmail.dat as a Russian Outlook writes it: a 1251 title, a Unicode long name, a MIME tag. */
const contract = () =>
  winmailDat({
    codepage: 1251,
    rtf: SPEC_LZFU,
    files: [
      { title: cp1251('Договор №5 (скан).pdf'), data: PDF },
      { title: cp1251('SNIMOK~1.PNG'), longFilename: 'Снимок экрана 2026-12-07.png', mimeTag: 'image/png', data: PNG },
    ],
  });

describe('the TNEF reader', () => {
  it('reads the files, their names in the code page (1251) or in Unicode, and skips named properties', () => {
    const r = parseTnef(contract(), 100);
    expect(r.ok).toBe(true);
    if (!r.ok) return;
    expect(r.contents.files.map((f) => [f.name, f.mimeType, f.data && sha256(f.data)])).toEqual([
      ['Договор №5 (скан).pdf', undefined, sha256(PDF)],
      ['Снимок экрана 2026-12-07.png', 'image/png', sha256(PNG)],
    ]);
    expect(r.contents).toMatchObject({ rtf: Buffer.from('{\\rtf1\\ansi\\ansicpg1252\\pard hello world}\r\n'), badChecksums: [] });
  });

  it('guesses a Cyrillic title without a code page, and leaves a Western one alone', () => {
    const r = parseTnef(winmailDat({ files: [{ title: cp1251('Счёт на оплату.xls'), data: PDF }, { title: Buffer.from('Résumé.doc', 'latin1'), data: PDF }] }), 100);
    expect(r.ok && r.contents.files.map((f) => f.name)).toEqual(['Счёт на оплату.xls', 'Résumé.doc']);
  });

  it('never throws and never reads past the end, cut at any byte', () => {
    const whole = contract();
    let refused = 0;
    for (let n = 0; n < whole.byteLength; n++) {
      const r = parseTnef(whole.subarray(0, n), 100);
      if (!r.ok) refused++;
      // A cut exactly between two attributes reads as a shorter TNEF; its files are whole.
      else for (const f of r.contents.files) if (f.data) expect([sha256(PDF), sha256(PNG)]).toContain(sha256(f.data));
    }
    expect(refused).toBeGreaterThan(whole.byteLength - 20);
    expect(parseTnef(whole.subarray(0, 100), 100)).toEqual({ ok: false, reason: expect.stringMatching(/^truncated: attribute 0x[0-9a-f]{8} at offset \d+ claims \d+ bytes, \d+ are left$/) });
  });

  it('refuses lying lengths and counts without allocating or looping on them', () => {
    const huge = Buffer.concat([tnefStream([]), Buffer.from([2, 0x0f, 0x80, 0x06, 0x00, 0xff, 0xff, 0xff, 0xff, 0, 0])]);
    expect(parseTnef(huge, 100)).toEqual({ ok: false, reason: expect.stringContaining('claims 4294967295 bytes') });
    const manyProps = Buffer.from([0xff, 0xff, 0xff, 0x7f, 0, 0, 0, 0]);
    expect(parseTnef(tnefStream([attribute(2, ATT.attachment, manyProps)]), 100)).toEqual({ ok: false, reason: expect.stringContaining('2147483647 properties cannot fit') });
    // One binary property whose value says 268 MB follow.
    const lying = Buffer.from([1, 0, 0, 0, 0x02, 0x01, 0x01, 0x37, 1, 0, 0, 0, 0xf0, 0xff, 0xff, 0x0f, 1, 2, 3, 4]);
    expect(parseTnef(tnefStream([attribute(2, ATT.attachment, lying)]), 100)).toEqual({ ok: false, reason: expect.stringContaining('value claims 268435440 bytes') });
    expect(parseTnef(tnefStream([attribute(3 as 1, ATT.body, Buffer.from('x'))]), 100)).toEqual({ ok: false, reason: expect.stringContaining('unknown level 3') });
    expect(parseTnef(Buffer.from('not a tnef at all'), 100)).toEqual({ ok: false, reason: 'no TNEF signature at the start' });
    for (let i = 0; i < 300; i++) {
      const noise = Buffer.concat([tnefStream([]), randomBytes(1 + (i % 200))]);
      expect(() => parseTnef(noise, 100)).not.toThrow();
    }
  });

  it('decompresses the RTF body ([MS-OXRTFCP] example), and refuses a cut or lying one', () => {
    expect(decompressRtf(SPEC_LZFU)).toEqual({ ok: true, rtf: Buffer.from('{\\rtf1\\ansi\\ansicpg1252\\pard hello world}\r\n') });
    expect(decompressRtf(rtfUncompressed('{\\rtf1 Privet}'))).toEqual({ ok: true, rtf: Buffer.from('{\\rtf1 Privet}', 'latin1') });
    expect(decompressRtf(SPEC_LZFU.subarray(0, 30))).toEqual({ ok: false, reason: 'compressed RTF is truncated' });
    const lying = Buffer.from(SPEC_LZFU);
    lying.writeUInt32LE(10_000_000, 4);
    expect(decompressRtf(lying)).toEqual({ ok: false, reason: expect.stringContaining('more than its 49 bytes can hold') });
    lying.writeUInt32LE(0x7fffffff, 4);
    expect(decompressRtf(lying)).toEqual({ ok: false, reason: expect.stringContaining('limit') });
    for (let n = 0; n < SPEC_LZFU.byteLength; n++) expect(() => decompressRtf(SPEC_LZFU.subarray(0, n))).not.toThrow();
  });

  it('caps the number of files', () => {
    const many = winmailDat({ files: Array.from({ length: 5 }, (_, i) => ({ title: Buffer.from(`f${i}.txt`), data: Buffer.from('x') })) });
    expect(parseTnef(many, 4)).toEqual({ ok: false, reason: 'more than 4 attachments inside' });
    expect(parseTnef(many, 5).ok).toBe(true);
  });
});

describe('unpacking winmail.dat', () => {
  const part = (content: Buffer, contentType = 'application/ms-tnef', filename = 'winmail.dat') => ({ content, contentType, filename, contentDisposition: 'attachment' });

  it('replaces it with its files when all of it was read', () => {
    const other = part(Buffer.from('hello'), 'text/plain', 'readme.txt');
    const u = unpackWinmail([other, part(contract())], true);
    expect(u.notes).toEqual([]);
    expect(u.parts.map((p) => [p.filename, p.contentType])).toEqual([['readme.txt', 'text/plain'], ['Договор №5 (скан).pdf', 'application/pdf'], ['Снимок экрана 2026-12-07.png', 'image/png']]);
  });

  it('keeps it, and says why, when something was not unpacked', () => {
    const broken = unpackWinmail([part(contract().subarray(0, 700))], true);
    expect(broken.parts.map((p) => p.filename)).toEqual(['winmail.dat']);
    expect(broken.notes).toEqual([expect.stringMatching(/^\[winmail\.dat \(Outlook TNEF\) could not be unpacked: truncated: .*; attached as it came\]$/)]);

    const embedded = unpackWinmail([part(winmailDat({ files: [{ title: Buffer.from('a.pdf'), data: PDF }, { longFilename: 'Пересланное письмо', embedded: true }] }))], true);
    expect(embedded.parts.map((p) => p.filename)).toEqual(['a.pdf', 'winmail.dat']);
    expect(embedded.notes[0]).toMatch(/1 file\(s\) unpacked; the original is attached too: «Пересланное письмо» is an Outlook item embedded/);

    const damaged = unpackWinmail([part(winmailDat({ files: [{ title: Buffer.from('a.pdf'), data: PDF, badChecksum: true }] }))], true);
    expect(damaged.parts.map((p) => p.filename)).toEqual(['a.pdf', 'winmail.dat']);
    expect(damaged.notes[0]).toContain('checksum mismatch');

    // Only the formatted text and no text of the mail's own: it becomes message.rtf; unreadable, the original carries it.
    const rtfOnly = unpackWinmail([part(winmailDat({ rtf: SPEC_LZFU, files: [] }))], false);
    expect(rtfOnly).toEqual({ parts: [expect.objectContaining({ filename: 'message.rtf', contentType: 'application/rtf' })], notes: [] });
    expect(rtfOnly.parts[0]!.content.toString()).toContain('hello world');
    expect(unpackWinmail([part(winmailDat({ rtf: SPEC_LZFU, files: [] }))], true)).toEqual({ parts: [], notes: [] });
    const badRtf = unpackWinmail([part(winmailDat({ rtf: SPEC_LZFU.subarray(0, 30), files: [] }))], false);
    expect(badRtf.parts.map((p) => p.filename)).toEqual(['winmail.dat']);
    expect(badRtf.notes[0]).toContain('its text could not be read (compressed RTF is truncated)');

    const notTnef = unpackWinmail([part(PDF)], true);
    expect(notTnef.parts.map((p) => p.filename)).toEqual(['winmail.dat']);
    expect(notTnef.notes[0]).toContain('labelled TNEF but is not one');
    // Someone's own file that happens to be called winmail.dat is left alone, silently.
    expect(unpackWinmail([part(PDF, 'application/octet-stream')], true)).toEqual({ parts: [part(PDF, 'application/octet-stream')], notes: [] });
  });
});

describe('winmail.dat through the mailbox', () => {
  const mailbox = mailboxGateway();
  const inbound = (messageId: string) => mailbox.inbound(messageId);

  it('gives the agent the scan and the screenshot inside, stored whole, under their Cyrillic names', async () => {
    const messageId = uniqueId('tnef');
    await mailbox.world.imap.append('INBOX', outlookMail({ messageId, subject: 'Договор', text: 'Добрый день! Скан договора во вложении.', tnef: contract() }));
    const msg = await inbound(messageId);
    expect(msg.text).toBe('Добрый день! Скан договора во вложении.');
    expect(msg.attachments.map((a) => [a.name, a.mimeType, a.kind, a.status, a.sha256])).toEqual([
      ['Договор №5 (скан).pdf', 'application/pdf', 'document', 'stored', sha256(PDF)],
      ['Снимок экрана 2026-12-07.png', 'image/png', 'image', 'stored', sha256(PNG)],
    ]);
    const store = await new Objm(mailbox.gw.nc).open('omni_media');
    expect(sha256((await store.getBlob(msg.attachments[1]!.objectKey!))!)).toBe(sha256(PNG));
  });

  it('keeps a truncated winmail.dat whole and says so under the text', async () => {
    const messageId = uniqueId('tnef-cut');
    const cut = contract().subarray(0, 4000);
    await mailbox.world.imap.append('INBOX', outlookMail({ messageId, subject: 'Сломанный', text: 'См. вложение.', tnef: cut }));
    const msg = await inbound(messageId);
    expect(msg.attachments).toEqual([expect.objectContaining({ name: 'winmail.dat', mimeType: 'application/ms-tnef', status: 'stored', sha256: sha256(cut) })]);
    expect(msg.fullText).toMatch(/^См\. вложение\.\n\n\[winmail\.dat \(Outlook TNEF\) could not be unpacked: truncated: .+; attached as it came\]$/);
    expect(msg.text).toBe(msg.fullText);
  });

  it('takes the body from a mail that is nothing but winmail.dat', async () => {
    const messageId = uniqueId('tnef-only');
    const tnef = winmailDat({ codepage: 1251, body: cp1251('Прошу выставить счёт.\r\nС уважением, Сергей'), rtf: SPEC_LZFU, files: [{ title: cp1251('Реквизиты.pdf'), data: PDF }] });
    await mailbox.world.imap.append('INBOX', outlookMail({ messageId, subject: 'Счёт', text: null, tnef }));
    const msg = await inbound(messageId);
    expect(msg.fullText).toBe('Прошу выставить счёт.\nС уважением, Сергей');
    expect(msg.attachments.map((a) => a.name)).toEqual(['Реквизиты.pdf']);

    // Only the formatted text: the agent gets it as message.rtf.
    const rtfId = uniqueId('tnef-rtf');
    await mailbox.world.imap.append('INBOX', outlookMail({ messageId: rtfId, subject: 'RTF', text: null, tnef: winmailDat({ codepage: 1251, rtf: SPEC_LZFU, files: [] }) }));
    const rtf = await inbound(rtfId);
    expect(rtf.attachments).toEqual([expect.objectContaining({ name: 'message.rtf', mimeType: 'application/rtf', status: 'stored', size: 43 })]);
  });
});
