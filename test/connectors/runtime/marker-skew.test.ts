/**
 * A reply another live replica has in flight stays that replica's for 2 × ack_wait of this
 * runner's own observation of its marker, whatever that replica's clock said when it wrote it.
 * A replica whose clock ran 2 minutes behind wrote markers the others took over at once: a second
 * replica sent the reply again while the first was still sending it (a reply sent twice).
 */
import { describe, expect, it } from 'vitest';
import { OutboundRunner } from '../../../src/connectors/outbound-runner.js';
import type { Connector } from '../../../src/connectors/contract.js';
import { createLogger } from '../../../src/core/logger.js';
import type { OutboundMessage } from '../../../src/core/schema.js';
import { Consumers, Streams, Subjects, kvSafe } from '../../../src/core/subjects.js';
import { until } from '../../helpers/until.js';
import { runtimeRig } from './runtime-rig.js';

const log = createLogger({ level: (process.env.TEST_LOG as 'debug') ?? 'silent' });
const CHANNEL = 'skewchat';
const SKEW = 2 * 60_000;
const rig = runtimeRig({ channel: CHANNEL, log, ticketId: 'T-skew', text: 'Ответ клиенту' });

/** A chat whose receiver deduplicates by our key (a resend is allowed), recording its calls. */
function chat(calls: string[]): Connector {
  return {
    resendSafe: true,
    start: async () => {},
    stop: async () => {},
    health: () => ({ state: 'connected', since: new Date().toISOString() }),
    send: async (m) => {
      calls.push(m.id);
      return { platformMessageId: `p-${m.id}` };
    },
  };
}

/** The reply as `elsewhere` left it in flight, by its clock `SKEW` behind ours, then published. */
async function inFlightElsewhere(account: string, id: string): Promise<{ msg: OutboundMessage; revision: number }> {
  const msg = rig.outbound(account, id);
  const revision = await rig.bus.kv.dedup.put(`out.${kvSafe(msg.id)}`, JSON.stringify({ s: 'in-flight', attempts: 1, by: 'elsewhere', at: Date.now() - SKEW }));
  await rig.bus.publishJson(Subjects.outbound(CHANNEL, account), msg, msg.id);
  return { msg, revision };
}

describe('a reply in flight on a replica whose clock runs behind', () => {
  it('is not sent again while that replica may still be sending it, and is left to its outcome', async () => {
    const account = 'live';
    const calls: string[] = [];
    const runner = new OutboundRunner(rig.bus, CHANNEL, account, chat(calls), log, { maxAttempts: 3, backoffBaseMs: 50, backoffMaxMs: 200, ackWaitMs: 5_000, concurrency: 4, replica: 'here' });
    await runner.start();
    try {
      const { msg, revision } = await inFlightElsewhere(account, 'live-1');
      await new Promise((r) => setTimeout(r, 2_500));
      expect(calls).toEqual([]);
      // The other replica sends it and records the outcome: this one acknowledges it, unsent.
      await rig.bus.kv.dedup.update(`out.${kvSafe(msg.id)}`, JSON.stringify({ s: 'sent', attempts: 1, pid: 'p-elsewhere' }), revision);
      await until(async () => {
        const info = await rig.bus.jsm.consumers.info(Streams.outbound, Consumers.outbound(CHANNEL, account));
        return info.num_pending === 0 && info.num_ack_pending === 0;
      }, 'the message acknowledged', 10_000);
      expect(calls).toEqual([]);
    } finally {
      await runner.stop();
    }
  }, 20_000);

  it('is taken over once this runner has seen its marker unchanged for 2 × ack_wait (the replica died)', async () => {
    const account = 'dead';
    const calls: string[] = [];
    const runner = new OutboundRunner(rig.bus, CHANNEL, account, chat(calls), log, { maxAttempts: 3, backoffBaseMs: 50, backoffMaxMs: 200, ackWaitMs: 1_000, concurrency: 4, replica: 'here' });
    await runner.start();
    try {
      const started = performance.now();
      const { msg } = await inFlightElsewhere(account, 'dead-1');
      expect(await rig.statusOf(account)).toMatchObject({ status: 'sent', attempts: 2 });
      expect(performance.now() - started).toBeGreaterThanOrEqual(2_000);
      expect(calls).toEqual([msg.id]);
    } finally {
      await runner.stop();
    }
  }, 20_000);
});
