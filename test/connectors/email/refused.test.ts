/**
 * Mail the parser refuses (MIME nested thousands of levels deep, a header block over mailparser's
 * limit) against a real Dovecot: parked exactly once with a reason naming what was wrong, flagged
 * as parked, not parked again when the session drops right after the park, on a later poll or
 * after a restart, and the mail behind it still goes through.
 */
import { jetstreamManager } from '@nats-io/jetstream';
import { Kvm } from '@nats-io/kv';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import type { DeadLetter, TicketEvent } from '../../../src/core/schema.js';
import { MAX_MIME_DEPTH } from '../../../src/connectors/email/mime-depth.js';
import type { TestGateway } from '../../helpers/gateway.js';
import { SUPPORT, checkpointOf, connected, emailGateway, inboundOf, startWorld, until, type EmailWorld } from './harness.js';
import { hugeHeaderMail, nestedMail, plainMail, uniqueId } from './mails.js';

// The session drops right after a dead letter was stored, before the mail is flagged: the first
// acknowledgement that carries parked mail closes the connection instead.
const drop = vi.hoisted(() => ({ armed: false, fired: 0 }));
vi.mock('../../../src/connectors/email/acknowledge.js', async (importOriginal) => {
  const real = await importOriginal<typeof import('../../../src/connectors/email/acknowledge.js')>();
  return {
    ...real,
    acknowledge: async (...args: Parameters<typeof real.acknowledge>) => {
      const [client, , , parked] = args;
      if (drop.armed && parked.length > 0) {
        drop.armed = false;
        drop.fired++;
        client.close();
        throw new Error('connection dropped (test)');
      }
      return real.acknowledge(...args);
    },
  };
});

let world: EmailWorld;
let nc: NatsConnection;
const gateways: TestGateway[] = [];

beforeAll(async () => {
  world = await startWorld();
  nc = await connect({ servers: world.nats.url });
});
afterAll(async () => {
  await nc?.close();
  for (const g of gateways) await g.stop().catch(() => {});
  await world?.stop();
});

const created = (messageId: string) => (e: TicketEvent) =>
  e.type === 'ticket.message' && inboundOf(e)?.email?.messageId === messageId && e.entry?.kind === 'inbound' && e.entry.match.rule === 'new-ticket';

async function letterCount(g: TestGateway): Promise<number> {
  const info = await (await jetstreamManager(g.nc)).streams.info('OMNI_DLQ', { subjects_filter: 'omni.dlq.inbound.email.support' });
  return info.state.subjects?.['omni.dlq.inbound.email.support'] ?? 0;
}

async function flagsOf(messageId: string): Promise<string[]> {
  await world.imap.mailboxOpen('INBOX');
  const uids = (await world.imap.search({ header: { 'message-id': messageId } }, { uid: true })) || [];
  const m = uids.length > 0 ? await world.imap.fetchOne(String(uids[0]), { flags: true }, { uid: true }) : false;
  return m ? [...m.flags!] : [];
}

const parkedFlags = ['\\Flagged', '$OmnigateParked', '$Omnigate'];

describe('email: mail the parser refuses', () => {
  it('parks MIME nested 3000 levels deep once, with the reason, even when the session drops right after the park', async () => {
    const gw = await emailGateway(world, { pollIntervalMs: 300 });
    gateways.push(gw);
    await connected(gw);
    const deep = uniqueId('deep');
    const after = uniqueId('after');
    drop.armed = true;
    await world.imap.append('INBOX', nestedMail(deep, 3000));
    await world.imap.append('INBOX', plainMail({ messageId: after, subject: 'после вложенного' }));

    const letter = await gw.waitForStreamMessage<DeadLetter>('OMNI_DLQ', 'omni.dlq.inbound.email.support', (d) => d.payload.includes(deep), 30_000);
    expect(letter.reason).toMatch(new RegExp(`^email support@example\\.ru folder INBOX uid \\d+: MIME nesting deeper than ${MAX_MIME_DEPTH} levels`));
    expect(letter).toMatchObject({ code: 'invalid_mail', meta: { kind: 'raw-mail', mailbox: SUPPORT } });
    // The mail behind it goes through once the session is back.
    await gw.waitForEvent(created(after), 30_000);
    expect(drop.fired).toBe(1);
    await until(async () => (await flagsOf(deep)).includes('$OmnigateParked'), 'parked flags on the nested mail');
    const flags = await flagsOf(deep);
    expect(flags).toEqual(expect.arrayContaining(parkedFlags));
    expect(flags).not.toContain('\\Seen');
    // Polls later (every 300 ms): still the one letter.
    await new Promise((r) => setTimeout(r, 1500));
    expect(await letterCount(gw)).toBe(1);
  }, 90_000);

  it('parks a mail with a header over the limit the same way: once, flagged, and reads on', async () => {
    const gw = gateways[0]!;
    const huge = uniqueId('huge');
    const after = uniqueId('after');
    drop.armed = true;
    await world.imap.append('INBOX', hugeHeaderMail(huge));
    await world.imap.append('INBOX', plainMail({ messageId: after, subject: 'после заголовка' }));
    const letter = await gw.waitForStreamMessage<DeadLetter>('OMNI_DLQ', 'omni.dlq.inbound.email.support', (d) => d.reason.includes('Max header size'), 30_000);
    expect(letter.reason).toMatch(/^email support@example\.ru folder INBOX uid \d+: mailparser could not read the mail: Max header size for a MIME node exceeded$/);
    await gw.waitForEvent(created(after), 30_000);
    // The drop fires at the first flagging that carries parked mail; on a loaded machine another
    // failure (a session lost while fetching) can come first and the mail is flagged on a later
    // read instead. Either way what follows must hold; the drop is not left armed for the restart.
    drop.armed = false;
    await until(async () => (await flagsOf(huge)).includes('$OmnigateParked'), 'parked flags on the huge-header mail');
    expect(await flagsOf(huge)).toEqual(expect.arrayContaining(parkedFlags));
    await new Promise((r) => setTimeout(r, 1500));
    expect(await letterCount(gw)).toBe(2);
  }, 90_000);

  it('after a restart, parks neither again and leaves them unread and flagged', async () => {
    await until(async () => ((await checkpointOf(nc, 'INBOX')).cp?.lastUid ?? 0) >= 4, 'the checkpoint past the four mails');
    await gateways.pop()!.stop();
    // Read the folder from the start again (as after a crash before the checkpoint was saved):
    // the parked mails are read, found flagged, and left as they are, not marked handled.
    const { key, cp } = await checkpointOf(nc, 'INBOX');
    expect(cp!.lastUid).toBeGreaterThanOrEqual(4);
    await (await new Kvm(nc).open('omni_state')).put(key, JSON.stringify({ ...cp, lastUid: 0 }));
    const gw = await emailGateway(world, { pollIntervalMs: 300 });
    gateways.push(gw);
    await connected(gw);
    const next = uniqueId('next');
    await world.imap.append('INBOX', plainMail({ messageId: next, subject: 'после перезапуска' }));
    await gw.waitForEvent(created(next), 30_000);
    await until(async () => ((await checkpointOf(nc, 'INBOX')).cp?.lastUid ?? 0) >= 5, 'the checkpoint past every mail');
    await new Promise((r) => setTimeout(r, 1000));
    expect(await letterCount(gw)).toBe(2);
    await world.imap.mailboxOpen('INBOX');
    const parked = ((await world.imap.search({ keyword: '$OmnigateParked' }, { uid: true })) || []) as number[];
    expect(parked).toHaveLength(2);
    expect((await world.imap.search({ uid: parked.join(','), seen: true }, { uid: true })) || []).toHaveLength(0);
  }, 90_000);
});
