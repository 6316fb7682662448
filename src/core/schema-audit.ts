/**
 * Audit events: what the gateway did to stored data, announced on omni.events.audit.<kind>.
 * They carry counts and who asked, never the person's data (an audit trail of an erasure that
 * named the person would keep what was erased).
 */
import { z } from 'zod';
import { IsoTime, SCHEMA_VERSION } from './schema-base.js';

/** What one erasure (or one retention sweep) removed, per store. */
export const ErasureCounts = z.object({
  /** Ticket-log entries purged (OMNI_LOG, by the ticket's subject). */
  logEntries: z.number().int().nonnegative(),
  /** Ticket records purged from omni_tickets. */
  tickets: z.number().int().nonnegative(),
  /** omni_threads entries (conversation bindings, Message-IDs, platform ids) pointing at those tickets. */
  threadKeys: z.number().int().nonnegative(),
  /** omni_dedup entries (command results, outbound markers, acknowledgement stamps) naming them. */
  dedupKeys: z.number().int().nonnegative(),
  /** Attachment bytes deleted from omni_media (bytes another ticket still references stay). */
  attachments: z.number().int().nonnegative(),
  /** Attachment reference records deleted from omni_media. */
  attachmentRefs: z.number().int().nonnegative(),
  /** Copies in the transport streams, erased by sequence. */
  inbound: z.number().int().nonnegative(),
  outbound: z.number().int().nonnegative(),
  status: z.number().int().nonnegative(),
  events: z.number().int().nonnegative(),
  deadLetters: z.number().int().nonnegative(),
  /** Rows deleted from the SQL read model, per table (empty when no read model ran). */
  sql: z.record(z.string(), z.number().int().nonnegative()).default({}),
});
export type ErasureCounts = z.infer<typeof ErasureCounts>;

/** omni.events.audit.erasure: a person's data was erased (API) or tickets expired (retention). */
export const AuditErasureEvent = z.object({
  v: z.literal(SCHEMA_VERSION),
  type: z.literal('audit.erasure'),
  /** Unique per erasure; also the Nats-Msg-Id. */
  id: z.string(),
  at: IsoTime,
  /** `api` (POST /v1/contacts/{id}/erase) or `retention` (the sweeper). */
  reason: z.enum(['api', 'retention']),
  /** The API token's name, or `retention`. Never a customer identifier. */
  requestedBy: z.string(),
  /** How many tickets were erased (their ids are not repeated here). */
  ticketCount: z.number().int().nonnegative(),
  erased: ErasureCounts,
});
export type AuditErasureEvent = z.infer<typeof AuditErasureEvent>;

/**
 * omni.events.audit.export: a person's data was exported (GET /v1/contacts/{id}/export), one event
 * per page served. An export is a processing of personal data too (152-FZ art. 3), so it is
 * recorded; like an erasure's event it says who asked and how much, never whom.
 */
export const AuditExportEvent = z.object({
  v: z.literal(SCHEMA_VERSION),
  type: z.literal('audit.export'),
  /** Unique per page served; also the Nats-Msg-Id. */
  id: z.string(),
  at: IsoTime,
  /** The API token's name. Never a customer identifier. */
  requestedBy: z.string(),
  /** Whether this page continued an earlier one (a cursor was given). */
  continued: z.boolean(),
  /** What this page handed out: tickets, their log entries and attachment references (counts only). */
  exported: z.object({
    tickets: z.number().int().nonnegative(),
    logEntries: z.number().int().nonnegative(),
    attachments: z.number().int().nonnegative(),
  }),
});
export type AuditExportEvent = z.infer<typeof AuditExportEvent>;
