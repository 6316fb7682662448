/**
 * `${VAR}` references and OMNIGATE_* overrides: interpolation makes text, and a value is typed as
 * a number or boolean only where the schema refused its text for want of one.
 */
import { parse as parseYaml } from 'yaml';
import { registerSecret } from './logger.js';
import { ConfigError, formatPath } from './config-error.js';
import { GatewayConfig } from './config-schema.js';

/** Keys whose name says they hold a secret: their interpolated values are redacted from every log line. */
const SECRET_KEY = /(token|secret|pass(word)?|apikey|key)$/i;

/**
 * Keys whose value is one `${VAR}` reference, and those of them read as a YAML number or boolean.
 * Interpolation makes text, so `port: ${GW_PORT}` was refused as "expected number, received
 * string" without naming the variable. A reference is typed only where the schema refused its text
 * for want of a number or boolean: a numeric secret or id (`phoneNumberId: ${WA_ID}`) stays text.
 */
export interface References {
  /** Key → the variable it references, and whether its value reads as a YAML number or boolean. */
  whole: Map<string, { name: string; scalar: boolean }>;
  typed: Set<string>;
  /** OMNIGATE_* overrides read as a number or boolean, with their text: given as text where the schema wants text. */
  overrides?: OverridesTyped;
}

/** Key → where an override set it and the text it was given as (OMNIGATE_NATS__PASS=123456 is a password, not a number). */
export type OverridesTyped = Map<string, { node: Record<string, unknown>; field: string; text: string; typed: unknown }>;

/**
 * Runs a validation; where it refused a whole reference whose value reads as a number or a
 * boolean, runs it again with that value typed (whatever the schema's wording: a size or a
 * duration takes a number too), and keeps the text where the typed value is refused as well.
 */
export function withReferencesTyped<T>(refs: References, run: () => T): T {
  try {
    return run();
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err;
    const candidates = err.problems.map((p) => p.key).filter((k) => refs.whole.get(k)?.scalar || refs.overrides?.has(k));
    if (candidates.length === 0) throw err;
    const flip = (key: string, alternative: boolean) => {
      if (refs.whole.has(key)) {
        if (alternative) refs.typed.add(key);
        else refs.typed.delete(key);
      }
      const o = refs.overrides?.get(key);
      if (o) o.node[o.field] = alternative ? o.text : o.typed;
    };
    for (const key of candidates) flip(key, true);
    try {
      return run();
    } catch (again) {
      if (!(again instanceof ConfigError)) throw again;
      const still = again.problems.map((p) => p.key).filter((k) => candidates.includes(k));
      if (still.length === 0) throw again;
      for (const key of still) flip(key, false);
      return run();
    }
  }
}

const REFERENCE = /\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-[^}]*)?\}/g;

export function interpolate(value: unknown, env: NodeJS.ProcessEnv, file: string, path: Array<string | number>, refs?: References): unknown {
  if (typeof value === 'string') {
    const key = path[path.length - 1];
    // Whole (`${GW_PORT}`) or in part (`90${PORT_SUFFIX}`): the value is the variables' text.
    const named = refs ? [...value.matchAll(REFERENCE)].map((m) => m[1]!) : [];
    if (refs && named.length > 0) {
      const at = formatPath('', path);
      const text = interpolate(value, env, file, path) as string;
      const typed: unknown = parseYamlScalar(text);
      const scalar = typeof typed === 'number' || typeof typed === 'boolean';
      refs.whole.set(at, { name: named.join('}, ${'), scalar });
      return scalar && refs.typed.has(at) ? typed : text;
    }
    return value.replace(/\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}/g, (_m, name: string, fallback?: string) => {
      const v = env[name] ?? fallback;
      if (v === undefined) {
        throw new ConfigError(file, formatPath('', path), `environment variable ${name} is not set (referenced as \${${name}})`);
      }
      if (typeof key === 'string' && SECRET_KEY.test(key)) registerSecret(v);
      return v;
    });
  }
  if (Array.isArray(value)) return value.map((v, i) => interpolate(v, env, file, [...path, i], refs));
  if (value && typeof value === 'object') {
    const out: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(value)) {
      out[k] = interpolate(v, env, file, [...path, k], refs);
      if (typeof out[k] === 'string' && SECRET_KEY.test(k)) registerSecret(out[k] as string);
    }
    return out;
  }
  return value;
}

function parseYamlScalar(text: string): unknown {
  try {
    return parseYaml(text);
  } catch {
    return text;
  }
}

/** OMNIGATE_HTTP__PORT=9090 sets http.port; values are read as YAML scalars (numbers, booleans). */
/** Top-level keys that take a value, not a section or a list: OMNIGATE_SHUTDOWN_TIMEOUT=20s sets shutdownTimeout. */
const TOP_LEVEL_VALUES = new Set(Object.entries(GatewayConfig.parse({})).filter(([, v]) => typeof v !== 'object').map(([k]) => k));

/**
 * OMNIGATE_SECTION__KEY=value overrides (YAML-parsed), and OMNIGATE_<TOP_LEVEL_KEY> for the few
 * top-level values. Returns which dotted key each variable set, so an error names the variable
 * rather than blaming the file. Other OMNIGATE_* variables (secrets referenced as ${…}) are left alone.
 */
export function applyEnvOverrides(target: Record<string, unknown>, env: NodeJS.ProcessEnv, file: string, typed?: OverridesTyped): Map<string, string> {
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
    const field = path[path.length - 1]!;
    node[field] = parsed ?? value;
    if (typed && (typeof parsed === 'number' || typeof parsed === 'boolean')) typed.set(path.join('.'), { node, field, text: value, typed: parsed });
  }
  return set;
}

/** OMNIGATE_SHUTDOWN_TIMEOUT: a top-level value, set with single underscores. */
export function isTopLevelOverride(name: string): boolean {
  const rest = name.slice('OMNIGATE_'.length).replace(/^_+/, '');
  return !rest.includes('__') && TOP_LEVEL_VALUES.has(camelCase(rest));
}

function camelCase(s: string): string {
  return s.toLowerCase().replace(/_([a-z0-9])/g, (_m, c: string) => c.toUpperCase());
}
