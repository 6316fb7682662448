/**
 * Every metric the shipped dashboard and alert rules query exists on a real gateway's /metrics:
 * a renamed metric would otherwise leave an empty panel or an alert that can never fire. Metric
 * names are taken from the PromQL with a small tokenizer (label matchers, ranges, grouping
 * clauses, strings, functions and keywords removed; what is left are metric names).
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parse } from 'yaml';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startGateway, type TestGateway } from '../helpers/gateway.js';

const DIR = join(import.meta.dirname, '../../deploy/observability');
const KEYWORDS = new Set(['and', 'or', 'unless', 'bool', 'offset', 'by', 'without', 'on', 'ignoring', 'group_left', 'group_right', 'inf', 'nan']);

/** Metric names in one PromQL expression. */
export function metricNames(expr: string): string[] {
  const stripped = expr
    .replace(/"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'/g, ' ') // strings (label values, regexes)
    .replace(/\{[^}]*\}/g, ' ') // label matchers
    .replace(/\[[^\]]*\]/g, ' ') // ranges and subqueries
    .replace(/\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)/g, ' ') // grouping label lists
    .replace(/\boffset\s+-?[0-9][0-9a-z]*/gi, ' '); // offset durations (the "m" of 15m is no metric)
  const names = new Set<string>();
  for (const m of stripped.matchAll(/([A-Za-z_:][A-Za-z0-9_:]*)(\s*\()?/g)) {
    if (m[2] || KEYWORDS.has(m[1]!.toLowerCase()) || m[1]!.startsWith('$')) continue; // a function call or keyword
    names.add(m[1]!);
  }
  return [...names];
}

function dashboardExprs(): string[] {
  const dash = JSON.parse(readFileSync(join(DIR, 'omnigate-dashboard.json'), 'utf8')) as { panels: Array<{ targets?: Array<{ expr: string }> }>; templating: { list: Array<{ definition?: string }> } };
  const exprs = dash.panels.flatMap((p) => (p.targets ?? []).map((t) => t.expr));
  for (const v of dash.templating.list) {
    const m = v.definition && /label_values\(([^,]+),/.exec(v.definition);
    if (m) exprs.push(m[1]!);
  }
  return exprs;
}

function ruleExprs(): string[] {
  const rules = parse(readFileSync(join(DIR, 'alerts.yml'), 'utf8')) as { groups: Array<{ rules: Array<{ expr: string }> }> };
  return rules.groups.flatMap((g) => g.rules.map((r) => r.expr));
}

/** Every sample name /metrics can carry: histograms add _bucket, _sum and _count. */
function exportedNames(text: string): Set<string> {
  const names = new Set<string>();
  for (const m of text.matchAll(/^# TYPE (\S+) (\S+)$/gm)) {
    names.add(m[1]!);
    if (m[2] === 'histogram') for (const s of ['_bucket', '_sum', '_count']) names.add(m[1]! + s);
    if (m[2] === 'summary') for (const s of ['_sum', '_count']) names.add(m[1]! + s);
  }
  return names;
}

describe('the tokenizer', () => {
  it('finds metric names and nothing else', () => {
    expect(metricNames('histogram_quantile(0.95, sum by (le, channel) (rate(omnigate_routing_latency_seconds_bucket{channel=~"$channel"}[$__rate_interval])))')).toEqual(['omnigate_routing_latency_seconds_bucket']);
    expect(metricNames('max by (consumer) (omnigate_consumer_lag) > 100 and max by (consumer) (deriv(omnigate_consumer_lag[10m])) > 0')).toEqual(['omnigate_consumer_lag']);
    expect(metricNames('sum(up{job="x"}) / on(instance) group_left(version) build_info')).toEqual(['up', 'build_info']);
    expect(metricNames('increase(a_total[15m]) > 0 or (a_total > 0 unless a_total offset 15m)')).toEqual(['a_total']);
  });
});

describe('dashboard and alert queries against a real gateway', () => {
  let gw: TestGateway;
  let exported: Set<string>;
  let text: string;
  beforeAll(async () => {
    gw = await startGateway({
      api: { tokens: [{ name: 'ops', token: 'metrics-names-token-0123' }] },
      // A webhook nobody listens to and SLA on: their alert series must be there before anything happens.
      webhooks: [{ name: 'crm', url: 'http://127.0.0.1:2/none', secret: 'metric-names-webhook-secret' }],
      router: { sla: { enabled: true } },
    });
    await gw.gateway.sampleNow();
    const res = await fetch(`${gw.httpUrl}/metrics`);
    expect(res.status).toBe(200);
    text = await res.text();
    exported = exportedNames(text);
  }, 60_000);
  afterAll(async () => {
    await gw?.stop();
  }, 60_000);

  it('queries only metrics the gateway exports', () => {
    const used = new Map<string, string>();
    for (const e of [...dashboardExprs(), ...ruleExprs()]) for (const n of metricNames(e)) used.set(n, e);
    expect(used.size).toBeGreaterThan(15);
    const missing = [...used].filter(([n]) => !exported.has(n)).map(([n, e]) => `${n} (in: ${e})`);
    expect(missing).toEqual([]);
  });

  it('exports the series the alerts take increase() of at 0 before the first count', () => {
    // A series that first appeared at 1 shows no increase: the first breach or parked delivery would not fire.
    for (const series of [
      'omnigate_sla_breaches_total{breach="first_response"} 0',
      'omnigate_sla_breaches_total{breach="no_answer"} 0',
      'omnigate_webhook_parked_total{webhook="crm"} 0',
      'omnigate_webhook_retries_total{webhook="crm"} 0',
      'omnigate_dead_letters_total{source="webhook",reason="retries_exhausted"} 0',
      'omnigate_dead_letters_total{source="router",reason="invalid_json"} 0',
      'omnigate_dead_letters_total{source="router",reason="unread_subject"} 0',
    ]) {
      expect(text.split('\n'), series).toContain(series);
    }
  });

  it('covers what the issue asks to watch', () => {
    const used = new Set([...dashboardExprs(), ...ruleExprs()].flatMap(metricNames));
    for (const n of ['omnigate_events_in_total', 'omnigate_routing_latency_seconds_bucket', 'omnigate_consumer_lag', 'omnigate_delivery_failures_total', 'omnigate_connector_state', 'omnigate_connector_up', 'omnigate_dead_letters_total', 'omnigate_sla_breaches_total', 'omnigate_first_response_seconds_bucket', 'omnigate_webhook_parked_total']) {
      expect(used, n).toContain(n);
    }
  });
});
