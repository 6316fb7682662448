/**
 * The router's inbound consumer (src/router/inbound-consumer.ts) against a real nats-server whose
 * delivery count goes back for a running partition: what a nats-server restarted from consumer
 * state up to ~100 ms old (kill -9), or a new consumer leader that is behind, looks like to it.
 * The lane consumer's own staged test is test/core/lane-consumer-regression.test.ts.
 *
 * Staged without a kill, so it happens every time: while one partition's conversations are being
 * published and routed, its durable is deleted and created again with the same config, starting a
 * few messages before its ack floor (the "older state": acks it had taken are forgotten), and the
 * gateway's connection is made to reconnect, as it does when a server comes back. The server's
 * delivery count starts at 1 again, below the last one the run saw: the run must end ("restarting
 * from the ack floor"), the supervisor restart it, and prepare() rewind the durable to its ack
 * floor, with what the forgetful server delivered marked suspect (the processed marker is read).
 * Every message published must then be in its ticket's log once, in publish order.
 *
 * And the other way round: a nak'ed message and one whose ack was lost (redelivered after
 * ack_wait) come back under new, higher delivery numbers, and must not end the run.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DeliverPolicy, jetstream, jetstreamManager, type JetStreamManager, type JsMsg } from '@nats-io/jetstream';
import { startGateway, type TestGateway } from '../helpers/gateway.js';
import { chatMessage, inboundSubjectOf, readInboundLog } from '../helpers/events.js';
import { PATIENT } from '../helpers/nats-server.js';
import { metrics } from '../../src/core/metrics.js';
import { Consumers, Streams, orderKey, partitionOf } from '../../src/core/subjects.js';
import type { InboundMessage } from '../../src/core/schema.js';

const PARTITIONS = 4;
const LOSS = /delivery count went back|delivery count did not advance|deliveries never arrived/;

let gw: TestGateway;
let jsm: JetStreamManager;

beforeAll(async () => {
  // ackWait 2s: the lost ack of the redelivery case comes back soon. Small batches: the partition's
  // messages reach the router in several pulls.
  gw = await startGateway({ router: { partitions: PARTITIONS, ackWait: '2s', concurrency: 16 } });
  jsm = await jetstreamManager(gw.nc, PATIENT);
}, 120_000);
afterAll(async () => gw?.stop(), 120_000);

const partitionOfChat = (chat: string) => partitionOf(orderKey(chatMessage({ chat })), PARTITIONS);

/** `n` conversation ids (prefix-i) whose partition is `p`. */
function chatsIn(p: number, prefix: string, n: number): string[] {
  const out: string[] = [];
  for (let i = 0; out.length < n; i++) if (partitionOfChat(`${prefix}-${i}`) === p) out.push(`${prefix}-${i}`);
  return out;
}

/** Publishes as a connector does (on its partition, Nats-Msg-Id = event id); returns the stream sequence. */
async function publish(e: InboundMessage): Promise<number> {
  const ack = await jetstream(gw.nc, PATIENT).publish(inboundSubjectOf(e, PARTITIONS), JSON.stringify(e), { msgID: e.id });
  return ack.seq;
}

async function until(pred: () => boolean | Promise<boolean>, what: string, timeoutMs = 60_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await pred()) return;
    if (Date.now() > deadline) throw new Error(`not within ${timeoutMs} ms: ${what}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

/** Nothing left on the unit's durable: routed and acked (false while it does not exist). */
async function drained(durable: string): Promise<boolean> {
  const info = await jsm.consumers.info(Streams.inbound, durable).catch(() => undefined);
  return info !== undefined && info.num_pending === 0 && info.num_ack_pending === 0;
}

/** The gateway's log lines, parsed. */
function logLines(): Array<Record<string, unknown>> {
  const out: Array<Record<string, unknown>> = [];
  for (const chunk of gw.logs)
    for (const line of chunk.split('\n')) {
      if (!line.trim()) continue;
      try {
        out.push(JSON.parse(line) as Record<string, unknown>);
      } catch {
        /* not a JSON line */
      }
    }
  return out;
}

/** The supervisor's "restarting" lines of a unit's loop whose reason is a possible loss in the delivery. */
const lossRestarts = (p: number) => logLines().filter((l) => l.loop === `router.partition.${p}` && LOSS.test(String(l.err ?? '')));

async function counter(c: typeof metrics.duplicates | typeof metrics.loopRestarts, pred: (labels: Record<string, unknown>) => boolean = () => true): Promise<number> {
  return (await c.get()).values.filter((v) => pred(v.labels)).reduce((n, v) => n + v.value, 0);
}
const restartsOf = (p: number) => counter(metrics.loopRestarts, (l) => l.loop === `router.partition.${p}`);

/**
 * Every conversation's messages are in the log once, in publish order, all in one ticket whose
 * counter equals them (a message applied twice would count twice).
 */
async function expectLoggedOnceInOrder(published: Map<string, string[]>): Promise<void> {
  const log = await readInboundLog(gw.nc);
  for (const [chat, ids] of published) {
    const entries = log.filter((l) => l.conversation === chat);
    expect(entries.map((l) => l.eventId), chat).toEqual(ids);
    const tickets = [...new Set(entries.map((l) => l.ticketId))];
    expect(tickets, chat).toHaveLength(1);
    expect((await gw.ticket(tickets[0]!))?.messageCount, chat).toBe(ids.length);
  }
}

/** Whether every published id is in the log (maybe more than once: checked afterwards). */
async function allLogged(published: Map<string, string[]>): Promise<boolean> {
  const logged = new Set((await readInboundLog(gw.nc)).map((l) => l.eventId));
  return [...published.values()].every((ids) => ids.every((id) => logged.has(id)));
}

describe('a router partition whose delivery count goes back', () => {
  it('is not set off by redeliveries: a nak and a lost ack come back under new, higher numbers', async () => {
    const q = partitionOfChat('redelivered-0');
    const [cx, cy] = chatsIn(q, 'redelivered', 2) as [string, string];
    const durable = Consumers.routerPartition(q);
    const published = new Map<string, string[]>([[cx, []], [cy, []]]);
    const send = async (chat: string) => {
      const e = chatMessage({ chat });
      published.get(chat)!.push(e.id);
      await publish(e);
      return e;
    };
    await send(cx);
    await until(() => allLogged(published), 'the first message routed');

    // JsMsg's class, from a message of the stream: the router's acks go through its prototype.
    const sample = await (await jetstream(gw.nc, PATIENT).consumers.get(Streams.inbound)).next({ expires: 5_000 });
    expect(sample).toBeTruthy();
    const proto = Object.getPrototypeOf(sample) as { ack(this: JsMsg): void };
    const ack = proto.ack;
    const nakked = chatMessage({ chat: cx });
    const unacked = chatMessage({ chat: cy });
    const acks = new Map<string, Array<{ delivery: number; redelivered: boolean }>>();
    proto.ack = function (this: JsMsg) {
      const id = this.subject.endsWith(`.${q}`) ? (this.json<{ id?: string }>().id ?? '') : '';
      if (id === nakked.id || id === unacked.id) {
        const seen = acks.get(id) ?? [];
        seen.push({ delivery: this.info.deliverySequence, redelivered: this.redelivered });
        acks.set(id, seen);
        if (seen.length === 1) {
          if (id === nakked.id) this.nak(); // comes back at once
          return; // the unacked one: its ack lost, it comes back after ack_wait
        }
      }
      ack.call(this);
    };
    try {
      const duplicatesBefore = await counter(metrics.duplicates);
      published.get(cx)!.push(nakked.id);
      await publish(nakked);
      published.get(cy)!.push(unacked.id);
      await publish(unacked);
      await send(cx);
      await send(cy);
      await until(async () => (acks.get(nakked.id)?.length ?? 0) >= 2 && (acks.get(unacked.id)?.length ?? 0) >= 2 && (await drained(durable)) && (await allLogged(published)), 'both copies routed and acked');

      for (const id of [nakked.id, unacked.id]) {
        const [first, copy] = acks.get(id)!;
        expect(copy!.redelivered, id).toBe(true);
        expect(copy!.delivery, id).toBeGreaterThan(first!.delivery);
      }
      // Each copy was recognised by its processed marker, and the run went on.
      expect(await counter(metrics.duplicates)).toBe(duplicatesBefore + 2);
      expect(lossRestarts(q)).toEqual([]);
      expect(await restartsOf(q)).toBe(0);
      await expectLoggedOnceInOrder(published);
    } finally {
      proto.ack = ack;
    }
  }, 120_000);

  it('ends the run, rewinds to the ack floor, and routes every message once, in order', async () => {
    const p = partitionOfChat('count-back-0');
    const chats = chatsIn(p, 'count-back', 3);
    const durable = Consumers.routerPartition(p);
    const published = new Map<string, string[]>(chats.map((c) => [c, []]));
    /** Stream sequences of this partition's messages, in publish order. */
    const seqs: number[] = [];
    /** Each message's stream sequence: the order its conversation must see (publishes may overlap). */
    const seqOf = new Map<string, number>();
    const send = async (chat: string) => {
      const e = chatMessage({ chat });
      published.get(chat)!.push(e.id);
      const seq = await publish(e);
      seqOf.set(e.id, seq);
      seqs.push(seq);
    };

    // Round one, routed and acked: the run has seen deliveries up to here.
    for (let i = 0; i < 8; i++) for (const c of chats) await send(c);
    await until(async () => (await drained(durable)) && (await allLogged(published)), 'round one routed');
    expect(lossRestarts(p)).toEqual([]);
    const restartsBefore = await restartsOf(p);
    const duplicatesBefore = await counter(metrics.duplicates);

    // Round two flows while the server "restarts" from older state.
    let flowing = true;
    const roundTwo = (async () => {
      for (let i = 0; i < 20; i++)
        for (const c of chats) {
          await send(c);
          await new Promise((r) => setTimeout(r, 20));
        }
      flowing = false;
    })();
    try {
      await until(() => seqs.length >= 24 + 6 || !flowing, 'round two under way');
      const info = await jsm.consumers.info(Streams.inbound, durable);
      const floor = info.ack_floor.stream_seq;
      const routedUpTo = seqs.filter((s) => s <= floor);
      expect(routedUpTo.length).toBeGreaterThanOrEqual(24);
      // The forgotten acks: the older state starts five routed messages before the ack floor.
      const start = routedUpTo[routedUpTo.length - 6]!;
      const { name: _n, durable_name: _d, deliver_policy: _p, opt_start_seq: _s, opt_start_time: _t, ...config } = info.config;
      await jsm.consumers.delete(Streams.inbound, durable);
      await jsm.consumers.add(Streams.inbound, { ...config, durable_name: durable, deliver_policy: DeliverPolicy.StartSequence, opt_start_seq: start });
      // The copies lost in flight: the restarted server counts them as delivered and pending, the
      // router never got them. Another client takes them and never answers, up to one published
      // after the delete (never delivered before: its conversation has not seen it), and a newer
      // message of that conversation follows. Without the rule, the lost one would come back after
      // ack_wait, behind that newer one.
      const lost = chatMessage({ chat: chats[0]! });
      published.get(chats[0]!)!.push(lost.id);
      const lostSeq = await publish(lost);
      seqOf.set(lost.id, lostSeq);
      seqs.push(lostSeq);
      const astray: number[] = [];
      const taken = await (await jetstream(gw.nc, PATIENT).consumers.get(Streams.inbound, durable)).fetch({ max_messages: 60, expires: 5_000 });
      for await (const m of taken) {
        astray.push(m.seq);
        if (m.seq === lostSeq) break;
      }
      expect(astray[0]).toBe(start);
      expect(astray).toContain(lostSeq);
      await send(chats[0]!);
      // What a client sees of a restarted server: its connection drops and comes back, and the
      // consumer pulls again (without it, the client pulls again only after missed heartbeats).
      await gw.gateway.bus.nc.reconnect();
      await roundTwo;

      // (1) The rule fired: the run ended on the count going back, the supervisor restarted it,
      // and prepare() rewound the durable to the ack floor the forgetful server had.
      await until(() => lossRestarts(p).length > 0, 'the run ended on the count going back');
      const [restart] = lossRestarts(p);
      expect(restart!.msg).toBe('loop stopped unexpectedly; restarting');
      expect(String(restart!.err)).toMatch(/(the server's delivery count went back from \d+ to \d+ |the server's delivery count did not advance: delivery \d+ came twice |\d+ deliveries never arrived ).*: restarting from the ack floor$/);
      // The first rewind of the unit after the loss (prepare's "taking over" line).
      const rewindAfterLoss = () => {
        const lines = logLines();
        const lossAt = lines.findIndex((l) => l.loop === `router.partition.${p}` && LOSS.test(String(l.err ?? '')));
        return lines.slice(lossAt + 1).find((l) => l.unit === p && l.durable === durable && typeof l.ackFloor === 'number');
      };
      await until(() => rewindAfterLoss() !== undefined, 'the restarted run rewound to the ack floor');
      const rewind = rewindAfterLoss()!;
      // At or before where the forgetful server started. nats-server 2.9 reports an ack floor of 0
      // for a consumer created at a start sequence that has acked nothing yet, so the rewind goes
      // back to the partition's first message: routed again, recognised as routed.
      expect(rewind.ackFloor).toBeLessThan(start);
      expect(rewind.delivered).toBeGreaterThanOrEqual(start);
      expect(rewind.pending).toBeGreaterThan(0); // what the forgetful server sent, left unrouted
      expect(await restartsOf(p)).toBeGreaterThan(restartsBefore);
      // What it delivered stays suspect (the processed marker is read for it).
      const suspect = await gw.gateway.bus.kv.meta.get(`router-suspect.${p}`);
      expect(Number(suspect?.string())).toBeGreaterThanOrEqual(start);

      // (2) Every message routed once, in publish order per conversation.
      await until(async () => (await drained(durable)) && (await allLogged(published)), 'every message routed after the rewind');
      const after = await jsm.consumers.info(Streams.inbound, durable);
      expect(after.config.deliver_policy).toBe(DeliverPolicy.StartSequence);
      expect(after.config.opt_start_seq).toBe((rewind.ackFloor as number) + 1);
      expect(seqs).toHaveLength(24 + 60 + 2);
      for (const ids of published.values()) ids.sort((a, b) => seqOf.get(a)! - seqOf.get(b)!);
      await expectLoggedOnceInOrder(published);
      // The messages routed before and delivered again were recognised by their processed marker.
      expect(await counter(metrics.duplicates)).toBeGreaterThan(duplicatesBefore);
    } finally {
      await roundTwo.catch(() => undefined);
    }
  }, 180_000);
});
