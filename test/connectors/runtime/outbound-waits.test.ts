/**
 * What a reply waiting to be sent may wait for:
 * - a platform's Retry-After is obeyed within `outbound.backoffMax`: one that asked for 28 hours
 *   held the reply (and the conversation's next ones) while the ticket looked answered;
 * - a reply erased (personal-data erasure deletes the ticket's outbound messages) while it waited
 *   in a backoff is not sent: it was, 33 s after the erasure answered.
 */
import { describe, expect, it } from 'vitest';
import type { TestGateway } from '../../helpers/gateway.js';
import { gatewayPerFile } from '../../helpers/file-gateway.js';
import { until } from '../../helpers/until.js';
import { OutboundRunner } from '../../../src/connectors/outbound-runner.js';
import type { Connector } from '../../../src/connectors/contract.js';
import { TransientDeliveryError } from '../../../src/core/errors.js';
import { createLogger } from '../../../src/core/logger.js';
import { DeliveryStatus, OutboundMessage } from '../../../src/core/schema.js';
import { Consumers, Streams, Subjects } from '../../../src/core/subjects.js';

let gw: TestGateway;
gatewayPerFile({ connectors: [] }, (g) => (gw = g));

const log = createLogger({ level: 'silent' });

function outbound(account: string, id: string) {
  return OutboundMessage.parse({
    v: 1, type: 'message.outbound', id, ticketId: 'T-77', channel: 'waitchat', account,
    conversation: { id: 'c-1', kind: 'private' }, text: 'Ответ клиенту', author: { id: 'agent-1', name: 'Оператор' }, createdAt: new Date().toISOString(),
  });
}

/** A platform that refuses every call with 429 and the given Retry-After, recording when it was called. */
function rateLimited(calls: number[], retryAfterMs: number): Connector {
  return {
    start: async () => {},
    stop: async () => {},
    health: () => ({ state: 'connected', since: new Date().toISOString() }),
    send: async () => {
      calls.push(Date.now());
      throw new TransientDeliveryError('rate limited (429)', retryAfterMs);
    },
  };
}


describe('a reply waiting to be sent', () => {
  it('waits at most backoffMax for a Retry-After, and a platform that keeps refusing ends as a failed delivery', async () => {
    const account = 'capped';
    const calls: number[] = [];
    const runner = new OutboundRunner(gw.gateway.bus, 'waitchat', account, rateLimited(calls, 99_999_000), log,
      { maxAttempts: 3, backoffBaseMs: 50, backoffMaxMs: 300, ackWaitMs: 5_000, concurrency: 4, replica: 'r1' });
    await runner.start();
    try {
      const msg = outbound(account, 'capped-1');
      await gw.gateway.bus.publishJson(Subjects.outbound('waitchat', account), msg, msg.id);
      const status = await gw.waitForStreamMessage<DeliveryStatus>('OMNI_STATUS', Subjects.status('waitchat', account), (s) => s.outboundId === msg.id, 15_000);
      expect(status).toMatchObject({ status: 'failed', attempts: 3 });
      expect(status.reason).toMatch(/^retries_exhausted after 3 attempts: rate limited \(429\)/);
      expect(calls).toHaveLength(3);
    } finally {
      await runner.stop();
    }
  });

  it('is not sent once erased while it waits in a backoff', async () => {
    const account = 'erased';
    const calls: number[] = [];
    const runner = new OutboundRunner(gw.gateway.bus, 'waitchat', account, rateLimited(calls, 1_500), log,
      { maxAttempts: 5, backoffBaseMs: 50, backoffMaxMs: 2_000, ackWaitMs: 5_000, concurrency: 4, replica: 'r1' });
    await runner.start();
    try {
      const msg = outbound(account, 'erased-1');
      const ack = await gw.gateway.bus.publishJson(Subjects.outbound('waitchat', account), msg, msg.id);
      await until(() => calls.length === 1, 'the first attempt');
      // What erasure does to a ticket's outbound messages (src/core/erasure.ts).
      await gw.gateway.bus.jsm.streams.deleteMessage(Streams.outbound, ack.seq, true);
      // Past the backoff (1.5 s) by a margin: the next attempt would have been made by then.
      await new Promise((r) => setTimeout(r, 3_000));
      expect(calls).toHaveLength(1);
      const info = await gw.gateway.bus.jsm.consumers.info(Streams.outbound, Consumers.outbound('waitchat', account));
      expect({ pending: info.num_pending, unacked: info.num_ack_pending }).toEqual({ pending: 0, unacked: 0 });
    } finally {
      await runner.stop();
    }
  });
});
