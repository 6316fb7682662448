/**
 * A fast yes for data a zod schema would take exactly as it is. `asIs(schema)` builds, once, a
 * predicate from the schema's own definition (no second description of the shape): true only
 * when `schema.parse(value)` would succeed *and* return a value equal to `value` (no default
 * filled in, no unknown key stripped). Anything else, including every construct it does not know
 * (transforms, refinements, string formats other than patterns, unions without a discriminator),
 * is a no: the caller then parses with zod, whose answer and error messages stay the only ones.
 *
 * Why: the router validates every inbound event, and in the gateway zod's parse of one cost
 * ~20 µs of CPU (bench, BENCHMARKS.md), against ~3 µs in a micro-benchmark: its generic
 * walker is shared by every schema of the process, so its call sites see every shape. A
 * predicate built per schema stays specialised, and the parsed JSON is used without a copy.
 *
 * For JSON values (JSON.parse output): no undefined, no functions, no cycles.
 */
import type { z } from 'zod';

export type AsIs<T> = (value: unknown) => value is T;

type Check = (v: unknown) => boolean;

const never: Check = () => false;

/** The predicate for `schema` (see the file comment). */
export function asIs<S extends z.ZodType>(schema: S): AsIs<z.output<S>> {
  return build(schema) as AsIs<z.output<S>>;
}

/**
 * `schema.safeParse` with the same answers, built once per schema: a value the predicate vouches
 * for is the data itself (no walk, no copy); anything else is zod's to judge, refusals and their
 * messages included. What the router, the read model and the helpdesk adapters read what the
 * gateway itself wrote with.
 */
export function safeParser<S extends z.ZodType>(schema: S): (value: unknown) => z.ZodSafeParseResult<z.output<S>> {
  const vouched = asIs(schema);
  return (value) => (vouched(value) ? { success: true, data: value } : schema.safeParse(value));
}

/** zod 4's definition objects, as far as they are read here. */
interface Def extends Partial<CheckDef> {
  type: string;
  checks?: Array<{ _zod: { def: CheckDef } }>;
  shape?: Record<string, z.ZodType>;
  catchall?: unknown;
  innerType?: z.ZodType;
  element?: z.ZodType;
  keyType?: z.ZodType;
  valueType?: z.ZodType;
  values?: unknown[];
  entries?: Record<string, unknown>;
  options?: z.ZodType[];
  discriminator?: string;
  coerce?: boolean;
}

interface CheckDef {
  check?: string;
  format?: string;
  pattern?: RegExp;
  /** An `overwrite` check's rewrite. */
  tx?: (value: string) => unknown;
  minimum?: number;
  maximum?: number;
  length?: number;
  value?: number;
  inclusive?: boolean;
}

function defOf(schema: z.ZodType): Def {
  return (schema as unknown as { _zod: { def: Def } })._zod.def;
}

function build(schema: z.ZodType): Check {
  const def = defOf(schema);
  if (def.coerce) return never;
  switch (def.type) {
    case 'string':
      return stringCheck(def);
    case 'number':
      return numberCheck(def);
    case 'boolean':
      return noChecks(def) ? (v) => typeof v === 'boolean' : never;
    case 'literal': {
      const values = def.values ?? [];
      return noChecks(def) ? (v) => values.includes(v) : never;
    }
    case 'enum': {
      const values = Object.values(def.entries ?? {});
      // A numeric TypeScript enum also maps its names back: zod leaves those out, left to it here.
      if (values.some((value) => typeof value !== 'string')) return never;
      const known = new Set(values);
      return noChecks(def) ? (v) => known.has(v) : never;
    }
    case 'optional': {
      // Absent, an inner default would be filled in (`.default(x).optional()`): not as is.
      const innerType = defOf(def.innerType!).type;
      if (innerType === 'default' || innerType === 'prefault') return never;
      const inner = build(def.innerType!);
      return noChecks(def) ? (v) => v === undefined || inner(v) : never;
    }
    case 'nullable': {
      const inner = build(def.innerType!);
      return noChecks(def) ? (v) => v === null || inner(v) : never;
    }
    case 'default': {
      // Absent, zod would fill the default in: not as is.
      const inner = build(def.innerType!);
      return noChecks(def) ? (v) => v !== undefined && inner(v) : never;
    }
    case 'array':
      return arrayCheck(def);
    case 'record':
      return recordCheck(def);
    case 'object':
      return objectCheck(def);
    case 'union':
      return def.discriminator === undefined ? never : discriminated(def);
    default:
      return never;
  }
}

function noChecks(def: Def): boolean {
  return def.check === undefined && (def.checks ?? []).length === 0;
}

/** A schema's checks, its own first: `z.email()`, `z.iso.datetime()` and `z.int()` carry theirs in their definition. */
function checksOf(def: Def): CheckDef[] {
  const listed = (def.checks ?? []).map((c) => c._zod.def);
  return def.check === undefined ? listed : [def as CheckDef, ...listed];
}

function stringCheck(def: Def): Check {
  const tests: Array<(s: string) => boolean> = [];
  for (const c of checksOf(def)) {
    if (c.check === 'min_length' && c.minimum !== undefined) tests.push(lengthAtLeast(c.minimum));
    else if (c.check === 'max_length' && c.maximum !== undefined) tests.push(lengthAtMost(c.maximum));
    else if (c.check === 'length_equals' && c.length !== undefined) tests.push(lengthIs(c.length));
    // A pattern is the whole test for these two formats; others (url, email, jwt…) test more.
    else if (c.check === 'string_format' && (c.format === 'regex' || c.format === 'datetime') && c.pattern instanceof RegExp) tests.push(matches(c.pattern));
    // A rewrite that leaves the string as it is (a name without direction overrides): zod returns it unchanged.
    else if (c.check === 'overwrite' && typeof c.tx === 'function') tests.push(unchangedBy(c.tx));
    else return never;
  }
  return (v) => {
    if (typeof v !== 'string') return false;
    for (const t of tests) if (!t(v)) return false;
    return true;
  };
}

// zod counts a string's length in code points (a surrogate pair is one), as here.
const lengthAtLeast = (n: number) => (s: string) => s.length >= n && (s.length >= 2 * n || codePoints(s) >= n);
const lengthAtMost = (n: number) => (s: string) => s.length <= n || codePoints(s) <= n;
const lengthIs = (n: number) => (s: string) => s.length >= n && s.length <= 2 * n && codePoints(s) === n;

function codePoints(s: string): number {
  let count = s.length;
  for (let i = 0; i < s.length - 1; i++) {
    if ((s.charCodeAt(i) & 0xfc00) === 0xd800 && (s.charCodeAt(i + 1) & 0xfc00) === 0xdc00) {
      count--;
      i++;
    }
  }
  return count;
}

function unchangedBy(tx: (s: string) => unknown): (s: string) => boolean {
  return (s) => tx(s) === s;
}

function matches(pattern: RegExp): (s: string) => boolean {
  // Sticky: anchored where zod's test starts it; left to zod.
  if (pattern.sticky) return () => false;
  // Global keeps state between calls: a copy without it tests from the start, as zod resets it.
  const re = new RegExp(pattern.source, pattern.flags.replace('g', ''));
  return (s) => re.test(s);
}

function numberCheck(def: Def): Check {
  const tests: Array<(n: number) => boolean> = [];
  for (const c of checksOf(def)) {
    if (c.check === 'number_format' && c.format === 'safeint') tests.push(Number.isSafeInteger);
    else if (c.check === 'greater_than' && c.value !== undefined) tests.push(c.inclusive ? atLeast(c.value) : above(c.value));
    else if (c.check === 'less_than' && c.value !== undefined) tests.push(c.inclusive ? atMost(c.value) : below(c.value));
    else return never;
  }
  return (v) => {
    if (typeof v !== 'number' || !Number.isFinite(v)) return false;
    for (const t of tests) if (!t(v)) return false;
    return true;
  };
}

const atLeast = (m: number) => (n: number) => n >= m;
const above = (m: number) => (n: number) => n > m;
const atMost = (m: number) => (n: number) => n <= m;
const below = (m: number) => (n: number) => n < m;

function arrayCheck(def: Def): Check {
  const element = build(def.element!);
  const tests: Array<(a: unknown[]) => boolean> = [];
  for (const c of checksOf(def)) {
    if (c.check === 'min_length' && c.minimum !== undefined) tests.push((a) => a.length >= c.minimum!);
    else if (c.check === 'max_length' && c.maximum !== undefined) tests.push((a) => a.length <= c.maximum!);
    else return never;
  }
  return (v) => {
    if (!Array.isArray(v)) return false;
    for (const t of tests) if (!t(v)) return false;
    for (const item of v) if (!element(item)) return false;
    return true;
  };
}

function recordCheck(def: Def): Check {
  // Enum or literal keys make zod require every one of them: left to zod.
  if (defOf(def.keyType!).type !== 'string') return never;
  const key = build(def.keyType!);
  const value = build(def.valueType!);
  if (!noChecks(def)) return never;
  return (v) => {
    if (!isPlainObject(v)) return false;
    for (const k in v) {
      // zod writes each key into a fresh object: "__proto__" would not come out as it went in.
      if (k === '__proto__' || !key(k) || !value(v[k])) return false;
    }
    return true;
  };
}

function objectCheck(def: Def): Check {
  const shape = def.shape ?? {};
  const keys = Object.keys(shape);
  const fields = keys.map((k) => build(shape[k]!));
  const known = new Set(keys);
  if (!noChecks(def)) return never;
  return (v) => {
    if (!isPlainObject(v)) return false;
    for (let i = 0; i < keys.length; i++) if (!fields[i]!(v[keys[i]!])) return false;
    // A key the shape does not name: zod strips it (or refuses it): not as is.
    for (const k in v) if (!known.has(k)) return false;
    return true;
  };
}

function discriminated(def: Def): Check {
  const key = def.discriminator!;
  const byValue = new Map<unknown, Check>();
  for (const option of def.options ?? []) {
    const tag = defOf(option).shape?.[key];
    const values = tag && defOf(tag).type === 'literal' ? defOf(tag).values ?? [] : undefined;
    if (!values) return never;
    const check = build(option);
    for (const value of values) if (!byValue.has(value)) byValue.set(value, check);
  }
  return (v) => {
    if (!isPlainObject(v)) return false;
    const check = byValue.get(v[key]);
    return check !== undefined && check(v);
  };
}

function isPlainObject(v: unknown): v is Record<string, unknown> {
  if (v === null || typeof v !== 'object' || Array.isArray(v)) return false;
  const proto = Object.getPrototypeOf(v) as unknown;
  return proto === Object.prototype || proto === null;
}
