/**
 * Does a conditional write on this server let exactly one of several concurrent writers win?
 *
 * Why this exists: on clustered streams (R>1) nats-server up to 2.9.20 checked
 * `Nats-Expected-Last-Subject-Sequence` (what KV update() sends) only before proposing the
 * write to Raft, against the applied state: concurrent writers with the same expected revision
 * could all pass (nats-server#4320, fixed in 2.9.21 by #4319). Measured on 2.9.10 R3 here: about
 * half the rounds (42–56 of 100) had two or three winners. The probe races `writers`
 * publishers on a scratch key or stream for `rounds` rounds and counts the winners of each round.
 */
import { DiscardPolicy, RetentionPolicy, StorageType, type JetStreamClient, type JetStreamManager } from '@nats-io/jetstream';
import { Kvm } from '@nats-io/kv';

export const CAS_PRIMITIVES = ['kv-update', 'kv-create', 'stream-expected-last-seq', 'stream-seq'] as const;
export type CasPrimitive = (typeof CAS_PRIMITIVES)[number];

export interface CasProbeOptions {
  primitive: CasPrimitive;
  /** One client per writer connection; writers are spread over them round-robin. */
  clients: JetStreamClient[];
  jsm: JetStreamManager;
  replicas: number;
  writers: number;
  rounds: number;
  /** Name of the scratch bucket or stream; removed afterwards. */
  scratch: string;
}

export interface CasProbeResult {
  primitive: CasPrimitive;
  replicas: number;
  writers: number;
  rounds: number;
  /** Rounds in which more than one writer was told it won (for stream-seq: a sequence handed out twice). */
  violations: number;
  maxWinners: number;
  /** Rounds nobody won (allowed: a timeout is not a win, but worth seeing). */
  noWinner: number;
  /** Attempts that got no answer (timeout, no responders while a leader is elected): not wins, not conflicts. */
  unanswered: number;
  ms: number;
}

const CONFLICT = /wrong last sequence|key exists|10071|10164/i;

export async function probeCas(o: CasProbeOptions): Promise<CasProbeResult> {
  if (o.clients.length === 0) throw new Error('probeCas: clients must not be empty');
  const started = Date.now();
  const result: CasProbeResult = { primitive: o.primitive, replicas: o.replicas, writers: o.writers, rounds: o.rounds, violations: 0, maxWinners: 0, noWinner: 0, unanswered: 0, ms: 0 };
  const writerClient = (i: number) => o.clients[i % o.clients.length]!;
  const count = (winners: number) => {
    if (winners > 1) result.violations++;
    if (winners === 0) result.noWinner++;
    result.maxWinners = Math.max(result.maxWinners, winners);
  };
  const wins = async (attempts: Array<Promise<unknown>>) => {
    const settled = await Promise.allSettled(attempts);
    for (const s of settled) {
      if (s.status === 'fulfilled' || CONFLICT.test(String(s.reason))) continue;
      // A loaded cluster may not answer in time or be electing a leader: that attempt did not
      // win (no writer was told so), and it says nothing about the others.
      if (!unanswered(s.reason)) throw s.reason;
      result.unanswered++;
    }
    return settled.filter((s) => s.status === 'fulfilled').length;
  };

  if (o.primitive === 'kv-update' || o.primitive === 'kv-create') {
    const first = await new Kvm(o.clients[0]!).create(o.scratch, { replicas: o.replicas, history: 1, storage: StorageType.File });
    const kvs = [first, ...(await Promise.all(o.clients.slice(1).map((js) => new Kvm(js).open(o.scratch))))];
    try {
      await Promise.all(kvs.map((kv, i) => untilStored(() => kv.put(`warm-up.${i}`, ''))));
      for (let r = 0; r < o.rounds; r++) {
        if (o.primitive === 'kv-update') {
          const revision = await untilStored(() => kvs[0]!.put('probe', `round-${r}`));
          count(await wins(Array.from({ length: o.writers }, (_, i) => kvs[i % kvs.length]!.update('probe', `w${i}`, revision))));
        } else {
          count(await wins(Array.from({ length: o.writers }, (_, i) => kvs[i % kvs.length]!.create(`probe.${r}`, `w${i}`))));
        }
      }
    } finally {
      await kvs[0]!.destroy().catch(() => {});
    }
  } else {
    await o.jsm.streams.add({
      name: o.scratch,
      subjects: [`${o.scratch}.>`],
      num_replicas: o.replicas,
      storage: StorageType.File,
      retention: RetentionPolicy.Limits,
      discard: DiscardPolicy.Old,
      max_msgs: 1000,
    });
    try {
      const subject = `${o.scratch}.probe`;
      await Promise.all(o.clients.map((js) => untilStored(() => js.publish(subject, 'warm-up'))));
      for (let r = 0; r < o.rounds; r++) {
        if (o.primitive === 'stream-expected-last-seq') {
          const { seq } = await untilStored(() => writerClient(0).publish(subject, `round-${r}`));
          count(await wins(Array.from({ length: o.writers }, (_, i) => writerClient(i).publish(subject, `w${i}`, { expect: { lastSequence: seq } }))));
        } else {
          const settled = await Promise.allSettled(Array.from({ length: o.writers }, (_, i) => writerClient(i).publish(subject, `w${i}`)));
          const acks = settled.flatMap((s) => (s.status === 'fulfilled' ? [s.value] : []));
          for (const s of settled) {
            if (s.status === 'fulfilled') continue;
            if (!unanswered(s.reason)) throw s.reason;
            result.unanswered++;
          }
          const seqs = new Set(acks.map((a) => a.seq));
          count(acks.length === 0 ? 0 : acks.length - seqs.size + 1);
        }
      }
    } finally {
      await o.jsm.streams.delete(o.scratch).catch(() => {});
    }
  }
  result.ms = Date.now() - started;
  return result;
}

/**
 * A stream just created on a cluster is not yet known on every node: a publish through another
 * node finds no responders for a moment (longer on a loaded machine). Retry that, and a write that
 * got no answer, for up to a minute; anything else is thrown at once.
 */
async function untilStored<T>(publish: () => Promise<T>): Promise<T> {
  const deadline = Date.now() + 60_000;
  for (;;) {
    try {
      return await publish();
    } catch (err) {
      if (!unanswered(err) || Date.now() > deadline) throw err;
      await new Promise((r) => setTimeout(r, 100));
    }
  }
}

/**
 * No server answered: no responders, a timeout, or JetStream unavailable while a leader is
 * elected. nats.js reports no responders on a JetStream publish as "jetstream is not enabled"
 * (JetStreamNotEnabled) with the NoResponders error as its cause, so the cause chain is read too.
 */
function unanswered(err: unknown): boolean {
  for (let e = err, depth = 0; e && depth < 5; e = (e as { cause?: unknown }).cause, depth++) {
    const name = (e as { name?: string }).name ?? '';
    if (/NoResponders|Timeout|JetStreamNotEnabled/i.test(name) || /no responders|503|timeout|temporarily unavailable|10008/i.test(String(e))) return true;
  }
  return false;
}

/** nats-server versions whose clustered expected-subject-sequence check is linearizable (nats-server#4319). */
export const FIRST_SAFE_SERVER = '2.9.21';

/** Compares dotted versions numerically; a pre-release suffix is ignored. */
export function versionAtLeast(version: string, floor: string): boolean {
  const parse = (v: string) => (v.replace(/^v/, '').split(/[-+]/)[0] ?? '').split('.').map((n) => Number(n) || 0);
  const a = parse(version);
  const b = parse(floor);
  for (let i = 0; i < Math.max(a.length, b.length); i++) {
    if ((a[i] ?? 0) !== (b[i] ?? 0)) return (a[i] ?? 0) > (b[i] ?? 0);
  }
  return true;
}
