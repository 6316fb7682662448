/**
 * A conversation's replies reach the customer in the order they were given, at any replica count.
 * Every replica's runner takes from the channel account's one durable consumer, so a conversation's
 * second reply can be taken by another replica while its first waits out a failed attempt's
 * backoff (or was lost in a pull and comes back after ack_wait). Each reply names the previous one
 * (core/reply-order.ts) and is sent only once that one is settled.
 */
import { describe, expect, it } from 'vitest';
import type { TestGateway } from '../../helpers/gateway.js';
import { gatewayPerFile } from '../../helpers/file-gateway.js';
import { until } from '../../helpers/until.js';
import { chatMessage, publishEvent } from '../../helpers/events.js';
import { OutboundRunner } from '../../../src/connectors/outbound-runner.js';
import type { Connector } from '../../../src/connectors/contract.js';
import { TransientDeliveryError } from '../../../src/core/errors.js';
import { createLogger } from '../../../src/core/logger.js';
import { OutboundMessage } from '../../../src/core/schema.js';
import { Consumers, Streams, Subjects } from '../../../src/core/subjects.js';
import { AFTER_HEADER, afterHeaders, holdsReply, previousReplyOf } from '../../../src/core/reply-order.js';
import { jetstream } from '@nats-io/jetstream';

let gw: TestGateway;
gatewayPerFile({ connectors: [] }, (g) => (gw = g));

const log = createLogger({ level: (process.env.TEST_LOG as 'debug') ?? 'silent' });
const options = { maxAttempts: 5, backoffBaseMs: 400, backoffMaxMs: 800, ackWaitMs: 5_000, concurrency: 4 };

function outbound(account: string, conversation: string, id: string) {
  return OutboundMessage.parse({
    v: 1, type: 'message.outbound', id, ticketId: `T-${conversation}`, channel: 'orderchat', account,
    conversation: { id: conversation, kind: 'private' }, text: `Ответ ${id}`, author: { id: 'agent-1', name: 'Оператор' }, createdAt: new Date().toISOString(),
  });
}

/** A platform that takes messages in the order it is called; each first reply's first attempt fails (a 503). */
function platform(accepted: string[], calls: string[]): Connector {
  const failedOnce = new Set<string>();
  return {
    start: async () => {},
    stop: async () => {},
    health: () => ({ state: 'connected', since: new Date().toISOString() }),
    send: async (m) => {
      calls.push(m.id);
      if (m.id.endsWith('/1') && !failedOnce.has(m.id)) {
        failedOnce.add(m.id);
        throw new TransientDeliveryError('platform busy (503)');
      }
      accepted.push(m.id);
      return { platformMessageId: `p-${m.id}` };
    },
  };
}


describe('a conversation\'s replies keep their order across replicas', () => {
  it('a second reply taken by another replica waits while the first retries; every reply is sent once', async () => {
    const account = 'two-replicas';
    const accepted: string[] = [];
    const calls: string[] = [];
    const bus = gw.gateway.bus;
    const replicas = ['r1', 'r2'].map((replica) => new OutboundRunner(bus, 'orderchat', account, platform(accepted, calls), log, { ...options, replica }));
    await Promise.all(replicas.map((r) => r.start()));
    const conversations = 24;
    for (let i = 0; i < conversations; i++) {
      const first = outbound(account, `c-${i}`, `c-${i}/1`);
      const ack = await bus.publishJson(Subjects.outbound('orderchat', account), first, first.id);
      const second = outbound(account, `c-${i}`, `c-${i}/2`);
      await bus.publishJson(Subjects.outbound('orderchat', account), second, second.id, afterHeaders({ seq: ack.seq, id: first.id }));
    }
    await until(() => accepted.length >= 2 * conversations, 'every reply to be sent');
    await new Promise((r) => setTimeout(r, 500)); // nothing more is sent
    await Promise.all(replicas.map((r) => r.stop()));
    const inverted = Array.from({ length: conversations }, (_, i) => i).filter((i) => accepted.indexOf(`c-${i}/2`) < accepted.indexOf(`c-${i}/1`));
    expect(inverted).toEqual([]);
    expect(accepted).toHaveLength(2 * conversations);
    expect(new Set(accepted).size).toBe(2 * conversations);
    const info = await bus.jsm.consumers.info(Streams.outbound, Consumers.outbound('orderchat', account));
    expect({ pending: info.num_pending, unacked: info.num_ack_pending }).toEqual({ pending: 0, unacked: 0 });
  });

  it('a reply naming a predecessor the stream no longer holds, or one parked without an outcome, is sent', async () => {
    const account = 'settled';
    const accepted: string[] = [];
    const bus = gw.gateway.bus;
    const runner = new OutboundRunner(bus, 'orderchat', account, platform(accepted, []), log, { ...options, replica: 'r1' });
    await runner.start();
    // A predecessor that is not valid: parked, acknowledged, no marker.
    const parked = await bus.js.publish(Subjects.outbound('orderchat', account), '{"not":"an outbound message"}');
    const afterParked = outbound(account, 'c-parked', 'c-parked/2');
    await bus.publishJson(Subjects.outbound('orderchat', account), afterParked, afterParked.id, afterHeaders({ seq: parked.seq, id: 'never-sent' }));
    // A predecessor gone from the stream (expired with OMNI_OUT's retention).
    const gone = outbound(account, 'c-gone', 'c-gone/2');
    await bus.publishJson(Subjects.outbound('orderchat', account), gone, gone.id, afterHeaders({ seq: 9_999_999, id: 'expired' }));
    await until(() => accepted.length === 2, 'both replies to be sent', 15_000);
    await runner.stop();
    expect(accepted.sort()).toEqual(['c-gone/2', 'c-parked/2']);
  });
});

describe('the router names each reply\'s predecessor', () => {
  it('replies and the automatic acknowledgement of a ticket form one chain in OMNI_OUT', async () => {
    await publishEvent(gw.nc, chatMessage({ chat: 'order-chat-1', from: 'client-1' }));
    const created = await gw.waitForEvent((e) => e.type === 'ticket.created');
    const ids: string[] = [];
    for (const text of ['Здравствуйте!', 'Заказ №42 отправлен.', 'Трек-номер: RA123456789RU']) {
      const r = await gw.request('omni.cmd.reply', { ticketId: created.ticketId, text });
      expect(r.ok).toBe(true);
      ids.push(r.result.outboundId as string);
    }
    // Retried with its idempotency key: the same message, not after itself.
    const keyed = await gw.request('omni.cmd.reply', { ticketId: created.ticketId, text: 'Спасибо!', idempotencyKey: 'thanks-1' });
    const again = await gw.request('omni.cmd.reply', { ticketId: created.ticketId, text: 'Спасибо!', idempotencyKey: 'thanks-1' });
    expect(again.result.outboundId).toBe(keyed.result.outboundId);
    ids.push(keyed.result.outboundId as string);

    const js = jetstream(gw.nc);
    const c = await js.consumers.get(Streams.outbound);
    const chain: Array<{ id: string; seq: number; after?: { id: string; seq: number } }> = [];
    for (;;) {
      const m = await c.next({ expires: 1000 });
      if (!m) break;
      const o = m.json<OutboundMessage>();
      if (o.ticketId === created.ticketId) chain.push({ id: o.id, seq: m.seq, after: previousReplyOf(m.headers) });
    }
    await c.delete().catch(() => {});
    expect(chain.map((x) => x.id)).toEqual(ids);
    expect(chain[0]!.after).toBeUndefined();
    for (let i = 1; i < chain.length; i++) expect(chain[i]!.after).toEqual({ id: chain[i - 1]!.id, seq: chain[i - 1]!.seq });
    expect((await gw.ticket(created.ticketId))!.lastOutbound).toEqual({ id: ids.at(-1), seq: chain.at(-1)!.seq });
    expect(AFTER_HEADER).toBe('Omni-After');
  });
});

describe('a predecessor is looked up by its sequence and its id', () => {
  it('another message at that sequence (OMNI_OUT recreated since) or none is not it', async () => {
    const bus = gw.gateway.bus;
    const msg = outbound('lookup', 'c-lookup', 'c-lookup/1');
    const ack = await bus.publishJson(Subjects.outbound('orderchat', 'lookup'), msg, msg.id);
    expect(await holdsReply(bus.jsm, { seq: ack.seq, id: msg.id })).toBe(true);
    expect(await holdsReply(bus.jsm, { seq: ack.seq, id: 'a-reply-of-the-old-stream' })).toBe(false);
    expect(await holdsReply(bus.jsm, { seq: ack.seq + 1_000_000, id: msg.id })).toBe(false);
  });
});
