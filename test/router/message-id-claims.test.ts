/**
 * Who can claim a Message-ID (outside trial T9: "a stranger pre-books our future Message-IDs").
 * A mail whose own Message-ID has our `<omni.…>` shape, sent by a stranger before we send that
 * id, must not become what replies to our mail are threaded by; nor may a bounce naming it.
 * Router and a real nats-server; our sent mail is reported on the status stream as the email
 * connector reports it.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startGateway, type TestGateway } from '../helpers/gateway.js';
import { emailMessage, publishEvent } from '../helpers/events.js';
import type { DeliveryStatus, LogEntry, TicketEvent } from '../../src/core/schema.js';
import { IndexKeys } from '../../src/router/thread-keys.js';

let gw: TestGateway;

beforeAll(async () => {
  gw = await startGateway({});
});
afterAll(async () => gw?.stop());

async function route(event: Parameters<typeof publishEvent>[1]): Promise<TicketEvent> {
  await publishEvent(gw.nc, event);
  return gw.waitForEvent((e) => e.type === 'ticket.message' && (e.entry as { event?: { id: string } })?.event?.id === event.id);
}

const matchOf = (e: TicketEvent) => (e.entry as Extract<LogEntry, { kind: 'inbound' }>).match;

/** Our mail on `ticketId` went out with `messageId`, as the email connector reports it. */
async function sent(ticketId: string, outboundId: string, messageId: string): Promise<void> {
  const status: DeliveryStatus = { v: 1, type: 'delivery.status', outboundId, ticketId, channel: 'email', account: 'support', status: 'sent', platformMessageId: messageId, attempts: 1, at: new Date().toISOString(), purpose: 'acknowledgement' };
  const { jetstream } = await import('@nats-io/jetstream');
  await jetstream(gw.nc).publish('omni.status.email.support', JSON.stringify(status), { msgID: `status:${outboundId}:sent` });
  await expect.poll(async () => (await gw.gateway.router!.store.lookup(IndexKeys.ownMessageId(messageId), { fresh: true }))?.value, { timeout: 20_000 }).toBe(ticketId);
}

/** What an acknowledgement's Message-ID looks like (the attacker computed these exactly, our installation id included: every mail of ours shows it). */
const future = (n: number) => `<omni.T-${n}.0123456789abcdef01234567.${gw.gateway.bus.installationId}@shop.example>`;

describe('claims on our Message-IDs', () => {
  it('a reply to our mail goes to its ticket even when a stranger\'s mail carried that Message-ID first (joining their ticket)', async () => {
    const attacker = await route(emailMessage({ messageId: '<claim-root@evil.example>', from: 'attacker@evil.example', cc: ['victim@romashka.example'], subject: 'Претензия' }));
    // The follow-up into the attacker's own ticket carries our future acknowledgement's id.
    const claim = await route(emailMessage({ messageId: future(9001), from: 'attacker@evil.example', subject: `Re: [#${attacker.ticketId}] Претензия` }));
    expect(claim.ticketId).toBe(attacker.ticketId);
    expect(matchOf(claim).value).toContain('has the shape of ours but is none we sent');
    expect(await gw.gateway.router!.store.lookup(IndexKeys.emailMessageId(future(9001)), { fresh: true })).toBeNull();

    const victim = await route(emailMessage({ messageId: '<victim-1@romashka.example>', from: 'victim@romashka.example', subject: 'Счёт на оплату' }));
    expect(victim.ticketId).not.toBe(attacker.ticketId);
    await sent(victim.ticketId, `${victim.ticketId}:ack`, future(9001));
    const answer = await route(emailMessage({ messageId: '<victim-2@romashka.example>', from: 'victim@romashka.example', subject: 'Re: Счёт на оплату', inReplyTo: future(9001), references: [future(9001)] }));
    expect(answer.ticketId).toBe(victim.ticketId);
    expect(matchOf(answer)).toEqual({ rule: 'email-in-reply-to', value: future(9001).slice(1, -1).toLowerCase() });
  });

  it('a stranger\'s new mail carrying our future Message-ID opens its ticket without claiming the id', async () => {
    const attacker = await route(emailMessage({ messageId: future(9002), from: 'attacker2@evil.example', cc: ['victim2@romashka.example'], subject: 'Вопрос' }));
    expect(matchOf(attacker)).toMatchObject({ rule: 'new-ticket', value: expect.stringContaining('has the shape of ours but is none we sent') });
    expect(await gw.gateway.router!.store.lookup(IndexKeys.emailMessageId(future(9002)), { fresh: true })).toBeNull();
    // The same sender's next mail with that id is the same ticket (its claim is keyed by id and sender).
    const next = { ...emailMessage({ messageId: future(9002), from: 'attacker2@evil.example', subject: 'Вопрос' }), id: 'email:support:again-9002', platform: { messageId: 'again-9002' } };
    const again = await route(next);
    expect(again.ticketId).toBe(attacker.ticketId);

    const victim = await route(emailMessage({ messageId: '<victim2-1@romashka.example>', from: 'victim2@romashka.example', subject: 'Заказ' }));
    await sent(victim.ticketId, `${victim.ticketId}:ack`, future(9002));
    const answer = await route(emailMessage({ messageId: '<victim2-2@romashka.example>', from: 'victim2@romashka.example', subject: 'Re: Заказ', inReplyTo: future(9002) }));
    expect(answer.ticketId).toBe(victim.ticketId);
  });

  it('another omnigate installation\'s mail threads by its own Message-IDs; a forgery spelled without our installation id does not claim', async () => {
    // A supplier's support desk runs omnigate too: its ids have our shape and its own installation id.
    const theirs = (n: number) => `<omni.T-${n}.89abcdef0123456789abcdef.7k2m9q4x1z@supplier.example>`;
    const first = await route(emailMessage({ messageId: theirs(1001), from: 'support@supplier.example', subject: '[#T-1001] Поставка задерживается' }));
    expect(matchOf(first).value).not.toContain('shape of ours');
    expect((await gw.gateway.router!.store.lookup(IndexKeys.emailMessageId(theirs(1001)), { fresh: true }))?.value).toBe(first.ticketId);
    // Their next mail answers their own first one, as their helpdesk threads it.
    const next = await route(emailMessage({ messageId: theirs(1002), from: 'support@supplier.example', subject: 'Re: [#T-1001] Поставка задерживается', inReplyTo: theirs(1001), references: [theirs(1001)] }));
    expect(next.ticketId).toBe(first.ticketId);
    expect(matchOf(next).rule).toBe('email-in-reply-to');

    // Ours without the installation id (as versions before it wrote them), or mangled: still ours, never claimed.
    for (const forged of ['<omni.T-9004.0123456789abcdef01234567@shop.example>', '<OMNI.T-9005.not-hex@shop.example>']) {
      const opened = await route(emailMessage({ messageId: forged, from: 'attacker4@evil.example', subject: 'Вопрос' }));
      expect(matchOf(opened).value).toContain('has the shape of ours but is none we sent');
      expect(await gw.gateway.router!.store.lookup(IndexKeys.emailMessageId(forged), { fresh: true })).toBeNull();
    }
  });

  it('a bounce naming a Message-ID never enters it as one of our sent mails', async () => {
    const attacker = await route(emailMessage({ messageId: future(9003), from: 'attacker3@evil.example', subject: 'Вопрос' }));
    const bounce = { ...emailMessage({ messageId: '<dsn-9003@evil.example>', from: 'mailer-daemon@evil.example' }), bounceOf: { platformMessageId: future(9003), reason: 'smtp; 550 5.1.1 User unknown' } };
    await publishEvent(gw.nc, bounce);
    await gw.waitForEvent((e) => e.type === 'ticket.delivery_failed' && e.ticketId === attacker.ticketId);
    expect(await gw.gateway.router!.store.lookup(IndexKeys.ownMessageId(future(9003)), { fresh: true })).toBeNull();
  });
});
