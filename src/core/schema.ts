/**
 * Event schema v1: the single definition of every payload on the bus. Each zod schema both
 * validates at the edges (connector publish, router consume, API input) and is the source of the
 * TypeScript types via z.infer. docs/events.md shows an example of each.
 */
import { z } from 'zod';

import { AgentText, IsoTime, PrintableId, SCHEMA_VERSION, SubjectToken } from './schema-base.js';

export { MimeType, PrintableId, SCHEMA_VERSION, SubjectToken, UNREAL_OFFSET, realOffset } from './schema-base.js';
// Connector states, dead letters and error rendering: the operational payloads.
export * from './schema-ops.js';
// Audit events (erasure): counts and who asked, no personal data.
export * from './schema-audit.js';

export const Identity = z.object({
  /** Stable platform id of the person (Telegram user id, email address, Slack user id, WhatsApp JID). */
  id: PrintableId(1024),
  displayName: z.string().optional(),
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

export const ConversationRef = z.object({
  /** Platform chat id: Telegram chat id, Slack channel id, WhatsApp JID, mailbox address. */
  id: PrintableId(1024),
  /** Thread inside the chat: Slack thread_ts, Telegram forum topic id. */
  threadId: PrintableId(1024).optional(),
  kind: z.enum(['private', 'group', 'channel', 'email']),
  title: z.string().optional(),
});
export type ConversationRef = z.infer<typeof ConversationRef>;

/** Email specifics the router needs for threading and loop protection. */
export const EmailMeta = z.object({
  messageId: z.string(),
  inReplyTo: z.string().optional(),
  references: z.array(z.string()).default([]),
  subject: z.string().default(''),
  from: z.string(),
  to: z.array(z.string()).default([]),
  cc: z.array(z.string()).default([]),
  replyTo: z.string().optional(),
  /** The header the sender (`from` above) was taken from: From unless it held no single valid mailbox. */
  senderHeader: z.enum(['from', 'reply-to', 'sender', 'return-path']).optional(),
  /** Why an earlier header in that order was passed over, when one was. */
  senderNote: z.string().optional(),
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
  conversation: ConversationRef,
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
  text: z.string().default(''),
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
  bounceOf: z.object({ platformMessageId: z.string(), reason: z.string() }).optional(),
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
  text: z.string(),
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

export const Author = z.object({ id: z.string().min(1), name: z.string().optional() });
export type Author = z.infer<typeof Author>;

export const OutboundAttachment = z.object({
  objectKey: z.string().min(1),
  /** The reference record (`ref/<id>`) naming this file for this ticket. */
  ref: z.string().optional(),
  name: z.string(),
  mimeType: z.string(),
  size: z.number().int().nonnegative(),
  sha256: z.string().optional(),
});
export type OutboundAttachment = z.infer<typeof OutboundAttachment>;

/**
 * Why we send: an agent's answer, or one of our automated messages. Optional and additive in v1:
 * messages and statuses from before it have none (readers fall back to the id patterns).
 */
export const SendPurpose = z.enum(['agent_reply', 'acknowledgement', 'sla_alert', 'satisfaction_request']);
export type SendPurpose = z.infer<typeof SendPurpose>;

/** A reply the router resolved for a connector: omni.out.<channel>.<account>. */
/**
 * A pre-approved message template (WhatsApp Cloud API): the only message WhatsApp lets a business
 * send outside the 24-hour customer-service window. `parameters` fill the body's {{1}}, {{2}}…
 * in order, or by the names configured for the template.
 */
export const MessageTemplate = z.object({
  name: z.string().regex(/^[a-z0-9_]{1,512}$/, 'lowercase letters, digits and "_", as in WhatsApp Manager'),
  /** Language code of the approved translation, e.g. ru or en_US. */
  language: z.string().regex(/^[a-z]{2,3}(_[A-Z]{2})?$/, 'such as ru or en_US'),
  parameters: z.union([z.array(z.string().max(1024)), z.record(z.string(), z.string().max(1024))]).default([]),
});
export type MessageTemplate = z.infer<typeof MessageTemplate>;

export const OutboundMessage = z.object({
  v: z.literal(SCHEMA_VERSION),
  type: z.literal('message.outbound'),
  /** Idempotency key: the connector sends each id at most once. */
  id: z.string().min(1).max(256),
  ticketId: z.string(),
  channel: SubjectToken,
  account: SubjectToken,
  conversation: ConversationRef,
  text: z.string(),
  html: z.string().optional(),
  attachments: z.array(OutboundAttachment).default([]),
  /** Platform id of the customer's message to answer/quote, when the channel supports it. */
  replyTo: z.string().optional(),
  email: z
    .object({
      to: z.array(z.string()).min(1),
      cc: z.array(z.string()).default([]),
      subject: z.string(),
      inReplyTo: z.string().optional(),
      references: z.array(z.string()).default([]),
    })
    .optional(),
  author: Author,
  createdAt: IsoTime,
  /** Automated replies (auto-acknowledgement, CSAT request) are marked so connectors can add headers. */
  automated: z.boolean().default(false),
  purpose: SendPurpose.optional(),
  /** Send this template instead of `text` (WhatsApp Cloud API only; `text` stays the log's record). */
  template: MessageTemplate.optional(),
});
export type OutboundMessage = z.infer<typeof OutboundMessage>;
export type OutboundMessageInput = z.input<typeof OutboundMessage>;

/** A connector's report of what happened to an outbound message: omni.status.<channel>.<account>. */
export const DeliveryStatus = z.object({
  v: z.literal(SCHEMA_VERSION),
  type: z.literal('delivery.status'),
  outboundId: z.string(),
  ticketId: z.string(),
  channel: SubjectToken,
  account: SubjectToken,
  status: z.enum(['sent', 'delivered', 'read', 'failed']),
  platformMessageId: z.string().optional(),
  reason: z.string().optional(),
  attempts: z.number().int().nonnegative().default(1),
  at: IsoTime,
  /** The outbound message's purpose, copied by the outbound runner. */
  purpose: SendPurpose.optional(),
  /** Set on the outcome of a failed message sent again by `omnigate dlq --replay` (1 for the first replay): a new outcome for the ticket. */
  round: z.number().int().positive().optional(),
});
export type DeliveryStatus = z.infer<typeof DeliveryStatus>;

export const TicketStatus = z.enum(['new', 'open', 'pending', 'resolved', 'closed']);
export type TicketStatus = z.infer<typeof TicketStatus>;
export const CLOSED_STATUSES: ReadonlySet<TicketStatus> = new Set(['resolved', 'closed']);

/** Commands: what the API and anyone on the bus ask of the router (omni.cmd.*, request/reply). */
export const ReplyCommand = z.object({
  ticketId: z.string().min(1),
  text: AgentText,
  html: z.string().optional(),
  attachments: z.array(OutboundAttachment).default([]),
  idempotencyKey: z.string().min(1).max(200).optional(),
  author: Author.default({ id: 'api' }),
  /** WhatsApp Cloud API: send this approved template (also outside the 24-hour window); `text` is what the ticket log shows. */
  template: MessageTemplate.optional(),
});
export type ReplyCommand = z.infer<typeof ReplyCommand>;

export const NoteCommand = z.object({
  ticketId: z.string().min(1),
  text: AgentText,
  idempotencyKey: z.string().min(1).max(200).optional(),
  author: Author.default({ id: 'api' }),
});
export type NoteCommand = z.infer<typeof NoteCommand>;

export const StatusCommand = z.object({
  ticketId: z.string().min(1),
  status: TicketStatus,
  idempotencyKey: z.string().min(1).max(200).optional(),
  author: Author.default({ id: 'api' }),
});
export type StatusCommand = z.infer<typeof StatusCommand>;

/** The same ticket in another system (a helpdesk): kept on the ticket as `externalRefs`. */
export const ExternalRef = z.object({
  /** The configured helpdesk id (`helpdesks[].id`), e.g. `zammad`. */
  system: z.string().min(1).max(100),
  /** That system's id for the ticket. */
  externalId: z.string().min(1).max(200),
  /** Where an operator opens it. */
  url: z.string().max(2000).optional(),
  linkedAt: IsoTime,
});
export type ExternalRef = z.infer<typeof ExternalRef>;

/** omni.cmd.link: record (or replace) the ticket's id in another system. Idempotent by nature. */
export const LinkCommand = z.object({
  ticketId: z.string().min(1),
  system: ExternalRef.shape.system,
  externalId: ExternalRef.shape.externalId,
  url: ExternalRef.shape.url,
});
export type LinkCommand = z.infer<typeof LinkCommand>;

/** Why a message landed in its ticket: the rule and the value it matched. */
export const ThreadMatch = z.object({
  rule: z.enum([
    'email-in-reply-to',
    'email-references',
    'email-subject-token',
    'email-marker',
    'reply-to-message',
    'open-conversation',
    'reopened',
    'new-ticket',
    'edit-target',
  ]),
  value: z.string(),
});
export type ThreadMatch = z.infer<typeof ThreadMatch>;

export const TicketContact = z.object({
  id: z.string(),
  displayName: z.string().optional(),
  handles: z.record(z.string(), z.string()).default({}),
});

export const Ticket = z.object({
  v: z.literal(SCHEMA_VERSION),
  id: z.string(),
  number: z.number().int().positive(),
  status: TicketStatus,
  channel: SubjectToken,
  account: SubjectToken,
  conversation: ConversationRef,
  threadKey: z.string(),
  subject: z.string().optional(),
  contact: TicketContact,
  /** Addresses/ids that took part: a reply from outside this set does not join by References. */
  participants: z.array(z.string()).default([]),
  /** Last inbound platform message id: outbound replies quote it where the channel supports that. */
  lastInboundPlatformId: z.string().optional(),
  /** Email threading state for outbound replies. */
  lastEmailMessageId: z.string().optional(),
  emailReferences: z.array(z.string()).default([]),
  createdAt: IsoTime,
  updatedAt: IsoTime,
  closedAt: IsoTime.optional(),
  firstResponseAt: IsoTime.optional(),
  lastInboundAt: IsoTime.optional(),
  lastOutboundAt: IsoTime.optional(),
  /** The newest reply published for the ticket (any purpose), named by the next one so it is sent after it (core/reply-order.ts). */
  lastOutbound: z.object({ id: z.string(), seq: z.number().int().positive() }).optional(),
  /**
   * The agent reply that last set lastOutboundAt (and maybe firstResponseAt), with what they were
   * before: a failure reported after it was sent (a bounce, a late `failed` status) undoes them,
   * so the SLA watcher and reports count the customer as unanswered again.
   */
  lastAnswer: z
    .object({
      outboundId: z.string(),
      at: IsoTime,
      /** The mail's Message-ID (or the platform's id): a bounce naming it is this reply's failure. */
      platformMessageId: z.string().optional(),
      lastOutboundBefore: IsoTime.optional(),
      firstResponseBefore: IsoTime.optional(),
      /** It failed after it was sent and was undone; kept so a bounce processed again names the same reply. */
      undone: z.boolean().optional(),
    })
    .optional(),
  /** Until when a free-form reply is allowed (the newest replyWindowEndsAt of the customer's messages); later, only a template. */
  replyWindowEndsAt: IsoTime.optional(),
  messageCount: z.number().int().nonnegative().default(0),
  /**
   * The newest outcome of an agent's reply (not automatic acknowledgements or SLA alerts).
   * `failed` (with the reason) also put the ticket back to `open`: the customer has no answer.
   */
  lastDelivery: z
    .object({
      status: z.enum(['sent', 'delivered', 'read', 'failed']),
      /** `<reason code>: <detail>`, e.g. `blocked_by_user: …`, `outside_24h_window: …`. */
      reason: z.string().optional(),
      outboundId: z.string(),
      at: IsoTime,
    })
    .optional(),
  /**
   * Agent replies that failed for good and have not gone out since, oldest first, at most 10: a
   * later reply that was sent sets lastDelivery to `sent`, and the earlier one that never reached
   * the customer stayed visible only in the log. A replay of it that is sent takes it off.
   */
  failedReplies: z.array(z.object({ outboundId: z.string(), at: IsoTime, reason: z.string() })).max(10).optional(),
  /** Highest ticket-log sequence of a delivery outcome applied to this record (for outcomes older than recentDeliveries). */
  appliedSeq: z.number().int().nonnegative().default(0),
  /**
   * The last 16 delivery outcomes applied (a short hash of outbound id and status): an outcome
   * delivered or reported again (a redelivery, a platform resending a receipt after a crash) is
   * neither logged nor applied twice, in whatever order outcomes are handled.
   */
  recentDeliveries: z.array(z.string()).optional(),
  /** recentDeliveries names every outcome ever applied (none has dropped out): an absent one was not applied. */
  recentDeliveriesAll: z.boolean().optional(),
  /** SLA breaches already announced, so each is reported once. */
  /** Customer satisfaction: the request after close and the customer's rating (1–5). */
  csat: z
    .object({
      /** When the request was decided (one per ticket); answers are judged against it from then on. */
      requestedAt: IsoTime.optional(),
      /** Set while the request is being sent: a customer message waits for it rather than reopen under it. */
      sendingUntil: IsoTime.optional(),
      /** When the request was handed to the channel. */
      sentAt: IsoTime.optional(),
      rating: z.number().int().min(1).max(5).optional(),
      ratedAt: IsoTime.optional(),
    })
    .optional(),
  /** Messages to the lead about this ticket (SLA breaches, low ratings) and what became of them. */
  escalations: z
    .array(
      z.object({
        /** The outbound message id on the lead's channel. */
        id: z.string(),
        reason: z.string(),
        at: IsoTime,
        outcome: z.enum(['pending', 'delivered', 'failed']),
        detail: z.string().optional(),
      }),
    )
    .optional(),
  /** Id of the last automated change (SLA mark, satisfaction request): who won a compare-and-set is read from the stored record. */
  automationOp: z.string().optional(),
  /**
   * The last status change made by a command with an idempotency key (or a failed reply putting
   * the ticket back to open), and the status it replaced: a retry after its log entry failed
   * finds the change made and logs it then.
   */
  statusOp: z.object({ id: z.string(), from: TicketStatus, at: IsoTime.optional() }).optional(),
  sla: z
    .object({
      firstResponseBreachedAt: IsoTime.optional(),
      /** lastInboundAt of the customer message whose wait breached the no-answer limit. */
      noAnswerBreachedFor: IsoTime.optional(),
      /**
       * Breaches marked whose escalation, log entry or event may not have been made yet (a failure
       * or a crash after the mark): the next pass makes them, each step idempotent, then clears them.
       */
      unreported: z
        .array(z.object({ breach: z.enum(['first_response', 'no_answer']), since: IsoTime, at: IsoTime, limitMs: z.number().int().positive() }))
        .optional(),
    })
    .optional(),
  /** Ids of the last inbound events applied: a redelivered event changes nothing twice. */
  recentEvents: z.array(z.string()).default([]),
  /**
   * What those of recentEvents that reopened the ticket or rated it did (by event id), so a
   * redelivery after a crash between the ticket update and the log writes logs the same status
   * change and rating the first attempt decided.
   */
  recentOutcomes: z.record(z.string(), z.object({ reopenedFrom: TicketStatus.optional(), rated: z.number().int().min(1).max(5).optional() })).optional(),
  /** The same ticket in helpdesks (one entry per configured helpdesk id): set by omni.cmd.link. */
  externalRefs: z.array(ExternalRef).optional(),
});
export type Ticket = z.infer<typeof Ticket>;

/** One entry of the append-only ticket log: omni.ticket.<ticketId>.log. */
export const LogEntry = z.discriminatedUnion('kind', [
  z.object({ kind: z.literal('inbound'), at: IsoTime, event: InboundMessage, match: ThreadMatch }),
  z.object({ kind: z.literal('edited'), at: IsoTime, event: MessageEdited, match: ThreadMatch }),
  z.object({ kind: z.literal('deleted'), at: IsoTime, event: MessageDeleted, match: ThreadMatch }),
  z.object({ kind: z.literal('outbound'), at: IsoTime, message: OutboundMessage }),
  z.object({ kind: z.literal('note'), at: IsoTime, id: z.string(), text: z.string(), author: Author }),
  z.object({ kind: z.literal('delivery'), at: IsoTime, status: DeliveryStatus }),
  z.object({ kind: z.literal('rating'), at: IsoTime, rating: z.number().int().min(1).max(5), low: z.boolean(), eventId: z.string() }),
  z.object({
    kind: z.literal('sla'),
    at: IsoTime,
    breach: z.enum(['first_response', 'no_answer']),
    /** When the clock started (ticket created / the customer's last message). */
    since: IsoTime,
    limitMs: z.number().int().positive(),
    escalatedTo: z.string().optional(),
  }),
  z.object({
    kind: z.literal('escalation'),
    at: IsoTime,
    /** The outbound message id on the lead's channel. */
    id: z.string(),
    /** What was escalated: "first_response", "no_answer" or "rating". */
    reason: z.string(),
    target: z.string(),
    outcome: z.enum(['delivered', 'failed']),
    detail: z.string().optional(),
  }),
  z.object({
    kind: z.literal('status'),
    at: IsoTime,
    from: TicketStatus.optional(),
    to: TicketStatus,
    author: Author,
    reason: z.string().optional(),
  }),
]);
export type LogEntry = z.infer<typeof LogEntry>;

/** Ticket lifecycle events for helpdesks and anyone on the bus: omni.events.ticket.<kind>. */
export const TicketEvent = z.object({
  v: z.literal(SCHEMA_VERSION),
  type: z.enum([
    'ticket.created',
    'ticket.message',
    'ticket.edited',
    'ticket.deleted',
    'ticket.reply',
    'ticket.note',
    'ticket.status',
    'ticket.delivery',
    /** An agent's reply failed for good; the ticket is back to `open` (entry: the delivery). */
    'ticket.delivery_failed',
    'ticket.sla',
    'ticket.rating',
  ]),
  /** Unique per event; webhooks and consumers dedupe on it. */
  id: z.string(),
  ticketId: z.string(),
  ticketNumber: z.number().int(),
  channel: SubjectToken,
  account: SubjectToken,
  status: TicketStatus,
  at: IsoTime,
  /** The conversation (and thread) the ticket lives in: a receiver can answer without calling back. */
  conversation: ConversationRef.optional(),
  /** The customer. */
  contact: TicketContact.optional(),
  /** The newest outcome of an agent's reply (see Ticket.lastDelivery). */
  lastDelivery: Ticket.shape.lastDelivery,
  /** Agent replies that failed for good and have not gone out since (see Ticket.failedReplies); absent when none. */
  failedReplies: Ticket.shape.failedReplies,
  /** The log entry this event announces; for ticket.created, the first message (kind `inbound`). */
  entry: LogEntry.optional(),
});
export type TicketEvent = z.infer<typeof TicketEvent>;
