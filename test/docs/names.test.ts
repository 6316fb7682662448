/**
 * Every name README.md and docs/** tell an admin to type or look for exists in the code: metrics,
 * alerts, error codes, config keys, CLI commands and options, npm scripts, NATS subjects and the
 * files the docs point to. A rename in src/ without the docs fails here, not at a reader.
 */
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { parse } from 'yaml';
import { z } from 'zod';
import { describe, expect, it } from 'vitest';
import { GatewayConfig } from '../../src/core/config-schema.js';
import { ROOT, blocks, docFiles } from './doc-blocks.js';

const docs = docFiles().map((file) => ({ file, text: readFileSync(join(ROOT, file), 'utf8') }));

function tree(dir: string, out: string[] = []): string[] {
  for (const e of readdirSync(join(ROOT, dir), { withFileTypes: true })) {
    const p = join(dir, e.name);
    if (e.isDirectory()) tree(p, out);
    else out.push(p);
  }
  return out;
}
const srcFiles = tree('src');
const src = srcFiles.filter((f) => /\.(ts|mjs|js|json|html|css)$/.test(f)).map((f) => readFileSync(join(ROOT, f), 'utf8')).join('\n');

/** Each match of `re` (group 1) in the docs, with where it is. */
function named(re: RegExp, text: (d: { file: string; text: string }) => string = (d) => d.text): Array<{ name: string; at: string }> {
  return docs.flatMap((d) => [...text(d).matchAll(re)].map((m) => ({ name: m[1]!, at: `${d.file}:${d.text.slice(0, d.text.indexOf(m[0])).split('\n').length}` })));
}
const unknown = (found: Array<{ name: string; at: string }>, known: (n: string) => boolean) => [...new Set(found.filter((f) => !known(f.name)).map((f) => `${f.at} ${f.name}`))];

describe('names in the docs exist in the code', () => {
  it('metrics', () => {
    const found = named(/\b(omnigate_[a-z0-9_]+)/g);
    expect(found.length).toBeGreaterThan(20);
    expect(unknown(found, (n) => src.includes(n) || src.includes(n.replace(/_(bucket|sum|count)$/, '')))).toEqual([]);
  });

  it('alerts', () => {
    const rules = parse(readFileSync(join(ROOT, 'deploy/observability/alerts.yml'), 'utf8')) as { groups: Array<{ rules: Array<{ alert?: string }> }> };
    const alerts = new Set(rules.groups.flatMap((g) => g.rules.map((r) => r.alert)));
    // `$OmnigateParked` is an IMAP keyword, not an alert.
    expect(unknown(named(/(?<!\$)\b(Omnigate[A-Z][A-Za-z]+)\b/g), (n) => alerts.has(n))).toEqual([]);
  });

  it('error codes in documented answers', () => {
    const found = named(/"code"\s*:\s*"([a-z_]+)"/g);
    expect(found.length).toBeGreaterThan(5);
    expect(unknown(found, (n) => src.includes(`'${n}'`) || src.includes(`"${n}"`))).toEqual([]);
  });

  it('npm scripts', () => {
    const scripts = (JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { scripts: Record<string, string> }).scripts;
    expect(unknown(named(/npm run ([a-z:-]+)/g), (n) => n in scripts)).toEqual([]);
  });

  it('CLI commands and options', () => {
    const usage = /const USAGE = `([^`]*)`/.exec(readFileSync(join(ROOT, 'src/cli.ts'), 'utf8'))![1]!;
    const commands = new Set([...usage.matchAll(/omnigate ([a-z-]+)/g)].map((m) => m[1]!));
    const options = new Set([...usage.matchAll(/(--[a-z-]+)/g)].map((m) => m[1]!));
    // In code blocks and `code`: prose says "omnigate" of the product too.
    // Shell lines and `code` spans that are a command: prose and log lines say "omnigate" too.
    const code = (d: { file: string; text: string }) => [...blocks(d.file).filter((b) => b.lang === 'sh').map((b) => b.text), ...[...d.text.matchAll(/`([^`\n]+)`/g)].map((m) => m[1]!)].join('\n');
    const calls = named(/^(?:omnigate|node dist\/cli\.js) ((?:[a-z][a-z-]*)(?: \[?--?[a-z-]+(?: [A-Z0-9][A-Za-z0-9:.-]*)?\]?)*)/gm, code);
    expect(calls.length).toBeGreaterThan(5);
    // A log line the gateway writes (`omnigate started`) is no command.
    expect(unknown(calls, (call) => src.includes(`'omnigate ${call}'`) || commands.has(call.split(' ')[0]!) && [...call.matchAll(/\s\[?(--?[a-z-]+)/g)].every((m) => options.has(m[1]!) || m[1] === '--help'))).toEqual([]);
  });

  it('config keys', () => {
    const schema = z.toJSONSchema(GatewayConfig, { io: 'input', unrepresentable: 'any' }) as Record<string, any>;
    const paths = new Set<string>();
    const walk = (s: any, p: string): void => {
      if (!s || typeof s !== 'object') return;
      for (const k of ['anyOf', 'oneOf', 'allOf']) for (const x of s[k] ?? []) walk(x, p);
      if (s.items) walk(s.items, p);
      if (s.additionalProperties && typeof s.additionalProperties === 'object') walk(s.additionalProperties, `${p}.*`);
      for (const [k, v] of Object.entries(s.properties ?? {})) {
        paths.add(p ? `${p}.${k}` : k);
        walk(v, p ? `${p}.${k}` : k);
      }
    };
    walk(schema, '');
    const sections = [...paths].filter((p) => !p.includes('.') && !['connectors', 'helpdesks'].includes(p));
    // `router.sla.firstResponse`, `api.tokens[].admin`; connectors' and helpdesks' own keys are the
    // adapters' schemas (their examples pass check-config in examples.test.ts).
    const found = named(new RegExp(`\`((?:${sections.join('|')})(?:\\.[A-Za-z_*]+|\\[\\d*\\])+)`, 'g'));
    expect(found.length).toBeGreaterThan(50);
    // Loop, lease and column names share a section's prefix (`router.partition`, `tickets.last_seq`): named in src as such.
    const known = (n: string) => {
      const key = n.replace(/\[\d*\]/g, '').replace(/\.\*$/, '');
      return paths.has(key) || [...paths].some((p) => p.replace(/\.\*/g, '') === key) || src.includes(`'${key}`) || src.includes(`${key}`.replace(/^tickets\./, ''));
    };
    expect(unknown(found, known)).toEqual([]);
  });

  it('NATS subjects', () => {
    const subjects = readFileSync(join(ROOT, 'src/core/subjects.ts'), 'utf8');
    // Followed by a token or a wildcard: "omni.t-1042.5f1c…@shop" is a Message-ID of ours.
    const found = named(/\b(omni\.[a-z]+)(?=[.`'"\s>*])/g);
    expect(unknown(found, (n) => subjects.includes(`'${n}.`) || subjects.includes(`\`${n}.`) || subjects.includes(`'${n}'`))).toEqual([]);
  });

  it('files the docs point to', () => {
    const all = [...tree('src'), ...tree('test'), ...tree('scripts'), ...tree('deploy'), ...tree('config'), ...tree('docs'), ...tree('bench')];
    const found = named(/`((?:[\w.-]+\/)*[\w-]+(?:\.test)?\.(?:ts|mjs|sh|yml))`/g);
    // `../rate-limit-state.ts` is relative to the channel's folder: its name is enough.
    for (const f of found) f.name = f.name.replace(/^(?:\.\.\/)+/, '');
    expect(found.length).toBeGreaterThan(20);
    expect(unknown(found, (n) => (existsSync(join(ROOT, n)) && statSync(join(ROOT, n)).isFile()) || all.some((f) => f.endsWith(`/${n}`)))).toEqual([]);
  });
});
