/**
 * The ticket in schema v1: the record kept in KV, the append-only log of what happened to it and
 * the lifecycle events announcing each entry (omni.events.ticket.*). Re-exported by schema.ts.
 */
import { z } from 'zod';
import { IsoTime, SCHEMA_VERSION, SubjectToken } from './schema-base.js';
import { ConversationRef, InboundMessage, MessageDeleted, MessageEdited } from './schema-inbound.js';
import { Author, DeliveryStatus, OutboundMessage } from './schema-outbound.js';

export const TicketStatus = z.enum(['new', 'open', 'pending', 'resolved', 'closed']);
export type TicketStatus = z.infer<typeof TicketStatus>;
/**
 * How a status entry's reason starts when the ticket was resolved or closed with an agent reply
 * undelivered (router/commands.ts); the volume report counts such moves to resolved by it.
 */
export const UNDELIVERED_REASON_PREFIX = 'with an undelivered reply';

export const CLOSED_STATUSES: ReadonlySet<TicketStatus> = new Set(['resolved', 'closed']);

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

/** Addresses kept per list on a ticket: a reply copies at most 20 (MAX_CC), the rest is slack for our own and duplicates. */
export const PARTY_LIST_MAX = 50;
/** Agent replies whose To a ticket remembers (EmailParties.replies): a bounce usually names one of the newest. */
export const REPLIES_KEPT = 10;

export const EmailParties = z.object({
  /** The newest mail: its author (Reply-To, else From), the one an agent's reply answers, and its To and Cc, lower case. */
  last: z
    .object({
      author: z.string(),
      to: z.array(z.string()).max(PARTY_LIST_MAX).default([]),
      cc: z.array(z.string()).max(PARTY_LIST_MAX).default([]),
    })
    .optional(),
  /** Everyone who wrote mail into the ticket (each one's Reply-To, else From), oldest first. */
  authors: z.array(z.string()).max(PARTY_LIST_MAX).default([]),
  /** The gateway's own addresses as the connector reported them with the newest mail: never a recipient by default. */
  own: z.array(z.string()).max(100).default([]),
  /**
   * Whom the newest agent replies went To (lower case), oldest first, at most REPLIES_KEPT: a
   * bounce naming only other addresses was a copy's, and the reply still reached its To.
   * `messageId` is the mail's Message-ID once it was sent.
   */
  replies: z
    .array(z.object({ outboundId: z.string(), to: z.array(z.string()).max(PARTY_LIST_MAX), cc: z.array(z.string()).max(PARTY_LIST_MAX).optional(), messageId: z.string().optional() }))
    .max(REPLIES_KEPT)
    .optional(),
  /**
   * Copied addresses whose mail bounced (lower case), oldest first, at most PARTY_LIST_MAX: later
   * replies no longer copy them by default, until they write into the ticket again.
   */
  bouncedCopies: z.array(z.string()).max(PARTY_LIST_MAX).optional(),
});
export type EmailParties = z.infer<typeof EmailParties>;

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
  /**
   * Email tickets: the people on the mail, for whom an agent's reply goes to by default
   * (router/mail-recipients.ts). Absent on tickets whose mail was recorded before it existed:
   * their replies go to the contact alone, as they did.
   */
  emailParties: EmailParties.optional(),
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
    /**
     * Set when the ticket was resolved or closed while agent replies had failed for good and not
     * gone out since (Ticket.failedReplies at that moment): the customer never got the answer, and
     * the log says so next to the close rather than only in an older delivery entry.
     */
    undeliveredReplies: z.array(z.object({ outboundId: z.string(), at: IsoTime, reason: z.string() })).max(10).optional(),
  }),
  z.object({
    kind: z.literal('redaction'),
    at: IsoTime,
    /**
     * An erased person's place in an earlier entry of this ticket: the entry's OMNI_LOG sequence
     * and, in its mail's To or Cc (an inbound event's `email`, an outbound message's `email`) or
     * a delivery's refused copies (`status.refusedCopies`), the positions they held. Positions, never values: a stream message cannot be rewritten in
     * place, so readers leave the addresses out (ticket-log.ts); this entry names no one.
     */
    seq: z.number().int().positive(),
    fields: z.array(z.object({ field: z.enum(['to', 'cc', 'refusedCopies']), index: z.number().int().min(0).max(1000) })).min(1).max(200),
    erasureId: z.string(),
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

/**
 * `omni.events.ticket.erased`: a ticket was erased (POST /v1/contacts/{id}/erase, or retention).
 * Whoever keeps a copy (a helpdesk, a webhook receiver) deletes it. Names the ticket and the
 * erasure only: the ticket's other fields are personal data or lead to it, and are gone.
 * Published before the ticket's stores are purged, with the Nats-Msg-Id `id`, so an erasure cut
 * short has announced it already; it comes after the ticket's own events in the stream.
 */
export const TicketErasedEvent = z.object({
  v: z.literal(SCHEMA_VERSION),
  type: z.literal('ticket.erased'),
  /** `ticket.erased:<ticketId>:<erasureId>`: unique per ticket and erasure; dedupe on it. */
  id: z.string(),
  ticketId: z.string(),
  at: IsoTime,
  reason: z.enum(['api', 'retention']),
  /** The erasure's id, as in its audit event (`omni.events.audit.erasure`). */
  erasureId: z.string(),
});
export type TicketErasedEvent = z.infer<typeof TicketErasedEvent>;

/** Everything on `omni.events.ticket.>`: the lifecycle events, and a ticket's erasure. */
export type TicketStreamEvent = TicketEvent | TicketErasedEvent;
