/**
 * The bus: one NATS connection with JetStream, and idempotent provisioning of every stream,
 * KV bucket and the media object store. Works on nats-server 2.9.10 and 2.10+/2.11: nothing
 * here uses multi-filter consumers, subject transforms, metadata, compression or per-key TTL.
 */
import { randomBytes } from 'node:crypto';
import { RequestError, TimeoutError, connect, type MsgHdrs, type NatsConnection } from '@nats-io/transport-node';
import type { JetStreamHealth } from './jetstream-watchdog.js';
import {
  jetstream,
  jetstreamManager,
  AckPolicy,
  DeliverPolicy,
  DiscardPolicy,
  RetentionPolicy,
  StorageType,
  JetStreamApiError,
  type ConsumerConfig,
  type JetStreamClient,
  type JetStreamManager,
  type PubAck,
  type StreamConfig,
  type StreamInfo,
} from '@nats-io/jetstream';
import { Kvm, type KV } from '@nats-io/kv';
import { Objm, type ObjectStore } from '@nats-io/obj';
import type { Logger } from 'pino';
import { Buckets, MEDIA_BUCKET, Streams, Subjects, orderKey, partitionOf } from './subjects.js';
import { JsPipeline, PipelinedKv } from './js-pipeline.js';
import { natsConnectionOptions, type NatsAccess } from './nats-access.js';
import { CasGuard } from './cas-guard.js';
import { FIRST_SAFE_SERVER, probeCas, type CasProbeResult } from './cas-probe.js';
import { DEFAULT_DEAD_LETTER_LIMITS, DeadLetters, type DeadLetterLimits } from './dead-letter.js';
import { sleep, within } from './sleep.js';
import { jsonOrUndefined } from './json-input.js';
import { NatsUnavailableError, errorMessage, isNatsUnavailable } from './errors.js';

/** `url` may list several servers (comma-separated); TLS and credentials: see nats-access.ts. */
export interface BusOptions extends NatsAccess {
  name?: string;
  /** How long a start waits for NATS to accept the first connection (default 60 s). */
  firstConnectLimitMs?: number;
  /** JetStream replicas for streams and buckets: 1 on one node, 3 on a cluster. */
  replicas: number;
  /** Dedup window for inbound and outbound publishes. */
  duplicateWindowMs: number;
  /** How long inbound/outbound/status streams keep messages. */
  retentionMs: number;
  /** How long OMNI_EVENTS keeps ticket events (config retention.events); default 30 days. */
  eventsRetentionMs?: number;
  /** Dedup markers (processed events, command results) are kept this long. */
  dedupTtlMs: number;
  /** A lease not renewed for this long is free for another replica. */
  leaseTtlMs: number;
  /**
   * With replicas > 1, what to do when the start-up probe finds that the server lets two
   * writers win one compare-and-set: 'guard' runs every hot-path update behind a create-only
   * guard (cas-guard.ts), 'refuse' stops the start. Default 'guard'.
   */
  unsafeCas?: 'guard' | 'refuse';
  /**
   * Inbound partitions (config `router.partitions`): fixed when the deployment is first
   * provisioned; a start asking for another count is refused. Default 32.
   */
  partitions?: number;
  /** Dead letters: stream age and size limits, and the per-letter and per-source limits. */
  deadLetters?: { maxAgeMs: number; maxBytes: number } & DeadLetterLimits;
}

/** The start-up self-check found the server unfit for what omnigate needs of it. */
export class UnsafeServerError extends Error {}

export const DEFAULT_DEAD_LETTER_MAX_AGE_MS = 14 * 86_400_000;
export const DEFAULT_DEAD_LETTER_MAX_BYTES = 1024 ** 3;

export type BucketName = keyof typeof Buckets;

/** How long a compare-and-set guard blocks other writers of its key if its writer died. */
const GUARD_TTL_MS = 30_000;
/** How often (250 ms apart) a stream just made is looked for again before "not found" counts. */
const JUST_MADE_RETRIES = 20;

const DAY = 86_400_000;
const INSTALLATION_KEY = 'installation-id';
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

/** Buckets the router reads and writes on every message: served by the pipeline. */
export type HotBucketName = 'tickets' | 'threads' | 'meta';

export class Bus {
  readonly kv = {} as Record<BucketName, KV>;
  /** The same buckets as `kv`, for hot paths (see js-pipeline.ts). */
  readonly hotKv = {} as Record<HotBucketName, PipelinedKv>;
  /** Hot-path JetStream publishes and direct gets. */
  readonly pipe: JsPipeline;
  /** The one dead-letter path (counted, rate limited, capped). */
  readonly deadLetters: DeadLetters;
  media!: ObjectStore;
  /** Streams this start moved to more replicas (ensureReplicas). */
  private readonly scaledUp: string[] = [];
  /** What the start-up self-check found (replicas > 1 only). */
  casCheck?: { update: CasProbeResult; create: CasProbeResult; guarded: boolean };
  /** Set by provision() (see ensureInstallationId). */
  installationId = '';
  /** Inbound partitions of this deployment; set by provision() (see ensurePartitionCount). */
  partitions = DEFAULT_PARTITIONS;
  private constructor(
    readonly nc: NatsConnection,
    readonly js: JetStreamClient,
    readonly jsm: JetStreamManager,
    readonly options: BusOptions,
    private readonly log: Logger,
  ) {
    this.pipe = new JsPipeline(nc, 10_000);
    this.deadLetters = new DeadLetters(this, options.deadLetters ?? DEFAULT_DEAD_LETTER_LIMITS);
  }

  static async connect(options: BusOptions, log: Logger): Promise<Bus> {
    const connecting = connect({
      ...natsConnectionOptions(options),
      name: options.name ?? 'omnigate',
      maxReconnectAttempts: -1,
      reconnectTimeWait: 500,
      waitOnFirstConnect: true,
      // Each request otherwise captures two stack traces up front: 30% of the router's CPU.
      noAsyncTraces: true,
      timeout: 5000,
    });
    const started = performance.now();
    const limitMs = options.firstConnectLimitMs ?? FIRST_CONNECT_LIMIT_MS;
    const nc = await firstConnection(connecting, options.url, limitMs, log);
    // A JetStream that does not answer yet (a cluster just restarted: its meta leader is being
    // elected) is waited for within the same limit; JetStream off, or silent past it, fails the
    // connect, and the connection goes with it rather than reconnect behind a caller that gave up.
    const jsm = await untilJetStreamAnswers('the JetStream API', () => jetstreamManager(nc, { timeout: 10_000 }), started, limitMs, log).catch(async (err: unknown) => {
      await nc.close();
      throw err;
    });
    const bus = new Bus(nc, jetstream(nc, { timeout: 10_000 }), jsm, options, log);
    bus.connectStarted = started;
    bus.watchStatus();
    return bus;
  }

  /** When connect() began: provisioning waits for JetStream within the same first-start limit. */
  private connectStarted = performance.now();

  /**
   * provision(), retried while JetStream does not answer (timeouts, no responders, 503) within the
   * first-start limit (nats.firstConnectLimit, 60 s): a gateway started just after its NATS cluster
   * came back exited with a bare "timeout" while the servers elected their leaders.
   */
  provisionWhenReady(): Promise<void> {
    return untilJetStreamAnswers('provisioning streams and buckets', () => this.provision(), this.connectStarted, this.options.firstConnectLimitMs ?? FIRST_CONNECT_LIMIT_MS, this.log);
  }

  get serverVersion(): string {
    return this.nc.info?.version ?? 'unknown';
  }

  /** Creates what is missing and updates what drifted; safe to run on every start by every replica. */
  async provision(): Promise<void> {
    // A standalone server takes num_replicas 3 on a stream update and keeps one copy: refuse here,
    // before anything is written, rather than run unreplicated while the config says otherwise.
    if (this.options.replicas > 1 && !this.nc.info?.cluster) {
      throw new Error(
        `nats.replicas is ${this.options.replicas} but nats-server ${this.serverVersion} (${this.nc.getServer()}) is not part of a cluster: ` +
          `streams and buckets cannot have ${this.options.replicas} replicas on it. Point nats.url at a cluster of at least ${this.options.replicas} JetStream nodes, or set nats.replicas: 1.`,
      );
    }
    for (const config of streamConfigs(this.options)) {
      await this.ensureStream(config);
      await this.ensureReplicas(config.name);
    }
    const kvm = new Kvm(this.js);
    const kvOpts = { replicas: this.options.replicas, storage: StorageType.File };
    const guard = this.options.replicas > 1 ? await this.selfCheck(kvm) : undefined;
    this.casGuard = guard;
    // allow_direct (2.9+): the hot buckets are read with direct gets by the pipeline.
    for (const name of ['tickets', 'threads', 'meta'] as const) {
      this.kv[name] = await this.createBucket(`KV_${Buckets[name]}`, () => kvm.create(Buckets[name], { ...kvOpts, history: 1, allow_direct: true }));
      await this.ensureReplicas(`KV_${Buckets[name]}`);
      await this.ensureDirectGets(`KV_${Buckets[name]}`);
      this.hotKv[name] = new PipelinedKv(this.pipe, Buckets[name], guard);
    }
    this.kv.dedup = await this.createBucket(`KV_${Buckets.dedup}`, () => kvm.create(Buckets.dedup, { ...kvOpts, history: 1, ttl: this.options.dedupTtlMs }));
    this.kv.state = await this.createBucket(`KV_${Buckets.state}`, () => kvm.create(Buckets.state, { ...kvOpts, history: 1 }));
    this.kv.leases = await this.createBucket(`KV_${Buckets.leases}`, () => kvm.create(Buckets.leases, { ...kvOpts, history: 1, ttl: this.options.leaseTtlMs }));
    for (const name of ['dedup', 'state', 'leases'] as const) await this.ensureReplicas(`KV_${Buckets[name]}`);
    await this.ensureTtl(`KV_${Buckets.dedup}`, this.options.dedupTtlMs);
    await this.ensureTtl(`KV_${Buckets.leases}`, this.options.leaseTtlMs);
    const objm = new Objm(this.js);
    this.media = await this.createBucket(`OBJ_${MEDIA_BUCKET}`, () => objm.create(MEDIA_BUCKET, { replicas: this.options.replicas, storage: StorageType.File }));
    await this.ensureReplicas(`OBJ_${MEDIA_BUCKET}`);
    if (this.scaledUp.length > 0) {
      this.log.warn(
        { streams: this.scaledUp, to: this.options.replicas },
        'streams moved to more replicas: once they are current, restart each nats-server once, one at a time (measured on 2.11.10: a node killed with SIGKILL before that came back without its copies, deleted as orphaned; docs/operating.md)',
      );
    }
    this.installationId = await this.ensureInstallationId();
    this.partitions = await this.ensurePartitionCount(this.options.partitions ?? DEFAULT_PARTITIONS);
  }

  /** The subject an inbound event is published on: its conversation's partition (subjects.ts). */
  inboundSubject(e: Parameters<typeof orderKey>[0]): string {
    return Subjects.inboundPartition(e.channel, e.account, partitionOf(orderKey(e), this.partitions));
  }

  /**
   * The partition count is part of the data: every stored inbound subject carries a partition,
   * and a conversation's messages must stay in one. The first replica writes it (create-only);
   * a later start with another count is refused rather than splitting conversations.
   */
  private async ensurePartitionCount(wanted: number): Promise<number> {
    for (;;) {
      const entry = await this.kv.meta.get(PARTITIONS_KEY);
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
        await this.kv.meta.create(PARTITIONS_KEY, String(wanted));
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
  private async ensureInstallationId(): Promise<string> {
    for (;;) {
      const entry = await this.kv.meta.get(INSTALLATION_KEY);
      if (entry && entry.operation === 'PUT') return entry.string();
      try {
        const id = randomBytes(5).toString('hex');
        await this.kv.meta.create(INSTALLATION_KEY, id);
        this.log.info({ installationId: id }, 'installation id created');
        return id;
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
  private async selfCheck(kvm: Kvm): Promise<CasGuard | undefined> {
    const version = this.serverVersion;
    const scratch = `omni_probe_${Math.random().toString(36).slice(2, 10)}`;
    const o = { clients: [this.js], jsm: this.jsm, replicas: this.options.replicas, writers: 3, rounds: 20 };
    const update = await probeCas({ ...o, primitive: 'kv-update', scratch });
    const create = await probeCas({ ...o, primitive: 'kv-create', scratch });
    // Unanswered attempts are not wins; a check where most rounds had none has not measured anything.
    for (const r of [update, create]) {
      if (r.noWinner > r.rounds / 2) throw new Error(`compare-and-set self-check on nats-server ${version} inconclusive: ${r.primitive} had no winner in ${r.noWinner}/${r.rounds} rounds (${r.unanswered} attempts unanswered); retried at the next start`);
    }
    const found = `kv.update had more than one winner in ${update.violations}/${update.rounds} rounds, kv.create in ${create.violations}/${create.rounds}`;
    if (create.violations > 0) {
      throw new UnsafeServerError(`nats-server ${version} with replicas ${this.options.replicas}: create-only writes are not exclusive (${found}); ticket identity cannot be kept. Upgrade nats-server to ${FIRST_SAFE_SERVER} or later, or run with nats.replicas: 1.`);
    }
    const unsafe = update.violations > 0;
    if (unsafe && this.options.unsafeCas === 'refuse') {
      throw new UnsafeServerError(`nats-server ${version} with replicas ${this.options.replicas}: compare-and-set is not atomic (${found}; nats-server#4320). Upgrade nats-server to ${FIRST_SAFE_SERVER} or later, set nats.unsafeCas: guard, or run with nats.replicas: 1.`);
    }
    this.casCheck = { update, create, guarded: unsafe };
    if (!unsafe) {
      this.log.info({ server: version, updateRounds: update.rounds, createRounds: create.rounds }, 'compare-and-set self-check passed');
      return undefined;
    }
    this.log.warn(
      { server: version, found, upgradeTo: FIRST_SAFE_SERVER },
      `compare-and-set is not atomic on nats-server ${version} with replicas ${this.options.replicas} (nats-server#4320): ticket updates run behind create-only guards (one more write each); upgrade to ${FIRST_SAFE_SERVER}+ to drop them`,
    );
    const guards = await kvm.create(Buckets.casGuards, { replicas: this.options.replicas, storage: StorageType.File, history: 1, ttl: GUARD_TTL_MS, allow_direct: true });
    this.kv.casGuards = guards;
    await this.ensureReplicas(`KV_${Buckets.casGuards}`);
    await this.ensureDirectGets(`KV_${Buckets.casGuards}`);
    return new CasGuard(new PipelinedKv(this.pipe, Buckets.casGuards), GUARD_TTL_MS);
  }

  /**
   * Streams and buckets keep the replica count they were created with (the KV and object-store
   * clients reuse an existing stream as it is): a deployment moving from one node to a cluster
   * changes `nats.replicas`, and every stream follows here. nats-server moves the data to the new
   * peers itself. Where it cannot (a single server, fewer nodes than replicas), the start stops
   * with the stream named, since running R1 while the config promises R3 would be a silent lie.
   */
  private async ensureReplicas(stream: string): Promise<void> {
    const info = await this.justMadeStreamInfo(stream);
    const have = info.config.num_replicas;
    const want = this.options.replicas;
    if (have === want) return;
    let reason: string;
    try {
      // A single nats-server accepts the update but keeps one replica: read back what it did.
      const updated = await this.jsm.streams.update(stream, { ...info.config, num_replicas: want });
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
        return await this.jsm.streams.info(stream);
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
  private async ensureTtl(stream: string, ttlMs: number): Promise<void> {
    const info = await this.justMadeStreamInfo(stream);
    const want = ttlMs * 1_000_000;
    if (info.config.max_age === want) return;
    // The duplicate window may not exceed max_age: the client makes it min(ttl, 2 min) too.
    const window = want > 0 ? Math.min(info.config.duplicate_window || want, want) : info.config.duplicate_window;
    try {
      await this.jsm.streams.update(stream, { ...info.config, max_age: want, duplicate_window: window });
    } catch (err) {
      // A NATS user without the right to edit streams: run with the bucket as it is, and say so.
      this.log.warn({ stream, haveMs: info.config.max_age / 1_000_000, wantMs: ttlMs, err: errorMessage(err) }, 'bucket TTL differs from the config and could not be changed: change it by hand (nats kv edit) or give the gateway the right');
      return;
    }
    this.log.info({ stream, fromMs: info.config.max_age / 1_000_000, toMs: ttlMs }, 'bucket TTL changed to match the config');
  }

  /** A bucket made by an older server or another tool may lack allow_direct; the pipeline needs it. */
  private async ensureDirectGets(stream: string): Promise<void> {
    const info = await this.justMadeStreamInfo(stream);
    if (info.config.allow_direct) return;
    await this.jsm.streams.update(stream, { ...info.config, allow_direct: true });
    this.log.info({ stream }, 'direct gets enabled on bucket');
  }

  /**
   * A bucket (KV or object store) made or bound by `create`, once more when it failed because
   * another replica made the same bucket between the client's look and its add: replicas that
   * start together raced there, and nats-server answered the loser "subjects overlap with an
   * existing stream" (seen in CI on two concurrent provisions). Bound on the second try.
   */
  private async createBucket<T>(stream: string, create: () => Promise<T>): Promise<T> {
    try {
      return await create();
    } catch (err) {
      const made = await this.jsm.streams.info(stream).then(() => true, () => false);
      if (!made) throw err;
      return create();
    }
  }

  private async ensureStream(config: Partial<StreamConfig> & { name: string }): Promise<void> {
    try {
      const info = await this.jsm.streams.info(config.name);
      const current = info.config;
      const drifted =
        current.max_age !== config.max_age ||
        (config.max_bytes !== undefined && current.max_bytes !== config.max_bytes) ||
        current.duplicate_window !== config.duplicate_window ||
        JSON.stringify(current.subjects) !== JSON.stringify(config.subjects);
      if (drifted) {
        await this.jsm.streams.update(config.name, { ...current, ...config }).catch((e: unknown) => {
          throw storageExplained(e, config);
        });
        this.log.info({ stream: config.name }, 'stream configuration updated');
      }
    } catch (err) {
      if (!isNotFound(err)) throw err;
      try {
        await this.jsm.streams.add(config);
        this.log.info({ stream: config.name }, 'stream created');
      } catch (addErr) {
        // Another replica created it between our look and our add: that is the outcome we wanted.
        await this.jsm.streams.info(config.name).catch(() => {
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
      const info = await this.jsm.consumers.info(stream, config.durable_name);
      const c = info.config;
      if (
        c.ack_wait !== full.ack_wait ||
        c.max_ack_pending !== full.max_ack_pending ||
        c.max_deliver !== (full.max_deliver ?? c.max_deliver)
      ) {
        await this.jsm.consumers.update(stream, config.durable_name, {
          ack_wait: full.ack_wait,
          max_ack_pending: full.max_ack_pending,
          max_deliver: full.max_deliver,
        });
      }
    } catch (err) {
      if (!isNotFound(err)) throw err;
      try {
        await this.jsm.consumers.add(stream, full);
      } catch (addErr) {
        await this.jsm.consumers.info(stream, config.durable_name).catch(() => {
          throw addErr;
        });
      }
    }
  }

  /** JetStream publish of a JSON payload; resolves only once the stream stored it. */
  publishJson(subject: string, payload: unknown, msgID?: string, headers?: MsgHdrs): Promise<PubAck> {
    // The pipeline writes only the hot path's own headers; the rare others take the client's way.
    if (headers) return this.js.publish(subject, JSON.stringify(payload), { msgID, headers });
    return this.pipe.publish(subject, JSON.stringify(payload), msgID ? { msgID } : undefined);
  }

  /** Fire-and-forget core NATS publish for observers that need no persistence. */
  notify(subject: string, payload: unknown): void {
    this.nc.publish(subject, JSON.stringify(payload));
  }

  get connected(): boolean {
    return !this.nc.isClosed() && this.connectedFlag;
  }

  /**
   * One cheap JetStream request ($JS.API.INFO): answered, silent past `timeoutMs`, or answered
   * that JetStream is off (10039 for the account, 10076 on the server; no responders: nobody
   * serves the API). For JetStreamWatchdog; anything else (the connection closing) is thrown.
   */
  async jetStreamHealth(timeoutMs: number): Promise<JetStreamHealth> {
    try {
      const m = await this.nc.request('$JS.API.INFO', '', { timeout: timeoutMs });
      const code = (jsonOrUndefined(m.data) as { error?: { err_code?: number } } | undefined)?.error?.err_code;
      return code === 10039 || code === 10076 ? 'off' : 'ok';
    } catch (err) {
      if (err instanceof TimeoutError) return 'silent';
      if (err instanceof RequestError && err.isNoResponders()) return 'off';
      throw err;
    }
  }

  /** Set when the start-up self-check found compare-and-set unsafe (see guardedUpdate). */
  private casGuard?: CasGuard;

  /**
   * Compare-and-set on a bucket outside the hot path (command claims, the auto-acknowledgement
   * window, connector state): behind the same create-only guard as ticket updates when the
   * self-check found the server's own compare-and-set unsafe, a plain update otherwise.
   */
  guardedUpdate(bucket: 'dedup' | 'state', key: string, value: string, revision: number): Promise<number> {
    const kv = this.kv[bucket];
    if (!this.casGuard) return kv.update(key, value, revision);
    return this.casGuard.update(Buckets[bucket], key, revision, () => kv.update(key, value, revision));
  }

  private connectedFlag = true;
  /** When the connection last came (back) up: liveness excuses NATS failures of a loop until a while after it. */
  connectedSinceMs = Date.now();
  /** How often the connection dropped: a pull open across a drop may have lost what the server sent into it. */
  disconnects = 0;
  private watchStatus(): void {
    void (async () => {
      for await (const s of this.nc.status()) {
        if (s.type === 'disconnect') {
          this.connectedFlag = false;
          this.disconnects++;
          this.log.warn({ server: 'server' in s ? s.server : undefined }, 'NATS disconnected; reconnecting');
        } else if (s.type === 'reconnect') {
          this.connectedFlag = true;
          this.connectedSinceMs = Date.now();
          this.log.info('NATS reconnected');
        }
      }
    })().catch(() => {});
  }

  /** Flush pending publishes and close; in-flight requests complete first. */
  async close(): Promise<void> {
    if (this.nc.isClosed()) return;
    try {
      await this.nc.drain();
    } catch {
      await this.nc.close();
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

/** How long a start waits for NATS before it gives up (exit 1; the orchestrator restarts it). */
const FIRST_CONNECT_LIMIT_MS = 60_000;
const FIRST_CONNECT_REPORT_MS = 5_000;

/**
 * The first connection, waited for (NATS may start after us: a compose file, a pod), saying so
 * every few seconds, and given up after a minute. It waited silently for ever before: no log
 * line, no probe (the HTTP server starts after NATS), no exit.
 */
/**
 * `step`, again after a short wait while it fails because JetStream is not answering yet, until
 * `limitMs` after `started`; the last error then names the step. Other errors at once.
 */
async function untilJetStreamAnswers<T>(what: string, step: () => Promise<T>, started: number, limitMs: number, log: Logger): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await step();
    } catch (err) {
      const waited = performance.now() - started;
      if (!isNatsUnavailable(err)) throw err;
      if (waited >= limitMs) throw new NatsUnavailableError(`${what}: JetStream did not answer within ${Math.round(limitMs / 1000)} s of the start (${errorMessage(err)})`);
      log.warn({ step: what, attempt, waitedMs: Math.round(waited), giveUpAfterMs: limitMs, err: errorMessage(err) }, 'waiting for JetStream to answer');
      await sleep(Math.min(2_000, 250 * attempt));
    }
  }
}

async function firstConnection(connecting: Promise<NatsConnection>, url: string, limitMs: number, log: Logger): Promise<NatsConnection> {
  const started = performance.now();
  const report = setInterval(() => {
    log.warn({ servers: url, waitedMs: Math.round(performance.now() - started), giveUpAfterMs: limitMs }, 'waiting for NATS to accept a connection');
  }, Math.min(FIRST_CONNECT_REPORT_MS, limitMs / 2));
  try {
    return await within(limitMs, connecting, () => new Error(`NATS at ${url} did not accept a connection within ${limitMs / 1000} s`));
  } catch (err) {
    // A connection that comes after we gave up is closed, not left reconnecting in a process on its way out.
    connecting.then((late) => late.close(), () => undefined).catch(() => undefined);
    throw err;
  } finally {
    clearInterval(report);
  }
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
