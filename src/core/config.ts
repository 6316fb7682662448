/**
 * Configuration: one YAML file, ${VAR} / ${VAR:-default} interpolation for secrets, and
 * OMNIGATE_<SECTION>__<KEY> environment overrides. Validated once at start; every error names
 * the key, the file and what was expected.
 */
import { readFileSync } from 'node:fs';
import { parse as parseYaml, YAMLParseError } from 'yaml';
import { z } from 'zod';
import { SubjectToken } from './schema.js';
import { registerSecret } from './logger.js';

export class ConfigError extends Error {
  constructor(
    readonly file: string,
    readonly key: string,
    readonly problem: string,
  ) {
    super(`config error in ${file}: ${key || '(root)'}: ${problem}`);
    this.name = 'ConfigError';
  }
}

const UNITS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };

/** "30s", "7d", "1500ms" or a number of milliseconds. */
export const Duration = z.union([
  z.number().int().nonnegative(),
  z
    .string()
    .regex(/^\d+(\.\d+)?(ms|s|m|h|d)$/, 'a duration such as "500ms", "30s", "10m", "2h" or "7d"')
    .transform((s) => {
      const [, n, unit] = /^(\d+(?:\.\d+)?)(ms|s|m|h|d)$/.exec(s)!;
      return Math.round(Number(n) * UNITS[unit!]!);
    }),
]);

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

const ApiToken = z.object({
  name: z.string().min(1).default('token'),
  token: z.string().min(16, 'at least 16 characters'),
  readOnly: z.boolean().default(false),
});

const Webhook = z.object({
  name: z.string().regex(/^[A-Za-z0-9_-]+$/, 'letters, digits, "_" and "-"'),
  url: z.string().url(),
  secret: z.string().min(16, 'at least 16 characters'),
  events: z.array(z.string()).default(['*']),
  timeout: Duration.default(10_000),
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

export const GatewayConfig = z.object({
  nats: z
    .object({
      /** Empty: start the embedded nats-server. */
      url: z.string().default(''),
      user: z.string().optional(),
      pass: z.string().optional(),
      token: z.string().optional(),
      replicas: z.number().int().min(1).max(5).default(1),
      duplicateWindow: Duration.prefault('2m'),
      retention: Duration.prefault('7d'),
      dedupTtl: Duration.prefault('30d'),
      leaseTtl: Duration.prefault('15s'),
      embedded: z
        .object({
          binary: z.string().default('nats-server'),
          dataDir: z.string().default('./data'),
          host: z.string().default('127.0.0.1'),
          /** 0 picks a free port; the URL is logged and written to <dataDir>/nats.url. */
          port: z.number().int().min(0).max(65535).default(0),
        })
        .prefault({}),
    })
    .prefault({}),
  http: z
    .object({
      host: z.string().default('0.0.0.0'),
      port: z.number().int().min(0).max(65535).default(8080),
      bodyLimit: ByteSize.prefault('30MB'),
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
      ackWait: Duration.prefault('30s'),
      autoAcknowledge: z
        .object({
          enabled: z.boolean().default(false),
          text: z
            .string()
            .min(1)
            .default('Здравствуйте! Мы получили ваше обращение, его номер {ticket}. Ответим в рабочее время: пн–пт, 9:00–18:00 по Москве.'),
          perSenderPerHour: z.number().int().min(0).default(3),
        })
        .prefault({}),
      csat: z
        .object({
          enabled: z.boolean().default(false),
          /** Ask this long after the ticket was resolved or closed. */
          delay: Duration.prefault('2d'),
          text: z.string().min(1).default('Здравствуйте! Оцените, пожалуйста, нашу помощь по обращению {ticket}: ответьте одной цифрой от 1 до 5.'),
          /** A bare 1–5 answer within this window after the request is the rating. */
          window: Duration.prefault('7d'),
          /** Ratings at or below this are sent to the lead (router.sla.escalate). */
          lowRating: z.number().int().min(1).max(5).default(3),
        })
        .prefault({}),
      sla: z
        .object({
          enabled: z.boolean().default(false),
          /** Ticket opened → first agent reply sent, in business time. */
          firstResponse: Duration.prefault('1h'),
          /** Customer's last message → agent reply, in business time. */
          noAnswer: Duration.prefault('4h'),
          /** null: the clock runs 24/7. */
          businessHours: z
            .object({
              timezone: z.string().default('Europe/Moscow'),
              days: z.array(z.number().int().min(1).max(7)).default([1, 2, 3, 4, 5]),
              from: z.string().regex(/^\d{2}:\d{2}$/, 'HH:MM').default('09:00'),
              to: z.string().regex(/^\d{2}:\d{2}$/, 'HH:MM').default('18:00'),
            })
            .nullable()
            .prefault({}),
          checkInterval: Duration.prefault('30s'),
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
  api: z
    .object({
      tokens: z.array(ApiToken).default([]),
      /** /metrics needs a token (any, read-only is enough) instead of being open to the network. */
      metricsRequireToken: z.boolean().default(false),
    })
    .prefault({}),
  webhooks: z.array(Webhook).default([]),
  connectors: z.array(ConnectorEntry).default([]),
});
export type GatewayConfig = z.infer<typeof GatewayConfig>;

/** Validates one connector entry against its channel's own schema; returns issues or the parsed options. */
export type ConnectorValidator = (entry: ConnectorEntry) => { ok: true; value: unknown } | { ok: false; error: z.ZodError } | { ok: false; unknownType: string[] };

export interface LoadedConfig {
  file: string;
  config: GatewayConfig;
  /** Parsed, channel-validated options per enabled connector, in config order. */
  connectors: Array<{ entry: ConnectorEntry; options: unknown }>;
}

const SECRET_KEY = /(token|secret|pass(word)?|apikey|key)$/i;

export function loadConfig(
  file: string | undefined,
  env: NodeJS.ProcessEnv,
  validateConnector?: ConnectorValidator,
): LoadedConfig {
  const label = file ?? '(defaults)';
  let raw: unknown = {};
  if (file) {
    let text: string;
    try {
      text = readFileSync(file, 'utf8');
    } catch (err) {
      throw new ConfigError(file, '', `cannot read the file (${(err as NodeJS.ErrnoException).code ?? String(err)})`);
    }
    try {
      raw = parseYaml(text) ?? {};
    } catch (err) {
      const where = err instanceof YAMLParseError && err.linePos ? ` at line ${err.linePos[0].line}` : '';
      throw new ConfigError(file, '', `not valid YAML${where}: ${(err as Error).message.split('\n')[0]}`);
    }
    if (typeof raw !== 'object' || Array.isArray(raw)) throw new ConfigError(file, '', 'expected a YAML mapping at the top level');
  }
  applyEnvOverrides(raw as Record<string, unknown>, env, label);
  const interpolated = interpolate(raw, env, label, []);
  const parsed = GatewayConfig.safeParse(interpolated);
  if (!parsed.success) throw fromZod(label, parsed.error, '');
  const connectors: LoadedConfig['connectors'] = [];
  parsed.data.connectors.forEach((entry, i) => {
    if (!validateConnector || !entry.enabled) return;
    const result = validateConnector(entry);
    if ('unknownType' in result) {
      throw new ConfigError(label, `connectors[${i}].type`, `unknown connector type "${entry.type}"; expected one of: ${result.unknownType.join(', ')}`);
    }
    if (!result.ok) throw fromZod(label, result.error, `connectors[${i}]`);
    connectors.push({ entry, options: result.value });
  });
  const seen = new Set<string>();
  parsed.data.connectors.forEach((c, i) => {
    const id = `${c.type}/${c.account}`;
    if (seen.has(id)) throw new ConfigError(label, `connectors[${i}].account`, `duplicate account "${c.account}" for type ${c.type}`);
    seen.add(id);
  });
  return { file: label, config: parsed.data, connectors };
}

function fromZod(file: string, error: z.ZodError, prefix: string): ConfigError {
  const issue = error.issues[0]!;
  const key = formatPath(prefix, issue.path);
  const more = error.issues.length > 1 ? ` (and ${error.issues.length - 1} more problem(s))` : '';
  return new ConfigError(file, key, explain(issue) + more);
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
function applyEnvOverrides(target: Record<string, unknown>, env: NodeJS.ProcessEnv, file: string): void {
  for (const [name, value] of Object.entries(env)) {
    if (!name.startsWith('OMNIGATE_') || !name.includes('__') || value === undefined) continue;
    const path = name.slice('OMNIGATE_'.length).split('__').map(camelCase);
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
}

function camelCase(s: string): string {
  return s.toLowerCase().replace(/_([a-z0-9])/g, (_m, c: string) => c.toUpperCase());
}
