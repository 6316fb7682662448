/**
 * An outbound message is sent once while the gateways that handle it live, even for a channel
 * whose receiver deduplicates (resendSafe, the webhook channel), where a repeat would go out:
 * - a stop (SIGTERM) with a send in flight whose outcome cannot be stored at the first try
 *   waits for the record instead of handing the sent message back;
 * - a message offered to one replica while another has it in flight (its keep-alives lost in a
 *   NATS election) waits for that replica's outcome; only a marker left by a dead writer (no
 *   outcome within the grace) is sent again, as a new attempt naming who sends it.
 * One runner stands for each gateway replica, all on the channel's one durable consumer.
 */
import { describe, expect, it } from 'vitest';
import type { TestGateway } from '../../helpers/gateway.js';
import { gatewayPerFile } from '../../helpers/file-gateway.js';
import { until } from '../../helpers/until.js';
import { OutboundRunner } from '../../../src/connectors/outbound-runner.js';
import type { Connector, SendAttempt } from '../../../src/connectors/contract.js';
import type { Bus } from '../../../src/core/bus.js';
import { createLogger } from '../../../src/core/logger.js';
import { DeliveryStatus, OutboundMessage } from '../../../src/core/schema.js';
import { Consumers, Streams, Subjects, kvSafe } from '../../../src/core/subjects.js';

let gw: TestGateway;
gatewayPerFile({ connectors: [] }, (g) => (gw = g));

const log = createLogger({ level: 'silent' });
const options = { maxAttempts: 3, backoffBaseMs: 50, backoffMaxMs: 200, ackWaitMs: 1_000, concurrency: 4 };

function outbound(account: string, id: string) {
  return OutboundMessage.parse({
    v: 1, type: 'message.outbound', id, ticketId: 'T-901', channel: 'dedupchat', account,
    conversation: { id: 'c-1', kind: 'private' }, text: 'Ответ', author: { id: 'agent-1', name: 'Оператор' }, createdAt: new Date().toISOString(),
  });
}

/** A channel whose receiver deduplicates by our key; each call is recorded, `gate` holds it. */
function receiver(calls: Array<{ id: string; attempt?: SendAttempt }>, gate?: Promise<void>): Connector {
  return {
    resendSafe: true,
    start: async () => {},
    stop: async () => {},
    health: () => ({ state: 'connected', since: new Date().toISOString() }),
    send: async (m, attempt) => {
      calls.push({ id: m.id, attempt });
      await gate;
      return { platformMessageId: `p-${m.id}` };
    },
  };
}

const statusOf = (account: string, id: string) =>
  gw.waitForStreamMessage<DeliveryStatus>('OMNI_STATUS', Subjects.status('dedupchat', account), (s) => s.outboundId === id, 20_000);


describe('an outbound message is sent once while its sender lives', () => {
  it('a stop with a send in flight whose status write fails once records it (no hand-back, no second send)', async () => {
    const account = 'stop';
    const calls: Array<{ id: string; attempt?: SendAttempt }> = [];
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    // The status publish right after the send times out once (a loaded node, a leader election).
    let failed = 0;
    const bus = gw.gateway.bus;
    const flaky = new Proxy(bus, {
      get(target, prop, recv) {
        if (prop === 'publishJson') {
          return async (subject: string, ...rest: unknown[]) => {
            if (subject.startsWith('omni.status.') && failed++ === 0) throw new Error('TIMEOUT');
            return (bus.publishJson as (...a: unknown[]) => Promise<unknown>).call(bus, subject, ...rest);
          };
        }
        return Reflect.get(target, prop, recv) as unknown;
      },
    }) as Bus;
    const first = new OutboundRunner(flaky, 'dedupchat', account, receiver(calls, gate), log, { ...options, replica: 'r1' });
    await first.start();
    const msg = outbound(account, 'stop-in-flight-1');
    await bus.publishJson(Subjects.outbound('dedupchat', account), msg, msg.id);
    await until(() => calls.length === 1, 'the send to begin');
    const stopped = first.stop(); // SIGTERM arrives mid-send
    // The send ends once the stop is under way (its pull ended: at most 1 s).
    await new Promise((r) => setTimeout(r, 1500));
    release();
    await stopped;
    const info = await bus.jsm.consumers.info(Streams.outbound, Consumers.outbound('dedupchat', account));
    // The next replica finds nothing to send.
    const next = new OutboundRunner(bus, 'dedupchat', account, receiver(calls), log, { ...options, replica: 'r2' });
    await next.start();
    await new Promise((r) => setTimeout(r, 1500));
    await next.stop();
    expect(calls.map((c) => c.id)).toEqual([msg.id]);
    expect(failed).toBeGreaterThan(1); // the write failed once and was tried again
    expect({ pending: info.num_pending, unacked: info.num_ack_pending }).toEqual({ pending: 0, unacked: 0 });
    expect((await bus.kv.dedup.get(`out.${kvSafe(msg.id)}`))?.json()).toMatchObject({ s: 'sent', attempts: 1 });
  });

  it('a marker read that fails (a leader election) is retried in place: the conversation\'s next message is not sent before it', async () => {
    const account = 'order';
    const calls: Array<{ id: string; attempt?: SendAttempt }> = [];
    const bus = gw.gateway.bus;
    const dedup = bus.kv.dedup;
    let failed = 0;
    const flakyDedup = new Proxy(dedup, {
      get(target, prop, recv) {
        if (prop === 'get') {
          return async (key: string) => {
            if (key.includes('order-1') && failed++ === 0) throw new Error('TIMEOUT');
            return dedup.get(key);
          };
        }
        const v = Reflect.get(target, prop, recv) as unknown;
        return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(target) : v;
      },
    });
    const flakyKv = new Proxy(bus.kv, { get: (target, prop, recv) => (prop === 'dedup' ? flakyDedup : (Reflect.get(target, prop, recv) as unknown)) });
    const flaky = new Proxy(bus, { get: (target, prop, recv) => (prop === 'kv' ? flakyKv : (Reflect.get(target, prop, recv) as unknown)) }) as Bus;
    const runner = new OutboundRunner(flaky, 'dedupchat', account, receiver(calls), log, { ...options, replica: 'r1' });
    await runner.start();
    try {
      const first = outbound(account, 'order-1');
      const second = outbound(account, 'order-2');
      for (const m of [first, second]) await bus.publishJson(Subjects.outbound('dedupchat', account), m, m.id);
      expect(await statusOf(account, second.id)).toMatchObject({ status: 'sent' });
      expect(await statusOf(account, first.id)).toMatchObject({ status: 'sent', attempts: 1 });
      // Before: the first was nak'ed and the second went out ahead of it.
      expect(calls.map((c) => c.id)).toEqual([first.id, second.id]);
      expect(failed).toBeGreaterThan(1);
    } finally {
      await runner.stop();
    }
  });

  it('a message another live replica has in flight waits for its outcome; a dead writer\'s marker is sent again as a new attempt', async () => {
    const account = 'race';
    const bus = gw.gateway.bus;
    const calls: Array<{ id: string; attempt?: SendAttempt }> = [];
    const runner = new OutboundRunner(bus, 'dedupchat', account, receiver(calls), log, { ...options, replica: 'r2' });
    await runner.start();
    try {
      // Replica r1 is sending `alive` and records it 800 ms later; `dead` was r1's when it was killed.
      const alive = outbound(account, 'race-alive-1');
      const dead = outbound(account, 'race-dead-1');
      for (const m of [alive, dead]) {
        await bus.kv.dedup.put(`out.${kvSafe(m.id)}`, JSON.stringify({ s: 'in-flight', attempts: 1, by: 'r1', at: Date.now() }));
        await bus.publishJson(Subjects.outbound('dedupchat', account), m, m.id);
      }
      await new Promise((r) => setTimeout(r, 800));
      expect(calls).toEqual([]);
      await bus.kv.dedup.put(`out.${kvSafe(alive.id)}`, JSON.stringify({ s: 'sent', attempts: 1, pid: 'p-by-r1' }));

      // Grace = 2 × ack_wait after r1's marker: then `dead` goes out again, once, as attempt 2 by r2.
      expect(await statusOf(account, dead.id)).toMatchObject({ status: 'sent', attempts: 2 });
      expect(calls).toEqual([{ id: dead.id, attempt: { attempt: 2, replica: 'r2' } }]);
      await until(async () => (await bus.jsm.consumers.info(Streams.outbound, Consumers.outbound('dedupchat', account))).num_ack_pending === 0, 'both settled');
      expect(calls.map((c) => c.id)).toEqual([dead.id]);
    } finally {
      await runner.stop();
    }
  });

  it('a message the previous gateway on this data directory had in flight is decided at once: that gateway is known dead', async () => {
    const account = 'known-dead';
    const bus = gw.gateway.bus;
    const calls: Array<{ id: string; attempt?: SendAttempt }> = [];
    // A long grace (2 × ack_wait = 2 min): only the knowledge that r0 is dead lets it go now.
    const runner = new OutboundRunner(bus, 'dedupchat', account, receiver(calls), log, { ...options, ackWaitMs: 60_000, replica: 'r2', deadReplicas: ['r0'] });
    await runner.start();
    try {
      const m = outbound(account, 'known-dead-1');
      await bus.kv.dedup.put(`out.${kvSafe(m.id)}`, JSON.stringify({ s: 'in-flight', attempts: 1, by: 'r0', at: Date.now() }));
      await bus.publishJson(Subjects.outbound('dedupchat', account), m, m.id);
      expect(await statusOf(account, m.id)).toMatchObject({ status: 'sent', attempts: 2 });
      expect(calls).toEqual([{ id: m.id, attempt: { attempt: 2, replica: 'r2' } }]);
    } finally {
      await runner.stop();
    }
  });
});
