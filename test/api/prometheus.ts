/**
 * A strict parser for the Prometheus text exposition format (0.0.4): throws on any line it does
 * not understand, on samples without a # TYPE (or not named after it), on a family typed twice,
 * on a repeated series, on malformed label escapes or values, and on histograms whose buckets are
 * not ascending, cumulative and closed by +Inf equal to _count. A test that parses /metrics proves the whole output is
 * well-formed, not one line of it.
 */
export interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}
export interface Family {
  type: string;
  help?: string;
  samples: Sample[];
}

const NAME = '[a-zA-Z_:][a-zA-Z0-9_:]*';
const META = new RegExp(`^# (HELP|TYPE) (${NAME})(?: (.*))?$`);
const SAMPLE = new RegExp(`^(${NAME})(?:\\{(.*)\\})? (\\S+)(?: (-?\\d+))?$`);
const LABEL = /([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\\n]|\\[\\"n])*)"(,|$)/y;
/** Prometheus reads values with Go's ParseFloat: Inf and NaN in any case (prom-client writes "Nan"). */
const VALUE = /^(?:[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?|[+-]?inf(?:inity)?|nan)$/i;
const SUFFIXES: Record<string, string[]> = { counter: ['', '_total', '_created'], histogram: ['_bucket', '_sum', '_count', '_created'], summary: ['', '_sum', '_count', '_created'], gauge: [''], untyped: [''] };

export function parsePrometheus(text: string): Map<string, Family> {
  const families = new Map<string, Family>();
  const typed = new Set<string>();
  const series = new Set<string>();
  const familyOf = (sample: string): Family | undefined => {
    for (const [name, f] of families) {
      if ((SUFFIXES[f.type] ?? ['']).some((suffix) => sample === name + suffix)) return f;
    }
    return undefined;
  };
  if (text.length > 0 && !text.endsWith('\n')) throw new Error('exposition must end with a newline');
  text.split('\n').forEach((line, i) => {
    const at = `line ${i + 1}`;
    if (line === '') return;
    if (line.startsWith('#')) {
      const meta = META.exec(line);
      if (!meta) {
        if (/^# (HELP|TYPE)\b/.test(line)) throw new Error(`${at}: malformed ${line}`);
        return; // a plain comment
      }
      const [, kind, name, rest = ''] = meta;
      const f = families.get(name!) ?? { type: 'untyped', samples: [] };
      if (kind === 'TYPE') {
        if (typed.has(name!)) throw new Error(`${at}: second TYPE for ${name}`);
        if (f.samples.length) throw new Error(`${at}: TYPE for ${name} after its samples`);
        if (!SUFFIXES[rest]) throw new Error(`${at}: bad type ${rest}`);
        typed.add(name!);
        f.type = rest;
      } else f.help = rest;
      families.set(name!, f);
      return;
    }
    const m = SAMPLE.exec(line);
    if (!m) throw new Error(`${at}: not a sample: ${line}`);
    const labels: Record<string, string> = {};
    if (m[2]) {
      LABEL.lastIndex = 0;
      while (LABEL.lastIndex < m[2].length) {
        const l = LABEL.exec(m[2]);
        if (!l) throw new Error(`${at}: bad labels: ${m[2]}`);
        if (l[1]! in labels) throw new Error(`${at}: label ${l[1]} twice`);
        labels[l[1]!] = l[2]!.replace(/\\(["\\n])/g, (_s, c: string) => (c === 'n' ? '\n' : c));
      }
    }
    if (!VALUE.test(m[3]!)) throw new Error(`${at}: bad value ${m[3]}`);
    const raw = m[3]!.toLowerCase();
    const value = raw.includes('inf') ? (raw.startsWith('-') ? -Infinity : Infinity) : raw === 'nan' ? NaN : Number(raw);
    const family = familyOf(m[1]!);
    if (!family || !typed.has([...families].find(([, f]) => f === family)![0])) throw new Error(`${at}: sample ${m[1]} has no # TYPE`);
    const key = `${m[1]}{${Object.entries(labels).sort().map(([k, v]) => `${k}=${v}`).join(',')}}`;
    if (series.has(key)) throw new Error(`${at}: series ${key} twice`);
    series.add(key);
    family.samples.push({ name: m[1]!, labels, value });
  });
  for (const [name, f] of families) if (f.type === 'histogram') checkHistogram(name, f);
  return families;
}

function checkHistogram(name: string, f: Family): void {
  const groups = new Map<string, Sample[]>();
  const keyOf = (s: Sample) => JSON.stringify(Object.entries(s.labels).filter(([k]) => k !== 'le').sort());
  for (const s of f.samples) if (s.name === `${name}_bucket`) groups.set(keyOf(s), [...(groups.get(keyOf(s)) ?? []), s]);
  for (const [key, buckets] of groups) {
    const les = buckets.map((b) => (b.labels.le === '+Inf' ? Infinity : Number(b.labels.le)));
    if (les.some((le, i) => Number.isNaN(le) || (i > 0 && le <= les[i - 1]!))) throw new Error(`histogram ${name}${key}: le not ascending`);
    if (les[les.length - 1] !== Infinity) throw new Error(`histogram ${name}${key} lacks the +Inf bucket`);
    if (buckets.some((b, i) => i > 0 && b.value < buckets[i - 1]!.value)) throw new Error(`histogram ${name}${key}: buckets not cumulative`);
    const count = f.samples.find((s) => s.name === `${name}_count` && keyOf(s) === key);
    if (!count || count.value !== buckets[buckets.length - 1]!.value) throw new Error(`histogram ${name}${key}: _count differs from the +Inf bucket`);
  }
}
