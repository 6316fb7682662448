/**
 * Provisioning: each stream, KV bucket and the object store made when missing and brought back
 * in line when it drifted from the config (replicas, TTLs, limits, direct gets), by every replica
 * on every start, racing the others safely. Apart from bus.ts because none of it runs once the
 * start is over, while the connection, publishing and status live as long as the process.
 */
import { randomBytes } from 'node:crypto';
import {
  AckPolicy,
  DeliverPolicy,
  DiscardPolicy,
  RetentionPolicy,
  StorageType,
  JetStreamApiError,
  type ConsumerConfig,
  type StreamConfig,
  type StreamInfo,
} from '@nats-io/jetstream';
import type { Kvm } from '@nats-io/kv';
import type { Logger } from 'pino';
import type { Bus, BusOptions } from './bus.js';
import { Buckets, Streams, Subjects } from './subjects.js';
import { PipelinedKv } from './js-pipeline.js';
import { CasGuard } from './cas-guard.js';
import { FIRST_SAFE_SERVER, probeCas } from './cas-probe.js';
import { sleep } from './sleep.js';
import { errorMessage } from './errors.js';

/** The start-up self-check found the server unfit for what omnigate needs of it. */
export class UnsafeServerError extends Error {}

export const DEFAULT_DEAD_LETTER_MAX_AGE_MS = 14 * 86_400_000;
export const DEFAULT_DEAD_LETTER_MAX_BYTES = 1024 ** 3;

/** How long a compare-and-set guard blocks other writers of its key if its writer died. */
const GUARD_TTL_MS = 30_000;
/** How often (250 ms apart) a stream just made is looked for again before "not found" counts. */
const JUST_MADE_RETRIES = 20;

const DAY = 86_400_000;
const INSTALLATION_KEY = 'installation-id';
const MESSAGE_ID_SECRET_KEY = 'message-id-secret';
const MESSAGE_ID_SECRET_BYTES = 32;
const PARTITIONS_KEY = 'router-partitions';
export const DEFAULT_PARTITIONS = 32;

/** The deployment was provisioned with another partition count than this start asks for. */
export class PartitionCountError extends Error {}
const ms = (n: number) => n * 1_000_000; // JetStream durations are nanoseconds

export function streamConfigs(o: BusOptions): Array<Partial<StreamConfig> & { name: string; subjects: string[] }> {
  const base = {
    storage: StorageType.File,
    retention: RetentionPolicy.Limits,
    discard: DiscardPolicy.Old,
    num_replicas: o.replicas,
  };
  return [
    { ...base, name: Streams.inbound, subjects: [Subjects.inboundAll], max_age: ms(o.retentionMs), duplicate_window: ms(o.duplicateWindowMs) },
    { ...base, name: Streams.outbound, subjects: [Subjects.outboundAll], max_age: ms(o.retentionMs), duplicate_window: ms(o.duplicateWindowMs) },
    { ...base, name: Streams.status, subjects: [Subjects.statusAll], max_age: ms(o.retentionMs), duplicate_window: ms(o.duplicateWindowMs) },
    { ...base, name: Streams.events, subjects: [Subjects.eventsAll], max_age: ms(o.eventsRetentionMs ?? 30 * DAY), duplicate_window: ms(o.duplicateWindowMs) },
    // The ticket log is the system of record: no age limit.
    { ...base, name: Streams.log, subjects: [Subjects.ticketLogAll], max_age: 0, duplicate_window: ms(o.duplicateWindowMs) },
    // Refusals are what a hostile client controls: bounded by age and by size (oldest dropped first).
    {
      ...base,
      name: Streams.deadLetter,
      subjects: [Subjects.deadLetterAll],
      max_age: ms(o.deadLetters?.maxAgeMs ?? DEFAULT_DEAD_LETTER_MAX_AGE_MS),
      max_bytes: o.deadLetters?.maxBytes ?? DEFAULT_DEAD_LETTER_MAX_BYTES,
      duplicate_window: ms(Math.min(o.duplicateWindowMs, o.deadLetters?.maxAgeMs ?? DEFAULT_DEAD_LETTER_MAX_AGE_MS)),
    },
    // Ticket numbers: the sequence counts every allocation, one message is enough to keep it.
    // Deleting this stream would restart numbering: never do.
    { ...base, name: Streams.ticketNumbers, subjects: [Subjects.ticketNumber], max_age: 0, max_msgs: 1, duplicate_window: ms(o.duplicateWindowMs) },
  ];
}

/** Makes or mends one piece at a time for Bus.provision(), which says what a deployment needs. */
export class Provisioner {
  /** Streams this start moved to more replicas (ensureReplicas). */
  readonly scaledUp: string[] = [];

  constructor(
    private readonly bus: Bus,
    private readonly log: Logger,
  ) {}

  /**
   * The partition count is part of the data: every stored inbound subject carries a partition,
   * and a conversation's messages must stay in one. The first replica writes it (create-only);
   * a later start with another count is refused rather than splitting conversations.
   */
  async ensurePartitionCount(wanted: number): Promise<number> {
    for (;;) {
      const entry = await this.bus.kv.meta.get(PARTITIONS_KEY);
      if (entry && entry.operation === 'PUT') {
        const stored = Number(entry.string());
        if (stored !== wanted) {
          throw new PartitionCountError(
            `router.partitions is ${wanted}, but this deployment was provisioned with ${stored} partitions (key ${PARTITIONS_KEY} in ${Buckets.meta}); ` +
              `the count cannot change on existing data (a conversation would move partitions and lose its order): set router.partitions: ${stored}`,
          );
        }
        return stored;
      }
      try {
        await this.bus.kv.meta.create(PARTITIONS_KEY, String(wanted));
        this.log.info({ partitions: wanted }, 'inbound partition count fixed for this deployment');
        return wanted;
      } catch (err) {
        if (!isCasConflict(err)) throw err;
      }
    }
  }

  /**
   * This installation's id, in every Message-ID and outbound id we mint: staging and production on
   * one domain, or a reinstall, never send the same id. Created once (create-only: the first
   * replica wins, the others read it) and kept in omni_meta for the life of the bus data.
   */
  async ensureInstallationId(): Promise<string> {
    for (;;) {
      const entry = await this.bus.kv.meta.get(INSTALLATION_KEY);
      if (entry && entry.operation === 'PUT') return entry.string();
      try {
        const id = randomBytes(5).toString('hex');
        await this.bus.kv.meta.create(INSTALLATION_KEY, id);
        this.log.info({ installationId: id }, 'installation id created');
        return id;
      } catch (err) {
        if (!isCasConflict(err)) throw err;
      }
    }
  }

  /**
   * The key our outbound Message-IDs are made with (HMAC, email connector ids.ts): one outbound
   * message always gets the same id (a resend is recognised), yet no id can be computed from what
   * our mail shows (ticket number, installation id), so nobody can send one before we do. Made
   * once, create-only like the installation id, so every replica uses the same; installations
   * from before it get it on their first start (ids already sent stay indexed). Never logged.
   */
  async ensureMessageIdSecret(): Promise<Uint8Array> {
    for (;;) {
      const entry = await this.bus.kv.meta.get(MESSAGE_ID_SECRET_KEY);
      if (entry && entry.operation === 'PUT') {
        const secret = Buffer.from(entry.string(), 'base64');
        if (secret.length < MESSAGE_ID_SECRET_BYTES) throw new Error(`omni_meta ${MESSAGE_ID_SECRET_KEY}: ${secret.length} bytes, not ${MESSAGE_ID_SECRET_BYTES} in base64; delete the key to have a new one made (Message-IDs already sent keep threading)`);
        return new Uint8Array(secret);
      }
      try {
        await this.bus.kv.meta.create(MESSAGE_ID_SECRET_KEY, randomBytes(MESSAGE_ID_SECRET_BYTES).toString('base64'));
        this.log.info('message-id secret created (omni_meta)');
      } catch (err) {
        if (!isCasConflict(err)) throw err;
      }
    }
  }

  /**
   * Races writers on a scratch key (cas-probe.ts). Create-only keys and stream sequences carry
   * ticket identity: if they let two writers win, nothing is safe and start is refused. If only
   * update() does (nats-server < 2.9.21 clustered), updates run behind a create-only guard, or
   * start is refused when `unsafeCas: refuse`.
   */
  async selfCheck(kvm: Kvm): Promise<CasGuard | undefined> {
    const version = this.bus.serverVersion;
    const scratch = `omni_probe_${Math.random().toString(36).slice(2, 10)}`;
    const o = { clients: [this.bus.js], jsm: this.bus.jsm, replicas: this.bus.options.replicas, writers: 3, rounds: 20 };
    const update = await probeCas({ ...o, primitive: 'kv-update', scratch });
    const create = await probeCas({ ...o, primitive: 'kv-create', scratch });
    // Unanswered attempts are not wins; a check where most rounds had none has not measured anything.
    for (const r of [update, create]) {
      if (r.noWinner > r.rounds / 2) throw new Error(`compare-and-set self-check on nats-server ${version} inconclusive: ${r.primitive} had no winner in ${r.noWinner}/${r.rounds} rounds (${r.unanswered} attempts unanswered); retried at the next start`);
    }
    const found = `kv.update had more than one winner in ${update.violations}/${update.rounds} rounds, kv.create in ${create.violations}/${create.rounds}`;
    if (create.violations > 0) {
      throw new UnsafeServerError(`nats-server ${version} with replicas ${this.bus.options.replicas}: create-only writes are not exclusive (${found}); ticket identity cannot be kept. Upgrade nats-server to ${FIRST_SAFE_SERVER} or later, or run with nats.replicas: 1.`);
    }
    const unsafe = update.violations > 0;
    if (unsafe && this.bus.options.unsafeCas === 'refuse') {
      throw new UnsafeServerError(`nats-server ${version} with replicas ${this.bus.options.replicas}: compare-and-set is not atomic (${found}; nats-server#4320). Upgrade nats-server to ${FIRST_SAFE_SERVER} or later, set nats.unsafeCas: guard, or run with nats.replicas: 1.`);
    }
    this.bus.casCheck = { update, create, guarded: unsafe };
    if (!unsafe) {
      this.log.info({ server: version, updateRounds: update.rounds, createRounds: create.rounds }, 'compare-and-set self-check passed');
      return undefined;
    }
    this.log.warn(
      { server: version, found, upgradeTo: FIRST_SAFE_SERVER },
      `compare-and-set is not atomic on nats-server ${version} with replicas ${this.bus.options.replicas} (nats-server#4320): ticket updates run behind create-only guards (one more write each); upgrade to ${FIRST_SAFE_SERVER}+ to drop them`,
    );
    const guards = await kvm.create(Buckets.casGuards, { replicas: this.bus.options.replicas, storage: StorageType.File, history: 1, ttl: GUARD_TTL_MS, allow_direct: true });
    this.bus.kv.casGuards = guards;
    await this.ensureReplicas(`KV_${Buckets.casGuards}`);
    await this.ensureDirectGets(`KV_${Buckets.casGuards}`);
    return new CasGuard(new PipelinedKv(this.bus.pipe, Buckets.casGuards), GUARD_TTL_MS);
  }

  /**
   * Streams and buckets keep the replica count they were created with (the KV and object-store
   * clients reuse an existing stream as it is): a deployment moving from one node to a cluster
   * changes `nats.replicas`, and every stream follows here. nats-server moves the data to the new
   * peers itself. Where it cannot (a single server, fewer nodes than replicas), the start stops
   * with the stream named, since running R1 while the config promises R3 would be a silent lie.
   */
  async ensureReplicas(stream: string): Promise<void> {
    const info = await this.justMadeStreamInfo(stream);
    const have = info.config.num_replicas;
    const want = this.bus.options.replicas;
    if (have === want) return;
    let reason: string;
    try {
      // A single nats-server accepts the update but keeps one replica: read back what it did.
      const updated = await this.bus.jsm.streams.update(stream, { ...info.config, num_replicas: want });
      reason = `it kept ${updated.config.num_replicas}`;
      if (updated.config.num_replicas === want) reason = '';
    } catch (err) {
      reason = err instanceof Error ? err.message : String(err);
    }
    if (reason) {
      throw new Error(
        `stream ${stream} has ${have} replica(s) but nats.replicas is ${want}, and nats-server refused to change it (${reason}). ` +
          `Check that the server is a cluster of at least ${want} JetStream nodes, or set nats.replicas: ${have}; ` +
          `by hand: nats stream edit ${stream} --replicas ${want}`,
      );
    }
    this.log.info({ stream, from: have, to: want }, 'stream replicas changed to match nats.replicas');
    if (want > have) this.scaledUp.push(stream);
  }

  /**
   * The info of a stream provisioning has just made or found. On a freshly formed cluster the
   * server answering may not know of a stream created a moment before (seen once in CI on a
   * three-node 2.9 cluster: "stream not found" right after the create succeeded), so a not-found
   * is asked again for a few seconds before it counts.
   */
  private async justMadeStreamInfo(stream: string): Promise<StreamInfo> {
    for (let attempt = 0; ; attempt++) {
      try {
        return await this.bus.jsm.streams.info(stream);
      } catch (err) {
        if (!isNotFound(err) || attempt >= JUST_MADE_RETRIES) throw err;
        await sleep(250);
      }
    }
  }

  /**
   * A bucket's TTL follows its setting (the KV client reuses an existing bucket as it is). A
   * deployment that raised `nats.leaseTtl` from 5 s to 15 s kept the leases bucket's 5 s max_age:
   * keys expired while their holders renewed every 5 s, partitions changed hands 144 times in 30 s
   * on an idle cluster, and a paused holder's units went after 5 s while it counted on 15.
   */
  async ensureTtl(stream: string, ttlMs: number): Promise<void> {
    const info = await this.justMadeStreamInfo(stream);
    const want = ttlMs * 1_000_000;
    if (info.config.max_age === want) return;
    // The duplicate window may not exceed max_age: the client makes it min(ttl, 2 min) too.
    const window = want > 0 ? Math.min(info.config.duplicate_window || want, want) : info.config.duplicate_window;
    try {
      await this.bus.jsm.streams.update(stream, { ...info.config, max_age: want, duplicate_window: window });
    } catch (err) {
      // A NATS user without the right to edit streams: run with the bucket as it is, and say so.
      this.log.warn({ stream, haveMs: info.config.max_age / 1_000_000, wantMs: ttlMs, err: errorMessage(err) }, 'bucket TTL differs from the config and could not be changed: change it by hand (nats kv edit) or give the gateway the right');
      return;
    }
    this.log.info({ stream, fromMs: info.config.max_age / 1_000_000, toMs: ttlMs }, 'bucket TTL changed to match the config');
  }

  /** A bucket made by an older server or another tool may lack allow_direct; the pipeline needs it. */
  async ensureDirectGets(stream: string): Promise<void> {
    const info = await this.justMadeStreamInfo(stream);
    if (info.config.allow_direct) return;
    await this.bus.jsm.streams.update(stream, { ...info.config, allow_direct: true });
    this.log.info({ stream }, 'direct gets enabled on bucket');
  }

  /**
   * A bucket (KV or object store) made or bound by `create`, once more when it failed because
   * another replica made the same bucket between the client's look and its add: replicas that
   * start together raced there, and nats-server answered the loser "subjects overlap with an
   * existing stream" (seen in CI on two concurrent provisions). Bound on the second try.
   */
  async createBucket<T>(stream: string, create: () => Promise<T>): Promise<T> {
    try {
      return await create();
    } catch (err) {
      const made = await this.bus.jsm.streams.info(stream).then(() => true, () => false);
      if (!made) throw err;
      return create();
    }
  }

  async ensureStream(config: Partial<StreamConfig> & { name: string }): Promise<void> {
    try {
      const info = await this.bus.jsm.streams.info(config.name);
      const current = info.config;
      const drifted =
        current.max_age !== config.max_age ||
        (config.max_bytes !== undefined && current.max_bytes !== config.max_bytes) ||
        current.duplicate_window !== config.duplicate_window ||
        JSON.stringify(current.subjects) !== JSON.stringify(config.subjects);
      if (drifted) {
        await this.bus.jsm.streams.update(config.name, { ...current, ...config }).catch((e: unknown) => {
          throw storageExplained(e, config);
        });
        this.log.info({ stream: config.name }, 'stream configuration updated');
      }
    } catch (err) {
      if (!isNotFound(err)) throw err;
      try {
        await this.bus.jsm.streams.add(config);
        this.log.info({ stream: config.name }, 'stream created');
      } catch (addErr) {
        // Another replica created it between our look and our add: that is the outcome we wanted.
        await this.bus.jsm.streams.info(config.name).catch(() => {
          throw storageExplained(addErr, config);
        });
      }
    }
  }

  /** Create a durable pull consumer, or update it when its mutable settings drifted. */
  async ensureConsumer(stream: string, config: Partial<ConsumerConfig> & { durable_name: string }): Promise<void> {
    const full: Partial<ConsumerConfig> = {
      ack_policy: AckPolicy.Explicit,
      deliver_policy: DeliverPolicy.All,
      ...config,
    };
    try {
      const info = await this.bus.jsm.consumers.info(stream, config.durable_name);
      const c = info.config;
      if (
        c.ack_wait !== full.ack_wait ||
        c.max_ack_pending !== full.max_ack_pending ||
        c.max_deliver !== (full.max_deliver ?? c.max_deliver)
      ) {
        await this.bus.jsm.consumers.update(stream, config.durable_name, {
          ack_wait: full.ack_wait,
          max_ack_pending: full.max_ack_pending,
          max_deliver: full.max_deliver,
        });
      }
    } catch (err) {
      if (!isNotFound(err)) throw err;
      try {
        await this.bus.jsm.consumers.add(stream, full);
      } catch (addErr) {
        await this.bus.jsm.consumers.info(stream, config.durable_name).catch(() => {
          throw addErr;
        });
      }
    }
  }
}

export function isNotFound(err: unknown): boolean {
  if (err instanceof JetStreamApiError) return err.status === 404;
  const msg = err instanceof Error ? err.message : String(err);
  return /not found/i.test(msg);
}

/** True when a KV create/update lost a compare-and-set race. */
export function isCasConflict(err: unknown): boolean {
  // 10071: wrong last sequence (the key moved or already exists); 10164: wrong last sequence, unknown.
  if (err instanceof JetStreamApiError) return err.code === 10071 || err.code === 10164;
  const msg = err instanceof Error ? err.message : String(err);
  return /wrong last sequence|key exists/i.test(msg);
}

/**
 * nats-server's "insufficient storage resources available", with what to change. JetStream
 * counts a stream's max_bytes against its storage limit when the stream is made, and that limit
 * is by default most of the free disk where it stores: on a small volume a fresh start failed
 * naming neither the stream nor the setting.
 */
function storageExplained(err: unknown, config: { name: string; max_bytes?: number }): unknown {
  if (!/insufficient (storage )?resources/i.test(errorMessage(err))) return err;
  const reserved = config.max_bytes !== undefined && config.max_bytes > 0 ? `; it reserves its max_bytes, ${Math.round(config.max_bytes / 1e6)} MB (deadLetters.maxBytes), up front` : '';
  return new Error(`stream ${config.name}: nats-server has not enough JetStream storage for it (${errorMessage(err)})${reserved}. JetStream's limit is by default most of the free disk where it stores (for the embedded server: nats.embedded.dataDir): free space there, give the volume more, or lower deadLetters.maxBytes`, { cause: err });
}
