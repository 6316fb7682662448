/**
 * `${VAR}` references and OMNIGATE_* overrides: a variable's value is its text, and is read as a
 * number or boolean only where the schema refused the text for want of one (config-readings.ts).
 */
import { parse as parseYaml } from 'yaml';
import { registerSecret } from './logger.js';
import { ConfigError, formatPath } from './config-error.js';
import type { ConfigProblem } from './config.js';
import { GatewayConfig } from './config-schema.js';
import { isOtherNumberNotation, readingsOf } from './config-readings.js';

/** Keys whose name says they hold a secret: their interpolated values are redacted from every log line. */
const SECRET_KEY = /(token|secret|pass(word)?|apikey|key)$/i;

/** What a variable's text may be read as, and whether it is a number in a notation that is refused. */
export interface Readings {
  readings: unknown[];
  otherNotation: boolean;
}

/**
 * Keys whose value came from a variable, and the reading in use at each. Interpolation makes
 * text, so `port: ${GW_PORT}` was refused as "expected number, received string" without naming
 * the variable. A value is read otherwise only where the schema refused its text: a numeric
 * secret or id (`phoneNumberId: ${WA_ID}`, a token `0x1F90`) stays text.
 */
export interface References {
  /** Key → the variables its value references, and what that value may be read as. */
  whole: Map<string, { name: string } & Readings>;
  /** Key → the index of the reading in use (absent: the text). */
  typed: Map<string, number>;
  /** OMNIGATE_* overrides that may be read otherwise than as their text. */
  overrides?: OverridesTyped;
}

/** Key → where an override set it, its text and its other readings (OMNIGATE_NATS__PASS=123456 is a password, not a number). */
export type OverridesTyped = Map<string, { node: Record<string, unknown>; field: string; text: string } & Readings>;

/**
 * Runs a validation; where it refused a variable's value that has other readings, runs it again
 * with the next one (whatever the schema's wording: a size or a duration takes a number too), and
 * goes back to the text where every reading is refused: the text's refusal says what is expected.
 */
export function withReferencesTyped<T>(refs: References, run: () => T): T {
  const readings = (key: string) => refs.whole.get(key)?.readings ?? refs.overrides?.get(key)?.readings ?? [];
  const use = (key: string, index: number | undefined) => {
    if (refs.whole.has(key)) {
      if (index === undefined) refs.typed.delete(key);
      else refs.typed.set(key, index);
    }
    const o = refs.overrides?.get(key);
    if (o) o.node[o.field] = index === undefined ? o.text : o.readings[index];
  };
  const inUse = new Map<string, number>();
  const settled = new Set<string>();
  for (;;) {
    try {
      return run();
    } catch (err) {
      if (!(err instanceof ConfigError)) throw err;
      let changed = false;
      for (const key of new Set(err.problems.map((p) => p.key))) {
        if (settled.has(key) || readings(key).length === 0) continue;
        const next = (inUse.get(key) ?? -1) + 1;
        inUse.set(key, next);
        if (next < readings(key).length) use(key, next);
        else {
          use(key, undefined);
          settled.add(key);
        }
        changed = true;
      }
      if (!changed) throw err;
    }
  }
}

const REFERENCE = /\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-[^}]*)?\}/g;

/**
 * `unset`: where to collect variables that are not set, each with the key that references it,
 * leaving the reference's text in place so the rest of the file is still checked in the same
 * pass; without it the first unset variable throws.
 */
export function interpolate(value: unknown, env: NodeJS.ProcessEnv, file: string, path: Array<string | number>, refs?: References, unset?: ConfigProblem[]): unknown {
  if (typeof value === 'string') {
    const key = path[path.length - 1];
    // Whole (`${GW_PORT}`) or in part (`90${PORT_SUFFIX}`): the value is the variables' text.
    const named = refs ? [...value.matchAll(REFERENCE)].map((m) => m[1]!) : [];
    if (refs && named.length > 0) {
      const at = formatPath('', path);
      const text = interpolate(value, env, file, path, undefined, unset) as string;
      const readings = readingsOf(text);
      refs.whole.set(at, { name: named.join('}, ${'), readings, otherNotation: isOtherNumberNotation(text) });
      const index = refs.typed.get(at);
      return index !== undefined && index < readings.length ? readings[index] : text;
    }
    return value.replace(/\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}/g, (_m, name: string, fallback?: string) => {
      const v = env[name] ?? fallback;
      if (v === undefined) {
        const problem = `environment variable ${name} is not set (referenced as \${${name}})`;
        if (!unset) throw new ConfigError(file, formatPath('', path), problem);
        unset.push({ key: formatPath('', path), problem });
        return _m;
      }
      if (typeof key === 'string' && SECRET_KEY.test(key)) registerSecret(v);
      return v;
    });
  }
  if (Array.isArray(value)) return value.map((v, i) => interpolate(v, env, file, [...path, i], refs, unset));
  if (value && typeof value === 'object') {
    const out: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(value)) {
      out[k] = interpolate(v, env, file, [...path, k], refs, unset);
      if (typeof out[k] === 'string' && SECRET_KEY.test(k)) registerSecret(out[k] as string);
    }
    return out;
  }
  return value;
}

/** Top-level keys that take a value, not a section or a list: OMNIGATE_SHUTDOWN_TIMEOUT=20s sets shutdownTimeout. */
const TOP_LEVEL_VALUES = new Set(Object.entries(GatewayConfig.parse({})).filter(([, v]) => typeof v !== 'object').map(([k]) => k));

/**
 * OMNIGATE_SECTION__KEY=value overrides, and OMNIGATE_<TOP_LEVEL_KEY> for the few top-level
 * values. A value is its text (OMNIGATE_NATS__PASS='x #1' keeps its " #1", which YAML took for a
 * comment); where the schema refuses the text, withReferencesTyped reads it as a number, a
 * boolean or, written `[a, b]` or `{k: v}`, a YAML list or mapping. Returns which dotted key each variable set, so an error names the variable
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
    const field = path[path.length - 1]!;
    node[field] = value;
    const readings: unknown[] = [...readingsOf(value), ...flowCollectionOf(value)];
    if (typed) typed.set(path.join('.'), { node, field, text: value, readings, otherNotation: isOtherNumberNotation(value) });
  }
  return set;
}

/** `[a, b]` or `{k: v}` as YAML reads it; nothing for any other text. */
function flowCollectionOf(text: string): unknown[] {
  if (!/^\s*(\[[^]*\]|\{[^]*\})\s*$/.test(text)) return [];
  try {
    return [parseYaml(text) as unknown];
  } catch {
    return [];
  }
}

/** OMNIGATE_SHUTDOWN_TIMEOUT: a top-level value, set with single underscores. */
export function isTopLevelOverride(name: string): boolean {
  const rest = name.slice('OMNIGATE_'.length).replace(/^_+/, '');
  return !rest.includes('__') && TOP_LEVEL_VALUES.has(camelCase(rest));
}

function camelCase(s: string): string {
  return s.toLowerCase().replace(/_([a-z0-9])/g, (_m, c: string) => c.toUpperCase());
}
