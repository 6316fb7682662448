/**
 * Configuration: one YAML file, ${VAR} / ${VAR:-default} interpolation for secrets, and
 * OMNIGATE_<SECTION>__<KEY> environment overrides. Validated once at start; every error names
 * the key, the file and what was expected.
 */
import { readFileSync } from 'node:fs';
import { parse as parseYaml, YAMLParseError } from 'yaml';
import type { z } from 'zod';
import { describeUnknownKey, unknownKeys, type UnknownKey } from './strict-keys.js';
import { findUrlCredentials } from './url-credentials.js';
import { misspeltOverrides } from './config-env.js';
import { ConnectorEntry, GatewayConfig, HelpdeskEntry } from './config-schema.js';
import { ConfigError, configError, formatPath, type ConfigProblem } from './config-error.js';
import { applyEnvOverrides, interpolate, isTopLevelOverride, withReferencesTyped, type OverridesTyped, type Readings, type References } from './config-references.js';

export { ConfigError, type ConfigProblem } from './config-error.js';

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
  const refs: References = { whole: new Map(), typed: new Map(), overrides: overridesTyped };
  try {
    loaded = withReferencesTyped(refs, () => validate(label, raw, env, refs, validateConnector, validateHelpdesk));
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err;
    // A value an environment variable set is that variable's fault, not the file's.
    const variableOf = (key: string) => [...fromEnv].find(([path]) => key === path || key.startsWith(`${path}.`) || key.startsWith(`${path}[`))?.[1];
    throw configError(err.file, [...misspelt, ...err.problems.map((p) => {
      const variable = variableOf(p.key);
      if (variable) return { key: p.key, problem: `${p.problem}${notationHint(p.problem, overridesTyped.get(p.key))} (set by the environment variable ${variable})` };
      const referenced = refs.whole.get(p.key);
      return referenced && !UNSET_VARIABLE.test(p.problem) ? { key: p.key, problem: `${p.problem}${notationHint(p.problem, referenced)} (the value of \${${referenced.name}})` } : p;
    })], err.afterSchema);
  }
  if (misspelt.length) throw configError(label, misspelt);
  return loaded;
}

const UNSET_VARIABLE = /^environment variable \S+ is not set/;

/** A variable's `0x1F90` or `9e3` where a number is expected: say which numbers are read, not the value (it may be a secret). */
function notationHint(problem: string, readings: Readings | undefined): string {
  return readings?.otherNotation && /expected number/.test(problem) ? '; a number from the environment is read in plain decimal digits only (no 0x, 0o, exponent, "_" or leading zero)' : '';
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
  refs: References,
  validateConnector?: ConnectorValidator,
  validateHelpdesk?: HelpdeskValidator,
): LoadedConfig {
  const unset: ConfigProblem[] = [];
  const interpolated = interpolate(raw, env, label, [], refs, unset);
  // Every problem in one pass: unknown keys first (a misspelt key usually also leaves a required
  // one missing, and the typo is the news), then URL credentials and the schema's own findings,
  // then each connector and helpdesk entry, even when a section before them was wrong.
  const problems: ConfigProblem[] = [...fromUnknown(unknownKeys(GatewayConfig, interpolated), '')];
  for (const c of findUrlCredentials(interpolated)) problems.push({ key: c.path, problem: c.message });
  const parsed = GatewayConfig.safeParse(interpolated);
  if (!parsed.success) {
    const said = new Set(problems.map((p) => p.key));
    problems.push(...fromZod(parsed.error, '', interpolated).filter((p) => !said.has(p.key)));
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
    else problems.push(...entryProblems(result, `connectors[${i}]`, `connector type "${entry.type}"`, entry));
  }
  const helpdesks: LoadedConfig['helpdesks'] = [];
  const helpdeskIds = new Set<string>();
  for (const [i, entry, commonKeysRight] of helpdeskEntries) {
    if (commonKeysRight && helpdeskIds.has(entry.id)) problems.push({ key: `helpdesks[${i}].id`, problem: `duplicate helpdesk id "${entry.id}"` });
    helpdeskIds.add(entry.id);
    if (!validateHelpdesk || !entry.enabled) continue;
    const result = validateHelpdesk(entry);
    if (result.ok) helpdesks.push({ entry, options: result.value });
    else problems.push(...entryProblems(result, `helpdesks[${i}]`, `helpdesk type "${entry.type}"`, entry));
  }
  if (unset.length) {
    // A key whose variable is not set holds the reference's text: what the schema says of that text is noise.
    const under = (key: string) => unset.some((u) => key === u.key || key.startsWith(`${u.key}.`) || key.startsWith(`${u.key}[`));
    problems.splice(0, problems.length, ...unset, ...problems.filter((p) => !under(p.key)));
  }
  if (problems.length) throw configError(label, problems, parsed.success && !unset.length ? parsed.data : undefined);
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

function valueAt(root: unknown, path: ReadonlyArray<PropertyKey>): unknown {
  let at = root;
  for (const p of path) {
    if (at === null || typeof at !== 'object') return undefined;
    at = (at as Record<PropertyKey, unknown>)[p];
  }
  return at;
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** What is wrong with one connector or helpdesk entry its own schema refused: unknown keys first, then the schema's findings. */
function entryProblems(result: { unknownType: string[] } | { unknownKeys: UnknownKey[]; error?: z.ZodError } | { ok: false; error: z.ZodError }, prefix: string, what: string, entry: unknown): ConfigProblem[] {
  if ('unknownType' in result) return [{ key: `${prefix}.type`, problem: `unknown ${what}; expected one of: ${result.unknownType.join(', ')}` }];
  const unknown = 'unknownKeys' in result ? fromUnknown(result.unknownKeys, prefix) : [];
  const said = new Set(unknown.map((p) => p.key));
  // A strict schema's own "Unrecognized key" repeats what the unknown-key check said with a suggestion.
  const issues = (result.error?.issues ?? []).filter((i) => !(unknown.length && i.code === 'unrecognized_keys'));
  return [...unknown, ...issues.map((issue) => ({ key: formatPath(prefix, issue.path), problem: explain(issue, entry) })).filter((p) => !said.has(p.key))];
}

function fromUnknown(unknown: UnknownKey[], prefix: string): ConfigProblem[] {
  return unknown.map((u) => ({ key: formatPath(prefix, u.path), problem: describeUnknownKey(u) }));
}

function fromZod(error: z.ZodError, prefix: string, root?: unknown): ConfigProblem[] {
  return error.issues.map((issue) => ({ key: formatPath(prefix, issue.path), problem: explain(issue, root) }));
}

/**
 * A union (duration, size) says "Invalid input"; the branch that matched the input's type says
 * what is expected. An unquoted `token: 0x1F90` in the file is a number to YAML (8080): refused
 * with the advice to quote it, not taken as its source text, since every other reader of the file
 * (yq, Helm, an editor's formatter) takes it for 8080 too and may write it back that way.
 */
function explain(issue: z.core.$ZodIssue, root?: unknown): string {
  if (issue.code === 'invalid_type' && issue.expected === 'string') {
    const value = valueAt(root, issue.path);
    const key = String(issue.path.at(-1) ?? 'key');
    if (typeof value === 'number' || typeof value === 'boolean') {
      return `expected text, but YAML reads this unquoted value as ${typeof value === 'number' ? 'a number' : 'a boolean'}: put it in quotes (${key}: "…") to keep it as written`;
    }
  }
  if (issue.code !== 'invalid_union' || !('errors' in issue)) return issue.message;
  const branches = (issue.errors as z.core.$ZodIssue[][]).flat();
  const specific = branches.find((b) => b.code !== 'invalid_type') ?? branches[0];
  return specific ? specific.message : issue.message;
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
  const overrides: OverridesTyped = new Map();
  applyEnvOverrides(natsOnly, Object.fromEntries(Object.entries(env).filter(([k]) => k.startsWith('OMNIGATE_NATS__'))), label, overrides);
  const misspelt = misspeltOverrides(GatewayConfig, env, raw, isTopLevelOverride).filter((p) => p.key.startsWith('nats.'));
  if (misspelt.length) throw configError(label, misspelt);
  // Typed as `start` types them (`port: ${NATS_PORT}`), or dlq refused a config start accepts.
  const refs: References = { whole: new Map(), typed: new Map(), overrides };
  return withReferencesTyped(refs, () => {
    const { nats } = interpolate(natsOnly, env, label, [], refs) as { nats: unknown };
    const parsed = GatewayConfig.shape.nats.safeParse(nats);
    if (!parsed.success) throw configError(label, fromZod(parsed.error, 'nats', nats));
    return parsed.data;
  });
}
