/**
 * The shapes of Meta's webhook that the connector reads, checked one level at a time: the body,
 * each entry, each change, and then each message, status and contact on its own. Whatever fails
 * its check is parked (with the dotted path of the field at fault) and the rest of the delivery
 * goes on: one unreadable item must not fail the whole POST, which Meta would then redeliver
 * forever, losing the items after it. Only fields the connector uses are checked; others pass.
 */
import { z } from 'zod';

/** The last second an ISO time with a four-digit year can say: 9999-12-31T23:59:59Z. */
const MAX_SECONDS = 253_402_300_799;
export const MAX_TIME_MS = MAX_SECONDS * 1000;

const show = (v: unknown) => {
  const s = typeof v === 'string' ? JSON.stringify(v) : typeof v === 'number' ? String(v) : v === null ? 'null' : Array.isArray(v) ? 'a list' : typeof v;
  return s.length > 40 ? `${s.slice(0, 40)}…` : s;
};

/** Unix seconds as Meta writes them ("1712345678"; a number is taken too), within what a date can hold. */
function secondsOf(v: unknown): number | undefined {
  const n = typeof v === 'string' ? (/^\d{1,15}$/.test(v) ? Number(v) : NaN) : typeof v === 'number' ? v : NaN;
  return Number.isInteger(n) && n > 0 && n <= MAX_SECONDS ? n : undefined;
}

export const UnixSeconds = z
  .custom<string | number>((v) => secondsOf(v) !== undefined, {
    error: (iss) => `expected a time in whole seconds since 1970 (up to the year 9999), such as "1712345678"; received ${show(iss.input)}`,
  })
  .transform((v) => secondsOf(v)!);

const text = z.string().nullish();
const Coordinate = z.union([z.number(), z.string().regex(/^-?\d+(\.\d+)?$/, 'expected a number')]).transform(Number);

const CloudMedia = z.object({
  id: z.string().min(1, 'expected the media id'),
  mime_type: text,
  caption: text,
  filename: text,
  voice: z.boolean().nullish(),
});
export type CloudMedia = z.infer<typeof CloudMedia>;

const MEDIA_TYPES = ['image', 'video', 'audio', 'document', 'sticker'] as const;

export const CloudMessage = z
  .object({
    from: z.string().regex(/^\d+$/, 'expected the sender\'s number (digits)'),
    id: z.string().min(1, 'expected the message id (wamid)'),
    timestamp: UnixSeconds.nullish(),
    type: z.string(),
    context: z.object({ id: text }).nullish(),
    text: z.object({ body: text }).nullish(),
    image: CloudMedia.nullish(),
    video: CloudMedia.nullish(),
    audio: CloudMedia.nullish(),
    document: CloudMedia.nullish(),
    sticker: CloudMedia.nullish(),
    location: z.object({ latitude: Coordinate, longitude: Coordinate, name: text, address: text }).nullish(),
    contacts: z
      .array(
        z.object({
          name: z.object({ formatted_name: text, first_name: text }).nullish(),
          phones: z.array(z.object({ phone: text, wa_id: text })).nullish(),
        }),
      )
      .nullish(),
    reaction: z.object({ message_id: text, emoji: text }).nullish(),
    button: z.object({ text, payload: text }).nullish(),
    interactive: z.object({ button_reply: z.object({ title: text }).nullish(), list_reply: z.object({ title: text }).nullish() }).nullish(),
    errors: z.array(z.object({ title: text, message: text })).nullish(),
  })
  .superRefine((m, ctx) => {
    // What the type says the message carries must be there: an image message without its image
    // would become an empty message, the picture dropped without a word.
    const kind = MEDIA_TYPES.find((t) => t === m.type);
    if (kind && !m[kind]) ctx.addIssue({ code: 'custom', path: [kind], message: `expected the ${kind} of a "${kind}" message` });
    if (m.type === 'location' && !m.location) ctx.addIssue({ code: 'custom', path: ['location'], message: 'expected the location of a "location" message' });
    if (m.type === 'reaction' && !m.reaction?.message_id) ctx.addIssue({ code: 'custom', path: ['reaction', 'message_id'], message: 'expected the id of the message reacted to' });
  });
export type CloudMessage = z.infer<typeof CloudMessage>;

/** The statuses a delivery report carries; Meta documents others (`deleted`, `warning`) and may add more. */
export const REPORTED_STATUSES = ['sent', 'delivered', 'read', 'failed'] as const;

export const CloudStatus = z.object({
  id: z.string().min(1, 'expected the message id (wamid)'),
  // Any other value is read and counted as passed over (webhook-body.ts), warned about once: a
  // value Meta adds later must not turn every status into a dead letter. Only no value is refused.
  status: z.string({ error: (iss) => `expected a status such as "delivered"; received ${show(iss.input)}` }).min(1, 'expected a status such as "delivered"; received ""').max(64, 'expected a status such as "delivered"; received a text of more than 64 characters'),
  // Only logged: the send record says whose message it was. Meta's `timestamp` is not read at
  // all (a report is dated when the gateway hears it), so an unreadable one costs no report.
  recipient_id: text,
  errors: z
    .array(
      z.object({
        code: z.union([z.number(), z.string()]).nullish(),
        title: text,
        message: text,
        error_data: z.object({ details: text }).nullish(),
      }),
    )
    .nullish(),
});
export type CloudStatus = z.infer<typeof CloudStatus>;

/** value.contacts[]: who wrote, with the profile name Meta shows. */
export const CloudContact = z.object({ wa_id: text, profile: z.object({ name: text }).nullish() });
export type CloudContact = z.infer<typeof CloudContact>;

export const WebhookBody = z.object(
  {
    object: z.literal('whatsapp_business_account', { error: (iss) => `expected "whatsapp_business_account"; received ${show(iss.input)}` }),
    entry: z.array(z.unknown()),
  },
  { error: (iss) => `expected a JSON object; received ${show(iss.input)}` },
);

export const WebhookEntry = z.object({ changes: z.array(z.unknown()).nullish() });

export const WebhookChange = z.object({ field: z.string(), value: z.unknown() });

/** A `messages` change's value; its lists are checked item by item afterwards. */
export const ChangeValue = z.object({ metadata: z.object({ phone_number_id: text }).nullish() });

/** Graph's answer to GET /<media-id>. */
export const MediaInfo = z.object({
  url: z.string().url(),
  mime_type: z.string().min(1).nullish(),
  file_size: z.union([z.number().int().nonnegative(), z.string().regex(/^\d+$/).transform(Number)]).nullish(),
});

/** Each issue as `<path>: <message>`, the path from the body's top (`entry.0.changes.1.value.messages.2.timestamp`). */
export function describeAt(error: z.ZodError, at: string): string {
  return error.issues.map((i) => `${[at, ...i.path.map(String)].filter(Boolean).join('.') || 'body'}: ${i.message}`).join('; ');
}

/** The id of what failed its check, for the reason: a message's wamid when it has a usable one. */
export function idOf(item: unknown): string | undefined {
  const id = item && typeof item === 'object' ? (item as { id?: unknown }).id : undefined;
  return typeof id === 'string' && id.length > 0 && id.length <= 200 && !/[\u0000-\u001f\u007f]/.test(id) ? id : undefined;
}

/** "expected a list; received an object" for a field that must be an array. */
export function notAList(v: unknown): string {
  return `expected a list; received ${show(v)}`;
}
