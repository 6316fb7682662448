/**
 * A strict parser for the Prometheus text exposition format (0.0.4): throws on any line it does
 * not understand, so a test that parses /metrics proves the whole output is well-formed.
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
const SAMPLE = new RegExp(`^(${NAME})(?:\\{(.*)\\})?\\s+(\\S+)(?:\\s+(-?\\d+))?$`);
const LABEL = /\s*([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"\s*(,|$)/y;

export function parsePrometheus(text: string): Map<string, Family> {
  const families = new Map<string, Family>();
  const familyOf = (sample: string) => {
    if (families.has(sample)) return families.get(sample)!;
    for (const suffix of ['_bucket', '_sum', '_count', '_total', '_created']) {
      if (sample.endsWith(suffix)) {
        const f = families.get(sample.slice(0, -suffix.length));
        if (f) return f;
      }
    }
    return undefined;
  };
  text.split('\n').forEach((line, i) => {
    if (line.trim() === '') return;
    const meta = new RegExp(`^# (HELP|TYPE) (${NAME}) ?(.*)$`).exec(line);
    if (meta) {
      const f = families.get(meta[2]!) ?? { type: 'untyped', samples: [] };
      if (meta[1] === 'TYPE') {
        if (!['counter', 'gauge', 'histogram', 'summary', 'untyped'].includes(meta[3]!)) throw new Error(`line ${i + 1}: bad type ${meta[3]}`);
        f.type = meta[3]!;
      } else f.help = meta[3];
      families.set(meta[2]!, f);
      return;
    }
    if (line.startsWith('#')) return;
    const m = SAMPLE.exec(line);
    if (!m) throw new Error(`line ${i + 1}: not a sample: ${line}`);
    const labels: Record<string, string> = {};
    if (m[2]) {
      LABEL.lastIndex = 0;
      let consumed = 0;
      while (consumed < m[2].length) {
        const l = LABEL.exec(m[2]);
        if (!l) throw new Error(`line ${i + 1}: bad labels: ${m[2]}`);
        labels[l[1]!] = l[2]!.replace(/\\n/g, '\n').replace(/\\"/g, '"').replace(/\\\\/g, '\\');
        consumed = LABEL.lastIndex;
      }
    }
    const raw = m[3]!;
    const value = raw === '+Inf' ? Infinity : raw === '-Inf' ? -Infinity : raw === 'NaN' ? NaN : Number(raw);
    if (Number.isNaN(value) && raw !== 'NaN') throw new Error(`line ${i + 1}: bad value ${raw}`);
    const family = familyOf(m[1]!);
    if (!family) throw new Error(`line ${i + 1}: sample ${m[1]} has no # TYPE`);
    family.samples.push({ name: m[1]!, labels, value });
  });
  for (const [name, f] of families) {
    if (f.type === 'histogram') {
      const buckets = f.samples.filter((s) => s.name === `${name}_bucket`);
      if (buckets.length && !buckets.some((b) => b.labels.le === '+Inf')) throw new Error(`histogram ${name} lacks the +Inf bucket`);
    }
  }
  return families;
}
