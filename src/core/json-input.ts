/**
 * Limits on untrusted JSON and base64 before anything else looks at them. A 10,000-deep body
 * parses fine but overflows the stack of the first recursive walk (JSON.stringify, a schema),
 * and Buffer.from(x, 'base64') silently drops what is not base64, so both are checked here.
 */

/** Nesting deeper than any payload we accept; a client sending more is refused, not retried. */
export const MAX_JSON_DEPTH = 32;

export class JsonInputError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'JsonInputError';
  }
}

/** Nesting depth of JSON text, counted without parsing (brackets inside strings ignored). */
export function jsonDepth(text: string): number {
  let depth = 0;
  let max = 0;
  let inString = false;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (inString) {
      if (c === 0x5c) i++; // backslash: skip the escaped character
      else if (c === 0x22) inString = false;
    } else if (c === 0x22) inString = true;
    else if (c === 0x7b || c === 0x5b) {
      if (++depth > max) max = depth;
    } else if (c === 0x7d || c === 0x5d) depth--;
  }
  return max;
}

/** JSON.parse with a depth limit; throws JsonInputError saying which limit or that it is not JSON. */
export function parseJsonBounded(text: string, maxDepth = MAX_JSON_DEPTH): unknown {
  const depth = jsonDepth(text);
  if (depth > maxDepth) throw new JsonInputError(`JSON nested ${depth} levels deep; at most ${maxDepth} allowed`);
  try {
    return JSON.parse(text);
  } catch {
    throw new JsonInputError('body is not valid JSON');
  }
}

const BASE64 = /^[A-Za-z0-9+/]*={0,2}$/;
const BASE64URL = /^[A-Za-z0-9_-]*$/;

/**
 * Decodes standard or URL-safe base64 (line breaks allowed, padding optional); null when the text
 * is not base64, so the caller can refuse it instead of storing the bytes Node made of it.
 */
export function decodeBase64Strict(text: string): Buffer | null {
  const s = text.replace(/[\r\n \t]/g, '');
  if (s.length % 4 === 1) return null;
  if (BASE64.test(s)) {
    if (s.includes('=') && s.length % 4 !== 0) return null;
    return Buffer.from(s, 'base64');
  }
  return BASE64URL.test(s) ? Buffer.from(s, 'base64url') : null;
}

/**
 * Where `value` holds a string with U+0000 (a dotted path; `[key]` for a key holding it), or
 * undefined. No store the gateway feeds takes it (PostgreSQL text and jsonb refuse it, C-string
 * APIs cut at it), and no person types it: refused at the edge, naming the field.
 */
export function nulAt(value: unknown, path = ''): string | undefined {
  if (typeof value === 'string') return value.includes('\u0000') ? path || 'body' : undefined;
  if (typeof value !== 'object' || value === null) return undefined;
  for (const [k, v] of Object.entries(value)) {
    const here = path ? `${path}.${k}` : k;
    if (k.includes('\u0000')) return `${path || 'body'}[key]`;
    const found = nulAt(v, here);
    if (found) return found;
  }
  return undefined;
}
