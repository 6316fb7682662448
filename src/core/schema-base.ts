/** The primitives every payload schema shares (the schema-*.ts modules that schema.ts gathers all build on them). */
import { z } from 'zod';
import { INVISIBLE_IN_ID } from './display-text.js';

export const SCHEMA_VERSION = 1 as const;

/**
 * Wording every refusal shares (bodies, queries, config, events), set once where the schemas are
 * built. A discriminated union said "Invalid discriminator value. Expected 'message' | 'undefined' |
 * 'edit'": the value given goes unnamed and a defaulted branch shows up as 'undefined'.
 */
z.config({
  customError: (issue) => {
    if (issue.code !== 'invalid_union' || !('discriminator' in issue) || typeof issue.discriminator !== 'string') return undefined;
    const options = ((issue as { options?: unknown[] }).options ?? []).filter((o) => o !== undefined && o !== null).map((o) => JSON.stringify(o));
    const input = issue.input as Record<string, unknown> | undefined;
    const given = input && typeof input === 'object' && issue.discriminator in input ? JSON.stringify(input[issue.discriminator]) : undefined;
    return `${given === undefined ? 'missing' : `unknown value ${given.length > 60 ? `${given.slice(0, 60)}…` : given}`}; expected one of ${options.join(', ')}`;
  },
});

/** Channel and account names become NATS subject tokens, so they are restricted to a safe set. */
export const SubjectToken = z
  .string()
  .min(1)
  .max(64)
  .regex(/^[A-Za-z0-9_-]+$/, 'Latin letters, digits, "_" and "-" only (it becomes a NATS subject token; «сайт» is refused, write "site")');

export const IsoTime = z.string().datetime({ offset: true });

/**
 * What an agent sends or writes down. Whitespace alone was accepted with a 202 and then reached
 * the customer as an empty message, or was refused by the platform later (Telegram: "message
 * text is empty") as a failed reply: refused at the edge instead, where a retry cannot help.
 */
export const AgentText = z
  .string()
  .min(1)
  .max(100_000)
  .regex(/\S/, 'must contain more than whitespace')
  // Kept apart from the pattern (which the JSON Schema carries): only when that one passed, so a
  // blank text is refused once.
  .refine((v) => !/\S/.test(v) || VISIBLE.test(v), 'must contain more than whitespace (invisible characters such as zero-width spaces count as whitespace)');

/**
 * A character that shows: not whitespace, not a control or format character (zero-width space,
 * joiners U+200B–U+200D, word joiner U+2060, BOM U+FEFF, soft hyphen U+00AD, bidi marks), not a
 * default-ignorable one (variation selectors, Hangul fillers U+3164/U+FFA0, tag characters), not
 * the blank braille pattern U+2800. `{"text":"\u200b\u200b"}` was a 202 and an empty-looking message.
 */
const VISIBLE = /[^\s\p{Cc}\p{Cf}\p{Default_Ignorable_Code_Point}\u2800]/u;

/**
 * Whether an ISO time's offset is one some place on Earth has, −12:00 to +14:00 (`+15:00` parsed
 * and meant nothing). For times taken at the edge (a webhook's sentAt, query parameters); IsoTime
 * itself stays a plain pattern, which the router's validation predicate can vouch for.
 */
export function realOffset(v: string): boolean {
  const m = /([+-])(\d{2}):?(\d{2})$/.exec(v);
  if (!m) return true;
  const minutes = (m[1] === '-' ? -1 : 1) * (Number(m[2]) * 60 + Number(m[3]));
  return minutes >= -12 * 60 && minutes <= 14 * 60;
}
export const UNREAL_OFFSET = { error: 'an offset from -12:00 to +14:00' };

/**
 * An id that travels as a NATS header value (Nats-Msg-Id), a log key or a platform reference:
 * printable, bounded, visible. nats.js refuses CR/LF in a header; refusing every control character
 * here turns that into a 400 naming the field at the edge instead of a publish that can never
 * succeed. Direction controls and zero-width characters (display-text.ts INVISIBLE_IN_ID) are
 * refused too: "\u202e" in a messageId made log lines and the console show another id.
 */
export function PrintableId(max = 512, min = 1) {
  // One pattern (the JSON Schemas carry it), so one message for both.
  return z.string().min(min).max(max).regex(new RegExp(`^[^\\u0000-\\u001f\\u007f${INVISIBLE_IN_ID}]*$`), `must not contain control characters (CR, LF, NUL, tab...) or ${INVISIBLE}`);
}

/** Printable and bounded, but shown to people rather than matched (a file name, a display name): not refused for invisible characters, which those are cleaned of. */
export function PrintableText(max = 512, min = 0) {
  return z
    .string()
    .min(min)
    .max(max)
    .regex(/^[^\u0000-\u001f\u007f]*$/, 'must not contain control characters (CR, LF, NUL, tab...)');
}

const INVISIBLE = 'invisible formatting characters (direction controls such as U+202E, U+200E/U+200F marks, zero-width characters): they make one id look like another';
export const INVISIBLE_ID_REFUSAL = `must not contain ${INVISIBLE}`;
const VISIBLE_ID = new RegExp(`^[^${INVISIBLE_IN_ID}]*$`);

/** `id` (any string schema) refusing the characters an id must not hold (INVISIBLE_IN_ID). */
export function VisibleId(id: z.ZodString): z.ZodString {
  return id.regex(VISIBLE_ID, INVISIBLE_ID_REFUSAL);
}

/** Whether `v` holds none of the characters an id must not hold (for ids read outside a schema: headers). */
export function visibleId(v: string): boolean {
  return VISIBLE_ID.test(v);
}

/**
 * A secret that travels in an HTTP header (a bearer or API token): printable ASCII only. A
 * look-alike Cyrillic letter pasted into one failed every call as "unreachable" (a header is
 * bytes), never naming the key.
 */
export function HeaderToken(min = 1) {
  return z
    .string()
    .min(min)
    .regex(/^[\x21-\x7e]*$/, 'printable ASCII only (no spaces, no letters of other alphabets: check for a pasted look-alike)');
}

/** type/subtype with optional parameters: served back as a Content-Type header on download. */
export const MimeType = z
  .string()
  .max(255)
  .regex(/^[\w.+-]+\/[\w.+-]+(\s*;[^\u0000-\u001f\u007f]*)?$/, 'must be a MIME type such as application/pdf');
