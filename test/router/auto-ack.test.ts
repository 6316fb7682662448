import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { jetstream } from '@nats-io/jetstream';
import { startGateway, type TestGateway } from '../helpers/gateway.js';
import { chatMessage, emailMessage, publishEvent } from '../helpers/events.js';
import type { OutboundMessage } from '../../src/core/schema.js';
import { createLogger } from '../../src/core/logger.js';
import { hashKey } from '../../src/core/subjects.js';
import { autoAcknowledge } from '../../src/router/auto-acknowledgement.js';

let gw: TestGateway;
beforeAll(async () => {
  gw = await startGateway({ router: { autoAcknowledge: { enabled: true, perSenderPerHour: 2, text: 'Обращение {ticket} принято, {name}!' } } });
});
afterAll(async () => gw?.stop());

async function outboundFor(ticketId: string): Promise<OutboundMessage[]> {
  const js = jetstream(gw.nc);
  const c = await js.consumers.get('OMNI_OUT');
  const out: OutboundMessage[] = [];
  for (;;) {
    const m = await c.next({ expires: 1000 });
    if (!m) break;
    const o = m.json<OutboundMessage>();
    if (o.ticketId === ticketId) out.push(o);
  }
  await c.delete().catch(() => {});
  return out;
}

describe('auto-acknowledgement', () => {
  it('acknowledges a new ticket once, marked automated, without changing its status', async () => {
    const first = chatMessage({ chat: 'ack-1', from: 'client-1' });
    await publishEvent(gw.nc, first);
    const created = await gw.waitForEvent((e) => e.type === 'ticket.created');
    const reply = await gw.waitForEvent((e) => e.type === 'ticket.reply' && e.ticketId === created.ticketId);
    await publishEvent(gw.nc, chatMessage({ chat: 'ack-1', from: 'client-1' }));
    await gw.waitForEvent((e) => e.type === 'ticket.message' && e.ticketId === created.ticketId && (e.entry as any).event.id !== first.id);
    const sent = await outboundFor(created.ticketId);
    expect(sent).toHaveLength(1);
    expect(sent[0]!.automated).toBe(true);
    expect(sent[0]!.text).toBe(`Обращение ${created.ticketId} принято, Покупатель!`);
    expect(reply.status).toBe('new');
    expect((await gw.ticket(created.ticketId))!.status).toBe('new');
  });

  it('sends at most perSenderPerHour acknowledgements to one sender', async () => {
    const ids: string[] = [];
    for (let i = 0; i < 3; i++) {
      const mail = emailMessage({ messageId: `<loop-${i}@robot.ru>`, from: 'robot@robot.ru', subject: `Уведомление ${i}` });
      await publishEvent(gw.nc, mail);
      const ev = await gw.waitForEvent((e) => e.type === 'ticket.message' && (e.entry as any).event.id === mail.id);
      ids.push(ev.ticketId);
    }
    const acks = await Promise.all(ids.map(outboundFor));
    expect(acks.map((a) => a.length)).toEqual([1, 1, 0]);
    expect(acks[0]![0]!.email?.subject).toBe(`Re: Уведомление 0 [#${ids[0]}]`);
  });

  it('a ticket acknowledged again (its routing retried) keeps the one slot it took of the sender\'s hour', async () => {
    const tickets = [];
    for (const chat of ['ack-retry-a', 'ack-retry-b']) {
      await publishEvent(gw.nc, chatMessage({ chat, from: `client-${chat}` }));
      const created = await gw.waitForEvent((e) => e.type === 'ticket.created' && e.conversation?.id === chat);
      tickets.push((await gw.ticket(created.ticketId))!);
    }
    const options = { enabled: true, perSenderPerHour: 2, render: () => 'Принято' };
    const log = createLogger({ level: 'silent' });
    // The first ticket's hook runs three times (retries after a failure further on), then the second's.
    for (let i = 0; i < 3; i++) await autoAcknowledge(gw.gateway.bus, gw.gateway.commands!, options, tickets[0]!, 'one-sender@example.ru', log);
    await autoAcknowledge(gw.gateway.bus, gw.gateway.commands!, options, tickets[1]!, 'one-sender@example.ru', log);
    // Before: the retries used up the hour and the second ticket got no acknowledgement.
    const slots = (await gw.gateway.bus.kv.dedup.get(`autoack.${hashKey('one-sender@example.ru')}`))!.json<Array<{ ticket: string }>>();
    expect(slots.map((x) => x.ticket)).toEqual([tickets[0]!.id, tickets[1]!.id]);
  });
});
