/**
 * A reference record's age is that of its newest use. `retention.attachments` deletes references
 * (and bytes no young reference names) by age, and everyone who sends the same file under the same
 * name on one account shares one reference: written only the first time, a file a customer sent
 * today was deleted as old because someone else had sent it under that name long before.
 */
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { jetstream } from '@nats-io/jetstream';
import { Objm, type ObjectStore } from '@nats-io/obj';
import { MediaStore } from '../../src/core/media.js';
import { startNats, type TestNats } from '../helpers/nats-server.js';

let server: TestNats;
let nc: NatsConnection;
let bucket: ObjectStore;
beforeAll(async () => {
  server = await startNats();
  nc = await connect({ servers: server.url });
  bucket = await new Objm(jetstream(nc)).create('refs_test');
});
afterAll(async () => {
  await nc?.close();
  await server?.stop();
});

describe('attachment references', () => {
  it('are shared by senders of the same file under the same name on one account, and written again on a use an hour after the last write', async () => {
    const store = new MediaStore(bucket, 1 << 20, 'telegram.support');
    const bytes = Buffer.from('Счёт № 42');
    const first = await store.put(bytes, { name: 'счёт.txt', mimeType: 'text/plain' });
    const before = (await bucket.info(first.ref!))!.mtime;
    await new Promise((r) => setTimeout(r, 50));
    // Within the hour: not written again (a burst of uses is one write).
    const second = await store.put(bytes, { name: 'счёт.txt', mimeType: 'text/plain' });
    expect(second.ref).toBe(first.ref);
    expect((await bucket.info(second.ref!))!.mtime).toBe(before);
    // Two hours on (by the gateway's clock): written again, so its age is that of this use.
    const now = Date.now();
    vi.spyOn(Date, 'now').mockReturnValue(now + 2 * 3_600_000);
    await store.put(bytes, { name: 'счёт.txt', mimeType: 'text/plain' });
    vi.restoreAllMocks();
    const after = (await bucket.info(second.ref!))!.mtime;
    expect(new Date(after).getTime()).toBeGreaterThan(new Date(before).getTime());
    expect(await store.lookup(second.ref!)).toMatchObject({ objectKey: first.objectKey, name: 'счёт.txt', scope: 'telegram.support' });
    // Another name, or an upload for a ticket, is a reference of its own.
    expect((await store.put(bytes, { name: 'другой.txt', mimeType: 'text/plain' })).ref).not.toBe(first.ref);
    expect((await store.put(bytes, { name: 'счёт.txt', mimeType: 'text/plain', ticketId: 'T-1' })).ref).not.toBe(first.ref);
  });
});
