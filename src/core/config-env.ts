/**
 * Environment variables that look like config overrides but are not read as one.
 *
 * Overrides are OMNIGATE_<SECTION>__<KEY> (a double underscore between levels). A variable with
 * single underscores only is not an override, so that secrets referenced as ${OMNIGATE_API_TOKEN}
 * are left alone. But `OMNIGATE_NATS_URL=nats://…` meant nats.url: skipped without a word, the
 * replica started its embedded nats-server and ran as an island. So a single-underscore variable
 * whose words spell a config key path (NATS_URL → nats.url, HTTP_PORT → http.port,
 * NATS_EMBEDDED_DATA_DIR → nats.embedded.dataDir) is refused, naming the variable and the form
 * that would have been read, unless the config file references it as ${…}: then it is a secret.
 */
import type { z } from 'zod';
import type { ConfigProblem } from './config.js';

type Def = { type: string; [k: string]: unknown };
const defOf = (s: unknown): Def | undefined => (s as { _zod?: { def?: Def } })?._zod?.def;
const WRAPPERS = new Set(['optional', 'nullable', 'default', 'prefault', 'catch', 'readonly', 'nonoptional']);

/** The object shape a schema parses, through defaults, optionals and pipes; none for anything else. */
function shapeOf(schema: unknown): Record<string, unknown> | undefined {
  const def = defOf(schema);
  if (!def) return undefined;
  if (def.type === 'object') return def.shape as Record<string, unknown>;
  if (WRAPPERS.has(def.type)) return shapeOf(def.innerType);
  if (def.type === 'pipe') return shapeOf(def.in);
  return undefined;
}

function camelCase(words: string[]): string {
  return words.map((w, i) => (i === 0 ? w.toLowerCase() : w.charAt(0).toUpperCase() + w.slice(1).toLowerCase())).join('');
}

/**
 * The key path (two levels or more) the words spell in `schema`, each level one or more words:
 * ['NATS', 'EMBEDDED', 'DATA', 'DIR'] → [['NATS'], ['EMBEDDED'], ['DATA', 'DIR']]. Undefined when none.
 */
function keyPathOf(schema: unknown, words: string[], depth = 0): string[][] | undefined {
  const shape = shapeOf(schema);
  if (!shape) return undefined;
  for (let n = words.length; n >= 1; n--) {
    const key = camelCase(words.slice(0, n));
    if (!Object.hasOwn(shape, key)) continue;
    if (n === words.length) {
      if (depth >= 1) return [words];
      continue;
    }
    const below = keyPathOf(shape[key], words.slice(n), depth + 1);
    if (below) return [words.slice(0, n), ...below];
  }
  return undefined;
}

/** Every ${NAME} (and ${NAME:-default}) a raw config value references. */
export function referencedVariables(raw: unknown, out = new Set<string>()): Set<string> {
  if (typeof raw === 'string') {
    for (const m of raw.matchAll(/\$\{([A-Za-z_][A-Za-z0-9_]*)/g)) out.add(m[1]!);
  } else if (Array.isArray(raw)) {
    for (const v of raw) referencedVariables(v, out);
  } else if (raw && typeof raw === 'object') {
    for (const v of Object.values(raw)) referencedVariables(v, out);
  }
  return out;
}

/**
 * What Kubernetes (and Docker's legacy links) set for a service named omnigate-http or
 * omnigate-nats-embedded in the same namespace: OMNIGATE_HTTP_PORT=tcp://10.0.0.7:80 and
 * OMNIGATE_HTTP_SERVICE_HOST. Nobody wrote them as overrides; refused, they stopped a working pod.
 */
function injectedByPlatform(name: string, value: string): boolean {
  return /^(tcp|udp|sctp):\/\/[^/\s]+:\d+$/.test(value) || /_SERVICE_(HOST|PORT)(_[A-Z0-9_]+)?$|_PORT_\d+_(TCP|UDP|SCTP)(_(ADDR|PORT|PROTO))?$/.test(name);
}

/**
 * OMNIGATE_* variables with single underscores only that spell a key path of `schema` and are not
 * referenced as ${…} in `raw`: each one a problem at that key, naming the variable to use instead.
 * `isOverride` tells the names already read as overrides (the top-level OMNIGATE_SHUTDOWN_TIMEOUT).
 */
export function misspeltOverrides(schema: z.ZodType, env: NodeJS.ProcessEnv, raw: unknown, isOverride: (name: string) => boolean): ConfigProblem[] {
  const problems: ConfigProblem[] = [];
  let referenced: Set<string> | undefined;
  for (const [name, value] of Object.entries(env)) {
    if (value === undefined || !name.startsWith('OMNIGATE_') || isOverride(name) || injectedByPlatform(name, value)) continue;
    const rest = name.slice('OMNIGATE_'.length).replace(/^_+/, '');
    if (rest.includes('__')) continue;
    const words = rest.split('_').filter(Boolean);
    const path = keyPathOf(schema, words);
    if (!path) continue;
    referenced ??= referencedVariables(raw);
    if (referenced.has(name)) continue;
    const key = path.map(camelCase).join('.');
    const meant = `OMNIGATE_${path.map((level) => level.join('_')).join('__')}`;
    problems.push({
      key,
      problem: `the environment variable ${name} is not read (overrides put a double underscore between levels): to set ${key}, name it ${meant}; if it is a secret, reference it in the file as \${${name}}, else unset it`,
    });
  }
  return problems;
}
