/**
 * A reply counts as possibly delivered only from the moment its platform call is made. An outside
 * trial killed a gateway (kill -9) while 32 Telegram replies waited in the connector's pacer (2 a
 * second): none had reached Telegram, yet after the restart all 32 were failed for good as
 * `outcome_unknown`, because the runner marked each `in-flight` before calling send(), pacing
 * included. A connector that marks the wire (Telegram, WhatsApp Cloud) now says when it calls.
 */
import { describe, expect, it } from 'vitest';
import type { TestGateway } from '../../helpers/gateway.js';
import { gatewayPerFile } from '../../helpers/file-gateway.js';
import { until } from '../../helpers/until.js';
import { OutboundRunner } from '../../../src/connectors/outbound-runner.js';
import type { Connector, SendAttempt } from '../../../src/connectors/contract.js';
import { createLogger } from '../../../src/core/logger.js';
import { DeliveryStatus, OutboundMessage } from '../../../src/core/schema.js';
import { Subjects, kvSafe } from '../../../src/core/subjects.js';

let gw: TestGateway;
gatewayPerFile({ connectors: [] }, (g) => (gw = g));

const log = createLogger({ level: 'silent' });
const options = { maxAttempts: 3, backoffBaseMs: 50, backoffMaxMs: 200, ackWaitMs: 60_000, concurrency: 4 };

function outbound(account: string, id: string) {
  return OutboundMessage.parse({
    v: 1, type: 'message.outbound', id, ticketId: 'T-902', channel: 'pacedchat', account,
    conversation: { id: `c-${id}`, kind: 'private' }, text: 'Ответ', author: { id: 'agent-1' }, createdAt: new Date().toISOString(),
  });
}

/** A chat platform without dedup: `pacing` holds each send before its call, as a pacer does. */
function pacedChannel(calls: Array<{ id: string; attempt?: number }>, pacing: () => Promise<void>, before?: (attempt: SendAttempt) => Promise<void>): Connector {
  return {
    marksWire: true,
    start: async () => {},
    stop: async () => {},
    health: () => ({ state: 'connected', since: new Date().toISOString() }),
    send: async (m, attempt) => {
      await pacing();
      if (before) await before(attempt!);
      await attempt?.onWire?.();
      calls.push({ id: m.id, attempt: attempt?.attempt });
      return { platformMessageId: `p-${m.id}` };
    },
  };
}

const statusOf = (account: string, id: string) =>
  gw.waitForStreamMessage<DeliveryStatus>('OMNI_STATUS', Subjects.status('pacedchat', account), (s) => s.outboundId === id, 20_000);
const markerOf = async (id: string) => (await gw.gateway.bus.kv.dedup.get(`out.${kvSafe(id)}`))?.json<{ s: string; attempts: number }>();

describe('a reply is "maybe sent" only once its platform call is made', () => {
  it('is claimed while it paces and in flight from its call; a refusal before anything went out takes it back', async () => {
    const account = 'marks';
    const bus = gw.gateway.bus;
    const calls: Array<{ id: string; attempt?: number }> = [];
    let release!: () => void;
    const paced = new Promise<void>((r) => (release = r));
    let seen: string | undefined;
    const runner = new OutboundRunner(bus, 'pacedchat', account, pacedChannel(calls, () => paced, async (a) => {
      // A 429 waited out: on the wire, refused, back to claimed; then the real call.
      await a.onWire!();
      seen = (await markerOf('marks-1'))?.s;
      await a.offWire!();
    }), log, { ...options, replica: 'r1' });
    await runner.start();
    try {
      const m = outbound(account, 'marks-1');
      await bus.publishJson(Subjects.outbound('pacedchat', account), m, m.id);
      await until(async () => (await markerOf(m.id))?.s === 'claimed', 'the claim');
      release();
      expect(await statusOf(account, m.id)).toMatchObject({ status: 'sent', attempts: 1 });
      expect(seen).toBe('in-flight');
      expect(calls).toEqual([{ id: m.id, attempt: 1 }]);
    } finally {
      await runner.stop();
    }
  });

  it('a reply a killed gateway had only claimed (still pacing) is sent after the restart, not failed as outcome_unknown', async () => {
    const account = 'killed';
    const bus = gw.gateway.bus;
    const calls: Array<{ id: string; attempt?: number }> = [];
    // As kill -9 leaves it: r0 claimed the reply and died in its pacer.
    const m = outbound(account, 'killed-1');
    await bus.kv.dedup.put(`out.${kvSafe(m.id)}`, JSON.stringify({ s: 'claimed', attempts: 1, by: 'r0', at: Date.now() }));
    const runner = new OutboundRunner(bus, 'pacedchat', account, pacedChannel(calls, async () => {}), log, { ...options, replica: 'r2', deadReplicas: ['r0'] });
    await runner.start();
    try {
      await bus.publishJson(Subjects.outbound('pacedchat', account), m, m.id);
      // The claim was no attempt: this is the first call to the platform.
      expect(await statusOf(account, m.id)).toMatchObject({ status: 'sent', attempts: 1 });
      expect(calls).toEqual([{ id: m.id, attempt: 1 }]);
    } finally {
      await runner.stop();
    }
  });
});
