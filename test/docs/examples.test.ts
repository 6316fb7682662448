/**
 * The examples in README.md and docs/** still work: admins copy them as they are. Every YAML
 * block is a gateway config that passes the gateway's own check (loadAll, what `omnigate
 * check-config` runs) with its ${VARS} set; every JSON event example fits its published schema
 * (docs/schema); every curl command is sent to a running gateway (throwaway nats-server, PGlite)
 * and answers with the status and top-level keys its comment documents.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parse } from 'yaml';
import { Ajv2020 } from 'ajv/dist/2020.js';
import type { ValidateFunction } from 'ajv';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { jetstream } from '@nats-io/jetstream';
import { loadAll } from '../../src/cli.js';
import { ConfigError } from '../../src/core/config-error.js';
import { startGateway, type TestGateway } from '../helpers/gateway.js';
import { pgliteDir } from '../helpers/sql.js';
import { testTempDir } from '../helpers/temp-dirs.js';
import { until } from '../helpers/until.js';
import { ROOT, blocks, curlCommands, docFiles, innerKeys, natsRequests, shellWords, topLevelKeys, type Block } from './doc-blocks.js';

const all: Block[] = docFiles().flatMap(blocks);
const where = (b: { file: string; line: number }) => `${b.file}:${b.line}`;

/** YAML blocks that are not gateway configs: what other tools read. */
const NOT_CONFIG: Record<string, string> = {
  services: 'a Docker Compose file (test/deploy covers compose files)',
  livenessProbe: 'Kubernetes probes of a pod spec',
};

/** A value for each ${VAR} a config example references; secrets must be long enough to pass. */
function placeholderEnv(text: string): Record<string, string> {
  const env: Record<string, string> = {};
  for (const m of text.matchAll(/\$\{([A-Z0-9_]+)\}/g)) {
    env[m[1]!] = m[1] === 'TELEGRAM_SUPPORT_BOT_TOKEN' ? '123456:ABCdefGhIJKlmNoPQRsTUVwxyZ0123456' : `docs-example-${m[1]!.toLowerCase()}-0123456789`;
  }
  return env;
}

describe('configuration examples', () => {
  const yaml = all.filter((b) => b.lang === 'yaml' || b.lang === 'yml');
  it('finds them', () => expect(yaml.length).toBeGreaterThan(5));
  for (const b of yaml) {
    const top = Object.keys((parse(b.text) as Record<string, unknown> | null) ?? {});
    const skip = top.map((k) => NOT_CONFIG[k]).find(Boolean);
    it.skipIf(skip)(`${where(b)} passes check-config${skip ? ` (skipped: ${skip})` : ''}`, async () => {
      const file = join(testTempDir('omnigate-doc-config-'), 'omnigate.yaml');
      writeFileSync(file, b.text);
      // Only the placeholders' variables: an OMNIGATE_* of the test run must not change the verdict.
      // The refusal's own text in the failure: it names the key as the reader would see it.
      const verdict = await loadAll(file, placeholderEnv(b.text)).then(() => 'valid', (err: unknown) => (err instanceof ConfigError ? err.message : Promise.reject(err)));
      expect(verdict === 'valid' ? [] : [verdict], where(b)).toEqual([]);
    });
  }
});

/** Event examples by their "type" → the schema published for them. */
const SCHEMA_OF: Record<string, string> = {
  'message.inbound': 'inbound-event',
  'message.edited': 'inbound-event',
  'message.outbound': 'outbound-message',
  'delivery.status': 'delivery-status',
  'ticket.message': 'ticket-event',
  'ticket.erased': 'ticket-erased-event',
  'connector.state': 'connector-state-event',
  'audit.erasure': 'audit-erasure-event',
  'audit.export': 'audit-export-event',
  'conversation.state': 'conversation-state-event',
  'dead-letter': 'dead-letter',
};

/** True where the example elides on purpose ("9f2c…", { "…": "…" }): no schema can hold it to a pattern. */
function elided(doc: unknown, path: string): boolean {
  let v: unknown = doc;
  for (const part of path.split('/').slice(1)) {
    if (typeof v === 'string' && v.includes('…')) return true;
    v = (v as Record<string, unknown> | undefined)?.[part.replace(/~1/g, '/').replace(/~0/g, '~')];
  }
  return (typeof v === 'string' && v.includes('…')) || (typeof v === 'object' && v !== null && '…' in v);
}

describe('event examples', () => {
  const ajv = new Ajv2020({ strict: false, allErrors: true, validateFormats: false });
  const compiled = new Map<string, ValidateFunction>();
  const typed = all.filter((b) => b.lang === 'json').flatMap((b) => {
    const doc = JSON.parse(b.text) as Record<string, unknown>;
    return typeof doc.type === 'string' && doc.v === 1 ? [{ b, doc, type: doc.type }] : [];
  });
  it('finds them', () => expect(typed.length).toBeGreaterThan(8));
  for (const { b, doc, type } of typed) {
    it(`${where(b)} (${type}) fits docs/schema`, () => {
      const name = SCHEMA_OF[type];
      expect(name, `no schema known for ${type}`).toBeDefined();
      let validate = compiled.get(name!);
      if (!validate) compiled.set(name!, (validate = ajv.compile(JSON.parse(readFileSync(join(ROOT, 'docs/schema', `${name}.json`), 'utf8')) as object)));
      validate(doc);
      const errors = (validate.errors ?? []).filter((e) => !elided(doc, e.instancePath) && e.keyword !== 'oneOf' && e.keyword !== 'anyOf' && e.keyword !== 'if' && e.keyword !== 'const');
      // A oneOf (inbound event kinds) reports each branch's errors: one branch must have none.
      const branches = new Map<string, string[]>();
      for (const e of errors) {
        const m = /^#\/oneOf\/(\d+)/.exec(e.schemaPath);
        const key = m ? m[1]! : 'all';
        branches.set(key, [...(branches.get(key) ?? []), `${e.instancePath} ${e.message}`]);
      }
      const fitting = !branches.has('all') && (branches.size === 0 || [...(validate.schema as { oneOf?: unknown[] }).oneOf?.keys() ?? []].some((i) => !branches.has(String(i)) && typeMatches(validate.schema, i, type)));
      expect(fitting ? [] : [...branches.values()].flat(), where(b)).toEqual([]);
      expect(unknownKeys(doc, validate.schema as JsonSchema), `${where(b)}: keys docs/schema/${name}.json does not have`).toEqual([]);
    });
  }
});

type JsonSchema = { $ref?: string; properties?: Record<string, JsonSchema>; items?: JsonSchema; oneOf?: JsonSchema[]; anyOf?: JsonSchema[]; allOf?: JsonSchema[]; $defs?: Record<string, JsonSchema> };

/**
 * Keys of the example its schema does not know: the published schemas allow unknown keys (readers
 * must tolerate additions), so a misspelt or renamed field would pass validation.
 */
export function unknownKeys(doc: unknown, schema: JsonSchema, root: JsonSchema = schema, path = ''): string[] {
  if (typeof doc !== 'object' || doc === null) return [];
  const alternatives = (s: JsonSchema): JsonSchema[] => {
    const r = s.$ref ? root.$defs?.[s.$ref.split('/').pop()!] ?? s : s;
    return [r, ...[...(r.oneOf ?? []), ...(r.anyOf ?? []), ...(r.allOf ?? [])].flatMap(alternatives)];
  };
  const all = alternatives(schema);
  if (Array.isArray(doc)) {
    const items = all.flatMap((s) => (s.items ? [s.items] : []));
    return items.length ? doc.flatMap((d, i) => unknownKeys(d, { anyOf: items }, root, `${path}/${i}`)) : [];
  }
  const props = all.filter((s) => s.properties);
  if (!props.length) return []; // a free map (handles, meta)
  return Object.entries(doc).flatMap(([k, v]) => {
    if (k === '…') return [];
    const known = props.filter((s) => k in s.properties!).map((s) => s.properties![k]!);
    return known.length ? unknownKeys(v, { anyOf: known }, root, `${path}/${k}`) : [`${path}/${k}`];
  });
}

function typeMatches(schema: unknown, branch: number, type: string): boolean {
  const s = (schema as { oneOf: Array<{ properties?: { type?: { const?: string; enum?: string[] } } }> }).oneOf[branch]?.properties?.type;
  return !s || s.const === type || (s.enum ?? []).includes(type);
}

const TOKEN = 'docs-example-api-token-0123456789';
const SITE_SECRET = 'docs-example-site-form-secret-0123456789';
const VARS: Record<string, string> = {
  H: `Authorization: Bearer ${TOKEN}`,
  ADMIN: `Authorization: Bearer ${TOKEN}`,
  TOKEN,
  DPO_TOKEN: TOKEN,
  OMNIGATE_API_TOKEN: TOKEN,
  SITE_FORM_SECRET: SITE_SECRET,
};

interface Sent {
  method: string;
  url: string;
  headers: Record<string, string>;
  body?: string | Buffer | FormData;
}

/** The files the examples upload, as a reader would have them (a PDF is typed by its first bytes). */
const FILES_DIR = testTempDir('omnigate-doc-files-');
for (const name of ['invoice.pdf', 'act.pdf']) writeFileSync(join(FILES_DIR, name), `%PDF-1.4\n% ${name}\n%%EOF\n`);
const readerFile = (name: string) => readFileSync(join(FILES_DIR, name));
/** Command substitutions the examples use, done as the shell would. */
const SUBSTITUTIONS = { "$(node -p 'encodeURIComponent(process.argv[1])' 'счёт.pdf')": encodeURIComponent('счёт.pdf') };

/** The request one curl command makes, or why the test cannot send it as written. */
export function curlRequest(words: string[], base: string): Sent | string {
  const headers: Record<string, string> = {};
  let method: string | undefined;
  let url: string | undefined;
  let get = false;
  const data: string[] = [];
  let binary: Buffer | undefined;
  let form: FormData | undefined;
  for (let i = 1; i < words.length; i++) {
    const w = words[i]!;
    if (w === '-H') {
      const h = words[++i]!;
      const colon = h.indexOf(':');
      headers[h.slice(0, colon).trim().toLowerCase()] = h.slice(colon + 1).trim();
    } else if (w === '-X') method = words[++i];
    else if (w === '--data-binary' && words[i + 1]!.startsWith('@')) binary = readerFile(words[++i]!.slice(1));
    else if (w === '-d' || w === '--data-binary') data.push(words[++i]!);
    else if (w === '--data-urlencode') data.push(encodeURIComponent(words[++i]!).replace(/%3D/, '='));
    else if (w === '--get') get = true;
    else if (w === '-F') {
      // name=value, or name=@file;type=mime: a file part.
      const [, name, value] = /^([^=]+)=(.*)$/.exec(words[++i]!)!;
      form ??= new FormData();
      const file = /^@([^;]+)(?:;type=(.+))?$/.exec(value!);
      if (file) form.append(name!, new Blob([readerFile(file[1]!)], { type: file[2] ?? 'application/octet-stream' }), file[1]);
      else form.append(name!, value!);
    }
    else if (w === '-N' || w === '-OJ' || w === '-s') continue;
    else if (w === '>') break; // saved to a file: the answer is the same
    else if (w.startsWith('-')) return `curl option ${w} is not known to this test`;
    else url = w;
  }
  if (!url) return 'no URL';
  if (data.some((d) => d.startsWith('@'))) return 'a body from a file the reader has';
  if (/…|<|%E2%80%A6/.test(url) || data.some((d) => d.includes('…'))) return 'placeholders (…, <id>) to fill in';
  let full = `${base}${url.replace(/^(?:https?:\/\/)?localhost:8080/, '')}`;
  if (get && data.length) full += (full.includes('?') ? '&' : '?') + data.join('&');
  const body = binary ?? form ?? (!get && data.length ? data.join('&') : undefined);
  if (typeof body === 'string') headers['content-type'] ??= 'application/x-www-form-urlencoded';
  return { method: method ?? (body !== undefined ? 'POST' : 'GET'), url: full, headers, body };
}

/**
 * Examples that show what a situation this gateway is not in answers (a required connector whose
 * login fails): by the documented answer they name, with the reason.
 */
const SITUATIONS: Array<[RegExp, string]> = [[/required connector email\/support auth_failed/, 'a required email connector whose login fails']];

/** A documented error code ("code":"ticket_not_found") is the one the answer carries; ok too. */
function expectSameCode(documented: string, answer: unknown, at: string): void {
  const text = JSON.stringify(answer);
  const code = /"code"\s*:\s*"([a-z_]+)"/.exec(documented)?.[1];
  if (code) expect(text, at).toContain(`"code":"${code}"`);
  const ok = /"ok"\s*:\s*(true|false)/.exec(documented)?.[1];
  if (ok) expect(text, at).toContain(`"ok":${ok}`);
}

/** Keys the examples show for a situation this gateway is not in: a connector on standby. */
const SITUATIONAL = new Set(['standbyUntil', 'detail']);

/** Ids the examples name that exist here under other names: what the reader types for their own. */
interface Own {
  deadLetters: number[];
  contact: string;
  /** The file uploaded by the example before (its 201): the examples after it send it. */
  upload: { objectKey: string; ref: string; size: number };
}

function ownIds(source: string, own: Own): string {
  const { deadLetters, contact, upload } = own;
  return source
    .replace(/"objectKey":"sha256\/9f2c…"/g, `"objectKey":"${upload.objectKey}"`)
    .replace(/"size":48213/g, `"size":${upload.size}`)
    .replace(/\/v1\/attachments\/ref\/4be1…$/, `/v1/attachments/${upload.ref}`)
    .replace(/\/contacts\/(?:c_[A-Za-z0-9]+…|<contact id>)\//, `/contacts/${contact}/`)
    .replace(/\/contacts\/c_[A-Za-z0-9]+…$/, `/contacts/${contact}`)
    .replace('/v1/connectors/whatsapp/wa1/', '/v1/connectors/webhook/site/')
    .replace('/dead-letters/118/replay', `/dead-letters/${deadLetters[1]}/replay`)
    .replace('/dead-letters/118', `/dead-letters/${deadLetters[0]}`);
}

describe('curl examples against a running gateway', () => {
  let gw: TestGateway;
  const deadLetters: number[] = [];
  // The README's form post opens T-1042; its contact is the one the contact examples name.
  const CONTACT = 'c_CONTACT';
  const own: Own = { deadLetters, contact: CONTACT, upload: { objectKey: 'sha256/x', ref: 'ref/x', size: 1 } };
  beforeAll(async () => {
    gw = await startGateway({
      // PGlite: no dependency on the machine's PostgreSQL. Numbers from 1042, so the README's form
      // post opens the T-1042 the API examples then answer.
      database: { dataDir: await pgliteDir() },
      router: { firstTicketNumber: 1042 },
      api: { tokens: [{ name: 'ops', token: TOKEN, admin: true }] },
      connectors: [{ type: 'webhook', account: 'site', secret: SITE_SECRET, callbackUrl: 'http://127.0.0.1:65000/replies' }],
    });
    // Two dead letters for the examples that read, erase and replay one: events the router cannot read.
    const js = jetstream(gw.nc);
    for (const n of [1, 2]) await js.publish('omni.in.webhook.site', `not an event ${n}`);
    await until(async () => {
      const res = await fetch(`${gw.httpUrl}/v1/dead-letters?source=router`, { headers: { authorization: `Bearer ${TOKEN}` } });
      const { letters: list } = (await res.json()) as { letters: Array<{ seq: number }> };
      deadLetters.splice(0, deadLetters.length, ...list.map((d) => d.seq));
      return deadLetters.length === 2;
    }, 'two dead letters');
  });
  afterAll(async () => {
    await gw?.stop();
  });
  /** The ticket's contact, once the read model has it (it applies the log behind the API's answer). */
  async function contactOf(ticket: string): Promise<string> {
    let id: string | null = null;
    // The list's rows carry contactId (GET /v1/tickets/{id} answers the live ticket, without it).
    await until(async () => (id = (await api<{ tickets: Array<{ id: string; contactId?: string | null }> }>('/v1/tickets?order=created&limit=500')).tickets.find((t) => t.id === ticket)?.contactId ?? null) !== null, `${ticket}'s contact`, 10_000);
    return id!;
  }
  async function api<T>(path: string, init: RequestInit = {}): Promise<T> {
    const res = await fetch(`${gw.httpUrl}${path}`, { ...init, headers: { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json', ...(init.headers as object) } });
    expect(res.status, `${path}`).toBeLessThan(400);
    return (await res.json()) as T;
  }

  // README first: its form post opens the ticket the other files' examples use.
  const files = ['README.md', ...docFiles().filter((f) => f !== 'README.md')];
  const commands = files.flatMap((f) => all.filter((b) => b.file === f && (b.lang === 'sh' || b.lang === 'bash')).flatMap(curlCommands));
  it('finds them', () => expect(commands.length).toBeGreaterThan(20));
  for (const c of commands) {
    let words: string[] | string;
    try {
      words = shellWords(c.source, VARS, SUBSTITUTIONS);
    } catch (err) {
      words = (err as Error).message; // a variable the reader fills in ($NEXT)
    }
    const situation = SITUATIONS.find(([re]) => re.test(c.expected?.body ?? ''));
    const probe = typeof words === 'string' ? words : curlRequest(words.map((w) => ownIds(w, { ...own, deadLetters: [1, 2] })), 'http://x');
    const why = situation ? `shows ${situation[1]}` : typeof probe === 'string' ? probe : undefined;
    it.skipIf(why)(`${where(c)} ${c.source.split('\n')[0]!.slice(0, 90)}${why ? ` (skipped: ${why})` : ''}`, async () => {
      if (own.contact === CONTACT && /c_[A-Za-z0-9]+…|<contact id>/.test(c.source)) own.contact = await contactOf('T-1042');
      const req = curlRequest((words as string[]).map((w) => ownIds(w, own)), gw.httpUrl) as Sent;
      const res = await fetch(req.url, { method: req.method, headers: req.headers, body: req.body, signal: AbortSignal.timeout(10_000) });
      // A server-sent stream never ends: its status and type are the answer.
      const text = res.headers.get('content-type')?.startsWith('text/event-stream') ? (await res.body?.cancel(), '') : await res.text();
      const got = `${res.status} ${text.slice(0, 300)}`;
      if (res.status === 201 && req.url.includes('/v1/attachments')) own.upload = JSON.parse(text) as Own['upload'];
      if (c.expected?.status) expect(res.status, got).toBe(c.expected.status);
      else expect(res.status, `${where(c)}: ${got}`).toBeLessThan(400);
      if (c.expected?.body) {
        const body = JSON.parse(text) as Record<string, unknown>;
        expectSameCode(c.expected.body, body, where(c));
        const missing = topLevelKeys(c.expected.body).filter((k) => !(k in body));
        expect(missing, `${where(c)} documents keys the answer lacks: ${got}`).toEqual([]);
        for (const k of topLevelKeys(c.expected.body)) {
          const inner = Array.isArray(body[k]) ? (body[k] as unknown[])[0] : body[k];
          if (!inner || typeof inner !== 'object') continue;
          const lacking = innerKeys(c.expected.body, k).filter((x) => !(x in inner) && !SITUATIONAL.has(x));
          expect(lacking, `${where(c)} documents keys ${k} lacks: ${got}`).toEqual([]);
        }
      }
    });
  }

  const requests = files.flatMap((f) => all.filter((b) => b.file === f && b.lang === 'sh').flatMap(natsRequests));
  it('finds the NATS command examples', () => expect(requests.length).toBeGreaterThan(5));
  for (const r of requests) {
    it(`${where(r)} nats req ${r.subject} ${r.body.slice(0, 60)}`, async () => {
      const answer = await gw.request<Record<string, unknown>>(r.subject, JSON.parse(r.body));
      const got = JSON.stringify(answer).slice(0, 300);
      if (!r.expected) return expect(answer.ok, `${where(r)}: ${got}`).toBe(true);
      expect(topLevelKeys(r.expected).filter((k) => !(k in answer)), `${where(r)}: ${got}`).toEqual([]);
      expectSameCode(r.expected, answer, where(r));
    });
  }

  /** JSON answers docs/api.md shows in blocks of their own, by the request that gives them. */
  const ANSWERS: Array<[string, () => Promise<unknown>]> = [
    ['{"status":"ready","nats"', () => api('/readyz')],
    ['{ "report": "first-response"', () => api('/v1/reports/first-response?from=2026-03-02&to=2026-03-16&groupBy=channel')],
    ['{ "error": { "code": "invalid_request"', () => fetch(`${gw.httpUrl}/v1/tickets/T-1042/status`, { method: 'POST', headers: { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json' }, body: '{"status":"done"}' }).then((r) => r.json())],
    // Last: it erases the examples' ticket.
    ['{ "erasureId"', async () => api(`/v1/contacts/${await contactOf('T-1042')}/erase`, { method: 'POST', body: '{}' })],
  ];
  const answerBlocks = all.filter((b) => b.file === 'docs/api.md' && b.lang === 'json');
  it('every JSON answer in docs/api.md is checked', () => {
    expect(answerBlocks.map((b) => ANSWERS.findIndex(([head]) => b.text.startsWith(head)))).not.toContain(-1);
  });
  for (const [head, get] of ANSWERS) {
    const b = answerBlocks.find((x) => x.text.startsWith(head));
    it(`${b ? where(b) : head} has the keys of the answer`, async () => {
      expect(b, `no block in docs/api.md starts with ${head}`).toBeDefined();
      const body = (await get()) as Record<string, unknown>;
      const missing = topLevelKeys(b!.text).filter((k) => !(k in body));
      expect(missing, `${where(b!)}: ${JSON.stringify(body).slice(0, 400)}`).toEqual([]);
      // One level down where the example shows an object or a row: rows[0], error, erased, nats.
      for (const k of topLevelKeys(b!.text)) {
        const inner = Array.isArray(body[k]) ? (body[k] as unknown[])[0] : body[k];
        const doc = JSON.parse(b!.text.replace(/…/g, '')) as Record<string, unknown>;
        const docInner = Array.isArray(doc[k]) ? (doc[k] as unknown[])[0] : doc[k];
        if (inner && docInner && typeof inner === 'object' && typeof docInner === 'object') {
          expect(Object.keys(docInner).filter((x) => !(x in inner) && !SITUATIONAL.has(x)), `${where(b!)} ${k}`).toEqual([]);
        }
      }
    });
  }
});
