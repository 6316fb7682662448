/**
 * Outbound payloads of schema v1: the replies the router resolves for a connector (omni.out.*)
 * and the delivery statuses connectors report back (omni.status.*). Re-exported by schema.ts.
 */
import { z } from 'zod';
import { IsoTime, SCHEMA_VERSION, SubjectToken } from './schema-base.js';
import { ConversationRef } from './schema-inbound.js';

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

/** At most this many refused copies travel with a `sent` (a reply has at most 20 recipients). */
export const MAX_REFUSED_COPIES = 50;

/** A copy (email Cc) the platform refused while it took the message for its To. */
export const RefusedCopy = z.object({
  address: z.string(),
  /** The server's reply (SMTP: `550 5.1.1 no such user`). */
  reason: z.string(),
  /** Refused for now (SMTP 4xx, greylisting): noted, but later replies still copy it. */
  temporary: z.literal(true).optional(),
});
export type RefusedCopy = z.infer<typeof RefusedCopy>;

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
  /** With `sent`: copies the platform refused while it took the message for its To (email Cc refused at RCPT TO). */
  refusedCopies: z.array(RefusedCopy).max(MAX_REFUSED_COPIES).optional(),
});
export type DeliveryStatus = z.infer<typeof DeliveryStatus>;
