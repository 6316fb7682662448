/** The Request Tracker adapter's own config (`helpdesks: [{ type: request-tracker, … }]`); unknown keys are refused by the config loader. */
import { z } from 'zod';
import { FetchableUrl, PositiveDuration } from '../../core/config-units.js';
import { TicketStatus } from '../../core/schema.js';
import { hasUrlCredentials } from '../../core/url-credentials.js';
import { HeaderToken } from '../../core/schema-base.js';

/** omnigate status → RT status. `closed` has no RT counterpart in the default lifecycle. */
export const DEFAULT_STATUS_TO_RT: Record<TicketStatus, string> = {
  new: 'new',
  open: 'open',
  pending: 'stalled',
  resolved: 'resolved',
  closed: 'resolved',
};

/** RT status → omnigate status (RT's default lifecycle). */
export const DEFAULT_STATUS_FROM_RT: Record<string, TicketStatus> = {
  new: 'new',
  open: 'open',
  stalled: 'pending',
  resolved: 'resolved',
  rejected: 'closed',
  deleted: 'closed',
};

const QueueRule = z.object({
  /** Channel token (`telegram`, `whatsapp`, `email`, …); absent matches any. */
  channel: z.string().min(1).optional(),
  /** Account name of that channel; absent matches any. */
  account: z.string().min(1).optional(),
  queue: z.string().min(1),
});

export const RequestTrackerOptions = z
  .object({
    /** RT's base URL (its WebBaseURL, without /REST/2.0). */
    url: FetchableUrl
      .refine((u) => /^https?:\/\//.test(u), 'an http:// or https:// URL')
      .refine((u) => !hasUrlCredentials(u), 'no user:password in the URL: use token (or user and password)')
      // With it, every call went to /REST/2.0/REST/2.0/… and every event was parked as a 404.
      .refine((u) => !/\/REST(\/2\.0)?\/*$/i.test(u), "RT's base URL, without /REST/2.0 (e.g. https://rt.example.com)"),
    /** An RT auth token of `user` (RT → Settings → Auth Tokens). */
    token: HeaderToken(1).optional(),
    /**
     * The RT user the adapter writes as. Required: everything this user writes is our own and is
     * never taken back as an agent's answer (echo filter).
     */
    user: z.string().min(1),
    /** With `user`, basic auth instead of a token. */
    password: z.string().min(1).optional(),
    /** Queue for tickets no rule in `queues` matches. */
    queue: z.string().min(1).default('General'),
    /** First matching rule wins: `{ channel, account, queue }`. */
    queues: z.array(QueueRule).default([]),
    /** The ticket custom field holding the omnigate ticket id (must apply to every queue used). */
    externalIdField: z.string().min(1).default('External ID'),
    /**
     * Put before the omnigate ticket id in the custom field. omnigate numbers tickets per
     * installation (T-1001, …): two installations (or a reinstalled one) writing to one RT need
     * distinct prefixes, or the second would find the first one's tickets as its own.
     */
    externalIdPrefix: z.string().max(100).default(''),
    /** Customers' RT user names are `<prefix><channel>.<account>.<contact id>`. */
    requestorPrefix: z.string().regex(/^[^:@\s]*$/, 'no ":", "@" or spaces (RT reads them as a principal type or an email address)').default('omnigate.'),
    /** Overrides of the status mapping, merged over the defaults. */
    statusToRt: z.partialRecord(TicketStatus, z.string().min(1)).default({}),
    statusFromRt: z.record(z.string().min(1), TicketStatus).default({}),
    /** How often RT's transactions are polled for agents' work. */
    pollInterval: PositiveDuration.prefault('5s'),
    /** Transactions taken per poll request (RT's page limit is 100). */
    pollBatch: z.number().int().min(1).max(100).default(100),
    /**
     * Secret of the RT webhook scrip (docs/helpdesks/request-tracker.md). When set, a signed POST
     * to /helpdesks/<id>/webhook makes the adapter poll at once (the answer itself is still read
     * through REST2: the webhook is a doorbell, never the source of an answer).
     */
    webhookSecret: z.string().min(16).optional(),
    requestTimeout: PositiveDuration.prefault('30s'),
    /**
     * RT calls in flight at once (writes and polls together); more wait in omnigate, where
     * `requestTimeout` does not count. Keep it at or below RT's worker count: RT queues the rest,
     * and a call timed out in RT's queue is often done by RT anyway, then checked and retried.
     */
    maxConcurrentRequests: z.number().int().min(1).max(64).default(4),
    /** Where answers already taken started: `now` (default) skips RT's history before the first start. */
    startFrom: z.union([z.literal('now'), z.number().int().nonnegative()]).default('now'),
  })
  .superRefine((o, ctx) => {
    if (!o.token && !o.password) ctx.addIssue({ code: 'custom', path: ['token'], message: 'set token (or password for basic auth as user)' });
    if (o.token && o.password) ctx.addIssue({ code: 'custom', path: ['password'], message: 'set either token or password, not both' });
  });
export type RequestTrackerOptions = z.infer<typeof RequestTrackerOptions>;
