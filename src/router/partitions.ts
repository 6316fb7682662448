/**
 * Ownership of conversations: the inbound stream is cut into a fixed number of partitions
 * (`omni.in.<channel>.<account>.<partition>`, partition = hash of the conversation's order key,
 * subjects.ts) and each partition is consumed by exactly one router replica at a time, through its
 * own durable consumer with a single filter subject (nats-server 2.9 has no multi-filter
 * consumers). One more unit, the unpartitioned subjects `omni.in.<channel>.<account>` that
 * publishers from before partitioning use, is owned the same way through the `router` consumer.
 *
 * Claims are leases in `omni_leases` (`router.partition.<n>`, lease.ts: a dead holder's key
 * expires after the lease TTL). Replicas announce themselves with a member lease
 * (`router.member.<id>`) and each one computes its fair share from the sorted member list:
 * replica i of M holds floor(U/M) units, one more if i < U mod M. A replica over its share gives
 * back the excess (its non-home units first: unit u is home to member u mod M); a replica under
 * it claims free units (home units first). So a join moves only the joiner's share, a death moves
 * only the dead replica's units (after the TTL), and nothing moves while membership is stable.
 *
 * Handover. A unit is given back only after its consumer stopped pulling and every message it
 * had started routing was settled; what was still queued is left unacked (inbound-consumer.ts).
 * Those, and what a holder that died leaves delivered-but-unacked, JetStream would hand out again
 * only after ack_wait, behind the newer ones: the new owner therefore recreates the consumer at
 * the ack floor, so those come first and in order, and treats every message the old consumer had
 * delivered as possibly processed (the processed marker is read for them).
 */
import { DeliverPolicy, type ConsumerConfig, type ConsumerInfo } from '@nats-io/jetstream';
import type { Bus } from '../core/bus.js';
import { newInstanceId } from '../core/holder.js';
import { floorOf } from '../core/rewind.js';
import { tryAcquireLease, acquireLease, type Lease } from '../core/lease.js';
import type { Logger } from '../core/logger.js';
import { errorMessage } from '../core/errors.js';
import { sleep } from '../core/sleep.js';
import { Buckets, Consumers, Streams, Subjects } from '../core/subjects.js';
import type { LoopRun, SupervisedLoop, Supervisor } from '../core/supervisor.js';

const PARTITION_KEY = 'router.partition.';
const MEMBER_KEY = 'router.member.';
/** In omni_meta: the highest stream sequence of a unit that an owner which did not finish had delivered. */
const SUSPECT_KEY = 'router-suspect.';

/** How a unit is consumed: which durable, which subjects, and up to which stream sequence a message may already have been routed. */
export interface UnitConsumer {
  unit: number;
  durable: string;
  /** Messages at or below this stream sequence were delivered to an owner that died: read the processed marker. */
  suspectUpTo: number;
  /** The consumer has no filter (created before partitioning): partitioned subjects reach it too and belong to their partition. */
  unfiltered: boolean;
  /** False once this replica may no longer own the unit (its lease ran out by the clock, or is gone): start nothing, ack nothing. */
  owned: () => boolean;
}

export interface OwnershipOptions {
  /** This replica's holder id (a KV key token: it names the member lease); a fresh one when absent. */
  id?: string;
  partitions: number;
  ttlMs: number;
  /** Consumer settings every unit's consumer gets (ack_wait, max_ack_pending, max_deliver). */
  consumer: Pick<ConsumerConfig, 'ack_wait' | 'max_ack_pending' | 'max_deliver'>;
  /** Consumes one owned unit until the run's signal aborts; returns only after the messages it started routing were settled. */
  consume(run: LoopRun, c: UnitConsumer): Promise<void>;
  /** Told when this replica takes a unit (it may have been owned elsewhere meanwhile): before any of its messages is routed. */
  onTake?(unit: number): void;
}

interface Held {
  lease: Lease;
  loop: SupervisedLoop;
}

/** A round running longer than this is reported with the step it waits in (it may be stuck there). */
const STUCK_AFTER_MS = 10_000;

export class PartitionOwnership {
  readonly id: string;
  private readonly held = new Map<number, Held>();
  /**
   * Units given back or lost whose consumer is still settling what it delivered. A round does not
   * wait for them (one slow drain must not stop this replica from claiming a dead replica's
   * units), and none is claimed again here before its consumer has stopped.
   */
  private readonly leaving = new Map<number, { done: Promise<void>; since: number; why: string }>();
  /** What the current round waits for, and since when (the stuck-round report). */
  private step: { what: string; since: number } | undefined;
  /** Units: the partitions, then the unpartitioned subjects. */
  private readonly units: number;
  /**
   * Cleared when the gateway's shutdown begins (stopClaiming): the coordinator keeps routing what
   * it holds until the router stops, but claims nothing new. Before, a replica went on claiming
   * units (freed by a peer stopping with it) for the first part of its stop, while its intake
   * drained, and gave them back moments later: churn, and a unit's routing paused twice.
   */
  private claiming = true;

  constructor(
    private readonly bus: Bus,
    private readonly log: Logger,
    private readonly supervisor: Supervisor,
    private readonly o: OwnershipOptions,
  ) {
    this.units = o.partitions + 1;
    this.id = o.id ?? newInstanceId();
  }

  /** The gateway's stop has begun: no unit is claimed from now on (what is held stays until the stop). */
  stopClaiming(): void {
    this.claiming = false;
  }

  /** The units this replica holds now (for lag and tests). */
  owned(): number[] {
    return [...this.held.keys()].sort((a, b) => a - b);
  }

  durableOf(unit: number): string {
    return unit === this.o.partitions ? Consumers.router : Consumers.routerPartition(unit);
  }

  /** Body of the supervised coordinator loop: membership, claims, hand-backs; gives everything back when stopped. */
  async run({ signal, progress }: LoopRun): Promise<void> {
    const memberOptions = { ttlMs: this.o.ttlMs, holder: this.id, signal, log: this.log };
    let member = await acquireLease(this.bus.kv.leases, MEMBER_KEY + this.id, memberOptions);
    const tick = Math.max(200, Math.floor(this.o.ttlMs / 6));
    const watchdog = setInterval(() => this.reportStuckRound(), STUCK_AFTER_MS);
    watchdog.unref();
    try {
      while (!signal.aborted) {
        const started = performance.now();
        // A round that fails (a listing cut short, NATS busy) is skipped, not fatal: failing the
        // loop would give back every unit held (finally below) and churn them all.
        try {
          // Paused past the TTL: others may have counted us out for a moment; say we are here again.
          // Owned units keep their own leases, and a lost one stops its consumer by itself.
          if (!member.valid()) member = await this.at('announcing membership again', () => acquireLease(this.bus.kv.leases, MEMBER_KEY + this.id, memberOptions));
          await this.rebalance(signal);
        } catch (err) {
          if (!signal.aborted) this.log.warn({ err: errorMessage(err), held: this.held.size }, 'partition ownership round skipped; trying again');
        }
        this.step = undefined;
        const tookMs = performance.now() - started;
        if (tookMs > this.o.ttlMs) this.log.warn({ tookMs: Math.round(tookMs), ttlMs: this.o.ttlMs }, 'partition ownership round took longer than the lease TTL');
        progress();
        await sleep(tick, signal);
      }
    } finally {
      for (const u of [...this.held.keys()]) this.leave(u, 'stopping', true);
      await Promise.all([...this.leaving.values()].map((l) => l.done));
      clearInterval(watchdog); // after the hand-backs: one that never settles is reported
      this.step = undefined;
      await member.release();
    }
  }

  /** Runs one await of a round, named for the stuck-round report. */
  private async at<T>(what: string, f: () => Promise<T>): Promise<T> {
    this.step = { what, since: performance.now() };
    return f();
  }

  /**
   * Every request of a round is bounded, so a round cannot wait forever; if one still does (a
   * client call that never answers), this says where, which the logs of issue 17's stall lacked.
   */
  private reportStuckRound(): void {
    const now = performance.now();
    const s = this.step;
    if (s !== undefined && now - s.since >= STUCK_AFTER_MS) this.log.warn({ step: s.what, forMs: Math.round(now - s.since), held: this.held.size, leaving: this.leaving.size }, 'partition ownership round stuck: this replica claims and gives back nothing until it ends');
    // A unit whose consumer never settles stays leased to this replica: nobody routes it.
    for (const [unit, l] of this.leaving) if (now - l.since >= STUCK_AFTER_MS) this.log.warn({ unit, why: l.why, forMs: Math.round(now - l.since) }, 'partition consumer still settling what it delivered; the unit moves when it has');
  }

  private async rebalance(signal: AbortSignal): Promise<void> {
    for (const [unit, h] of this.held) if (!h.lease.valid()) this.leave(unit, 'lease lost', false);
    const members = await this.at('listing members', () => this.keys(MEMBER_KEY));
    if (!members.includes(this.id)) members.push(this.id);
    members.sort();
    const m = members.length;
    const me = members.indexOf(this.id);
    const share = Math.floor(this.units / m) + (me < this.units % m ? 1 : 0);
    const home = (u: number) => u % m === me;
    if (this.held.size > share) {
      // Non-home units first, so the replica they are home to can take them.
      const excess = [...this.held.keys()].sort((a, b) => Number(home(a)) - Number(home(b)) || b - a).slice(0, this.held.size - share);
      this.log.info({ units: excess, share, members: m }, 'giving partitions back: more than this replica\'s share since a replica joined');
      for (const u of excess) this.leave(u, 'rebalance', true);
      return;
    }
    if (this.held.size === share || !this.claiming) return;
    const taken = new Set((await this.at('listing partition leases', () => this.keys(PARTITION_KEY))).map(Number));
    const free = Array.from({ length: this.units }, (_, u) => u)
      .filter((u) => !taken.has(u) && !this.held.has(u) && !this.leaving.has(u))
      .sort((a, b) => Number(home(b)) - Number(home(a)) || a - b);
    for (const unit of free) {
      if (this.held.size >= share || signal.aborted || !this.claiming) break;
      const lease = await this.at(`claiming unit ${unit}`, () => tryAcquireLease(this.bus.kv.leases, PARTITION_KEY + unit, { ttlMs: this.o.ttlMs, holder: this.id, log: this.log }));
      if (!lease) continue;
      if (signal.aborted || !this.claiming) {
        // The stop began while the claim was on its way: handed back at once, never consumed.
        await lease.release();
        break;
      }
      this.take(unit, lease, share, m);
    }
  }

  private take(unit: number, lease: Lease, share: number, members: number): void {
    this.o.onTake?.(unit);
    const name = unit === this.o.partitions ? 'router.unpartitioned' : `router.partition.${unit}`;
    const loop = this.supervisor.run(name, async (run) => {
      const c = { ...(await this.prepare(unit)), owned: () => lease.valid() };
      if (!lease.valid() || run.signal.aborted) return;
      await this.o.consume(run, c);
    });
    this.held.set(unit, { lease, loop });
    this.log.info({ unit, fence: lease.token, share, members }, unit === this.o.partitions ? 'owning the unpartitioned inbound subjects' : 'owning partition');
    // A lease lost (not renewed in time, taken over) stops consuming at once: the next owner has it.
    lease.lost.then(
      () => {
        if (this.held.get(unit)?.lease === lease) this.leave(unit, 'lease lost', false);
      },
      () => undefined,
    );
  }

  /**
   * Stops consuming a unit: its consumer stops pulling and settles what it delivered, then the
   * lease is released, so another replica may take it at once. `givenBack`: our choice (a
   * rebalance, a stop); else the lease was lost. Runs beside the rounds, which do not wait.
   */
  private leave(unit: number, why: string, givenBack: boolean): void {
    const h = this.held.get(unit);
    if (!h) return;
    this.held.delete(unit);
    if (!givenBack) this.log.warn({ unit, why }, 'partition no longer owned');
    const done = (async () => {
      try {
        await h.loop.stop();
        // A lost lease is released too: its key may still be ours on the server (lost by the
        // clock only), and a release deletes it only at our revision, so nobody else's.
        await h.lease.release();
        if (givenBack) this.log.info({ unit, why }, 'partition given back');
      } catch (err) {
        this.log.warn({ unit, why, err: errorMessage(err) }, 'stopping the partition consumer failed');
      } finally {
        this.leaving.delete(unit);
      }
    })();
    this.leaving.set(unit, { done, since: performance.now(), why });
  }

  /**
   * The unit's durable consumer, ready to consume in order. Messages delivered and not acked
   * belong to an owner that died (or to an earlier run of ours that ended): recreate the consumer
   * at the ack floor so they come again first, not after ack_wait behind newer ones.
   */
  private async prepare(unit: number): Promise<Omit<UnitConsumer, 'owned'>> {
    const durable = this.durableOf(unit);
    const filter = unit === this.o.partitions ? Subjects.inboundUnpartitioned : Subjects.inboundPartitionFilter(unit);
    await this.bus.ensureConsumer(Streams.inbound, { durable_name: durable, filter_subject: filter, ...this.o.consumer });
    const info: ConsumerInfo = await this.bus.jsm.consumers.info(Streams.inbound, durable);
    const unfiltered = !info.config.filter_subject;
    // What an owner that died had delivered stays suspect for every later owner too: one that took
    // over and gave the unit back before reaching that point hands on a consumer without pending.
    const suspectKey = SUSPECT_KEY + unit;
    const stored = await this.bus.kv.meta.get(suspectKey);
    let suspectUpTo = stored && stored.operation === 'PUT' ? Number(stored.string()) : 0;
    // A pull request the previous owner left on the server would still be served first, to an
    // inbox nobody reads: those messages would come back only after ack_wait, out of order.
    if (info.num_ack_pending === 0 && info.num_waiting === 0) return { unit, durable, suspectUpTo, unfiltered };
    const floor = floorOf(info);
    if (info.num_ack_pending > 0 && info.delivered.stream_seq > suspectUpTo) {
      suspectUpTo = info.delivered.stream_seq;
      await this.bus.kv.meta.put(suspectKey, String(suspectUpTo));
    }
    if (info.num_ack_pending > 0) this.log.warn({ unit, durable, ackFloor: floor, delivered: info.delivered.stream_seq, pending: info.num_ack_pending }, 'taking over messages a previous owner did not finish: consuming again from its ack floor, in order');
    else this.log.info({ unit, durable, waiting: info.num_waiting }, 'recreating the partition consumer at its ack floor: the previous owner\'s pull requests are still open');
    const { name: _n, durable_name: _d, deliver_policy: _p, opt_start_seq: _s, opt_start_time: _t, ...rest } = info.config;
    await this.bus.jsm.consumers.delete(Streams.inbound, durable);
    await this.bus.jsm.consumers.add(Streams.inbound, { ...rest, durable_name: durable, deliver_policy: DeliverPolicy.StartSequence, opt_start_seq: floor + 1 });
    return { unit, durable, suspectUpTo, unfiltered };
  }

  /**
   * Distinct: a key renewed while the listing runs can be listed twice. Bounded: the listing is
   * an ordered push consumer that ends on "nothing pending" or an idle heartbeat, and a replica
   * whose coordinator once never came back from it (three-node cluster, one gateway killed, load
   * average ~10) kept its units but never claimed the dead one's for minutes.
   */
  private async keys(prefix: string): Promise<string[]> {
    const out = new Set<string>();
    const listing = await this.bus.kv.leases.keys(`${prefix}>`);
    const limitMs = Math.max(5000, this.o.ttlMs);
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      listing.stop();
    }, limitMs);
    try {
      for await (const k of listing) out.add(k.slice(prefix.length));
    } finally {
      clearTimeout(timer);
    }
    if (timedOut) throw new Error(`listing ${prefix}* in ${Buckets.leases} did not finish within ${limitMs} ms`);
    return [...out];
  }
}
