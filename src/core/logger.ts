/**
 * Structured logging (pino). Secrets never reach a log line: known secret-bearing keys are
 * redacted wherever they appear, and registered secret values are masked inside any string.
 */
import { pino, type Logger, type LoggerOptions } from 'pino';
import { metrics } from './metrics.js';
import { maskUrlCredentials } from './url-credentials.js';
import { maskBarePhone, maskPersonalData } from './log-personal.js';

export type { Logger } from 'pino';

const SECRET_KEYS = [
  'token', 'password', 'pass', 'secret', 'signingSecret', 'appSecret', 'apiKey', 'authorization',
  'Authorization', 'cookie', 'verifyToken', 'accessToken', 'botToken', 'appToken', 'auth',
];

/** Values loaded from ${VAR} secrets; masked if they ever appear inside a logged string. */
const secretValues = new Set<string>();

export function registerSecret(value: string | undefined): void {
  if (value && value.length >= 6) secretValues.add(value);
}

export function maskSecrets(text: string): string {
  let out = text;
  for (const secret of secretValues) {
    if (out.includes(secret)) out = out.split(secret).join('[REDACTED]');
  }
  return out;
}

export interface LogOptions {
  level: string;
  pretty?: boolean;
  destination?: NodeJS.WritableStream;
}

export function createLogger(options: LogOptions): Logger {
  const paths = SECRET_KEYS.flatMap((k) => [k, `*.${k}`, `*.*.${k}`, `req.headers.${k.toLowerCase()}`]);
  const config: LoggerOptions = {
    level: options.level,
    base: { service: 'omnigate' },
    redact: { paths, censor: '[REDACTED]' },
    timestamp: pino.stdTimeFunctions.isoTime,
    formatters: { level: (label) => ({ level: label }) },
    hooks: {
      // Tokens embedded in URLs or error messages (Telegram puts the bot token in every API URL),
      // and URL userinfo (user:password@) from any source: masked in every argument.
      logMethod(args, method) {
        for (let i = 0; i < args.length; i++) args[i] = scrub(args[i], 0);
        args[0] = withoutBoundKeys(args[0], this);
        method.apply(this, args as Parameters<typeof method>);
      },
    },
  };
  const root = pino(config, (options.destination as pino.DestinationStream | undefined) ?? stdoutDestination());
  return withMergedChildren(root, root.child.bind(root), Object.keys(root.bindings()));
}

/**
 * Children whose bindings replace their parent's of the same name. Pino appends a child's
 * bindings to its parent's, so `component: api` then `component: webhooks` printed the key twice
 * in one JSON line: strict parsers (Elasticsearch) reject such a line, others keep either value.
 * A child here is made from the root with the merged bindings and the parent's level.
 */
/** Log output held for a stdout that is not taking it (a stalled log collector) before lines are dropped. */
const STDOUT_BUFFER_BYTES = 16 * 1024 * 1024;

let stdout: pino.DestinationStream | undefined;

/**
 * Stdout as pino writes it by default (asynchronously, flushed at exit), with two bounds pino's
 * default lacks. A reader that stops reading (a stalled collector; a parent that is gone but
 * whose end of the pipe is still open) made the buffer grow without end, and made the exit
 * flush retry for ever: the process then ignored SIGTERM, its shutdown backstop and its crash
 * exit alike (three such gateways were found, hours after their bench). Now lines past 16 MB
 * are dropped and counted (`omnigate_log_lines_dropped_total`), and the exit flush ends at a
 * full pipe instead of retrying it. One stream per process: every logger created here shares it.
 */
function stdoutDestination(): pino.DestinationStream {
  if (stdout) return stdout;
  // Only the exit flush (pino calls flushSync when the process exits) gives up on a full pipe;
  // an ordinary write keeps retrying it in the background, as pino's does.
  let flushing = false;
  const stream = pino.destination({ dest: 1, sync: false, maxLength: STDOUT_BUFFER_BYTES, retryEAGAIN: () => !flushing });
  stream.on('drop', (data: string | Buffer) => metrics.logLinesDropped.inc(countLines(data)));
  // What the pipe does not take is left, without an EAGAIN stack trace on a stderr that is likely
  // as stalled (pino's own EPIPE handling replaces the stream's methods the same way).
  const flushSync = stream.flushSync.bind(stream);
  stream.flushSync = () => {
    flushing = true;
    try {
      flushSync();
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EAGAIN') throw err;
    } finally {
      flushing = false;
    }
  };
  stdout = stream;
  return stream;
}

function countLines(data: string | Buffer): number {
  let n = 0;
  for (let i = data.indexOf('\n'); i !== -1; i = data.indexOf('\n', i + 1)) n++;
  return Math.max(n, 1);
}

function withMergedChildren(logger: Logger, fromRoot: Logger['child'], rootKeys: string[]): Logger {
  const child = (bindings: pino.Bindings, options?: pino.ChildLoggerOptions): Logger => {
    const merged: pino.Bindings = { ...logger.bindings(), ...bindings };
    for (const k of rootKeys) if (!(k in bindings)) delete merged[k];
    return withMergedChildren(fromRoot(merged, { level: logger.level, ...options }), fromRoot, rootKeys);
  };
  return Object.assign(logger, { child }) as Logger;
}

/** Each logger's bindings, read once (pino parses them from its JSON on every `bindings()`). */
const boundOf = new WeakMap<object, pino.Bindings>();

/**
 * A call's fields without those its logger is bound to already: pino would print the key twice
 * (`{ webhook }` logged by a logger bound to `webhook`), and strict JSON ingesters reject the
 * line. The same value is dropped; a different one is kept as `<key>_`.
 */
function withoutBoundKeys(first: unknown, logger: Logger): unknown {
  if (typeof first !== 'object' || first === null || Array.isArray(first)) return first;
  let bound = boundOf.get(logger);
  if (!bound) {
    bound = logger.bindings();
    boundOf.set(logger, bound);
  }
  let out: Record<string, unknown> | undefined;
  for (const k in first) {
    if (!(k in bound)) continue;
    out ??= { ...(first as Record<string, unknown>) };
    const v = out[k];
    delete out[k];
    if (v !== bound[k]) out[`${k}_`] = v;
  }
  return out ?? first;
}

/** Fields holding a Message-ID: `<…@host>` looks like an address, but it names a mail, not a person, and threading is debugged by it. */
const MESSAGE_ID_KEYS = new Set(['messageId', 'inReplyTo', 'references', 'platformMessageId']);

/** Fields that hold a person's number without "+" (WhatsApp's `to`, a JID): digits alone are not masked elsewhere (ids, sequences). */
const PHONE_FIELDS = new Set(['to', 'from', 'phone', 'waId', 'wa_id', 'jid', 'recipient']);

/** Masks secrets, URL credentials and customers' addresses in every string of a log argument; unchanged values keep their identity. */
function scrub(value: unknown, depth: number, personal = true): unknown {
  if (typeof value === 'string') {
    const masked = maskUrlCredentials(secretValues.size > 0 ? maskSecrets(value) : value);
    return personal ? maskPersonalData(masked) : masked;
  }
  if (value instanceof Error) return { err: { type: value.name, message: scrub(value.message, depth + 1), stack: scrub(value.stack ?? '', depth + 1) } };
  if (!value || typeof value !== 'object' || depth > 8) return value;
  if (Array.isArray(value)) {
    let changed = false;
    const out = value.map((v) => {
      const s = scrub(v, depth + 1, personal);
      if (s !== v) changed = true;
      return s;
    });
    return changed ? out : value;
  }
  let out: Record<string, unknown> | undefined;
  for (const [k, v] of Object.entries(value)) {
    let s = v instanceof Error ? { type: v.name, message: scrub(v.message, depth + 1), stack: scrub(v.stack ?? '', depth + 1) } : scrub(v, depth + 1, personal && !MESSAGE_ID_KEYS.has(k));
    if (personal && typeof s === 'string' && PHONE_FIELDS.has(k)) s = maskBarePhone(s);
    if (s !== v) (out ??= { ...(value as Record<string, unknown>) })[k] = s;
  }
  return out ?? value;
}
