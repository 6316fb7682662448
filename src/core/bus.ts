/**
 * The bus: one NATS connection with JetStream, and idempotent provisioning of every stream,
 * KV bucket and the media object store (how each is made or mended: bus-provision.ts). Works on
 * nats-server 2.9.10 and 2.10+/2.11: nothing here uses multi-filter consumers, subject
 * transforms, metadata, compression or per-key TTL.
 */
import { RequestError, TimeoutError, connect, type MsgHdrs, type NatsConnection } from '@nats-io/transport-node';
import type { JetStreamHealth } from './jetstream-watchdog.js';
import {
  jetstream,
  jetstreamManager,
  StorageType,
  type ConsumerConfig,
  type JetStreamClient,
  type JetStreamManager,
  type PubAck,
} from '@nats-io/jetstream';
import { Kvm, type KV } from '@nats-io/kv';
import { Objm, type ObjectStore } from '@nats-io/obj';
import type { Logger } from 'pino';
import { Buckets, MEDIA_BUCKET, Subjects, orderKey, partitionOf } from './subjects.js';
import { JsPipeline, PipelinedKv } from './js-pipeline.js';
import { natsConnectionOptions, type NatsAccess } from './nats-access.js';
import type { CasGuard } from './cas-guard.js';
import type { CasProbeResult } from './cas-probe.js';
import { DEFAULT_DEAD_LETTER_LIMITS, DeadLetters, type DeadLetterLimits } from './dead-letter.js';
import { sleep, within } from './sleep.js';
import { jsonOrUndefined } from './json-input.js';
import { NatsUnavailableError, errorMessage, isNatsUnavailable } from './errors.js';
import { DEFAULT_PARTITIONS, Provisioner, streamConfigs } from './bus-provision.js';

// JetStream answers every user of the bus tells apart, not provisioning only: asked for here.
export { isCasConflict, isNotFound } from './bus-provision.js';

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

export type BucketName = keyof typeof Buckets;

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
  /** Makes or mends each stream and bucket for provision() (bus-provision.ts). */
  private readonly provisioner: Provisioner;
  /** What the start-up self-check found (replicas > 1 only). */
  casCheck?: { update: CasProbeResult; create: CasProbeResult; guarded: boolean };
  /** Set by provision() (see ensureInstallationId). */
  installationId = '';
  /** Set by provision() (see ensureMessageIdSecret); never logged. */
  messageIdSecret: Uint8Array = new Uint8Array();
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
    this.provisioner = new Provisioner(this, log);
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
      await this.provisioner.ensureStream(config);
      await this.provisioner.ensureReplicas(config.name);
    }
    const kvm = new Kvm(this.js);
    const kvOpts = { replicas: this.options.replicas, storage: StorageType.File };
    const guard = this.options.replicas > 1 ? await this.provisioner.selfCheck(kvm) : undefined;
    this.casGuard = guard;
    // allow_direct (2.9+): the hot buckets are read with direct gets by the pipeline.
    for (const name of ['tickets', 'threads', 'meta'] as const) {
      this.kv[name] = await this.provisioner.createBucket(`KV_${Buckets[name]}`, () => kvm.create(Buckets[name], { ...kvOpts, history: 1, allow_direct: true }));
      await this.provisioner.ensureReplicas(`KV_${Buckets[name]}`);
      await this.provisioner.ensureDirectGets(`KV_${Buckets[name]}`);
      this.hotKv[name] = new PipelinedKv(this.pipe, Buckets[name], guard);
    }
    this.kv.dedup = await this.provisioner.createBucket(`KV_${Buckets.dedup}`, () => kvm.create(Buckets.dedup, { ...kvOpts, history: 1, ttl: this.options.dedupTtlMs }));
    this.kv.state = await this.provisioner.createBucket(`KV_${Buckets.state}`, () => kvm.create(Buckets.state, { ...kvOpts, history: 1 }));
    this.kv.leases = await this.provisioner.createBucket(`KV_${Buckets.leases}`, () => kvm.create(Buckets.leases, { ...kvOpts, history: 1, ttl: this.options.leaseTtlMs }));
    for (const name of ['dedup', 'state', 'leases'] as const) await this.provisioner.ensureReplicas(`KV_${Buckets[name]}`);
    await this.provisioner.ensureTtl(`KV_${Buckets.dedup}`, this.options.dedupTtlMs);
    await this.provisioner.ensureTtl(`KV_${Buckets.leases}`, this.options.leaseTtlMs);
    const objm = new Objm(this.js);
    this.media = await this.provisioner.createBucket(`OBJ_${MEDIA_BUCKET}`, () => objm.create(MEDIA_BUCKET, { replicas: this.options.replicas, storage: StorageType.File }));
    await this.provisioner.ensureReplicas(`OBJ_${MEDIA_BUCKET}`);
    if (this.provisioner.scaledUp.length > 0) {
      this.log.warn(
        { streams: this.provisioner.scaledUp, to: this.options.replicas },
        'streams moved to more replicas: once they are current, restart each nats-server once, one at a time (measured on 2.11.10: a node killed with SIGKILL before that came back without its copies, deleted as orphaned; docs/operating.md)',
      );
    }
    this.installationId = await this.provisioner.ensureInstallationId();
    this.messageIdSecret = await this.provisioner.ensureMessageIdSecret();
    this.partitions = await this.provisioner.ensurePartitionCount(this.options.partitions ?? DEFAULT_PARTITIONS);
  }

  /** The subject an inbound event is published on: its conversation's partition (subjects.ts). */
  inboundSubject(e: Parameters<typeof orderKey>[0]): string {
    return Subjects.inboundPartition(e.channel, e.account, partitionOf(orderKey(e), this.partitions));
  }

  /** Create a durable pull consumer, or update it when its mutable settings drifted. */
  ensureConsumer(stream: string, config: Partial<ConsumerConfig> & { durable_name: string }): Promise<void> {
    return this.provisioner.ensureConsumer(stream, config);
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
