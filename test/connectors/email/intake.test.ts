/**
 * Email intake at its edges: the checkpoint never passes mail that was not handled (mail already
 * ours above it in a batch, a mail Dovecot cannot return), and a UIDVALIDITY change brings back
 * only what arrived since the folder was last read, not its history.
 */
import { chmod, readFile, readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { jetstreamManager } from '@nats-io/jetstream';
import { Kvm } from '@nats-io/kv';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { DeadLetter, TicketEvent } from '../../../src/core/schema.js';
import type { TestGateway } from '../../helpers/gateway.js';
import { PASSWORD, SUPPORT, checkpointOf, collectTicketEvents, connected, emailGateway, inboundOf, mailbox, openedBy, routerDrained, startWorld, until, type EmailWorld } from './harness.js';
import { plainMail, uniqueId } from './mails.js';

const DAY = 24 * 60 * 60 * 1000;

let world: EmailWorld;
let nc: NatsConnection;
let seen: { events: TicketEvent[]; stop(): void };
const gateways = new Set<TestGateway>();

beforeAll(async () => {
  world = await startWorld();
  nc = await connect({ servers: world.nats.url });
});
// One gateway at a time: each holds the mailbox lease. A failed test must not leave its own running.
afterEach(async () => {
  await Promise.all([...gateways].map((g) => stop(g)));
});
afterAll(async () => {
  seen?.stop();
  await nc?.close();
  await world?.stop();
});

async function start(options: Record<string, unknown>): Promise<TestGateway> {
  const gw = await emailGateway(world, options);
  gateways.add(gw);
  seen ??= await collectTicketEvents(nc);
  return gw;
}
async function stop(gw: TestGateway): Promise<void> {
  gateways.delete(gw);
  await gw.stop();
}

const messagesOf = (messageId: string) => seen.events.filter((e) => e.type === 'ticket.message' && inboundOf(e)?.email?.messageId === messageId);
const created = (messageId: string) => (e: TicketEvent) => e.type === 'ticket.message' && inboundOf(e)?.email?.messageId === messageId && e.entry?.kind === 'inbound' && e.entry.match.rule === 'new-ticket';

async function published(): Promise<number> {
  const info = await (await jetstreamManager(nc)).streams.info('OMNI_IN', { subjects_filter: 'omni.in.email.support' });
  return info.state.messages;
}

async function lastUid(folder: string): Promise<number> {
  return (await checkpointOf(nc, folder)).cp?.lastUid ?? -1;
}

describe('email intake edges', () => {
  it('keeps the checkpoint below unhandled mail when mail already ours sits above it in the batch', async () => {
    await world.imap.mailboxCreate('Mixed');
    const config = { batchSize: 1000, mailboxes: [mailbox(world, SUPPORT, { folders: ['Mixed'] })] };
    // A checkpoint for the empty folder first: what arrives next is read in full, with no first-run filter.
    let gw = await start(config);
    await connected(gw);
    await until(async () => (await lastUid('Mixed')) === 0, 'the first checkpoint');
    await stop(gw);

    // UIDs 1-300 and 302-601 are new; 301 and 602 carry our keyword already (restored, copied back).
    const ids = Array.from({ length: 600 }, () => uniqueId('mixed'));
    const ours = [uniqueId('ours'), uniqueId('ours')];
    for (const [i, id] of ids.entries()) {
      if (i === 300) await world.imap.append('Mixed', plainMail({ messageId: ours[0] }), ['$Omnigate']);
      await world.imap.append('Mixed', plainMail({ from: `mixed${i}@client.example.ru`, messageId: id, subject: `Смесь ${i}` }));
    }
    await world.imap.append('Mixed', plainMail({ messageId: ours[1] }), ['$Omnigate']);

    const before = await published();
    gw = await start(config);
    await until(async () => (await published()) - before >= 30, '30 mails published');
    await stop(gw);
    const got = (await published()) - before;
    expect(got).toBeLessThan(600); // really stopped inside the one batch
    // Up to the last mail handled in UID order (301 counts once passed), never up to 602.
    expect(await lastUid('Mixed')).toBe(got < 300 ? got : got + 1);

    gw = await start(config);
    await until(() => ids.every((id) => openedBy(seen.events).has(id)), 'all 600 tickets');
    await until(async () => (await lastUid('Mixed')) === 602, 'the checkpoint at the top');
    await routerDrained(nc);
    const opened = openedBy(seen.events);
    expect(ids.every((id) => opened.get(id)!.length === 1 && messagesOf(id).length === 1)).toBe(true);
    expect(ours.every((id) => messagesOf(id).length === 0)).toBe(true);
    expect((await published()) - before).toBe(600);
    const check = await world.dovecot.client(SUPPORT, PASSWORD);
    await check.mailboxOpen('Mixed');
    expect(await check.search({ or: [{ seen: false }, { unKeyword: '$Omnigate' }] }, { uid: true })).toEqual([]);
    await stop(gw);
  });

  it('retries a mail the server cannot return, then parks it by its place; acknowledges nothing unpublished', async () => {
    await world.imap.mailboxCreate('Damaged');
    const [a, b, c] = [uniqueId('readable'), uniqueId('unreadable'), uniqueId('readable')];
    for (const id of [a, b, c]) await world.imap.append('Damaged', plainMail({ from: 'olga@client.example.ru', messageId: id, subject: `Письмо ${id}` }));
    // Dovecot answers a FETCH of a file it cannot open with a row without content, then ends the
    // session. Selecting the folder first moves the files from new/ to cur/, where they stay.
    await world.imap.mailboxOpen('Damaged');
    const cur = join(world.dovecot.dir, 'home', SUPPORT, 'Maildir', '.Damaged', 'cur');
    let file = '';
    for (const name of await readdir(cur)) if ((await readFile(join(cur, name), 'utf8')).includes(b)) file = join(cur, name);
    expect(file).not.toBe('');
    await chmod(file, 0);
    try {
      const gw = await start({ mailboxes: [mailbox(world, SUPPORT, { folders: ['Damaged'] })] });
      const letter = await gw.waitForStreamMessage<DeadLetter>('OMNI_DLQ', 'omni.dlq.inbound.email.support', (d) => d.reason.includes('folder Damaged'), 30_000);
      expect(letter.reason).toMatch(/^email support@example\.ru folder Damaged uid 2: the server returned no content for this mail in 3 attempts \(last: .+\); not published$/);
      expect(JSON.parse(letter.payload)).toMatchObject({ mailbox: SUPPORT, folder: 'Damaged', uid: 2 });
      await Promise.all([a, c].map((id) => gw.waitForEvent(created(id), 30_000)));
      await until(async () => (await lastUid('Damaged')) === 3, 'the checkpoint past the parked mail');
      await routerDrained(nc);
      expect(messagesOf(b)).toEqual([]);
      expect([a, c].map((id) => messagesOf(id).length)).toEqual([1, 1]);
      const check = await world.dovecot.client(SUPPORT, PASSWORD);
      await check.mailboxOpen('Damaged');
      expect(await check.search({ unKeyword: '$Omnigate' }, { uid: true })).toEqual([]);
      expect(gw.logs.filter((l) => l.includes('could not read a mail')).length).toBeGreaterThanOrEqual(3);
      await stop(gw);
    } finally {
      for (const name of await readdir(cur)) await chmod(join(cur, name), 0o600);
    }
  });

  it('after a UIDVALIDITY change takes the mail received since the folder was last read, not its read history', async () => {
    await world.imap.mailboxCreate('Archive');
    const oldId = uniqueId('history');
    const oldMail = plainMail({ from: 'old@client.example.ru', messageId: oldId, subject: 'Прошлогоднее' });
    const longAgo = new Date(Date.now() - 60 * DAY);
    await world.imap.append('Archive', oldMail, ['\\Seen'], longAgo);
    const options = { firstRun: 'unseen', pollIntervalMs: 500, mailboxes: [mailbox(world, SUPPORT, { folders: ['Archive'] })] };
    let gw = await start(options);
    await connected(gw);
    const doneId = uniqueId('done');
    const doneMail = plainMail({ from: 'anna@client.example.ru', messageId: doneId, subject: 'Уже принято' });
    await world.imap.append('Archive', doneMail);
    const first = await gw.waitForEvent(created(doneId));
    await until(async () => !!(await checkpointOf(nc, 'Archive')).cp?.caughtUpAt && (await lastUid('Archive')) === 2, 'the folder caught up');
    await stop(gw);

    // The migration: a new UIDVALIDITY; history and handled mail come back without our keyword,
    // and new mail arrives, one of it already read in webmail.
    await world.imap.mailboxDelete('Archive');
    await world.imap.mailboxCreate('Archive');
    await world.imap.append('Archive', oldMail, ['\\Seen'], longAgo);
    await world.imap.append('Archive', doneMail);
    const [unread, read] = [uniqueId('new'), uniqueId('new')];
    await world.imap.append('Archive', plainMail({ from: 'boris@client.example.ru', messageId: unread, subject: 'Новое' }));
    await world.imap.append('Archive', plainMail({ from: 'vera@client.example.ru', messageId: read, subject: 'Новое, прочитанное' }), ['\\Seen']);

    gw = await start(options);
    await Promise.all([unread, read].map((id) => gw.waitForEvent(created(id), 30_000)));
    await until(async () => (await lastUid('Archive')) === 4, 'the rescan closed');
    await routerDrained(nc);
    expect(messagesOf(oldId)).toEqual([]);
    expect(messagesOf(doneId).map((e) => e.ticketId)).toEqual([first.ticketId]);
    const check = await world.dovecot.client(SUPPORT, PASSWORD);
    await check.mailboxOpen('Archive');
    expect(await check.search({ unKeyword: '$Omnigate' }, { uid: true })).toEqual([1]); // the history, left as it was
    expect(gw.logs.some((l) => l.includes('UIDVALIDITY changed') && l.includes('received since'))).toBe(true);
    await stop(gw);
  });

  it('after a UIDVALIDITY change with no record of the folder being fully read, applies the first-run rule', async () => {
    await world.imap.mailboxCreate('Legacy');
    const oldId = uniqueId('history');
    await world.imap.append('Legacy', plainMail({ from: 'old@client.example.ru', messageId: oldId, subject: 'Давнее' }), ['\\Seen'], new Date(Date.now() - 60 * DAY));
    const unread = uniqueId('unread');
    await world.imap.append('Legacy', plainMail({ from: 'gleb@client.example.ru', messageId: unread, subject: 'Непрочитанное' }));
    const { key } = await checkpointOf(nc, 'Legacy');
    const kv = await new Kvm(nc).open('omni_state');
    await kv.put(key, JSON.stringify({ uidValidity: '1', lastUid: 7 }));
    const gw = await start({ firstRun: 'unseen', mailboxes: [mailbox(world, SUPPORT, { folders: ['Legacy'] })] });
    await gw.waitForEvent(created(unread));
    await until(async () => (await lastUid('Legacy')) === 2, 'the rescan closed');
    await routerDrained(nc);
    expect(messagesOf(oldId)).toEqual([]);
    expect(gw.logs.some((l) => l.includes('UIDVALIDITY changed') && l.includes('first-run rule (unseen)'))).toBe(true);
  });
});
