/**
 * Inbound payloads of schema v1: what a connector publishes on omni.in.<channel>.<account> (a
 * message, an edit, a deletion) and the parts it is made of (people, conversations, attachments,
 * email headers). Re-exported by schema.ts.
 */
import { z } from 'zod';
import { IsoTime, PrintableId, PrintableText, SCHEMA_VERSION, SubjectToken } from './schema-base.js';
import { displayText, withoutNul } from './display-text.js';

export const Identity = z.object({
  /** Stable platform id of the person (Telegram user id, email address, Slack user id, WhatsApp JID). */
  id: PrintableId(1024),
  /** Direction overrides and control characters taken out (display-text.ts): they disguised one name as another in agents' screens. */
  displayName: z.string().overwrite(displayText).optional(),
  /** Ways to reach or recognise the person: { email, username, phone, jid, ... }. */
  handles: z.record(z.string(), z.string()).default({}),
  language: z.string().optional(),
  isBot: z.boolean().optional(),
});
export type Identity = z.infer<typeof Identity>;

export const Attachment = z.object({
  /** Object-store key of the bytes (bucket omni_media, `sha256/<hex>`); absent when the file could not be fetched. */
  objectKey: z.string().optional(),
  /** This reference's record (`ref/<id>`): its name, type and owner; download it by this key. */
  ref: z.string().optional(),
  name: z.string(),
  mimeType: z.string(),
  size: z.number().int().nonnegative(),
  /** Hex SHA-256 of the stored bytes. */
  sha256: z.string().optional(),
  /** image | document | audio | voice | video | sticker | inline */
  kind: z.string().default('document'),
  /** 'stored' when the bytes are in the object store, 'failed' with a reason otherwise. */
  status: z.enum(['stored', 'failed']).default('stored'),
  error: z.string().optional(),
  /** Content-ID for inline email images. */
  contentId: z.string().optional(),
});
export type Attachment = z.infer<typeof Attachment>;

/**
 * A conversation as tickets and replies keep it: the ids as stored, even when written before ids
 * holding invisible characters were refused (an older ticket must still take a reply). What comes
 * in is checked by InboundConversationRef.
 */
export const ConversationRef = z.object({
  /** Platform chat id: Telegram chat id, Slack channel id, WhatsApp JID, mailbox address. */
  id: PrintableText(1024, 1),
  /** Thread inside the chat: Slack thread_ts, Telegram forum topic id. */
  threadId: PrintableText(1024, 1).optional(),
  kind: z.enum(['private', 'group', 'channel', 'email']),
  /**
   * The id as the client wrote it, where the connector normalised it into `id` (a web form's
   * "OLGA@client.ru " is "olga@client.ru"): a conversation opened under the written form before
   * ids were normalised is still found by it. Absent when the two are the same.
   */
  writtenId: PrintableText(1024, 1).optional(),
  /** A chat's title (a private chat's is the person's name): shown as the ticket's subject, so as a display name (display-text.ts). */
  title: z.string().overwrite(displayText).optional(),
});
export type ConversationRef = z.infer<typeof ConversationRef>;

/** A conversation as an inbound event names it: its ids visible too (schema-base.ts PrintableId). */
export const InboundConversationRef = ConversationRef.extend({
  id: PrintableId(1024),
  threadId: PrintableId(1024).optional(),
  writtenId: PrintableId(1024).optional(),
});

/**
 * What the receiving mail server found about a mail's From, from its Authentication-Results
 * header (RFC 8601), as the email connector read it (connectors/email/authentication.ts). The
 * router lets a mail whose `verdict` is `fail`, or one that is `required` to pass and did not,
 * join no existing ticket: its From may be forged.
 */
export const EmailAuthentication = z.object({
  /**
   * What the gateway acts on: `pass` only from a server the account trusts (trustedAuthServIds);
   * `fail` from a trusted server, or from the topmost header when none is configured (a forged
   * fail hurts only the forger); `none` otherwise (no header, or a pass nobody vouches for).
   */
  verdict: z.enum(['pass', 'fail', 'none']),
  /** The authserv-id of the header that counted (the server that wrote it). */
  by: z.string().max(255).optional(),
  /** Whether `by` is among the account's trustedAuthServIds. */
  trusted: z.boolean().optional(),
  /** The results that header gave, lower case (pass, fail, softfail, none, ...). */
  dmarc: z.string().max(16).optional(),
  spf: z.string().max(16).optional(),
  /** `pass` when a signature aligned with the From passed; else the first other result, or `unaligned` when only other domains' signatures passed. */
  dkim: z.string().max(16).optional(),
  /** The account requires a trusted pass (requireAuthenticatedSender): anything else proves nothing. */
  required: z.boolean().optional(),
});
export type EmailAuthentication = z.infer<typeof EmailAuthentication>;

/** Email specifics the router needs for threading and loop protection. */
export const EmailMeta = z.object({
  messageId: z.string(),
  inReplyTo: z.string().optional(),
  references: z.array(z.string()).default([]),
  /** Shown as a ticket's title: direction overrides and control characters taken out (display-text.ts). */
  subject: z.string().overwrite(displayText).default(''),
  from: z.string(),
  to: z.array(z.string()).default([]),
  cc: z.array(z.string()).default([]),
  replyTo: z.string().optional(),
  /** The header the sender (`from` above) was taken from: From unless it held no single valid mailbox. */
  senderHeader: z.enum(['from', 'reply-to', 'sender', 'return-path']).optional(),
  /** Why an earlier header in that order was passed over, when one was. */
  senderNote: z.string().optional(),
  /**
   * The gateway's own addresses (the mailboxes and `aliases` of this and every other email
   * connector entry, this one's first), lower case, as the connector knows them: the router never copies them on a reply (it does not know the
   * connector's configuration). Absent from events of earlier versions.
   */
  ownAddresses: z.array(z.string()).max(100).optional(),
  /** What the receiving server found about the From; absent when the mail carries no header that counts (and on events of earlier versions). */
  authentication: EmailAuthentication.optional(),
});
export type EmailMeta = z.infer<typeof EmailMeta>;

/** Why a message must never open a ticket or be auto-acknowledged. */
export const AutomatedKind = z.enum(['auto-reply', 'bounce', 'bulk', 'list', 'echo', 'bot']);

export const StructuredPart = z.discriminatedUnion('type', [
  z.object({ type: z.literal('location'), latitude: z.number(), longitude: z.number(), title: z.string().optional() }),
  z.object({
    type: z.literal('contact'),
    name: z.string(),
    phone: z.string().optional(),
    userId: z.string().optional(),
    vcard: z.string().optional(),
  }),
  z.object({ type: z.literal('reaction'), emoji: z.string(), targetPlatformMessageId: z.string() }),
]);
export type StructuredPart = z.infer<typeof StructuredPart>;

const Envelope = {
  v: z.literal(SCHEMA_VERSION),
  /** Stable id `${channel}:${account}:${platformMessageId}`: the dedup key end to end. */
  id: PrintableId(512),
  channel: SubjectToken,
  account: SubjectToken,
  conversation: InboundConversationRef,
  receivedAt: IsoTime,
};

export const InboundMessage = z.object({
  ...Envelope,
  type: z.literal('message.inbound'),
  sender: Identity,
  /**
   * Until when the channel lets us answer this conversation with a free-form message (WhatsApp
   * Cloud API: 24 hours after this message); absent where there is no such limit.
   */
  replyWindowEndsAt: IsoTime.optional(),
  /**
   * The customer's own title for the message, where the channel has one: a web form's subject
   * (the webhook channel's `subject`). Mail keeps it in `email.subject`. Helpdesks title their
   * tickets with it; absent elsewhere.
   */
  subject: z.string().max(1000).overwrite(displayText).optional(),
  /** NUL made U+FFFD (display-text.ts withoutNul), as the SQL read model must store it. */
  text: z.string().overwrite(withoutNul).default(''),
  /** Full body before quote/signature trimming (email). */
  fullText: z.string().optional(),
  html: z.string().optional(),
  format: z.enum(['plain', 'markdown', 'html']).default('plain'),
  attachments: z.array(Attachment).default([]),
  parts: z.array(StructuredPart).default([]),
  /** Platform id of the message this one replies to / quotes. */
  replyTo: z.string().optional(),
  email: EmailMeta.optional(),
  /** Set by the connector when the message is automated (auto-reply, bounce, our own echo...). */
  automated: AutomatedKind.optional(),
  /** For a bounce: the Message-ID / platform id of our outbound message that bounced, and why. */
  bounceOf: z
    .object({
      platformMessageId: z.string(),
      reason: z.string(),
      /**
       * Each address the report says failed (a DSN's `Action: failed` blocks: Original-Recipient,
       * else Final-Recipient, lower case) and that block's diagnostic. Absent when the report
       * names none (and on events of earlier versions): the whole reply counts as failed.
       */
      recipients: z.array(z.object({ address: z.string().max(1024), reason: z.string().max(1000).optional() })).max(100).optional(),
    })
    .optional(),
  platform: z.object({
    messageId: PrintableId(2048, 0),
    sentAt: IsoTime.optional(),
    /**
     * Who stamped sentAt: `platform` when the platform's servers did (Telegram, Slack, WhatsApp),
     * so the router may judge the event's age by it; absent when the sender wrote it (a mail's
     * Date header, a webhook client's field).
     */
    sentAtBy: z.literal('platform').optional(),
  }),
});
export type InboundMessage = z.infer<typeof InboundMessage>;

export const MessageEdited = z.object({
  ...Envelope,
  type: z.literal('message.edited'),
  sender: Identity,
  targetPlatformMessageId: PrintableId(2048, 0),
  text: z.string().overwrite(withoutNul),
  html: z.string().optional(),
  platform: z.object({ messageId: PrintableId(2048, 0), editedAt: IsoTime.optional() }),
});
export type MessageEdited = z.infer<typeof MessageEdited>;

export const MessageDeleted = z.object({
  ...Envelope,
  type: z.literal('message.deleted'),
  sender: Identity.optional(),
  targetPlatformMessageId: PrintableId(2048, 0),
  platform: z.object({ messageId: PrintableId(2048, 0) }),
});
export type MessageDeleted = z.infer<typeof MessageDeleted>;

/** Everything a connector may publish on omni.in.<channel>.<account>. */
export const InboundEvent = z.discriminatedUnion('type', [InboundMessage, MessageEdited, MessageDeleted]);
export type InboundEvent = z.infer<typeof InboundEvent>;
type DistributiveOmit<T, K extends PropertyKey> = T extends unknown ? Omit<T, K> : never;
/** What a connector hands to ctx.publish: v, channel, account and receivedAt are filled in. */
export type InboundEventInput = DistributiveOmit<z.input<typeof InboundEvent>, 'v' | 'channel' | 'account' | 'receivedAt'> & {
  receivedAt?: string;
};
