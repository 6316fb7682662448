/**
 * Commands of schema v1: what the API and anyone on the bus ask of the router on omni.cmd.*
 * (reply, note, status change, link to a helpdesk's ticket). Re-exported by schema.ts.
 */
import { z } from 'zod';
import { AgentText, VisibleId } from './schema-base.js';
import { isMailbox } from './mail-address.js';
import { Author, MessageTemplate, OutboundAttachment } from './schema-outbound.js';
import { ExternalRef, TicketStatus } from './schema-ticket.js';

/** Addresses a reply's To, and its Cc, may hold: explicit and default alike (the default Cc is cut here too). */
export const MAX_RECIPIENTS = 20;

/** Bare addresses (`ivan@romashka.ru`, not `Иван <ivan@romashka.ru>`); a refusal names the one, e.g. `cc.2`. */
const Recipients = z
  .array(z.string().trim().max(320).refine(isMailbox, 'not a mail address (write it bare: name@domain)'))
  .max(MAX_RECIPIENTS, `at most ${MAX_RECIPIENTS} addresses`);

/**
 * Who asks, as a command names them: the id is matched and logged, so one with an invisible
 * character (a direction override, a zero-width space) is refused, naming `author.id`. Entries
 * already in ticket logs keep the looser Author they were written with.
 */
export const CommandAuthor = Author.extend({ id: VisibleId(z.string().min(1)) });

/** A client's key for a command, kept in KV and sent on as a header: printable and visible. */
const IdempotencyKey = VisibleId(z.string().min(1).max(200));

/** Commands: what the API and anyone on the bus ask of the router (omni.cmd.*, request/reply). */
export const ReplyCommand = z.object({
  ticketId: z.string().min(1),
  text: AgentText,
  html: z.string().optional(),
  attachments: z.array(OutboundAttachment).default([]),
  idempotencyKey: IdempotencyKey.optional(),
  author: CommandAuthor.default({ id: 'api' }),
  /** WhatsApp Cloud API: send this approved template (also outside the 24-hour window); `text` is what the ticket log shows. */
  template: MessageTemplate.optional(),
  /** Email tickets: the reply's To instead of the author of the mail it answers (router/mail-recipients.ts). */
  to: Recipients.min(1, 'at least one address; leave `to` out for the default (the author of the mail answered)').optional(),
  /** Email tickets: the reply's Cc instead of everyone else on the conversation; `[]` copies nobody. */
  cc: Recipients.optional(),
});
export type ReplyCommand = z.infer<typeof ReplyCommand>;

export const NoteCommand = z.object({
  ticketId: z.string().min(1),
  text: AgentText,
  idempotencyKey: IdempotencyKey.optional(),
  author: CommandAuthor.default({ id: 'api' }),
});
export type NoteCommand = z.infer<typeof NoteCommand>;

export const StatusCommand = z.object({
  ticketId: z.string().min(1),
  status: TicketStatus,
  idempotencyKey: IdempotencyKey.optional(),
  author: CommandAuthor.default({ id: 'api' }),
});
export type StatusCommand = z.infer<typeof StatusCommand>;

/** omni.cmd.link: record (or replace) the ticket's id in another system. Idempotent by nature. */
export const LinkCommand = z.object({
  ticketId: z.string().min(1),
  system: VisibleId(ExternalRef.shape.system),
  externalId: VisibleId(ExternalRef.shape.externalId),
  url: ExternalRef.shape.url,
});
export type LinkCommand = z.infer<typeof LinkCommand>;
