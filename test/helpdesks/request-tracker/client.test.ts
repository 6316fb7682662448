/**
 * The REST2 client against a real Request Tracker 5 (Debian's request-tracker5, SQLite), one
 * instance for the file: every call the adapter relies on, with Cyrillic names and binary files.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readFileSync } from 'node:fs';
import { RtClient, RtRefusedError, RtUnavailableError } from '../../../src/helpdesks/request-tracker/client.js';
import { rtCall, rtInstalled, startRt, type TestRt } from '../../helpers/request-tracker.js';

const PNG = Buffer.from('89504e470d0a1a0a0000000d4948445200000001000000010806000000' + '1f15c4890000000d49444154789c6360000002000154a24f5d0000000049454e44ae426082', 'hex');

describe.skipIf(!rtInstalled())('RtClient against a real RT 5', () => {
  let rt: TestRt;
  let client: RtClient;

  beforeAll(async () => {
    rt = await startRt();
    client = new RtClient({ url: rt.url, token: rt.token });
  }, 180_000);
  afterAll(async () => {
    await rt?.stop();
  });

  it('creates a ticket for a requestor without email, with the External ID, a Cyrillic text and a photo', async () => {
    const user = await client.ensureUser({ name: 'omnigate.telegram.main.4242', realName: 'Иван Петров', comments: 'username: ivan' });
    expect(user.name).toBe('omnigate.telegram.main.4242');
    expect(user.realName).toBe('Иван Петров');
    expect((await client.ensureUser({ name: 'omnigate.telegram.main.4242' })).id).toBeGreaterThan(0);
    const id = await client.createTicket({
      queue: 'General',
      subject: 'telegram: Иван Петров — Привет',
      requestors: [user.name],
      customFields: { 'External ID': 'tkt-1' },
      content: 'Привет! Принтер горит 🔥',
      attachments: [{ fileName: 'фото.png', mimeType: 'image/png', bytes: PNG }],
    });
    const t = await client.getTicket(id);
    expect(t.customFields['External ID']).toEqual(['tkt-1']);
    expect(await client.findTicketsByCustomField('External ID', 'tkt-1')).toEqual([id]);
    expect(await client.findTicketsByCustomField('External ID', "it's-not")).toEqual([]);
    const r = await rtCall(rt, 'root', 'GET', `/ticket/${id}`);
    expect(r.body.Requestor[0].id).toBe('omnigate.telegram.main.4242');

    const [create] = await client.transactionsAfter(0, { types: ['Create'] });
    expect(create!.ticketId).toBe(id);
    const parts = await client.transactionParts(create!.id);
    expect(parts.find((p) => p.contentType === 'text/plain')?.content).toBe('Привет! Принтер горит 🔥');
    const file = parts.find((p) => p.fileName === 'фото.png')!;
    expect(file.contentType).toBe('image/png');
    expect((await client.attachmentBytes(file.id)).equals(PNG)).toBe(true);
    // RT had no address to mail: no autoreply reached anyone
    let mail = '';
    try {
      mail = readFileSync(rt.mailbox, 'utf8');
    } catch {
      // no mail at all
    }
    expect(mail).not.toContain('4242');
  });

  it('reads an agent correspondence with a file since a transaction id, and our comment', async () => {
    const [id] = await client.findTicketsByCustomField('External ID', 'tkt-1');
    const before = await client.lastTransactionId();
    const res = await rtCall(rt, 'agent', 'POST', `/ticket/${id}/correspond`, {
      Content: 'Выключите его из розетки.',
      ContentType: 'text/plain',
      Attachments: [{ FileName: 'scheme.png', FileType: 'image/png', FileContent: PNG.toString('base64') }],
    });
    expect(res.status).toBe(201);
    const ours = await client.comment(id!, { content: 'internal' });
    const txns = await client.transactionsAfter(before, { types: ['Correspond', 'Comment', 'Status'] });
    const byAgent = txns.find((t) => t.type === 'Correspond')!;
    expect(byAgent.creator).toBe('agent');
    expect(txns.find((t) => t.id === ours)?.creator).toBe('root');
    const status = txns.find((t) => t.type === 'Status');
    expect(status).toMatchObject({ creator: 'RT_System', field: 'Status', oldValue: 'new', newValue: 'open' });
    const parts = await client.transactionParts(byAgent.id);
    expect(parts.find((p) => p.contentType === 'text/plain')?.content).toBe('Выключите его из розетки.');
    expect(parts.find((p) => p.fileName === 'scheme.png')).toBeTruthy();
    expect(await client.recentTransactionsBy(id!, 'root', 'Comment', 5)).toEqual([ours]);

    await client.setStatus(id!, 'resolved');
    expect((await client.getTicket(id!)).status).toBe('resolved');
  });

  it('says refused for a bad token and a missing ticket, unavailable for a closed port', async () => {
    const bad = new RtClient({ url: rt.url, token: '1-1-bogus' });
    await expect(bad.version()).rejects.toBeInstanceOf(RtRefusedError);
    await expect(client.getTicket(999_999)).rejects.toBeInstanceOf(RtRefusedError);
    const down = new RtClient({ url: 'http://127.0.0.1:9', token: 'x', timeoutMs: 2000 });
    const err = await down.version().catch((e: Error) => e);
    expect(err).toBeInstanceOf(RtUnavailableError);
    expect((err as Error).message).not.toContain('token');
  });
});
