/**
 * Reading the examples out of README.md and docs/**: fenced blocks, the curl commands in the
 * shell blocks (a small shell-word splitter: quotes, $VARS, backslash continuations) and the
 * answer each one documents in the comment after it ("# 202 {…}"). Admins copy these blocks as
 * they are, so test/docs/examples.test.ts runs them.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { join, relative } from 'node:path';

export const ROOT = new URL('../../', import.meta.url).pathname;

export interface Block {
  file: string; // relative to the repository
  line: number; // of the opening fence
  lang: string;
  text: string;
}

/** README.md and every Markdown file under docs/. */
export function docFiles(): string[] {
  const out = [join(ROOT, 'README.md')];
  const walk = (dir: string) => {
    for (const e of readdirSync(dir, { withFileTypes: true })) {
      if (e.isDirectory()) walk(join(dir, e.name));
      else if (e.name.endsWith('.md')) out.push(join(dir, e.name));
    }
  };
  walk(join(ROOT, 'docs'));
  return out.map((f) => relative(ROOT, f)).sort();
}

export function blocks(file: string): Block[] {
  const lines = readFileSync(join(ROOT, file), 'utf8').split('\n');
  const out: Block[] = [];
  let open: { line: number; lang: string; body: string[] } | undefined;
  lines.forEach((l, i) => {
    const fence = /^```(\S*)/.exec(l);
    if (!fence) {
      open?.body.push(l);
      return;
    }
    if (open) {
      out.push({ file, line: open.line, lang: open.lang, text: open.body.join('\n') + '\n' });
      open = undefined;
    } else open = { line: i + 1, lang: fence[1]!, body: [] };
  });
  return out;
}

export interface CurlCommand {
  file: string;
  line: number;
  source: string;
  words: string[];
  /** The documented answer: "# 202 {…}" or "# {…}" right after the command (same or next line). */
  expected?: { status?: number; body?: string };
}

/** Shell words of one command; $VAR and ${VAR} expanded from vars outside single quotes. */
export function shellWords(cmd: string, vars: Record<string, string>, substitutions: Record<string, string> = {}): string[] {
  const words: string[] = [];
  let cur: string | undefined;
  const expand = (s: string, i: number): [string, number] => {
    const m = /^\$(?:\{([A-Za-z_][A-Za-z0-9_]*)\}|([A-Za-z_][A-Za-z0-9_]*))/.exec(s.slice(i));
    const known = Object.keys(substitutions).find((k) => s.startsWith(k, i));
    if (known) return [substitutions[known]!, i + known.length];
    if (s[i + 1] === '(') throw new Error('a command substitution $(…)');
    if (!m) return ['$', i + 1];
    const name = m[1] ?? m[2]!;
    if (!(name in vars)) throw new Error(`unknown variable $${name}`);
    return [vars[name]!, i + m[0].length];
  };
  for (let i = 0; i < cmd.length; ) {
    const c = cmd[i]!;
    if (c === '\\' && cmd[i + 1] === '\n') i += 2;
    else if (/\s/.test(c)) {
      if (cur !== undefined) words.push(cur);
      cur = undefined;
      i++;
    } else if (c === "'") {
      const end = cmd.indexOf("'", i + 1);
      if (end < 0) throw new Error('an unterminated quote');
      cur = (cur ?? '') + cmd.slice(i + 1, end);
      i = end + 1;
    } else if (c === '"') {
      cur ??= '';
      i++;
      while (cmd[i] !== '"') {
        if (i >= cmd.length) throw new Error('an unterminated quote');
        if (cmd[i] === '$') {
          const [v, next] = expand(cmd, i);
          cur += v;
          i = next;
        } else cur += cmd[i++];
      }
      i++;
    } else if (c === '$') {
      const [v, next] = expand(cmd, i);
      cur = (cur ?? '') + v;
      i = next;
    } else {
      cur = (cur ?? '') + c;
      i++;
    }
  }
  if (cur !== undefined) words.push(cur);
  return words;
}

/** An odd count of ' outside the lines' trailing comments ("# every replica's …"). */
function openQuote(src: string): boolean {
  const code = src.split('\n').map((l) => l.replace(/(^|\s)#\s.*$/, '')).join('\n');
  return (code.split("'").length - 1) % 2 === 1;
}

/** The curl commands of a shell block, each with the answer documented after it. */
export function curlCommands(b: Block): Array<Omit<CurlCommand, 'words'>> {
  const lines = b.text.split('\n');
  const out: Array<Omit<CurlCommand, 'words'>> = [];
  for (let i = 0; i < lines.length; i++) {
    if (!/^curl\s/.test(lines[i]!)) continue;
    const start = i;
    let src = lines[i]!;
    // Continued by a backslash, or by a quoted body that spans lines (an odd count of ' so far).
    while (i + 1 < lines.length && (src.endsWith('\\') || openQuote(src))) src += '\n' + lines[++i]!;
    // A trailing comment on the command's own line, else the next line's.
    const hash = src.search(/\s#\s/);
    let comment = hash >= 0 ? src.slice(hash).trim() : (lines[i + 1] ?? '').trim();
    if (hash >= 0) src = src.slice(0, hash);
    if (!comment.startsWith('#')) comment = '';
    // "# 202 {…}", "# {…}", or words then the body ("# admin only: erased; {"seq":118,…}").
    const status = /^#\s*(\d{3})\b/.exec(comment)?.[1];
    const at = comment.indexOf('{"');
    const expected = status || at >= 0 ? { status: status ? Number(status) : undefined, body: at >= 0 ? comment.slice(at) : undefined } : undefined;
    out.push({ file: b.file, line: b.line + 1 + start, source: src.trim(), expected });
  }
  return out;
}

/**
 * The keys a documented JSON body names at its top level. Documented bodies elide with "…" and
 * "...", so they are not JSON: this scans for "key": at depth one.
 */
export function topLevelKeys(body: string): string[] {
  const keys: string[] = [];
  let depth = 0;
  for (let i = 0; i < body.length; i++) {
    const c = body[i]!;
    if (c === '{' || c === '[') depth++;
    else if (c === '}' || c === ']') {
      depth--;
      if (depth === 0) break;
    } else if (c === '"') {
      let end = i + 1;
      while (end < body.length && body[end] !== '"') end += body[end] === '\\' ? 2 : 1;
      const word = body.slice(i + 1, end);
      if (depth === 1 && /^\s*:/.test(body.slice(end + 1))) keys.push(word);
      i = end;
    }
  }
  return keys;
}

/** The keys of the object a documented body shows under `key` (the first row of an array). */
export function innerKeys(body: string, key: string): string[] {
  const at = body.search(new RegExp(`"${key}"\\s*:\\s*[[{]`));
  if (at < 0) return [];
  const value = body.slice(body.indexOf(':', at) + 1).trimStart();
  return topLevelKeys(value.startsWith('[') ? value.slice(1).trimStart() : value);
}

export interface NatsRequest {
  file: string;
  line: number;
  subject: string;
  body: string;
  expected?: string;
}

/** `nats req <subject> '<json>'` lines of a shell block, each with the "# {…}" answer on the next line. */
export function natsRequests(b: Block): NatsRequest[] {
  const lines = b.text.split('\n');
  return lines.flatMap((l, i) => {
    const m = /^nats req (\S+) '(.*)'\s*(?:#.*)?$/.exec(l);
    if (!m) return [];
    const next = (lines[i + 1] ?? '').trim();
    return [{ file: b.file, line: b.line + 1 + i, subject: m[1]!, body: m[2]!, expected: next.startsWith('# {') ? next.slice(2) : undefined }];
  });
}
