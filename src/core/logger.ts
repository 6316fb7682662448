/**
 * Structured logging (pino). Secrets never reach a log line: known secret-bearing keys are
 * redacted wherever they appear, and registered secret values are masked inside any string.
 */
import { pino, type Logger, type LoggerOptions } from 'pino';

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
      // Tokens embedded in URLs or error messages (Telegram puts the bot token in every API URL).
      logMethod(args, method) {
        if (secretValues.size > 0) {
          for (let i = 0; i < args.length; i++) {
            const a = args[i];
            if (typeof a === 'string') args[i] = maskSecrets(a);
            else if (a instanceof Error) args[i] = { err: { type: a.name, message: maskSecrets(a.message), stack: maskSecrets(a.stack ?? '') } };
            else if (a && typeof a === 'object') args[i] = JSON.parse(maskSecrets(JSON.stringify(a, errorReplacer)));
          }
        }
        method.apply(this, args as Parameters<typeof method>);
      },
    },
  };
  return options.destination ? pino(config, options.destination as pino.DestinationStream) : pino(config);
}

function errorReplacer(_key: string, value: unknown): unknown {
  if (value instanceof Error) return { type: value.name, message: value.message, stack: value.stack };
  return value;
}
