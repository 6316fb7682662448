/**
 * Attachments through the API against a real object store: upload as the raw body (typed by its
 * first bytes when the request says nothing of its type) or as multipart, replies with files as multipart parts, inline base64 or uploaded references, the
 * channel receiving the references, downloads streamed back byte for byte (also for files that
 * arrived from a customer), and the size limits.
 */
import { createHash } from 'node:crypto';
import { request } from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ADMIN, READER, post, startApiHarness, until, type ApiHarness } from './support.js';

let h: ApiHarness;
const MEDIA_MAX = 64 * 1024;

beforeAll(async () => {
  h = await startApiHarness({ media: { maxBytes: MEDIA_MAX }, http: { bodyLimit: 256 * 1024 } });
});
afterAll(async () => h?.stop());

const auth = (token = ADMIN) => ({ authorization: `Bearer ${token}` });

async function download(key: string): Promise<{ status: number; bytes: Buffer; headers: Headers }> {
  const res = await fetch(`${h.gw.httpUrl}/v1/attachments/${key}`, { headers: auth(READER) });
  return { status: res.status, bytes: Buffer.from(await res.arrayBuffer()), headers: res.headers };
}

describe('POST /v1/attachments', () => {
  it('stores the raw body under its SHA-256 and serves it back by reference with its name and type', async () => {
    const bytes = Buffer.from('%PDF-1.4 счёт №17\n'.repeat(1000));
    const up = await fetch(`${h.gw.httpUrl}/v1/attachments?name=${encodeURIComponent('счёт №17.pdf')}`, { method: 'POST', headers: { ...auth(), 'content-type': 'application/pdf' }, body: bytes });
    expect(up.status).toBe(201);
    const sha256 = createHash('sha256').update(bytes).digest('hex');
    const stored = (await up.json()) as { ref: string };
    expect(stored).toEqual({ objectKey: `sha256/${sha256}`, ref: expect.stringMatching(/^ref\/[0-9a-f]{40}$/), name: 'счёт №17.pdf', mimeType: 'application/pdf', size: bytes.length, sha256 });

    const got = await download(stored.ref);
    expect(got.status).toBe(200);
    expect(Buffer.compare(got.bytes, bytes)).toBe(0);
    expect(got.headers.get('content-length')).toBe(String(bytes.length));
    expect(got.headers.get('content-type')).toBe('application/pdf');
    expect(got.headers.get('content-disposition')).toBe(`attachment; filename="____ _17.pdf"; filename*=UTF-8''${encodeURIComponent('счёт №17.pdf')}`);
    // By content the bytes may be anyone's: no name, no type.
    const byContent = await download(`sha256/${sha256}`);
    expect(byContent.headers.get('content-type')).toBe('application/octet-stream');
    expect(byContent.headers.get('content-disposition')).toBe(`attachment; filename="${sha256}"; filename*=UTF-8''${sha256}`);
  });

  it('refuses a name with control characters, naming the field', async () => {
    const res = await fetch(`${h.gw.httpUrl}/v1/attachments?name=${encodeURIComponent('a\r\nb.pdf')}`, { method: 'POST', headers: { ...auth(), 'content-type': 'application/pdf' }, body: Buffer.from('x') });
    expect(res.status).toBe(400);
    expect(((await res.json()) as any).error).toMatchObject({ code: 'invalid_request', field: 'name' });
  });

  it('accepts one multipart file part', async () => {
    const form = new FormData();
    form.append('file', new Blob([Buffer.from('привет, мир')], { type: 'text/plain' }), 'привет.txt');
    const up = await fetch(`${h.gw.httpUrl}/v1/attachments`, { method: 'POST', headers: auth(), body: form });
    expect(up.status).toBe(201);
    const ref = (await up.json()) as { objectKey: string; name: string; mimeType: string };
    expect(ref).toMatchObject({ name: 'привет.txt', mimeType: 'text/plain', size: Buffer.byteLength('привет, мир') });
    expect((await download(ref.objectKey)).bytes.toString('utf8')).toBe('привет, мир');
  });

  it('refuses what it cannot store, naming the field', async () => {
    const raw = (body: Buffer | string, query = '?name=a.bin', headers: Record<string, string> = {}) =>
      fetch(`${h.gw.httpUrl}/v1/attachments${query}`, { method: 'POST', headers: { ...auth(), 'content-type': 'application/octet-stream', ...headers }, body }).then(async (r) => ({ status: r.status, body: (await r.json()) as any }));
    expect((await raw(Buffer.from('x'), '')).body.error).toMatchObject({ code: 'invalid_request', field: 'name' });
    expect((await raw(Buffer.alloc(0))).body.error).toMatchObject({ code: 'invalid_request', field: 'body' });
    const tooBig = await raw(Buffer.alloc(MEDIA_MAX + 1));
    expect(tooBig.status).toBe(413);
    expect(tooBig.body.error.code).toBe('payload_too_large');
    const overBodyLimit = await raw(Buffer.alloc(300 * 1024));
    expect(overBodyLimit.status).toBe(413);
    expect(overBodyLimit.body.error.code).toBe('payload_too_large');
    const noFile = new FormData();
    noFile.append('text', 'no file here');
    const none = await fetch(`${h.gw.httpUrl}/v1/attachments`, { method: 'POST', headers: auth(), body: noFile });
    expect(((await none.json()) as any).error).toMatchObject({ code: 'invalid_request', field: 'file' });
    const broken = await raw('garbage', '', { 'content-type': 'multipart/form-data; boundary=zzz' });
    expect(broken.body.error).toMatchObject({ code: 'invalid_request', field: 'body' });
    // A parameter the upload does not take is named, not ignored (the type comes from Content-Type).
    const mimeParam = await fetch(`${h.gw.httpUrl}/v1/attachments?name=a.html&mimeType=text/html`, { method: 'POST', headers: { ...auth(), 'content-type': 'text/plain' }, body: 'x' });
    expect(mimeParam.status).toBe(400);
    expect(((await mimeParam.json()) as any).error).toMatchObject({ code: 'invalid_request', field: 'mimeType', message: expect.stringContaining('unknown query parameter "mimeType"') });
  });

  it('types an upload that says nothing (no Content-Type, or the form type curl sends) by its first bytes, else octet-stream', async () => {
    const zip = Buffer.concat([Buffer.from([0x50, 0x4b, 0x03, 0x04]), Buffer.from('[Content_Types].xml')]);
    const files: Array<[name: string, bytes: Buffer, type: string]> = [
      ['счёт.pdf', Buffer.from('%PDF-1.7\n%âãÏÓ\n1 0 obj'), 'application/pdf'],
      ['logo.png', Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 0, 0, 0, 0x0d]), 'image/png'],
      ['фото.jpg', Buffer.from([0xff, 0xd8, 0xff, 0xe0, 0, 0x10, 0x4a, 0x46]), 'image/jpeg'],
      ['a.gif', Buffer.from('GIF89a\x01\x00'), 'image/gif'],
      ['voice.ogg', Buffer.from('OggS\x00\x02 OpusHead'), 'audio/ogg'],
      ['акт.docx', zip, 'application/vnd.openxmlformats-officedocument.wordprocessingml.document'],
      ['отчёт.XLSX', zip, 'application/vnd.openxmlformats-officedocument.spreadsheetml.sheet'],
      ['архив.zip', zip, 'application/zip'],
      ['readme.docx', Buffer.from('not a zip at all'), 'application/octet-stream'], // the name alone is no proof
      ['dump.bin', Buffer.from([0x00, 0x01, 0x02, 0x03]), 'application/octet-stream'],
    ];
    // What `curl --data-binary @file` sends without -H, and nothing at all (node:http sets no type).
    for (const contentType of ['application/x-www-form-urlencoded', undefined]) {
      for (const [name, bytes, type] of files) {
        const status = await new Promise<{ code: number; body: any }>((resolve, reject) => {
          const req = request(`${h.gw.httpUrl}/v1/attachments?name=${encodeURIComponent(name)}`, { method: 'POST', headers: { ...auth(), 'content-length': String(bytes.length), ...(contentType ? { 'content-type': contentType } : {}) } }, (res) => {
            const chunks: Buffer[] = [];
            res.on('data', (c: Buffer) => chunks.push(c));
            res.on('end', () => resolve({ code: res.statusCode!, body: JSON.parse(Buffer.concat(chunks).toString('utf8')) }));
          });
          req.on('error', reject);
          req.end(bytes);
        });
        expect(status.code, `${name} as ${contentType}`).toBe(201);
        expect(status.body.mimeType, `${name} as ${contentType}`).toBe(type);
        expect((await download(status.body.ref)).headers.get('content-type')).toBe(type);
      }
    }
    // A type the client gave is kept, even when the bytes look like something else.
    const declared = await fetch(`${h.gw.httpUrl}/v1/attachments?name=a.txt`, { method: 'POST', headers: { ...auth(), 'content-type': 'text/plain; charset=utf-8' }, body: Buffer.from('%PDF-1.7') });
    expect(((await declared.json()) as any).mimeType).toBe('text/plain');
  });

  it('refuses a multipart text field given twice (the last one won without a word)', async () => {
    const id = await h.openTicket('mp-twice');
    const form = new FormData();
    form.append('text', 'первый');
    form.append('text', 'второй');
    const res = await fetch(`${h.gw.httpUrl}/v1/tickets/${id}/replies`, { method: 'POST', headers: auth(), body: form });
    expect(res.status).toBe(400);
    expect(((await res.json()) as any).error).toMatchObject({ code: 'invalid_request', field: 'text', message: 'text: given more than once; give it once' });
  });
});

describe('replies with attachments', () => {
  it('takes files as multipart parts and hands the channel references it can download', async () => {
    const id = await h.openTicket('mp-1');
    const form = new FormData();
    form.append('text', 'Акт и счёт во вложении');
    form.append('author.id', 'agent-7');
    form.append('author.name', 'Мария');
    form.append('file', new Blob([Buffer.from('акт')], { type: 'application/pdf' }), 'акт.pdf');
    form.append('file', new Blob([Buffer.from('счёт')], { type: 'application/pdf' }), 'счёт.pdf');
    const res = await fetch(`${h.gw.httpUrl}/v1/tickets/${id}/replies`, { method: 'POST', headers: { ...auth(), 'idempotency-key': 'mp-1' }, body: form });
    expect(res.status).toBe(202);

    await until(() => h.sent.some((s) => s.ticketId === id), 'the reply at the channel');
    const sent = h.sent.find((s) => s.ticketId === id)!;
    expect(sent.text).toBe('Акт и счёт во вложении');
    expect(sent.author).toEqual({ id: 'agent-7', name: 'Мария' });
    expect(sent.attachments.map((a: { name: string }) => a.name)).toEqual(['акт.pdf', 'счёт.pdf']);
    expect((await download(sent.attachments[1].objectKey)).bytes.toString('utf8')).toBe('счёт');
    const byRef = await download(sent.attachments[1].ref);
    expect(byRef.bytes.toString('utf8')).toBe('счёт');
    expect(byRef.headers.get('content-type')).toBe('application/pdf');
    expect(byRef.headers.get('content-disposition')).toContain(`filename*=UTF-8''${encodeURIComponent('счёт.pdf')}`);
  });

  it('accepts inline base64 and uploaded references in JSON, and refuses unknown references', async () => {
    const id = await h.openTicket('json-att');
    const up = await fetch(`${h.gw.httpUrl}/v1/attachments?name=scan.png`, { method: 'POST', headers: { ...auth(), 'content-type': 'image/png' }, body: Buffer.from([0x89, 0x50, 0x4e, 0x47]) });
    const ref = (await up.json()) as { objectKey: string };
    const ok = await h.api(`/v1/tickets/${id}/replies`, post({ text: 'Во вложении', attachments: [ref, { name: 'note.txt', mimeType: 'text/plain', contentBase64: Buffer.from('привет').toString('base64') }] }));
    expect(ok.status).toBe(202);
    await until(() => h.sent.some((s) => s.ticketId === id), 'the reply at the channel');
    const [png, txt] = h.sent.find((s) => s.ticketId === id)!.attachments;
    expect(png).toMatchObject({ objectKey: ref.objectKey, name: 'scan.png', mimeType: 'image/png', size: 4 });
    expect((await download(txt.objectKey)).bytes.toString('utf8')).toBe('привет');

    const unknown = await h.api(`/v1/tickets/${id}/replies`, post({ text: 'x', attachments: [{ ...ref, objectKey: `sha256/${'0'.repeat(64)}` }] }));
    expect(unknown.body.error).toMatchObject({ code: 'invalid_request', field: 'attachments.0.objectKey' });
    // The size a reply carries to the platform and the log is the upload's, not a claim.
    const wrongSize = await h.api(`/v1/tickets/${id}/replies`, post({ text: 'x', attachments: [{ ...ref, size: 999_999 }] }));
    expect(wrongSize.status).toBe(400);
    expect(wrongSize.body.error).toMatchObject({ code: 'invalid_request', field: 'attachments.0.size', message: expect.stringContaining('is 999999, but the upload') });
    const notBase64 = await h.api(`/v1/tickets/${id}/replies`, post({ text: 'x', attachments: [{ name: 'a.txt', contentBase64: 'это не base64!' }] }));
    expect(notBase64.status).toBe(400);
    expect(notBase64.body.error).toMatchObject({ code: 'invalid_request', field: 'attachments.0.contentBase64' });
    const tooBig = await h.api(`/v1/tickets/${id}/replies`, post({ text: 'x', attachments: [{ name: 'big.bin', contentBase64: Buffer.alloc(MEDIA_MAX + 1).toString('base64') }] }));
    expect(tooBig.status).toBe(413);
    expect(tooBig.body.error).toMatchObject({ code: 'payload_too_large', field: 'attachments.0' });
  });
});

describe('GET /v1/attachments/:key', () => {
  it('serves a file the customer sent, found through the ticket log', async () => {
    const photo = Buffer.from('JPEG… фото чека');
    const id = await h.openTicket('in-att', undefined, 'Вот фото чека', [{ name: 'чек.jpg', mimeType: 'image/jpeg', contentBase64: photo.toString('base64') }]);
    const log = (await h.api(`/v1/tickets/${id}`)).body.log;
    const attachment = log[0].event.attachments[0];
    expect(attachment).toMatchObject({ name: 'чек.jpg', status: 'stored' });
    expect(Buffer.compare((await download(attachment.objectKey)).bytes, photo)).toBe(0);
    const byRef = await download(attachment.ref);
    expect(Buffer.compare(byRef.bytes, photo)).toBe(0);
    expect(byRef.headers.get('content-type')).toBe('image/jpeg');
  });

  it('serves one file sent by two customers under two names under each one\'s name', async () => {
    const bytes = Buffer.from('%PDF-1.4 один и тот же договор');
    const a = await h.openTicket('two-names-a', 'anna@example.ru', 'Договор', [{ name: 'Договор Анны.pdf', mimeType: 'application/pdf', contentBase64: bytes.toString('base64') }]);
    const b = await h.openTicket('two-names-b', 'boris@example.ru', 'Договор', [{ name: "Boris's contract (final).pdf", mimeType: 'application/pdf', contentBase64: bytes.toString('base64') }]);
    expect(a).not.toBe(b);
    const refOf = async (ticketId: string) => (await h.api(`/v1/tickets/${ticketId}`)).body.log[0].event.attachments[0];
    const [fromA, fromB] = [await refOf(a), await refOf(b)];
    expect(fromA.objectKey).toBe(fromB.objectKey); // the bytes are stored once
    expect(fromA.ref).not.toBe(fromB.ref);
    const gotA = await download(fromA.ref);
    const gotB = await download(fromB.ref);
    expect(Buffer.compare(gotA.bytes, bytes)).toBe(0);
    expect(Buffer.compare(gotB.bytes, bytes)).toBe(0);
    expect(gotA.headers.get('content-disposition')).toBe(`attachment; filename="_______ ____.pdf"; filename*=UTF-8''${encodeURIComponent('Договор Анны.pdf')}`);
    expect(gotB.headers.get('content-disposition')).toBe(`attachment; filename="Boris's contract (final).pdf"; filename*=UTF-8''Boris%27s%20contract%20%28final%29.pdf`);
    expect(gotA.headers.get('content-type')).toBe('application/pdf');
  });

  it('refuses invalid base64 from the channel instead of storing an empty file', async () => {
    const res = await fetch(`${h.gw.httpUrl}/connectors/webhook/site/messages`, {
      method: 'POST',
      headers: { authorization: 'Bearer site-secret-0123456789' },
      body: JSON.stringify({ messageId: 'bad-b64', sender: { id: 'x@example.ru' }, text: 'x', attachments: [{ name: 'a.pdf', contentBase64: '%%%не base64%%%' }] }),
    });
    expect(res.status).toBe(400);
    expect(((await res.json()) as any).message).toContain('attachments.0.contentBase64');
  });

  it('404s unknown and malformed keys, and needs a token', async () => {
    const unknown = await download(`sha256/${'a'.repeat(64)}`);
    expect(unknown.status).toBe(404);
    expect(JSON.parse(unknown.bytes.toString()).error.code).toBe('not_found');
    expect((await download('sha256/0000')).status).toBe(404);
    expect((await download('../../etc/passwd')).status).toBe(404);
    expect((await fetch(`${h.gw.httpUrl}/v1/attachments/sha256/${'a'.repeat(64)}`)).status).toBe(401);
  });
});
