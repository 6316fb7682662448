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
  ms: number;
}

const CONFLICT = /wrong last sequence|key exists|10071|10164/i;

export async function probeCas(o: CasProbeOptions): Promise<CasProbeResult> {
  if (o.clients.length === 0) throw new Error('probeCas: clients must not be empty');
  const started = Date.now();
  const result: CasProbeResult = { primitive: o.primitive, replicas: o.replicas, writers: o.writers, rounds: o.rounds, violations: 0, maxWinners: 0, noWinner: 0, ms: 0 };
  const writerClient = (i: number) => o.clients[i % o.clients.length]!;
  const count = (winners: number) => {
    if (winners > 1) result.violations++;
    if (winners === 0) result.noWinner++;
    result.maxWinners = Math.max(result.maxWinners, winners);
  };
  const wins = async (attempts: Array<Promise<unknown>>) => {
    const settled = await Promise.allSettled(attempts);
    for (const s of settled) if (s.status === 'rejected' && !CONFLICT.test(String(s.reason))) throw s.reason;
    return settled.filter((s) => s.status === 'fulfilled').length;
  };

  if (o.primitive === 'kv-update' || o.primitive === 'kv-create') {
    const first = await new Kvm(o.clients[0]!).create(o.scratch, { replicas: o.replicas, history: 1, storage: StorageType.File });
    const kvs = [first, ...(await Promise.all(o.clients.slice(1).map((js) => new Kvm(js).open(o.scratch))))];
    try {
      await Promise.all(kvs.map((kv, i) => untilStored(() => kv.put(`warm-up.${i}`, ''))));
      for (let r = 0; r < o.rounds; r++) {
        if (o.primitive === 'kv-update') {
          const revision = await kvs[0]!.put('probe', `round-${r}`);
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
          const { seq } = await writerClient(0).publish(subject, `round-${r}`);
          count(await wins(Array.from({ length: o.writers }, (_, i) => writerClient(i).publish(subject, `w${i}`, { expect: { lastSequence: seq } }))));
        } else {
          const acks = await Promise.all(Array.from({ length: o.writers }, (_, i) => writerClient(i).publish(subject, `w${i}`)));
          const seqs = new Set(acks.map((a) => a.seq));
          count(acks.length - seqs.size + 1);
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
 * node finds no responders for a moment. Retry that (and only that) for a few seconds.
 */
async function untilStored(publish: () => Promise<unknown>): Promise<void> {
  const deadline = Date.now() + 15_000;
  for (;;) {
    try {
      await publish();
      return;
    } catch (err) {
      if (!/no responders|503/i.test(String(err)) || Date.now() > deadline) throw err;
      await new Promise((r) => setTimeout(r, 100));
    }
  }
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
