/**
 * Configuration: one YAML file, ${VAR} / ${VAR:-default} interpolation for secrets, and
 * OMNIGATE_<SECTION>__<KEY> environment overrides. Validated once at start; every error names
 * the key, the file and what was expected.
 */
import { readFileSync } from 'node:fs';
import { parse as parseYaml, YAMLParseError } from 'yaml';
import type { z } from 'zod';
import { registerSecret } from './logger.js';
import { describeUnknownKey, unknownKeys, type UnknownKey } from './strict-keys.js';
import { findUrlCredentials } from './url-credentials.js';
import { misspeltOverrides } from './config-env.js';
import { ConnectorEntry, GatewayConfig, HelpdeskEntry } from './config-schema.js';

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
  const overridesTyped: OverridesTyped = new Map();
  const fromEnv = applyEnvOverrides(raw as Record<string, unknown>, env, label, overridesTyped);
  // OMNIGATE_NATS_URL (one underscore) is not an override; ignored, the replica ran as an island.
  const misspelt = misspeltOverrides(GatewayConfig, env, raw, isTopLevelOverride);
  let loaded: LoadedConfig;
  const refs: References = { whole: new Map(), typed: new Set(), overrides: overridesTyped };
  try {
    loaded = validateReferencesTyped(label, raw, env, refs, validateConnector, validateHelpdesk);
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err;
    // A value an environment variable set is that variable's fault, not the file's.
    const variableOf = (key: string) => [...fromEnv].find(([path]) => key === path || key.startsWith(`${path}.`) || key.startsWith(`${path}[`))?.[1];
    throw configError(err.file, [...misspelt, ...err.problems.map((p) => {
      const variable = variableOf(p.key);
      if (variable) return { key: p.key, problem: `${p.problem} (set by the environment variable ${variable})` };
      const referenced = refs.whole.get(p.key);
      return referenced ? { key: p.key, problem: `${p.problem} (the value of \${${referenced.name}})` } : p;
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

/**
 * Keys whose value is one `${VAR}` reference, and those of them read as a YAML number or boolean.
 * Interpolation makes text, so `port: ${GW_PORT}` was refused as "expected number, received
 * string" without naming the variable. A reference is typed only where the schema refused its text
 * for want of a number or boolean: a numeric secret or id (`phoneNumberId: ${WA_ID}`) stays text.
 */
interface References {
  /** Key → the variable it references, and whether its value reads as a YAML number or boolean. */
  whole: Map<string, { name: string; scalar: boolean }>;
  typed: Set<string>;
  /** OMNIGATE_* overrides read as a number or boolean, with their text: given as text where the schema wants text. */
  overrides?: OverridesTyped;
}

/** Key → where an override set it and the text it was given as (OMNIGATE_NATS__PASS=123456 is a password, not a number). */
type OverridesTyped = Map<string, { node: Record<string, unknown>; field: string; text: string; typed: unknown }>;

function validateReferencesTyped(
  label: string,
  raw: unknown,
  env: NodeJS.ProcessEnv,
  refs: References,
  validateConnector?: ConnectorValidator,
  validateHelpdesk?: HelpdeskValidator,
): LoadedConfig {
  return withReferencesTyped(refs, () => validate(label, raw, env, refs, validateConnector, validateHelpdesk));
}

/**
 * Runs a validation; where it refused a whole reference whose value reads as a number or a
 * boolean, runs it again with that value typed (whatever the schema's wording: a size or a
 * duration takes a number too), and keeps the text where the typed value is refused as well.
 */
function withReferencesTyped<T>(refs: References, run: () => T): T {
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

function validate(
  label: string,
  raw: unknown,
  env: NodeJS.ProcessEnv,
  refs: References,
  validateConnector?: ConnectorValidator,
  validateHelpdesk?: HelpdeskValidator,
): LoadedConfig {
  const interpolated = interpolate(raw, env, label, [], refs);
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

const REFERENCE = /\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-[^}]*)?\}/g;

function interpolate(value: unknown, env: NodeJS.ProcessEnv, file: string, path: Array<string | number>, refs?: References): unknown {
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
function applyEnvOverrides(target: Record<string, unknown>, env: NodeJS.ProcessEnv, file: string, typed?: OverridesTyped): Map<string, string> {
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
  // Typed as `start` types them (`port: ${NATS_PORT}`), or dlq refused a config start accepts.
  const refs: References = { whole: new Map(), typed: new Set() };
  return withReferencesTyped(refs, () => {
    const parsed = GatewayConfig.shape.nats.safeParse((interpolate(natsOnly, env, label, [], refs) as { nats: unknown }).nats);
    if (!parsed.success) throw configError(label, fromZod(parsed.error, 'nats'));
    return parsed.data;
  });
}
