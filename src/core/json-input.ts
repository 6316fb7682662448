import { charsetParameter, decodeJson, encodingOf } from './json-charset.js';
import { duplicateKeyPath } from './json-duplicates.js';

/**
 * Limits on untrusted JSON and base64 before anything else looks at them. A 10,000-deep body
 * parses fine but overflows the stack of the first recursive walk (JSON.stringify, a schema),
 * and Buffer.from(x, 'base64') silently drops what is not base64, so both are checked here.
 */

/** Nesting deeper than any payload we accept; a client sending more is refused, not retried. */
export const MAX_JSON_DEPTH = 32;

export class JsonInputError extends Error {
  constructor(
    message: string,
    /** What was wrong: the body is not JSON (or nested too deep), or a text in it is unusable. */
    readonly kind: 'json' | 'text' = 'json',
    /** The field at fault (a dotted path), `body` when it is the whole body. */
    readonly field = 'body',
  ) {
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

/**
 * A platform's webhook body (Telegram, WhatsApp Cloud, the Slack Events API, Zammad): UTF-8 JSON
 * (RFC 8259), nested at most MAX_JSON_DEPTH; throws JsonInputError saying which. The one reader
 * for all of them: Slack's and Zammad's parsed with JSON.parse alone, so a signed body nested
 * 10,000 deep got past the edge to the first recursive walk (parking it: JSON.stringify). Each
 * caller parks or refuses what this throws as it does a body that is not JSON.
 */
export function parseWebhookJson(raw: Buffer): unknown {
  return parseJsonBounded(raw.toString('utf8'));
}

/**
 * A JSON request body from bytes in `charset` (TextDecoder's name, from jsonMediaType; UTF-8 when
 * none was declared), refused (JsonInputError) when it is not JSON, nests too deep, is not in its
 * charset or holds U+0000. Bytes that are not of the charset would otherwise become U+FFFD,
 * silently, and go on to a customer or the log as "��": the sender is told which field to fix instead.
 */
export function parseJsonBody(raw: Buffer, charset?: string, maxDepth = MAX_JSON_DEPTH): unknown {
  const decoded = decodeJson(raw, charset);
  // The words for UTF-8 and undeclared UTF-16 name no header: NATS commands
  // (router/commands.ts), which have none, get them too.
  if ('utf16' in decoded) {
    const why = decoded.utf16 === 'mark' ? 'is UTF-16 (it starts with a UTF-16 byte-order mark)' : 'looks like UTF-16 (every other byte is zero)';
    throw new JsonInputError(`body ${why}: send JSON encoded as UTF-8`);
  }
  const { text } = decoded;
  if (!decoded.valid) {
    const utf8 = decoded.charset === 'utf-8';
    const name = utf8 ? 'UTF-8' : decoded.charset;
    const advice = utf8 ? 'send JSON encoded as UTF-8' : `send it in ${name}, as Content-Type says, or as UTF-8`;
    let value: unknown;
    try {
      value = parseJsonBounded(text, maxDepth);
    } catch {
      throw new JsonInputError(`body is not valid ${name} (and not valid JSON): ${advice}`);
    }
    const at = pathWhere(value, (s) => s.includes('\ufffd')) ?? 'body';
    throw new JsonInputError(`${at}: not valid ${name} (bytes of another encoding?): ${advice}`, 'text', at);
  }
  const value = parseJsonBounded(text, maxDepth);
  const twice = duplicateKeyPath(text);
  if (twice !== undefined) {
    const field = twice || '""'; // the empty key, at the top
    throw new JsonInputError(`${field}: the key appears twice in one object (which one counts differs between JSON readers): send it once`, 'text', field);
  }
  const nul = nulAt(value);
  if (nul) throw new JsonInputError(`${nul}: contains a NUL character (U+0000)`, 'text', nul);
  // Only a \uD800–\uDFFF escape can make one: text that decoded without a fault holds none.
  const lone = LONE_SURROGATE_ESCAPE.test(text) ? pathWhere(value, (v) => LONE_SURROGATE.test(v)) : undefined;
  if (lone) throw new JsonInputError(`${lone}: contains half of a UTF-16 surrogate pair (a \\uD800–\\uDFFF escape without its other half), which is no character`, 'text', lone);
  // JSON.parse reads 1e400 as Infinity, which JSON cannot carry on: passed to the router it became
  // null, and the refusal said "received null" of a number the client never sent as null.
  const huge = OVERFLOWING_NUMBER.test(text) ? numberPathWhere(value, (n) => !Number.isFinite(n)) : undefined;
  if (huge) throw new JsonInputError(`${huge}: a number too large to represent (it reads as Infinity)`, 'text', huge);
  return value;
}

/**
 * A surrogate without its pair. No store takes it as it is: PostgreSQL's jsonb refuses the
 * escape (the read model skipped such an entry, and every later one of that conversation, so
 * the ticket vanished from lists and search), and UTF-8 encoders turn it into U+FFFD, so two
 * ids differing only there would become one. Refused at the edge, naming the field.
 */
export const LONE_SURROGATE = /[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/;
const LONE_SURROGATE_ESCAPE = /\\u[dD][89a-fA-F]/;
/** What a number must have to overflow a double: an exponent, or more than 300 digits. */
const OVERFLOWING_NUMBER = /\d[eE][+-]?\d|\d{300}/;

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
  return pathWhere(value, (s) => s.includes('\u0000'), path);
}

/** The dotted path of the first string (value or key: `[key]`) in `value` that `bad` flags. */
function pathWhere(value: unknown, bad: (s: string) => boolean, path = ''): string | undefined {
  if (typeof value === 'string') return bad(value) ? path || 'body' : undefined;
  if (typeof value !== 'object' || value === null) return undefined;
  for (const [k, v] of Object.entries(value)) {
    const here = path ? `${path}.${k}` : k;
    if (bad(k)) return `${path || 'body'}[key]`;
    const found = pathWhere(v, bad, here);
    if (found) return found;
  }
  return undefined;
}

/** The dotted path of the first number in `value` that `bad` flags. */
function numberPathWhere(value: unknown, bad: (n: number) => boolean, path = ''): string | undefined {
  if (typeof value === 'number') return bad(value) ? path || 'body' : undefined;
  if (typeof value !== 'object' || value === null) return undefined;
  for (const [k, v] of Object.entries(value)) {
    const found = numberPathWhere(v, bad, path ? `${path}.${k}` : k);
    if (found) return found;
  }
  return undefined;
}

/** JSON from bytes we stored or were handed, or undefined when they are not JSON: for callers that judge the value next (a schema) and refuse it with their own reason. */
export function jsonOrUndefined(bytes: Uint8Array): unknown {
  try {
    return JSON.parse(Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('utf8'));
  } catch {
    return undefined;
  }
}

/**
 * What a request's `Content-Type` says of a JSON body: why it is refused, or the charset to read it
 * in (TextDecoder's name; none: UTF-8). Read as JSON: JSON (`application/json`,
 * `application/*+json`), none at all, or `text/plain` (what `fetch` sends for a string body, and
 * what a browser form posts JSON as to spare itself a CORS preflight). A form (`curl -d` without a
 * header) or a multipart body was refused as "not valid JSON" when it did not parse, which sent the
 * caller looking at the body, and accepted when it happened to. A charset no decoder here knows is
 * refused too: guessing would store the text garbled.
 */
export function jsonMediaType(header: string | string[] | undefined): { refusal?: string; charset?: string } {
  if (header === undefined) return {};
  const type = String(header).split(';')[0]!.trim().toLowerCase();
  if (!(type === '' || type === 'application/json' || type === 'text/json' || type === 'text/plain' || /^application\/[a-z0-9.!#$&^_-]+\+json$/.test(type))) {
    return { refusal: `Content-Type: ${printable(type)} is not accepted: send the body as application/json (curl: -H 'content-type: application/json')` };
  }
  const label = charsetParameter(String(header));
  if (label === undefined) return {};
  const charset = encodingOf(label);
  if (charset) return { charset };
  return { refusal: `Content-Type: charset=${printable(label)} is not a charset this server reads: send JSON as UTF-8 (charset=utf-8), or in a charset such as windows-1251, koi8-r, ibm866 or utf-16le` };
}

/** A header's value as a refusal may quote it: bounded, printable ASCII. */
function printable(value: string): string {
  return value.slice(0, 60).replace(/[^\x20-\x7e]/g, '?');
}
