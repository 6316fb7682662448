/**
 * A reply that kills the gateway holding it must not crash-loop the deployment. A reply whose
 * gateway died while it was only `claimed` (loading a huge attachment into memory, a connector
 * bug) was taken over by the next gateway as the same attempt, without limit: every restart
 * picked it up and died again, and the conversation's later replies waited behind it for ever.
 * Now each takeover of a claimed (or, where the receiver deduplicates, in-flight) marker left by
 * a dead gateway is counted in the marker; past `maxTakeovers` the reply fails for good as
 * `gateway_died_while_sending`, a failed reply the agent sees and can replay.
 *
 * Each gateway is a runner on its own NATS connection; closing the connection with the send
 * still under way leaves the bus as a kill -9 does: the marker stays, the message comes back
 * after ack_wait to the next gateway, which knows its predecessors dead (deadReplicas).
 */
import { describe, expect, it } from 'vitest';
import { Bus } from '../../../src/core/bus.js';
import { OutboundRunner } from '../../../src/connectors/outbound-runner.js';
import type { Connector } from '../../../src/connectors/contract.js';
import { createLogger } from '../../../src/core/logger.js';
import { DeadLetter, type OutboundMessage } from '../../../src/core/schema.js';
import { Streams, Subjects, kvSafe } from '../../../src/core/subjects.js';
import { until } from '../../helpers/until.js';
import { busOptions, runtimeRig } from './runtime-rig.js';

const log = createLogger({ level: 'silent' });
const options = { maxAttempts: 3, backoffBaseMs: 50, backoffMaxMs: 200, ackWaitMs: 1_000, concurrency: 4 };
const CHANNEL = 'heavychat';
const rig = runtimeRig({ channel: CHANNEL, log, ticketId: 'T-903', text: 'Ответ с большим вложением' });

type Call = { replica?: string; attempt?: number };

/**
 * A chat that marks the wire, whose sends die before their platform call while `dies()` says so
 * (the gateway ran out of memory loading the attachment): they never return.
 */
function heavyChat(calls: Call[], dies: () => boolean, o: { marksWire?: boolean; resendSafe?: boolean } = { marksWire: true }): Connector {
  return {
    ...o,
    start: async () => {},
    stop: async () => {},
    health: () => ({ state: 'connected', since: new Date().toISOString() }),
    send: async (m, attempt) => {
      calls.push({ replica: attempt?.replica, attempt: attempt?.attempt });
      if (dies()) await new Promise(() => {});
      await attempt?.onWire?.();
      return { platformMessageId: `p-${m.id}` };
    },
  };
}

/** One gateway process with its runner; `kill()` drops its connection as kill -9 does. */
async function gatewayProcess(account: string, replica: string, connector: Connector, extra: { deadReplicas: string[]; maxTakeovers?: number }) {
  const own = await Bus.connect(busOptions(rig.nats.url), log);
  await own.provision();
  const runner = new OutboundRunner(own, CHANNEL, account, connector, log, { ...options, ...extra, replica });
  await runner.start();
  return { runner, kill: () => own.nc.close() };
}

const markerOf = async (id: string) => (await rig.bus.kv.dedup.get(`out.${kvSafe(id)}`))?.json<{ s: string; attempts: number; by?: string; takeovers?: number }>();


/** The account's dead letter, once stored: the runner parks it after publishing the status. */
async function letterOf(account: string): Promise<DeadLetter> {
  let found: DeadLetter | undefined;
  await until(async () => {
    const m = await rig.bus.jsm.streams.getMessage(Streams.deadLetter, { last_by_subj: Subjects.deadLetter(`outbound.${CHANNEL}.${account}`) }).catch(() => null);
    found = m ? DeadLetter.parse(m.json()) : undefined;
    return found !== undefined;
  }, `a dead letter for ${account}`, 20_000);
  return found!;
}

describe('a reply whose gateways keep dying while they hold it', () => {
  it('is taken over maxTakeovers times, then fails for good as gateway_died_while_sending (no crash loop)', async () => {
    const account = 'loop';
    const calls: Call[] = [];
    const msg = rig.outbound(account, 'loop-1');
    await rig.bus.publishJson(Subjects.outbound(CHANNEL, account), msg, msg.id);
    const dead: string[] = [];
    const claims: Array<Awaited<ReturnType<typeof markerOf>>> = [];
    // The first gateway and its 3 successors (maxTakeovers: 3) each die in the send, as the reply kills them.
    for (let i = 0; i < 4; i++) {
      const replica = `gw${i}`;
      const gw = await gatewayProcess(account, replica, heavyChat(calls, () => true), { deadReplicas: [...dead] });
      await until(async () => calls.length === i + 1 && (await markerOf(msg.id))?.by === replica, `${replica} to claim the reply`);
      claims.push(await markerOf(msg.id));
      await gw.kill();
      dead.push(replica);
    }
    // Not failed before the cap: each takeover claimed it again, the claim no attempt.
    expect(calls).toEqual(['gw0', 'gw1', 'gw2', 'gw3'].map((replica) => ({ replica, attempt: 1 })));
    expect(claims.map((c) => c?.s)).toEqual(['claimed', 'claimed', 'claimed', 'claimed']);
    // The fifth gateway does not take it over a fourth time: it reports it failed, without calling the platform.
    const fifth = await gatewayProcess(account, 'gw4', heavyChat(calls, () => false), { deadReplicas: [...dead] });
    try {
      const status = await rig.statusOf(account);
      expect(status).toMatchObject({ status: 'failed', attempts: 0 });
      expect(status.reason).toMatch(/^gateway_died_while_sending: 4 gateways died holding this reply, the last before its platform call \(nothing went out\)/);
      expect(calls).toHaveLength(4);
      // Each takeover counted in the marker, carried from claim to claim.
      expect(claims.map((c) => c?.takeovers)).toEqual([undefined, 1, 2, 3]);
      await expect.poll(() => markerOf(msg.id), { timeout: 10_000 }).toMatchObject({ s: 'failed', takeovers: 4 });
      // A failed reply like any other: parked for `omnigate dlq --replay`, under its code.
      expect(await letterOf(account)).toMatchObject({ code: 'gateway_died_while_sending', meta: { outboundId: msg.id } });
    } finally {
      await fifth.runner.stop();
    }
  });

  it('one kill -9 while claimed: sent once after the restart, as the first attempt', async () => {
    const account = 'once';
    const calls: Call[] = [];
    const msg = rig.outbound(account, 'once-1');
    await rig.bus.publishJson(Subjects.outbound(CHANNEL, account), msg, msg.id);
    const first = await gatewayProcess(account, 'a0', heavyChat(calls, () => true), { deadReplicas: [] });
    await until(async () => (await markerOf(msg.id))?.s === 'claimed', 'the claim');
    await first.kill();
    const second = await gatewayProcess(account, 'a1', heavyChat(calls, () => false), { deadReplicas: ['a0'] });
    try {
      expect(await rig.statusOf(account)).toMatchObject({ status: 'sent', attempts: 1 });
      expect(calls).toEqual([{ replica: 'a0', attempt: 1 }, { replica: 'a1', attempt: 1 }]);
      await expect.poll(() => markerOf(msg.id), { timeout: 10_000 }).toMatchObject({ s: 'sent', attempts: 1 });
    } finally {
      await second.runner.stop();
    }
  });

  /** What a gateway killed holding the reply leaves behind, after `takeovers` earlier takeovers. */
  async function leftBy(account: string, id: string, marker: object): Promise<OutboundMessage> {
    const msg = rig.outbound(account, id);
    await rig.bus.kv.dedup.put(`out.${kvSafe(msg.id)}`, JSON.stringify({ by: 'dead-1', at: Date.now(), ...marker }));
    await rig.bus.publishJson(Subjects.outbound(CHANNEL, account), msg, msg.id);
    return msg;
  }

  it('where the receiver deduplicates, an in-flight reply is resent up to the cap, then fails the same way', async () => {
    const calls: Call[] = [];
    const runner = new OutboundRunner(rig.bus, CHANNEL, 'dedup', heavyChat(calls, () => false, { resendSafe: true }), log, { ...options, replica: 'live', deadReplicas: ['dead-1'], maxTakeovers: 2 });
    await runner.start();
    try {
      // Under the cap: sent again as the next attempt.
      await leftBy('dedup', 'dedup-1', { s: 'in-flight', attempts: 2, takeovers: 1 });
      expect(await rig.statusOf('dedup')).toMatchObject({ status: 'sent', attempts: 3 });
      expect(calls).toEqual([{ replica: 'live', attempt: 3 }]);
    } finally {
      await runner.stop();
    }
    const capped = new OutboundRunner(rig.bus, CHANNEL, 'dedup-capped', heavyChat(calls, () => false, { resendSafe: true }), log, { ...options, replica: 'live', deadReplicas: ['dead-1'], maxTakeovers: 2 });
    await capped.start();
    try {
      await leftBy('dedup-capped', 'dedup-2', { s: 'in-flight', attempts: 3, takeovers: 2 });
      const status = await rig.statusOf('dedup-capped');
      expect(status).toMatchObject({ status: 'failed', attempts: 3 });
      expect(status.reason).toMatch(/^gateway_died_while_sending: 3 gateways died holding this reply, the last during its platform call/);
      expect(calls).toHaveLength(1);
    } finally {
      await capped.stop();
    }
  });

  it('elsewhere an in-flight reply of a dead gateway is outcome_unknown as before, whatever its takeovers', async () => {
    const calls: Call[] = [];
    const runner = new OutboundRunner(rig.bus, CHANNEL, 'unknown', heavyChat(calls, () => false), log, { ...options, replica: 'live', deadReplicas: ['dead-1'] });
    await runner.start();
    try {
      await leftBy('unknown', 'unknown-1', { s: 'in-flight', attempts: 1, takeovers: 3 });
      const status = await rig.statusOf('unknown');
      expect(status).toMatchObject({ status: 'failed', attempts: 1 });
      expect(status.reason).toMatch(/^outcome_unknown/);
      expect(calls).toEqual([]);
    } finally {
      await runner.stop();
    }
  });
});
