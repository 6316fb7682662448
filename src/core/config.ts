/**
 * Configuration: one YAML file, ${VAR} / ${VAR:-default} interpolation for secrets, and
 * OMNIGATE_<SECTION>__<KEY> environment overrides. Validated once at start; every error names
 * the key, the file and what was expected.
 */
import { readFileSync } from 'node:fs';
import { parse as parseYaml, YAMLParseError } from 'yaml';
import { z } from 'zod';
import { SubjectToken, TicketEvent } from './schema.js';
import { registerSecret } from './logger.js';
import { BusinessHoursConfig, TimeZone } from './config-calendar.js';
import { LANGUAGES, TextOverrides, TextTemplate } from './texts.js';
import { describeUnknownKey, nearest, unknownKeys, type UnknownKey } from './strict-keys.js';
import type { NatsAccess } from './nats-access.js';
import { findUrlCredentials } from './url-credentials.js';
import { misspeltOverrides } from './config-env.js';

/** One thing wrong in a config: the key (a path such as `connectors[1].token`) and why. */
export interface ConfigProblem {
  key: string;
  problem: string;
}

/** A config that cannot be used: the first problem, and every other one found in the same pass. */
export class ConfigError extends Error {
  constructor(
    readonly file: string,
    readonly key: string,
    readonly problem: string,
    readonly others: ConfigProblem[] = [],
    /** The config as its top-level schema read it, when only checks past the schema failed. */
    readonly afterSchema?: GatewayConfig,
  ) {
    super(`config error in ${file}: ${key || '(root)'}: ${problem}${others.map((o) => `\n  and ${o.key || '(root)'}: ${o.problem}`).join('')}`);
    this.name = 'ConfigError';
  }

  /** Every problem, the first one included. */
  get problems(): ConfigProblem[] {
    return [{ key: this.key, problem: this.problem }, ...this.others];
  }
}

/** One error for all `problems` (at least one). */
function configError(file: string, problems: ConfigProblem[], afterSchema?: GatewayConfig): ConfigError {
  const [first, ...others] = problems;
  return new ConfigError(file, first!.key, first!.problem, others, afterSchema);
}

/** `y` is 365 days: retention is set in years by those who answer for personal data (152-FZ). */
const UNITS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000, y: 365 * 86_400_000 };

/**
 * "30s", "7d", "1500ms", or 0. A bare number other than 0 is refused: `reopenWindow: 3` (or
 * OMNIGATE_ROUTER__REOPEN_WINDOW=3) was read as 3 ms where 3 days or minutes were meant, and
 * the gateway started without a word. Zero needs no unit.
 */
export const Duration = z.union([
  z.number().superRefine((n, ctx) => {
    if (n === 0) return;
    const message = n > 0 && Number.isFinite(n) ? `${n} has no unit: write "${n}s", "${n}m", "${n}h", "${n}d" or "${n}ms"` : 'a duration such as "500ms", "30s", "10m", "2h" or "7d"';
    ctx.addIssue({ code: 'custom', message });
  }),
  z
    .string()
    .regex(/^\d+(\.\d+)?(ms|s|m|h|d|y)$/, 'a duration such as "500ms", "30s", "10m", "2h", "7d" or "3y"')
    .transform((s) => {
      const [, n, unit] = /^(\d+(?:\.\d+)?)(ms|s|m|h|d|y)$/.exec(s)!;
      return Math.round(Number(n) * UNITS[unit!]!);
    }),
]);

/** A duration where zero makes no sense (an interval, a limit, a timeout). */
export const PositiveDuration = Duration.refine((ms) => ms > 0, 'more than 0: a zero duration makes no sense here');

const SIZE_UNITS: Record<string, number> = { b: 1, kb: 1024, mb: 1024 ** 2, gb: 1024 ** 3 };
/** "20MB", "512KB" or a number of bytes. */
export const ByteSize = z.union([
  z.number().int().nonnegative(),
  z
    .string()
    .regex(/^\d+(\.\d+)?\s*(b|kb|mb|gb)$/i, 'a size such as "512KB", "20MB" or a number of bytes')
    .transform((s) => {
      const [, n, unit] = /^(\d+(?:\.\d+)?)\s*(b|kb|mb|gb)$/i.exec(s)!;
      return Math.round(Number(n) * SIZE_UNITS[unit!.toLowerCase()]!);
    }),
]);

const TICKET_EVENT_TYPES: string[] = TicketEvent.shape.type.options;
function nearestEvent(e: string): string {
  const n = nearest(e, TICKET_EVENT_TYPES);
  return n ? ` (did you mean "${n}"?)` : '';
}

const ApiToken = z.object({
  name: z.string().min(1).default('token'),
  token: z.string().min(16, 'at least 16 characters'),
  readOnly: z.boolean().default(false),
  /** May erase a person's data (POST /v1/contacts/{id}/erase); never together with readOnly. */
  admin: z.boolean().optional(),
}).refine((t) => !(t.admin && t.readOnly), { message: 'a token cannot be both readOnly and admin', path: ['admin'] });

const Webhook = z.object({
  name: z.string().regex(/^[A-Za-z0-9_-]+$/, 'letters, digits, "_" and "-"'),
  url: z.string().url(),
  secret: z.string().min(16, 'at least 16 characters'),
  events: z
    .array(z.string().refine((e) => e === '*' || TICKET_EVENT_TYPES.includes(e), {
      error: (iss) => `unknown event "${String(iss.input)}"${nearestEvent(String(iss.input))}; expected "*" or one of: ${TICKET_EVENT_TYPES.join(', ')}`,
    }))
    .default(['*']),
  timeout: PositiveDuration.default(10_000),
  /** Keep retrying a failed delivery this long (counted from the event) before parking it. */
  retryFor: Duration.prefault('24h'),
  backoffBase: Duration.prefault('1s'),
  backoffMax: Duration.prefault('1m'),
  /** After a gateway crash or stop, events it had in flight go out again after this. */
  redeliverAfter: Duration.prefault('1m'),
});

export const ConnectorEntry = z
  .object({
    type: z.string().min(1),
    account: SubjectToken,
    enabled: z.boolean().default(true),
    /** Readiness (/readyz) depends on this connector: not ready unless connected, rate limited or standing by. */
    required: z.boolean().default(false),
  })
  .passthrough();
export type ConnectorEntry = z.infer<typeof ConnectorEntry>;

/** One helpdesk adapter (src/helpdesks): the common keys; the rest are the adapter's own options. */
export const HelpdeskEntry = z
  .object({
    type: z.string().min(1),
    /** Names this helpdesk on the bus (consumer helpdesk-<id>, lease, dead letters, author ids): keep it stable. */
    id: SubjectToken,
    enabled: z.boolean().default(true),
    /** Keep retrying an event the helpdesk does not take (down, 5xx) this long, counted from the event, before parking it. */
    retryFor: Duration.prefault('24h'),
    backoffBase: Duration.prefault('1s'),
    backoffMax: Duration.prefault('1m'),
    /** An event held by a gateway that died is given out again after this. */
    redeliverAfter: Duration.prefault('30s'),
  })
  .passthrough();
export type HelpdeskEntry = z.infer<typeof HelpdeskEntry>;

/** One server of nats.url: a scheme NATS clients speak, or a bare host:port. Empty is the embedded server. */
const NATS_SERVER = /^$|^((nats|tls|ws|wss):\/\/)?([^\s/@,]+@)?([^\s/:,@[\]]+|\[[0-9a-f:.]+\])(:\d{1,5})?\/?$/i;

export const GatewayConfig = z.object({
  nats: z
    .object({
      /** Empty: start the embedded nats-server. Several servers: separate the URLs with commas. */
      url: z
        .string()
        .default('')
        .refine((v) => v.split(',').every((u) => NATS_SERVER.test(u.trim())), 'expected nats://host:port (or tls://, ws://, wss://, or host:port), several separated by commas'),
      user: z.string().optional(),
      pass: z.string().optional(),
      token: z.string().optional(),
      /** TLS to the NATS servers (ignored by the embedded server, which listens on 127.0.0.1 by default). */
      tls: z
        .object({
          caFile: z.string().min(1).optional(),
          certFile: z.string().min(1).optional(),
          keyFile: z.string().min(1).optional(),
          serverName: z.string().min(1).optional(),
          handshakeFirst: z.boolean().default(false),
        })
        .optional(),
      /** A creds file (user JWT + NKey seed) for operator/JWT deployments. */
      credsFile: z.string().min(1).optional(),
      /** An NKey user seed ("SU…"); give it as ${VAR}, it is masked in logs. */
      nkey: z.string().min(1).optional(),
      replicas: z.number().int().min(1).max(5).default(1),
      /** replicas > 1 on a server whose compare-and-set lets two writers win: guard updates, or refuse to start. */
      unsafeCas: z.enum(['guard', 'refuse']).default('guard'),
      duplicateWindow: PositiveDuration.prefault('2m'),
      retention: PositiveDuration.prefault('7d'),
      dedupTtl: PositiveDuration.prefault('30d'),
      leaseTtl: PositiveDuration.prefault('15s'),
      embedded: z
        .object({
          binary: z.string().default('nats-server'),
          dataDir: z.string().default('./data'),
          host: z.string().default('127.0.0.1'),
          /** 0 picks a free port; the URL is logged and written to <dataDir>/nats.url. */
          port: z.number().int().min(0).max(65535).default(0),
          /**
           * Restart the server when its JetStream has not answered (or answered that it is off)
           * this long and its volume has room again: a full disk leaves JetStream so until the
           * server restarts (jetstream-watchdog.ts). 0 turns this off.
           */
          restartStuckJetStream: Duration.prefault('1m').refine((ms) => ms === 0 || ms >= 10_000, 'at least 10s (two looks of 5 s), or 0 to turn it off'),
        })
        .prefault({}),
    })
    .prefault({}),
  http: z
    .object({
      host: z.string().default('0.0.0.0'),
      port: z.number().int().min(0).max(65535).default(8080),
      bodyLimit: ByteSize.prefault('30MB'),
      /**
       * How long a request may take to arrive, headers and body (then 408). Fastify turns Node's
       * own 5-minute limit off: a body sent a byte at a time held its connection for ever, with
       * no token needed. 2 minutes is 30 MB at 2 Mbit/s.
       */
      requestTimeout: PositiveDuration.prefault('2m'),
    })
    .prefault({}),
  log: z
    .object({ level: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info') })
    .prefault({}),
  router: z
    .object({
      enabled: z.boolean().default(true),
      ticketPrefix: z.string().regex(/^[A-Za-z]{1,8}-?$/, 'letters, optionally ending with "-"').default('T-'),
      firstTicketNumber: z.number().int().positive().default(1001),
      /** A chat message after close reopens the ticket within this window, else opens a new one. */
      reopenWindow: Duration.prefault('7d'),
      /** Messages processed at once (different conversations in parallel, each in order). */
      concurrency: z.number().int().min(1).max(4096).default(256),
      /**
       * Inbound partitions: each conversation hashes to one, each partition is consumed in order
       * by one replica at a time. Fixed when the deployment is first provisioned.
       */
      partitions: z.number().int().min(1).max(1024).default(32),
      /** How often the owner of the unpartitioned subjects moves inbound messages stored where no router reads them (src/router/strays.ts). */
      straySweep: PositiveDuration.prefault('1m'),
      ackWait: PositiveDuration.prefault('30s'),
      /** Language of the texts the gateway writes itself (acknowledgement, rating request, lead alerts). */
      language: z.enum(LANGUAGES).default('ru'),
      /** Per-text overrides; see src/core/texts.ts for the names and their placeholders. */
      texts: TextOverrides.prefault({}),
      autoAcknowledge: z
        .object({
          enabled: z.boolean().default(false),
          /** Same as router.texts.autoAcknowledge (kept for older configs); default: per language, from the business hours. */
          text: TextTemplate('autoAcknowledge').optional(),
          perSenderPerHour: z.number().int().min(0).default(3),
        })
        .prefault({}),
      csat: z
        .object({
          enabled: z.boolean().default(false),
          /** Ask this long after the ticket was resolved or closed. */
          delay: Duration.prefault('2d'),
          /** Same as router.texts.satisfactionRequest (kept for older configs). */
          text: TextTemplate('satisfactionRequest').optional(),
          /** A bare 1–5 answer within this window after the request is the rating. */
          window: PositiveDuration.prefault('7d'),
          /** Ratings at or below this are sent to the lead (router.sla.escalate). */
          lowRating: z.number().int().min(1).max(5).default(3),
        })
        .prefault({}),
      sla: z
        .object({
          enabled: z.boolean().default(false),
          /** Ticket opened → first agent reply sent, in business time. */
          firstResponse: PositiveDuration.prefault('1h'),
          /** Customer's last message → agent reply, in business time. */
          noAnswer: PositiveDuration.prefault('4h'),
          /** null: the clock runs 24/7. */
          businessHours: BusinessHoursConfig.nullable().prefault({}),
          checkInterval: PositiveDuration.prefault('30s'),
          /** A lead's chat on any configured channel: breaches are posted there. */
          escalate: z
            .object({
              channel: SubjectToken,
              account: SubjectToken,
              conversationId: z.string().min(1),
              kind: z.enum(['private', 'group', 'channel', 'email']).default('private'),
            })
            .optional(),
        })
        .prefault({}),
    })
    .prefault({}),
  outbound: z
    .object({
      /** Transient send failures are retried this many times with backoff before dead-lettering. */
      maxAttempts: z.number().int().min(1).max(100).default(8),
      backoffBase: Duration.prefault('1s'),
      backoffMax: Duration.prefault('5m'),
    })
    .prefault({}),
  media: z.object({ maxBytes: ByteSize.prefault('25MB') }).prefault({}),
  /** Refusals are stored bounded: per letter, per source and in total (docs/events.md, dead letters). */
  deadLetters: z
    .object({
      /** Letters older than this are dropped (the OMNI_DLQ stream's max_age). */
      maxAge: Duration.prefault('14d'),
      /** The whole dead-letter stream; the oldest letters go first. */
      maxBytes: ByteSize.prefault('1GB'),
      /** A bigger payload is kept as its head only (not replayable). Under a NATS message (1 MB) with room for the letter. */
      maxPayloadBytes: ByteSize.refine((n) => n >= 1024 && n <= 512 * 1024, 'between 1KB and 512KB').prefault('256KB'),
      /** Letters one outside source (a connector account, the router, the loop guard) may store per minute; more are counted, not stored. Failed replies, webhook deliveries and helpdesk syncs are always stored. */
      perMinute: z.number().int().min(1).default(60),
      burst: z.number().int().min(1).default(120),
    })
    .prefault({}),
  /**
   * How long each kind of data is kept (docs/data.md, retention). 0 keeps it for ever. Messages in
   * transit are `nats.retention`, dead letters `deadLetters.maxAge`; a ticket's log, KV record,
   * thread index entries and attachment references live as long as the ticket.
   */
  retention: z
    .object({
      /** A ticket resolved or closed longer ago than this is deleted whole, everywhere (log, KV, index, SQL, its attachments). */
      tickets: Duration.prefault(0),
      /** Attachment bytes and reference records older than this are deleted from the object store (a log entry then names a file that is gone). */
      attachments: Duration.prefault(0),
      /** Copies of ticket events on OMNI_EVENTS (what webhooks and subscribers read). */
      events: Duration.refine((ms) => ms >= 3_600_000, 'at least 1h (ticket events must outlive the dedup window and a webhook outage)').prefault('30d'),
      /** How often the retention sweeper looks for what expired. */
      sweepInterval: PositiveDuration.prefault('1h'),
    })
    .prefault({}),
  /** The live ticket store (KV omni_tickets and the thread index omni_threads); docs/data.md. */
  tickets: z
    .object({
      /**
       * A ticket resolved or closed longer ago than this leaves KV (its record and index keys);
       * the log and the SQL read model keep it, lists and search find it, a new message in its
       * conversation opens a new ticket. Longer than router.reopenWindow. 0 keeps every ticket
       * in KV for ever (it then grows by every ticket opened).
       */
      evictClosedAfter: Duration.prefault('30d'),
    })
    .prefault({}),
  /** GET /v1/reports/*: durations count business time on router.sla.businessHours (when set). */
  reports: z
    .object({
      /** A contact's new ticket within this long after a resolved one is a repeat contact. */
      repeatContactWindow: PositiveDuration.prefault('7d'),
      /** Days and weeks are cut in this zone; default: the business hours' zone, else UTC. */
      timezone: TimeZone.optional(),
    })
    .prefault({}),
  api: z
    .object({
      tokens: z.array(ApiToken).default([]).superRefine((tokens, ctx) => {
        // One value given two roles: the last one in the list won, silently (a helpdesk token equal
        // to an admin's could erase people; one equal to a read-only token could write nothing).
        const first = new Map<string, number>();
        for (const [i, t] of tokens.entries()) {
          const j = first.get(t.token);
          if (j === undefined) first.set(t.token, i);
          else ctx.addIssue({ code: 'custom', path: [i, 'token'], message: `the same value as api.tokens[${j}] ("${tokens[j]!.name}"): every token must be its own, or one of their roles silently wins` });
        }
      }),
      /** /metrics needs a token (any, read-only is enough) instead of being open to the network. */
      metricsRequireToken: z.boolean().default(false),
    })
    .prefault({}),
  /**
   * The SQL read model (docs/data.md): PGlite in `dataDir` by default, PostgreSQL when `url` is
   * set. The URL carries no credentials (config refuses them): give user/password here, the
   * password as ${VAR}.
   */
  database: z
    .object({
      /** postgres://host:port/database; empty: embedded PGlite. */
      url: z.string().default(''),
      user: z.string().min(1).optional(),
      password: z.string().min(1).optional(),
      /** PGlite's directory; default: <nats.embedded.dataDir>/sql. */
      dataDir: z.string().min(1).optional(),
      /** PostgreSQL connections per process. */
      poolSize: z.number().int().min(1).max(100).default(10),
      /** Ticket-log entries the projection applies per transaction. */
      batchSize: z.number().int().min(1).max(10_000).default(500),
    })
    .prefault({}),
  webhooks: z.array(Webhook).default([]),
  connectors: z.array(ConnectorEntry).default([]),
  /** Helpdesks kept in step with the tickets (docs/helpdesks/): each `type` validates its own options. */
  helpdesks: z.array(HelpdeskEntry).default([]),
  /** SIGTERM to exit: readiness drain, intake stop, in-flight work, NATS and the embedded server, all within this. */
  shutdownTimeout: Duration.prefault('10s'),
  /** After SIGTERM the listener stays open this long answering /readyz 503, so load balancers notice. */
  shutdownDrain: Duration.prefault('1s'),
});
export type GatewayConfig = z.infer<typeof GatewayConfig>;

/** The connection settings of `nats` (the URL is the configured one; the embedded server has its own). */
export function natsAccess(c: GatewayConfig): NatsAccess {
  const { url, user, pass, token, tls, credsFile, nkey } = c.nats;
  return { url, user, pass, token, tls, credsFile, nkey };
}

/** Validates one connector entry against its channel's own schema; returns issues or the parsed options. */
export type ConnectorValidator = (
  entry: ConnectorEntry,
) => { ok: true; value: unknown } | { ok: false; error: z.ZodError } | { ok: false; unknownType: string[] } | { ok: false; unknownKeys: UnknownKey[]; error?: z.ZodError };

export interface LoadedConfig {
  file: string;
  config: GatewayConfig;
  /** Parsed, channel-validated options per enabled connector, in config order. */
  connectors: Array<{ entry: ConnectorEntry; options: unknown }>;
  /** Parsed, adapter-validated options per enabled helpdesk, in config order. */
  helpdesks: Array<{ entry: HelpdeskEntry; options: unknown }>;
}

/** Validates one helpdesk entry against its adapter's own schema (same answers as ConnectorValidator). */
export type HelpdeskValidator = (
  entry: HelpdeskEntry,
) => { ok: true; value: unknown } | { ok: false; error: z.ZodError } | { ok: false; unknownType: string[] } | { ok: false; unknownKeys: UnknownKey[]; error?: z.ZodError };

const SECRET_KEY = /(token|secret|pass(word)?|apikey|key)$/i;

/** The file parsed as YAML (empty → {}); unreadable or invalid YAML is a ConfigError naming the file. */
function readYamlFile(file: string): unknown {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw new ConfigError(file, '', `cannot read the file (${(err as NodeJS.ErrnoException).code ?? String(err)})`);
  }
  try {
    return parseYaml(text) ?? {};
  } catch (err) {
    const where = err instanceof YAMLParseError && err.linePos ? ` at line ${err.linePos[0].line}` : '';
    throw new ConfigError(file, '', `not valid YAML${where}: ${(err as Error).message.split('\n')[0]}`);
  }
}

export function loadConfig(
  file: string | undefined,
  env: NodeJS.ProcessEnv,
  validateConnector?: ConnectorValidator,
  validateHelpdesk?: HelpdeskValidator,
): LoadedConfig {
  const label = file ?? '(defaults)';
  let raw: unknown = {};
  if (file) {
    raw = readYamlFile(file);
    if (typeof raw !== 'object' || Array.isArray(raw)) throw new ConfigError(file, '', 'expected a YAML mapping at the top level');
  }
  const fromEnv = applyEnvOverrides(raw as Record<string, unknown>, env, label);
  // OMNIGATE_NATS_URL (one underscore) is not an override; ignored, the replica ran as an island.
  const misspelt = misspeltOverrides(GatewayConfig, env, raw, isTopLevelOverride);
  let loaded: LoadedConfig;
  try {
    loaded = validate(label, raw, env, validateConnector, validateHelpdesk);
  } catch (err) {
    if (!(err instanceof ConfigError) || (fromEnv.size === 0 && misspelt.length === 0)) throw err;
    // A value an environment variable set is that variable's fault, not the file's.
    const variableOf = (key: string) => [...fromEnv].find(([path]) => key === path || key.startsWith(`${path}.`) || key.startsWith(`${path}[`))?.[1];
    throw configError(err.file, [...misspelt, ...err.problems.map((p) => {
      const variable = variableOf(p.key);
      return variable ? { key: p.key, problem: `${p.problem} (set by the environment variable ${variable})` } : p;
    })], err.afterSchema);
  }
  if (misspelt.length) throw configError(label, misspelt);
  return loaded;
}

/**
 * The config's top-level schema only, for what must be known before its entries can be checked
 * (which connector and helpdesk modules to load). Errors are the top level's; loadConfig with
 * validators then reports everything else at once.
 */
export function loadConfigSections(file: string | undefined, env: NodeJS.ProcessEnv): GatewayConfig {
  try {
    return loadConfig(file, env).config;
  } catch (err) {
    if (err instanceof ConfigError && err.afterSchema) return err.afterSchema;
    throw err;
  }
}

function validate(
  label: string,
  raw: unknown,
  env: NodeJS.ProcessEnv,
  validateConnector?: ConnectorValidator,
  validateHelpdesk?: HelpdeskValidator,
): LoadedConfig {
  const interpolated = interpolate(raw, env, label, []);
  // Every problem in one pass: unknown keys first (a misspelt key usually also leaves a required
  // one missing, and the typo is the news), then URL credentials and the schema's own findings,
  // then each connector and helpdesk entry, even when a section before them was wrong.
  const problems: ConfigProblem[] = [...fromUnknown(unknownKeys(GatewayConfig, interpolated), '')];
  for (const c of findUrlCredentials(interpolated)) problems.push({ key: c.path, problem: c.message });
  const parsed = GatewayConfig.safeParse(interpolated);
  if (!parsed.success) {
    const said = new Set(problems.map((p) => p.key));
    problems.push(...fromZod(parsed.error, '').filter((p) => !said.has(p.key)));
  } else {
    const { evictClosedAfter } = parsed.data.tickets;
    if (evictClosedAfter > 0 && evictClosedAfter <= parsed.data.router.reopenWindow) {
      // An evicted ticket cannot be reopened: eviction must come after the window has passed.
      problems.push({ key: 'tickets.evictClosedAfter', problem: `must be longer than router.reopenWindow (${parsed.data.router.reopenWindow / 3_600_000}h): an evicted ticket cannot be reopened; or 0 to keep closed tickets in KV` });
    }
  }
  const sections = (interpolated ?? {}) as { connectors?: unknown; helpdesks?: unknown };
  const connectorEntries = parsed.success ? parsed.data.connectors.map((e, i) => [i, e, true] as const) : entriesToCheck(ConnectorEntry, sections.connectors);
  const helpdeskEntries = parsed.success ? parsed.data.helpdesks.map((e, i) => [i, e, true] as const) : entriesToCheck(HelpdeskEntry, sections.helpdesks);
  const connectors: LoadedConfig['connectors'] = [];
  const seen = new Set<string>();
  for (const [i, entry, commonKeysRight] of connectorEntries) {
    const id = `${entry.type}/${entry.account}`;
    if (commonKeysRight && seen.has(id)) problems.push({ key: `connectors[${i}].account`, problem: `duplicate account "${entry.account}" for type ${entry.type}` });
    seen.add(id);
    if (!validateConnector || !entry.enabled) continue;
    const result = validateConnector(entry);
    if (result.ok) connectors.push({ entry, options: result.value });
    else problems.push(...entryProblems(result, `connectors[${i}]`, `connector type "${entry.type}"`));
  }
  const helpdesks: LoadedConfig['helpdesks'] = [];
  const helpdeskIds = new Set<string>();
  for (const [i, entry, commonKeysRight] of helpdeskEntries) {
    if (commonKeysRight && helpdeskIds.has(entry.id)) problems.push({ key: `helpdesks[${i}].id`, problem: `duplicate helpdesk id "${entry.id}"` });
    helpdeskIds.add(entry.id);
    if (!validateHelpdesk || !entry.enabled) continue;
    const result = validateHelpdesk(entry);
    if (result.ok) helpdesks.push({ entry, options: result.value });
    else problems.push(...entryProblems(result, `helpdesks[${i}]`, `helpdesk type "${entry.type}"`));
  }
  if (problems.length) throw configError(label, problems, parsed.success ? parsed.data : undefined);
  return { file: label, config: parsed.data!, connectors, helpdesks };
}

/**
 * With something wrong (another section, or the entry's own common keys): the entries of a list
 * whose own options can still be checked, with their index and whether the common keys parsed.
 * An entry with a wrong common key (`account: "a b"`, `enabled: "yes"`) but a `type` is checked
 * against its module's schema too, so one run names the module's mistakes with it (they came
 * only after the common key was mended). Only `enabled: false` skips the check, as for a valid entry.
 */
function entriesToCheck<T>(schema: z.ZodType<T>, list: unknown): Array<readonly [number, T, boolean]> {
  if (!Array.isArray(list)) return [];
  const out: Array<readonly [number, T, boolean]> = [];
  list.forEach((item, i) => {
    const r = schema.safeParse(item);
    if (r.success) out.push([i, r.data, true] as const);
    else if (isRecord(item) && typeof item.type === 'string' && item.type !== '') out.push([i, { ...item, enabled: item.enabled !== false } as T, false] as const);
  });
  return out;
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** What is wrong with one connector or helpdesk entry its own schema refused: unknown keys first, then the schema's findings. */
function entryProblems(result: { unknownType: string[] } | { unknownKeys: UnknownKey[]; error?: z.ZodError } | { ok: false; error: z.ZodError }, prefix: string, what: string): ConfigProblem[] {
  if ('unknownType' in result) return [{ key: `${prefix}.type`, problem: `unknown ${what}; expected one of: ${result.unknownType.join(', ')}` }];
  const unknown = 'unknownKeys' in result ? fromUnknown(result.unknownKeys, prefix) : [];
  const said = new Set(unknown.map((p) => p.key));
  // A strict schema's own "Unrecognized key" repeats what the unknown-key check said with a suggestion.
  const issues = (result.error?.issues ?? []).filter((i) => !(unknown.length && i.code === 'unrecognized_keys'));
  return [...unknown, ...issues.map((issue) => ({ key: formatPath(prefix, issue.path), problem: explain(issue) })).filter((p) => !said.has(p.key))];
}

function fromUnknown(unknown: UnknownKey[], prefix: string): ConfigProblem[] {
  return unknown.map((u) => ({ key: formatPath(prefix, u.path), problem: describeUnknownKey(u) }));
}

function fromZod(error: z.ZodError, prefix: string): ConfigProblem[] {
  return error.issues.map((issue) => ({ key: formatPath(prefix, issue.path), problem: explain(issue) }));
}

/** A union (duration, size) says "Invalid input"; the branch that matched the input's type says what is expected. */
function explain(issue: z.core.$ZodIssue): string {
  if (issue.code !== 'invalid_union' || !('errors' in issue)) return issue.message;
  const branches = (issue.errors as z.core.$ZodIssue[][]).flat();
  const specific = branches.find((b) => b.code !== 'invalid_type') ?? branches[0];
  return specific ? specific.message : issue.message;
}

function formatPath(prefix: string, path: ReadonlyArray<PropertyKey>): string {
  let out = prefix;
  for (const p of path) out += typeof p === 'number' ? `[${p}]` : out ? `.${String(p)}` : String(p);
  return out;
}

function interpolate(value: unknown, env: NodeJS.ProcessEnv, file: string, path: Array<string | number>): unknown {
  if (typeof value === 'string') {
    const key = path[path.length - 1];
    return value.replace(/\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}/g, (_m, name: string, fallback?: string) => {
      const v = env[name] ?? fallback;
      if (v === undefined) {
        throw new ConfigError(file, formatPath('', path), `environment variable ${name} is not set (referenced as \${${name}})`);
      }
      if (typeof key === 'string' && SECRET_KEY.test(key)) registerSecret(v);
      return v;
    });
  }
  if (Array.isArray(value)) return value.map((v, i) => interpolate(v, env, file, [...path, i]));
  if (value && typeof value === 'object') {
    const out: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(value)) {
      out[k] = interpolate(v, env, file, [...path, k]);
      if (typeof out[k] === 'string' && SECRET_KEY.test(k)) registerSecret(out[k] as string);
    }
    return out;
  }
  return value;
}

/** OMNIGATE_HTTP__PORT=9090 sets http.port; values are read as YAML scalars (numbers, booleans). */
/** Top-level keys that take a value, not a section or a list: OMNIGATE_SHUTDOWN_TIMEOUT=20s sets shutdownTimeout. */
const TOP_LEVEL_VALUES = new Set(Object.entries(GatewayConfig.parse({})).filter(([, v]) => typeof v !== 'object').map(([k]) => k));

/**
 * OMNIGATE_SECTION__KEY=value overrides (YAML-parsed), and OMNIGATE_<TOP_LEVEL_KEY> for the few
 * top-level values. Returns which dotted key each variable set, so an error names the variable
 * rather than blaming the file. Other OMNIGATE_* variables (secrets referenced as ${…}) are left alone.
 */
function applyEnvOverrides(target: Record<string, unknown>, env: NodeJS.ProcessEnv, file: string): Map<string, string> {
  const set = new Map<string, string>();
  for (const [name, value] of Object.entries(env)) {
    if (!name.startsWith('OMNIGATE_') || value === undefined) continue;
    const rest = name.slice('OMNIGATE_'.length).replace(/^_+/, '');
    const path = rest.split('__').map(camelCase);
    if (!rest.includes('__') && !isTopLevelOverride(name)) continue;
    set.set(path.join('.'), name);
    let node: Record<string, unknown> = target;
    for (const part of path.slice(0, -1)) {
      const next = node[part];
      if (next === undefined) node[part] = {};
      else if (typeof next !== 'object' || next === null) {
        throw new ConfigError(file, path.join('.'), `environment override ${name} targets a key below a non-mapping value`);
      }
      node = node[part] as Record<string, unknown>;
    }
    let parsed: unknown = value;
    try {
      parsed = parseYaml(value);
    } catch {
      /* keep as string */
    }
    node[path[path.length - 1]!] = parsed ?? value;
  }
  return set;
}

/** OMNIGATE_SHUTDOWN_TIMEOUT: a top-level value, set with single underscores. */
function isTopLevelOverride(name: string): boolean {
  const rest = name.slice('OMNIGATE_'.length).replace(/^_+/, '');
  return !rest.includes('__') && TOP_LEVEL_VALUES.has(camelCase(rest));
}

function camelCase(s: string): string {
  return s.toLowerCase().replace(/_([a-z0-9])/g, (_m, c: string) => c.toUpperCase());
}

/**
 * Only the `nats` section, for tools that just talk to the bus (`omnigate dlq`): ${VAR}s elsewhere
 * (connector tokens, webhook secrets) need not be set, and other sections are not validated.
 */
export function loadNatsSection(file: string | undefined, env: NodeJS.ProcessEnv): GatewayConfig['nats'] {
  const label = file ?? '(defaults)';
  let raw: Record<string, unknown> = {};
  if (file) {
    raw = readYamlFile(file) as Record<string, unknown>;
    if (typeof raw !== 'object' || Array.isArray(raw)) throw new ConfigError(file, '', 'expected a YAML mapping at the top level');
  }
  const natsOnly: Record<string, unknown> = { nats: raw.nats ?? {} };
  applyEnvOverrides(natsOnly, Object.fromEntries(Object.entries(env).filter(([k]) => k.startsWith('OMNIGATE_NATS__'))), label);
  const misspelt = misspeltOverrides(GatewayConfig, env, raw, isTopLevelOverride).filter((p) => p.key.startsWith('nats.'));
  if (misspelt.length) throw configError(label, misspelt);
  const parsed = GatewayConfig.shape.nats.safeParse((interpolate(natsOnly, env, label, []) as { nats: unknown }).nats);
  if (!parsed.success) throw configError(label, fromZod(parsed.error, 'nats'));
  return parsed.data;
}
