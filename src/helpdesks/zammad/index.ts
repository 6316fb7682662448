/**
 * Zammad through its REST API (docs/helpdesks/zammad.md; every API fact used is in
 * /work/shared/recipes/zammad-api.md with its source): token auth, customers found or created by
 * email, phone or chat id, one Zammad ticket per omnigate ticket (our id in a custom field, so a
 * crash before the mapping was recorded finds the ticket instead of making a second), agents'
 * answers from a signed Trigger → Webhook, with polling as the fallback.
 */
import { z } from 'zod';
import { HeaderToken } from '../../core/schema-base.js';
import { Duration, FetchableUrl, PositiveDuration } from '../../core/config-units.js';
import { TicketStatus } from '../../core/schema.js';
import type { HelpdeskFactory } from '../contract.js';
import { ZammadAdapter } from './adapter.js';

/** Zammad's stock ticket states (a ticket state name is free text there: custom ones work too). */
const DEFAULT_TO_ZAMMAD: Record<TicketStatus, string | null> = {
  new: 'new',
  open: 'open',
  // "pending reminder" needs a pending time an agent chooses: an answered chat stays open there.
  pending: null,
  resolved: 'closed',
  closed: 'closed',
};
const DEFAULT_FROM_ZAMMAD: Record<string, TicketStatus | null> = {
  new: null,
  open: 'open',
  'pending reminder': 'pending',
  'pending close': 'resolved',
  closed: 'closed',
  merged: 'closed',
};

export const ZammadOptions = z.object({
  /** Base URL of the Zammad instance, e.g. https://support.example.com (no /api/v1). */
  url: FetchableUrl
    .transform((u) => u.replace(/\/+$/, ''))
    // With it, every call went to /api/v1/api/v1/… and every event was parked as a 404.
    .refine((u) => !/\/api(\/v1)?$/i.test(u), 'the base URL of Zammad, without /api/v1 (e.g. https://support.example.com)'),
  /** Access token of the integration user (Profile → Token Access); give it as ${ZAMMAD_TOKEN}. */
  token: HeaderToken(10),
  /** Group of new tickets, unless a rule below matches. */
  group: z.string().min(1).default('Users'),
  /** Group by the ticket's channel/account: the first rule whose given keys all match wins. */
  groups: z.array(z.object({ channel: z.string().optional(), account: z.string().optional(), group: z.string().min(1) }).strict()).default([]),
  /** Name of the ticket custom field (Object Manager, type text) holding the omnigate ticket id. */
  ticketField: z.string().regex(/^[a-z][a-z0-9_]*$/, 'a Zammad attribute name: lowercase letters, digits and "_"').default('omnigate_ticket'),
  /**
   * Article type for what the customer wrote and replies sent from outside Zammad. Must be one
   * Zammad does not deliver itself (an `email`/`sms`/`telegram` article would be sent by Zammad).
   */
  articleType: z.enum(['web', 'chat', 'note']).default('web'),
  /** Article type Zammad's agents answer with; their public answers of any type are taken. */
  webhook: z
    .object({
      /** The webhook's "HMAC SHA1 Signature Token": every delivery's X-Hub-Signature is checked. */
      secret: z.string().min(16),
    })
    .optional(),
  poll: z
    .object({
      /** Poll linked tickets for agents' articles and state changes this often (0: off). */
      interval: Duration.prefault('60s'),
      /** Tickets changed within this long are polled (older ones only by webhook). */
      window: PositiveDuration.prefault('7d'),
    })
    .prefault({}),
  /** omnigate status → Zammad state name (null: leave Zammad's state alone). */
  statusToZammad: z.partialRecord(TicketStatus, z.string().min(1).nullable()).default({}).transform((m) => ({ ...DEFAULT_TO_ZAMMAD, ...m })),
  /** Zammad state name → omnigate status (null: not mirrored). */
  statusFromZammad: z.record(z.string(), TicketStatus.nullable()).default({}).transform((m) => ({ ...DEFAULT_FROM_ZAMMAD, ...m })),
  /** One HTTP call to Zammad gives up after this (then retried with backoff). */
  timeout: PositiveDuration.prefault('20s'),
}).strict();
export type ZammadOptions = z.infer<typeof ZammadOptions>;

const factory: HelpdeskFactory<ZammadOptions> = {
  type: 'zammad',
  options: ZammadOptions,
  create: (options, ctx) => new ZammadAdapter(options, ctx),
};
export default factory;
