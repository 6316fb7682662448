/**
 * Unknown keys in a configuration are mistakes: a misspelt `cssat:` would otherwise be dropped by
 * the schema and the feature stay off without a word. This walks a value alongside the zod schema
 * that will parse it and reports every key that schema does not know, with the nearest known key
 * at that level as a suggestion. It reads the schema's own shape, so keys added to any schema
 * (core or a connector's options) are known without a list kept here. Objects that accept any
 * key (`.passthrough()` / `.loose()`, records) are not checked at their own level.
 */
import type { z } from 'zod';

export interface UnknownKey {
  path: Array<string | number>;
  key: string;
  suggestion?: string;
  known: string[];
}

type Def = { type: string; [k: string]: unknown };
const defOf = (s: unknown): Def | undefined => (s as { _zod?: { def?: Def } })?._zod?.def;

/**
 * Every unknown key in `value` for `schema`, in document order, or the first `limit` of them.
 * `extraKnown` adds keys accepted at the top level. A request body is refused naming its first
 * one: with no limit, each of 150,000 unknown keys got a suggestion (an edit distance to every
 * known key), 1.5 s of the event loop for one 1.7 MB body.
 */
export function unknownKeys(schema: z.ZodType, value: unknown, extraKnown: string[] = [], limit = Infinity): UnknownKey[] {
  const out: UnknownKey[] = [];
  walk(schema, value, [], out, extraKnown, limit);
  return out;
}

export function describeUnknownKey(u: UnknownKey): string {
  if (u.suggestion) return `unknown key "${u.key}"; did you mean "${u.suggestion}"?`;
  return `unknown key "${u.key}"; known keys here: ${u.known.join(', ') || '(none)'}`;
}

function walk(schema: unknown, value: unknown, path: Array<string | number>, out: UnknownKey[], extraKnown: string[] = [], limit = Infinity): void {
  const def = defOf(schema);
  if (!def || value === undefined || value === null || out.length >= limit) return;
  switch (def.type) {
    case 'optional':
    case 'nullable':
    case 'default':
    case 'prefault':
    case 'catch':
    case 'readonly':
    case 'nonoptional':
      return walk(def.innerType, value, path, out, extraKnown, limit);
    case 'pipe':
      return walk(def.in, value, path, out, extraKnown, limit);
    case 'lazy':
      return walk((def.getter as () => unknown)(), value, path, out, extraKnown, limit);
    case 'intersection': {
      // Keys known to either side are known; check each side's nested values only.
      const known = [...objectKeys(def.left), ...objectKeys(def.right)];
      if (isPlainObject(value) && known.length) {
        const filtered = Object.fromEntries(Object.entries(value).filter(([k]) => known.includes(k)));
        walk(def.left, filtered, path, out, [], limit);
        walk(def.right, filtered, path, out, [], limit);
      }
      return;
    }
    case 'array':
      if (Array.isArray(value)) value.forEach((v, i) => walk(def.element, v, [...path, i], out, [], limit));
      return;
    case 'record':
      if (isPlainObject(value)) for (const [k, v] of Object.entries(value)) walk(def.valueType, v, [...path, k], out, [], limit);
      return;
    case 'union':
      return walkUnion(def, value, path, out, limit);
    case 'object': {
      if (!isPlainObject(value)) return;
      const shape = def.shape as Record<string, unknown>;
      const catchall = defOf(def.catchall);
      const strict = !catchall || catchall.type === 'never';
      const known = [...Object.keys(shape), ...extraKnown];
      // for…in, not Object.entries: a body of 150,000 keys is refused at its first unknown one
      // without an array of all of them being made first (for each union branch).
      for (const k in value) {
        if (out.length >= limit) return;
        if (!Object.hasOwn(value, k)) continue;
        const v = value[k];
        if (Object.hasOwn(shape, k)) walk(shape[k], v, [...path, k], out, [], limit);
        else if (extraKnown.includes(k)) continue;
        else if (strict) out.push({ path: [...path, k], key: k, suggestion: nearest(k, known), known });
      }
      return;
    }
    default:
      return;
  }
}

/** A union of objects: check against the branch the value is meant for (the discriminator, else the closest). */
const UNION_COUNT = 32;

function walkUnion(def: Def, value: unknown, path: Array<string | number>, out: UnknownKey[], limit: number): void {
  const options = def.options as unknown[];
  const candidates = options.filter((o) => objectKeys(o).length > 0 || defOf(o)?.type === 'array');
  if (!candidates.length) return;
  const disc = def.discriminator as string | undefined;
  if (disc && isPlainObject(value)) {
    const branch = candidates.find((o) => {
      const d = literalOf(unwrapObject(o)?.shape?.[disc]);
      return d !== undefined && (d.values as unknown[]).includes(value[disc]);
    });
    if (branch) return walk(branch, value, path, out, [], limit);
  }
  // The branch with the fewest unknown keys is the one meant; counted up to UNION_COUNT at least,
  // so a limit of one still tells a typo in one branch from another branch's keys.
  let best: UnknownKey[] | undefined;
  for (const o of candidates) {
    const found: UnknownKey[] = [];
    walk(o, value, path, found, [], Math.max(UNION_COUNT, limit - out.length));
    if (!best || found.length < best.length) best = found;
  }
  for (const u of best ?? []) {
    if (out.length >= limit) break;
    out.push(u);
  }
}

/** The literal a discriminator field holds, through `.default()`/`.optional()` (`type: z.literal('message').default('message')`). */
function literalOf(schema: unknown): Def | undefined {
  const d = defOf(schema);
  if (!d) return undefined;
  if (d.type === 'literal') return d;
  if (['optional', 'nullable', 'default', 'prefault', 'catch', 'readonly', 'nonoptional'].includes(d.type)) return literalOf(d.innerType);
  return undefined;
}

function unwrapObject(schema: unknown): { shape: Record<string, unknown> } | undefined {
  const def = defOf(schema);
  if (!def) return undefined;
  if (def.type === 'object') return { shape: def.shape as Record<string, unknown> };
  if (['optional', 'nullable', 'default', 'prefault', 'catch', 'readonly', 'nonoptional'].includes(def.type)) return unwrapObject(def.innerType);
  if (def.type === 'pipe') return unwrapObject(def.in);
  return undefined;
}

function objectKeys(schema: unknown): string[] {
  return Object.keys(unwrapObject(schema)?.shape ?? {});
}

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** The known key closest to `key` (case-insensitive Levenshtein), if it is close enough to be a typo. */
export function nearest(key: string, known: string[]): string | undefined {
  let best: string | undefined;
  let bestD = Infinity;
  for (const k of known) {
    const d = levenshtein(key.toLowerCase(), k.toLowerCase());
    if (d < bestD) [best, bestD] = [k, d];
  }
  return best !== undefined && bestD <= Math.max(2, Math.floor(key.length / 3)) ? best : undefined;
}

function levenshtein(a: string, b: string): number {
  let prev = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const cur = [i];
    for (let j = 1; j <= b.length; j++) cur[j] = Math.min(prev[j]! + 1, cur[j - 1]! + 1, prev[j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1));
    prev = cur;
  }
  return prev[b.length]!;
}
