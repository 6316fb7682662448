/**
 * The shape of what Slack delivers, checked once where it comes in: ingest() runs this for the
 * Events API and Socket Mode alike, before anything reads the event. A message event whose fields
 * have the wrong type or form (a `ts` that is not a Slack timestamp, `text` that is not a string,
 * a file that is not an object…) is refused here with the field's path (`event.ts: …`), and the
 * connector parks it at once: Slack would send the same bytes again, so a retry cannot help.
 * Past this point normalize.ts and files.ts read typed values and cannot trip over bad input.
 *
 * Only what we read is checked, and only in the events we take (message, app_mention): other
 * envelope and event types are skipped unread, and unknown fields are ignored (Slack adds some).
 */
import { z } from 'zod';
import { describeZodError } from '../../core/schema.js';

/** Seconds since the epoch, a dot, a sequence: `1765000000.000100`. Also a date we can print. */
const SlackTs = z.string().regex(/^\d{1,10}\.\d{1,6}$/, 'must be a Slack timestamp such as 1765000000.000100');
/** Channel (C…, G…, D…) and user (U…, W…) ids are upper-case letters and digits. */
const ChannelId = z.string().regex(/^[A-Z0-9]{1,64}$/, 'must be a Slack channel id such as C0123ABCD or D0123ABCD');
const UserId = z.string().regex(/^[A-Z0-9]{1,64}$/, 'must be a Slack user id such as U0123ABCD');
/** Only its presence matters (a bot wrote it). */
const BotId = z.string().nullish();

export const SlackFile = z.object({
  id: z.string().min(1).max(255),
  name: z.string().nullish(),
  title: z.string().nullish(),
  mimetype: z.string().nullish(),
  size: z.number().int().nonnegative().optional(),
  /** Checked against Slack's file host in files.ts: a file elsewhere is recorded as not fetched. */
  url_private_download: z.string().optional(),
  url_private: z.string().optional(),
});
export type SlackFile = z.infer<typeof SlackFile>;

const TouchedMessage = z.object({
  ts: SlackTs,
  text: z.string().optional(),
  user: UserId.optional(),
  bot_id: BotId,
  thread_ts: SlackTs.optional(),
  edited: z.object({ ts: SlackTs }).optional(),
});

export const SlackMessageEvent = z
  .object({
    type: z.enum(['message', 'app_mention']),
    subtype: z.string().optional(),
    channel: ChannelId,
    channel_type: z.string().optional(),
    user: UserId.optional(),
    bot_id: BotId,
    text: z.string().optional(),
    ts: SlackTs,
    thread_ts: SlackTs.optional(),
    event_ts: SlackTs.optional(),
    files: z.array(SlackFile).optional(),
    /** message_changed: the message as it is now. */
    message: TouchedMessage.optional(),
    /** message_changed and message_deleted: the message as it was. */
    previous_message: TouchedMessage.omit({ edited: true }).optional(),
    deleted_ts: SlackTs.optional(),
  })
  .superRefine((e, ctx) => {
    if (e.subtype === 'message_changed' && !e.message) ctx.addIssue({ code: 'custom', path: ['message'], message: 'required for subtype message_changed' });
    if (e.subtype === 'message_deleted' && !e.deleted_ts) ctx.addIssue({ code: 'custom', path: ['deleted_ts'], message: 'required for subtype message_deleted' });
  });
export type SlackMessageEvent = z.infer<typeof SlackMessageEvent>;

/** What arrives, before it is checked: any JSON value (JSON.parse, a Socket Mode payload). */
export type RawEnvelope = { type?: unknown; event_id?: unknown; challenge?: unknown; event?: unknown; team_id?: unknown; enterprise_id?: unknown } | null | undefined;

const Head = z.object({ type: z.string(), event_id: z.string().min(1).max(255).optional() });
const CallbackHead = z.object({ event: z.object({ type: z.string() }) });
const MessageEnvelope = z.object({ event: SlackMessageEvent });

export type Parsed =
  | { kind: 'message'; event: SlackMessageEvent }
  | { kind: 'skip'; reason: string }
  /** `reason` names each offending field by its path in the envelope (`event.files.0: …`). */
  | { kind: 'invalid'; reason: string };

const MESSAGE_TYPES: ReadonlySet<string> = new Set(['message', 'app_mention']);

/** Never throws: whatever the body is, the answer is a typed message event, a skip or a refusal. */
export function parseEnvelope(body: unknown): Parsed {
  const head = Head.safeParse(body);
  if (!head.success) return { kind: 'invalid', reason: describeZodError(head.error) };
  if (head.data.type !== 'event_callback') return { kind: 'skip', reason: `envelope type ${head.data.type}` };
  const callback = CallbackHead.safeParse(body);
  if (!callback.success) return { kind: 'invalid', reason: describeZodError(callback.error) };
  // Other subscriptions (reactions, joins, app_home_opened…) are not conversation traffic.
  if (!MESSAGE_TYPES.has(callback.data.event.type)) return { kind: 'skip', reason: `event type ${callback.data.event.type}` };
  const message = MessageEnvelope.safeParse(body);
  if (!message.success) return { kind: 'invalid', reason: describeZodError(message.error) };
  return { kind: 'message', event: message.data.event };
}

/** The envelope's event_id when it is one (the dedup key and the dead letter's label). */
export function eventIdOf(body: RawEnvelope): string | undefined {
  const id = body?.event_id;
  return typeof id === 'string' && id !== '' ? id : undefined;
}
