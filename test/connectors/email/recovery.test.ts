/**
 * Email intake under interruption: a gateway stopped in the middle of 500 mails (then a simulated
 * crash between publish and acknowledgement) loses none and duplicates none; a UIDVALIDITY change
 * (the folder deleted and recreated, old mail restored into it) is survived the same way.
 */
import { jetstreamManager } from '@nats-io/jetstream';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { Kvm } from '@nats-io/kv';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { hashKey } from '../../../src/core/subjects.js';
import type { TicketEvent } from '../../../src/core/schema.js';
import type { TestGateway } from '../../helpers/gateway.js';
import { PASSWORD, SUPPORT, collectTicketEvents, connected, emailGateway, inboundOf, mailbox, openedBy, routerDrained, startWorld, until, type EmailWorld } from './harness.js';
import { plainMail, uniqueId } from './mails.js';

let world: EmailWorld;
let nc: NatsConnection;
let seen: { events: TicketEvent[]; stop(): void };

beforeAll(async () => {
  world = await startWorld();
  nc = await connect({ servers: world.nats.url });
});
afterAll(async () => {
  seen?.stop();
  await nc?.close();
  await world?.stop();
});

describe('email intake recovery', () => {
  it('loses and duplicates nothing when stopped in the middle of 500 mails and restarted after a crash-like rewind', async () => {
    const ids = Array.from({ length: 500 }, () => uniqueId('batch'));
    await world.imap.mailboxCreate('Batch');
    const config = { batchSize: 25, mailboxes: [mailbox(world, SUPPORT, { folders: ['Batch'] })] };
    const gateways: TestGateway[] = [];
    try {
      const first = await emailGateway(world, config);
      gateways.push(first);
      seen ??= await collectTicketEvents(nc);
      await connected(first);
      // Mail keeps arriving while the gateway is stopped part-way through.
      const appending = (async () => {
        for (const [i, id] of ids.entries()) {
          await world.imap.append('Batch', plainMail({ from: `client${i}@client.example.ru`, messageId: id, subject: `Заявка ${i}` }));
        }
      })();
      await until(() => openedBy(seen.events).size >= 100, '100 tickets');
      await first.stop();
      gateways.pop();
      await appending;
      expect(openedBy(seen.events).size).toBeLessThan(500);

      // Simulate a crash after publishing but before acknowledging: rewind the checkpoint by 60
      // UIDs and take our flags off those mails, so they are read and published again.
      const kv = await new Kvm(nc).open('omni_state');
      const key = `email.support.${hashKey(`uid:${SUPPORT}:Batch`)}`;
      const cp = (await kv.get(key))!.json<{ uidValidity: string; lastUid: number }>();
      expect(cp.lastUid).toBeGreaterThan(60);
      expect(cp.lastUid).toBeLessThan(500); // really stopped in the middle
      const rewound = cp.lastUid - 60;
      await kv.put(key, JSON.stringify({ ...cp, lastUid: rewound }));
      await world.imap.mailboxOpen('Batch');
      await world.imap.messageFlagsRemove(`${rewound + 1}:${cp.lastUid}`, ['\\Seen', '$Omnigate'], { uid: true });

      gateways.push(await emailGateway(world, config));
      await until(() => openedBy(seen.events).size >= 500, '500 tickets');
      // Everything read: the checkpoint is at the last mail and the router has nothing left.
      for (;;) {
        const now = (await kv.get(key))!.json<{ lastUid: number }>();
        if (now.lastUid >= 500) break;
        await new Promise((r) => setTimeout(r, 50));
      }
      await routerDrained(nc);
      const opened = openedBy(seen.events);
      expect(opened.size).toBe(500);
      expect([...opened.values()].every((t) => t.length === 1)).toBe(true);
      expect(new Set([...opened.values()].flat()).size).toBe(500);
      expect(ids.every((id) => opened.has(id))).toBe(true);
      // No mail was threaded twice either (a redelivered event would be a second ticket.message).
      const messages = seen.events.filter((e) => e.type === 'ticket.message' && inboundOf(e)?.email?.messageId.startsWith('<batch.'));
      expect(messages).toHaveLength(500);
      const jsm = await jetstreamManager(nc);
      const stream = await jsm.streams.info('OMNI_IN', { subjects_filter: 'omni.in.email.support' });
      expect(stream.state.messages).toBeGreaterThanOrEqual(500);
      // All 500 are acknowledged on the server (checked from a fresh session).
      const check = await world.dovecot.client(SUPPORT, PASSWORD);
      await check.mailboxOpen('Batch');
      expect(await check.search({ seen: false }, { uid: true })).toEqual([]);
      expect(await check.search({ unKeyword: '$Omnigate' }, { uid: true })).toEqual([]);
    } finally {
      await Promise.all(gateways.map((g) => g.stop()));
    }
  });

  it('survives a UIDVALIDITY change: the folder deleted and recreated while the gateway was away, old mail restored into it', async () => {
    // Mailbox migrations happen between sessions (a server move, a restore from backup): the
    // gateway comes back to a folder with a new UIDVALIDITY. (Dovecot keeps serving stale data to
    // a session whose selected folder is recreated under it; see docs/connectors/email.md.)
    await world.imap.mailboxCreate('Support');
    const options = { pollIntervalMs: 500, mailboxes: [mailbox(world, SUPPORT, { folders: ['Support'] })] };
    let gw = await emailGateway(world, options);
    let stopped = false;
    try {
      await connected(gw);
      seen ??= await collectTicketEvents(nc);
      const oldId = uniqueId('old');
      const oldMail = plainMail({ from: 'anna@client.example.ru', messageId: oldId, subject: 'Старое письмо' });
      await world.imap.append('Support', oldMail);
      const first = await gw.waitForEvent((e) => e.type === 'ticket.message' && inboundOf(e)?.email?.messageId === oldId);
      const status = async () => (await world.imap.status('Support', { uidValidity: true, unseen: true })) || { uidValidity: undefined, unseen: undefined };
      const before = (await status()).uidValidity;
      await gw.stop();
      stopped = true;

      // The migration: the folder is recreated (new UIDVALIDITY, UIDs start at 1 again), the old
      // mail comes back without our flags, and new mail arrives.
      await world.imap.mailboxDelete('Support');
      await world.imap.mailboxCreate('Support');
      const after = (await status()).uidValidity;
      expect(after).not.toBe(before);
      await world.imap.append('Support', oldMail);
      const newIds = [uniqueId('new'), uniqueId('new')];
      for (const id of newIds) await world.imap.append('Support', plainMail({ from: 'boris@client.example.ru', messageId: id, subject: `Новое ${id}` }));

      gw = await emailGateway(world, options);
      stopped = false;
      const fresh = await Promise.all(newIds.map((id) => gw.waitForEvent((e) => e.type === 'ticket.message' && inboundOf(e)?.email?.messageId === id, 30_000)));
      expect(fresh).toHaveLength(2);
      // Everything in the recreated folder was read and acknowledged…
      for (;;) {
        if ((await status()).unseen === 0) break;
        await new Promise((r) => setTimeout(r, 50));
      }
      await routerDrained(nc);
      // …and the restored old mail did not become a second ticket or a second message.
      const copies = seen.events.filter((e) => e.type === 'ticket.message' && inboundOf(e)?.email?.messageId === oldId);
      expect(copies.map((e) => e.ticketId)).toEqual([first.ticketId]);
      const ticket = await gw.ticket(first.ticketId);
      expect(ticket?.messageCount).toBe(1);
      expect(gw.logs.some((l) => l.includes('UIDVALIDITY changed'))).toBe(true);
    } finally {
      if (!stopped) await gw.stop();
    }
  });
});
