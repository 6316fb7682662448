/**
 * Files deleted by `retention.attachments` after a ticket logged them: the log is append-only and
 * keeps `status: "stored"`, so the API's answer marks them `expired` from the object store, and a
 * download answers 410 attachment_expired (not a bare 404, which reads as a wrong link). A file
 * still there, and a key never stored, are answered as before.
 */
import type { ObjectStore } from '@nats-io/obj';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AttachmentExpiry } from '../../src/api/attachment-expiry.js';
import type { LogEntry } from '../../src/core/schema.js';
import { READER, post, startApiHarness, until, type ApiHarness } from './support.js';

const HOUR = 3_600_000;

describe('retention.attachments through the API', () => {
  let h: ApiHarness;
  beforeAll(async () => {
    h = await startApiHarness({ retention: { attachments: '1h', sweepInterval: '1h' } });
  }, 120_000);
  afterAll(async () => h?.stop());

  const download = async (key: string) => {
    const res = await fetch(`${h.gw.httpUrl}/v1/attachments/${key}`, { headers: { authorization: `Bearer ${READER}` } });
    return { status: res.status, body: res.headers.get('content-type')?.startsWith('application/json') ? ((await res.json()) as any) : Buffer.from(await res.arrayBuffer()) };
  };
  const filesOf = async (id: string, path = `/v1/tickets/${id}`) => {
    const log = (await h.api(path)).body.log as any[];
    return {
      inbound: log.find((e) => e.kind === 'inbound').event.attachments[0],
      outbound: log.find((e) => e.kind === 'outbound')?.message.attachments[0],
    };
  };

  it('marks an expired file in the ticket log and answers its download 410, naming the reason', async () => {
    const id = await h.openTicket('exp-1', 'olga@example.ru', 'Скан договора', [{ name: 'Договор №5.pdf', mimeType: 'application/pdf', contentBase64: Buffer.from('%PDF договор').toString('base64') }]);
    const sent = await h.api(`/v1/tickets/${id}/replies`, post({ text: 'Акт во вложении', attachments: [{ name: 'акт.pdf', mimeType: 'application/pdf', contentBase64: Buffer.from('%PDF акт').toString('base64') }] }));
    expect(sent.status).toBe(202);
    await until(async () => (await filesOf(id)).outbound !== undefined, 'the reply in the log');
    const before = await filesOf(id);
    expect(before.inbound).toMatchObject({ name: 'Договор №5.pdf', status: 'stored' });
    expect(before.outbound).toMatchObject({ name: 'акт.pdf' });
    expect(before.outbound.status).toBeUndefined();
    expect((await download(before.inbound.ref)).status).toBe(200);

    const swept = await h.gw.gateway.retention!.sweep(Date.now() + 2 * HOUR);
    expect(swept.attachments).toBeGreaterThanOrEqual(2);

    for (const path of [`/v1/tickets/${id}`, `/v1/tickets/${id}/log`]) {
      const after = await filesOf(id, path);
      expect(after.inbound).toMatchObject({ name: 'Договор №5.pdf', ref: before.inbound.ref, status: 'expired' });
      expect(after.outbound).toMatchObject({ name: 'акт.pdf', status: 'expired' });
    }
    for (const key of [before.inbound.ref, before.inbound.objectKey, before.outbound.ref]) {
      const gone = await download(key);
      expect(gone.status).toBe(410);
      expect(gone.body.error).toMatchObject({ code: 'attachment_expired', field: 'objectKey', message: expect.stringContaining('retention.attachments (1h)') });
    }
    // A key never stored is still not_found.
    const unknown = await download(`sha256/${'b'.repeat(64)}`);
    expect(unknown.status).toBe(404);
    expect(unknown.body.error.code).toBe('not_found');
  }, 120_000);

  it('leaves a file sent after the sweep stored and downloadable', async () => {
    const id = await h.openTicket('exp-2', 'petr@example.ru', 'Фото', [{ name: 'фото.jpg', mimeType: 'image/jpeg', contentBase64: Buffer.from('JPEG свежий').toString('base64') }]);
    const { inbound } = await filesOf(id);
    expect(inbound).toMatchObject({ status: 'stored' });
    expect((await download(inbound.ref)).status).toBe(200);
  }, 60_000);
});

describe('AttachmentExpiry', () => {
  const ref = (c: string) => `ref/${c.repeat(40)}`;
  const obj = (c: string) => `sha256/${c.repeat(64)}`;
  const inbound = (at: string, attachments: Array<Record<string, unknown>>) =>
    ({ kind: 'inbound', at, event: { attachments: attachments.map((a) => ({ name: 'f', mimeType: 'x/y', size: 1, kind: 'document', status: 'stored', ...a })) } }) as unknown as LogEntry;

  it('looks up only entries old enough to have expired (and bytes without a reference always), and copies what it marks', async () => {
    const asked: string[] = [];
    const store = { info: async (k: string) => (asked.push(k), { deleted: true }) } as unknown as ObjectStore;
    const now = Date.parse('2026-12-07T12:00:00Z');
    const expiry = new AttachmentExpiry(store, 30 * 24 * HOUR, () => now);
    const young = inbound('2026-12-01T00:00:00Z', [{ ref: ref('a'), objectKey: obj('a') }]);
    const old = inbound('2026-10-01T00:00:00Z', [{ ref: ref('b'), objectKey: obj('b') }, { status: 'failed' }]);
    const unreferenced = inbound('2026-12-07T11:00:00Z', [{ objectKey: obj('c') }]);
    const out = await expiry.mark([young, old, unreferenced]);
    expect(asked.sort()).toEqual([ref('b'), obj('b'), obj('c')].sort());
    expect(out[0]).toBe(young);
    expect((out[1] as any).event.attachments.map((a: any) => a.status)).toEqual(['expired', 'failed']);
    expect((old as any).event.attachments[0].status).toBe('stored');
    expect((out[2] as any).event.attachments[0].status).toBe('expired');
    expect(await new AttachmentExpiry(store, 0, () => now).mark([old])).toEqual([old]);
  });
});
