/**
 * Email: one connector entry per team (account) with one or more mailboxes, each read over IMAP
 * (imapflow, IDLE plus a fallback poll) and answered over SMTP (nodemailer pool). Threading is
 * the router's job; this connector delivers the headers it needs and protects against loops.
 */
import { z } from 'zod';
import { isMailbox } from '../../core/mail-address.js';
import { plaintextWarnings } from './plaintext-warning.js';
import type { ConnectorFactory } from '../contract.js';
import { EmailConnector } from './connector.js';

const Host = z.string().min(1);

export const ImapOptions = z.object({
  host: Host,
  /** 993 with `secure: true` (implicit TLS), 143 with STARTTLS. */
  port: z.number().int().min(1).max(65535).default(993),
  secure: z.boolean().default(true),
  /** On a plain connection (secure: false): upgrade with STARTTLS (true), or never (false: local test servers only). */
  starttls: z.boolean().default(true),
  user: z.string().min(1),
  pass: z.string().min(1),
  /** Check the server's certificate (turn off only for a self-signed test server). */
  rejectUnauthorized: z.boolean().default(true),
});

export const SmtpOptions = z.object({
  host: Host,
  /** 587 with STARTTLS, 465 with `secure: true`, 25 on a trusted relay. */
  port: z.number().int().min(1).max(65535).default(587),
  secure: z.boolean().default(false),
  /** On a plain connection: require STARTTLS (true) or never use it (false: local relays and tests). */
  starttls: z.boolean().default(true),
  user: z.string().optional(),
  pass: z.string().optional(),
  rejectUnauthorized: z.boolean().default(true),
  /** Pooled SMTP connections per mailbox. */
  maxConnections: z.number().int().min(1).max(20).default(3),
  /** Provider limit, e.g. 30 for Exchange Online; 0 = no pacing. */
  perMinute: z.number().int().nonnegative().default(0),
  timeoutMs: z.number().int().positive().default(60_000),
});

export const MailboxOptions = z
  .object({
    /** The mailbox address: conversation id of its tickets and the From of replies. */
    address: z.string().email(),
    /** Display name in the From header of replies, e.g. "Служба поддержки". */
    name: z.string().optional(),
    imap: ImapOptions,
    smtp: SmtpOptions,
    /** Folders read for new mail. */
    folders: z.array(z.string().min(1)).min(1).default(['INBOX']),
    /** After the event is stored: flag the mail \Seen (and our keyword) or move it to `processedFolder`. */
    afterProcessing: z.enum(['seen', 'move']).default('seen'),
    processedFolder: z.string().min(1).default('Processed'),
    /** Right-hand side of our Message-IDs; default: the address's domain. */
    messageIdDomain: z.string().min(1).optional(),
    /**
     * Other addresses that deliver into this mailbox (help@ forwarded to support@): ours, so a
     * reply never copies them (the customer's Cc of both would send our answer back to us).
     */
    aliases: z.array(z.string().refine(isMailbox, 'not a mail address')).max(50).default([]),
  })
  .refine((m) => m.afterProcessing !== 'move' || !m.folders.includes(m.processedFolder), {
    message: 'processedFolder must not be one of the watched folders',
    path: ['processedFolder'],
  });
export type MailboxOptions = z.infer<typeof MailboxOptions>;

export const EmailOptions = z
  .object({
    mailboxes: z.array(MailboxOptions).min(1),
    /** IDLE is re-issued after this long (RFC 2177: servers may drop an IDLE after 30 minutes). */
    idleRestartMs: z.number().int().min(1000).max(29 * 60_000).default(25 * 60_000),
    /** Fallback poll: also catches what an IDLE notification missed, or servers without IDLE. */
    pollIntervalMs: z.number().int().min(250).default(60_000),
    /** First start on a folder (no checkpoint yet), and a UIDVALIDITY change before it was ever fully read: take only unread mail, or all of it. */
    firstRun: z.enum(['unseen', 'all']).default('unseen'),
    /** Keyword set on every processed mail, so a rescan after a UIDVALIDITY change skips it. */
    processedKeyword: z.string().regex(/^\$?[A-Za-z0-9_-]+$/).default('$Omnigate'),
    /**
     * Keyword set, with \Flagged, on a mail that could not become an event (parked as a dead
     * letter); such a mail is left unread and not moved, so people reading the mailbox see it.
     */
    parkedKeyword: z.string().regex(/^\$?[A-Za-z0-9_-]+$/).default('$OmnigateParked'),
    /** Mails fetched per round trip. */
    batchSize: z.number().int().min(1).max(1000).default(50),
    /** Larger mails are not downloaded: their headers become the event, the body is reported missing. */
    maxMessageBytes: z.number().int().positive().default(50 * 1024 * 1024),
    /** Per attachment; capped by the gateway's media.maxBytes. */
    maxAttachmentBytes: z.number().int().positive().optional(),
    /**
     * Characters of body text/HTML kept in the event; each body is also held to 240 KiB of JSON, and
     * the whole event to 800 KiB (a NATS message is at most 1 MB). A longer text is cut with a note
     * and stored whole as `message.txt`, a longer HTML stored whole as `message.html`.
     */
    maxBodyChars: z.number().int().min(1000).max(400_000).default(200_000),
    /** Reconnect backoff ceiling. */
    reconnectMaxMs: z.number().int().min(100).default(60_000),
    /**
     * The authserv-ids (the first word of an Authentication-Results header: mx.google.com,
     * mxs.mail.ru, your MTA's hostname) of the receiving servers whose verdict on the sender is
     * believed, pass and fail: the topmost header naming one counts (authentication.ts). Unset,
     * only a fail in the topmost header counts. Compared case-insensitively.
     */
    trustedAuthServIds: z
      .array(z.string().trim().toLowerCase().regex(/^[a-z0-9][a-z0-9.-]*$/, 'not a host name (the first word of an Authentication-Results header)').max(255))
      .max(20)
      .optional(),
    /** Treat mail that no trusted server says passed like forged mail: it joins no existing ticket. Needs trustedAuthServIds. */
    requireAuthenticatedSender: z.boolean().default(false),
  })
  .refine((o) => o.parkedKeyword.toLowerCase() !== o.processedKeyword.toLowerCase(), {
    message: 'parkedKeyword must differ from processedKeyword',
    path: ['parkedKeyword'],
  })
  .refine((o) => !o.requireAuthenticatedSender || (o.trustedAuthServIds?.length ?? 0) > 0, {
    message: 'needs trustedAuthServIds: without a receiving server trusted to say pass, no mail could prove its sender',
    path: ['requireAuthenticatedSender'],
  })
  .refine((o) => new Set(o.mailboxes.map((m) => m.address.toLowerCase())).size === o.mailboxes.length, {
    message: 'each mailbox address may appear once',
    path: ['mailboxes'],
  });
export type EmailOptions = z.infer<typeof EmailOptions>;

const factory: ConnectorFactory<EmailOptions> = {
  type: 'email',
  channel: 'email',
  options: EmailOptions,
  create: (options, ctx) => new EmailConnector(options, ctx),
  ownAddresses: (options) => options.mailboxes.flatMap((m) => [m.address, ...m.aliases]),
  warnings: (options) => [
    ...(options.trustedAuthServIds?.length
      ? []
      : ['trustedAuthServIds is not set: a mail with a forged From joins that sender\'s tickets unless the topmost Authentication-Results header says it failed (docs/connectors/email.md, "Forged senders")']),
    ...plaintextWarnings(options.mailboxes),
  ],
};
export default factory;
