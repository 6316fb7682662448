/**
 * The config file's sections: every key, its default and what it is for. The one place that
 * says what a valid config is; reading the file, ${VAR}s and environment overrides, and turning
 * zod's findings into ConfigErrors are config.ts's job.
 */
import { z } from 'zod';
import { SubjectToken, TicketErasedEvent, TicketEvent } from './schema.js';
import { BusinessHoursConfig, TimeZone } from './config-calendar.js';
import { ByteSize, Duration, FetchableUrl, PositiveDuration } from './config-units.js';
import { LANGUAGES, TextOverrides, TextTemplate } from './texts.js';
import { nearest } from './strict-keys.js';
import { ColleagueDomains } from './mail-domains.js';
import type { NatsAccess } from './nats-access.js';
import { pseudoRootOf } from './pseudo-fs.js';
import { isIpOrRange } from './ip-range.js';

const TICKET_EVENT_TYPES: string[] = [...TicketEvent.shape.type.options, TicketErasedEvent.shape.type.value];
function nearestEvent(e: string): string {
  const n = nearest(e, TICKET_EVENT_TYPES);
  return n ? ` (did you mean "${n}"?)` : '';
}

/**
 * A directory the gateway stores data in. One under /proc, /sys or /dev (as written: symlinks are
 * followed when the directory is made, data-dir.ts) stores nothing, and made the start hang.
 */
const DataDir = z.string().superRefine((dir, ctx) => {
  const root = pseudoRootOf(dir);
  if (root) ctx.addIssue({ code: 'custom', message: `is under ${root}, a kernel pseudo file system that stores nothing: give a directory on a real volume` });
});

const ApiToken = z.object({
  name: z.string().min(1).default('token'),
  // A header carries bytes a client and Node may read differently outside printable ASCII: a
  // Cyrillic token passed check-config and then matched no request (an outside trial).
  token: z.string().min(16, 'at least 16 characters').regex(/^[\x21-\x7e]+$/, 'printable ASCII only (no spaces, no Cyrillic): an Authorization header cannot carry other characters reliably'),
  readOnly: z.boolean().default(false),
  /** May erase (POST /v1/contacts/{id}/erase) and export (GET /v1/contacts/{id}/export) a person's data; never together with readOnly. */
  admin: z.boolean().optional(),
  /**
   * `attachments`: the token may only download files (GET /v1/attachments/…), refused 403 on every
   * other route — what a web site holds to fetch its replies' files without reading every
   * customer's tickets. `all` (or absent): every route readOnly and admin allow.
   */
  scope: z.enum(['all', 'attachments']).optional(),
})
  .refine((t) => !(t.admin && t.readOnly), { message: 'a token cannot be both readOnly and admin', path: ['admin'] })
  .refine((t) => !(t.admin && t.scope === 'attachments'), { message: 'a token cannot be both admin and scope attachments (it may only download files)', path: ['scope'] });

const Webhook = z.object({
  name: z.string().regex(/^[A-Za-z0-9_-]+$/, 'letters, digits, "_" and "-"'),
  url: FetchableUrl,
  secret: z.string().min(16, 'at least 16 characters'),
  events: z
    .array(z.string().refine((e) => e === '*' || TICKET_EVENT_TYPES.includes(e), {
      error: (iss) => `unknown event "${String(iss.input)}"${nearestEvent(String(iss.input))}; expected "*" or one of: ${TICKET_EVENT_TYPES.join(', ')}`,
    }))
    .default(['*']),
  timeout: PositiveDuration.default(10_000),
  /** Keep retrying a failed delivery this long (counted from the event) before parking it. */
  retryFor: Duration.prefault('24h'),
  backoffBase: Duration.prefault('1s'),
  backoffMax: Duration.prefault('1m'),
  /** After a gateway crash or stop, events it had in flight go out again after this. */
  redeliverAfter: Duration.prefault('1m'),
});

export const ConnectorEntry = z
  .object({
    type: z.string().min(1),
    account: SubjectToken,
    enabled: z.boolean().default(true),
    /** Readiness (/readyz) depends on this connector: not ready unless connected, rate limited or standing by. */
    required: z.boolean().default(false),
  })
  .passthrough();
export type ConnectorEntry = z.infer<typeof ConnectorEntry>;

/** One helpdesk adapter (src/helpdesks): the common keys; the rest are the adapter's own options. */
export const HelpdeskEntry = z
  .object({
    type: z.string().min(1),
    /** Names this helpdesk on the bus (consumer helpdesk-<id>, lease, dead letters, author ids): keep it stable. */
    id: SubjectToken,
    enabled: z.boolean().default(true),
    /** Keep retrying an event the helpdesk does not take (down, 5xx) this long, counted from the event, before parking it. */
    retryFor: Duration.prefault('24h'),
    backoffBase: Duration.prefault('1s'),
    backoffMax: Duration.prefault('1m'),
    /** An event held by a gateway that died is given out again after this. */
    redeliverAfter: Duration.prefault('30s'),
  })
  .passthrough();
export type HelpdeskEntry = z.infer<typeof HelpdeskEntry>;

/** One server of nats.url: a scheme NATS clients speak, or a bare host:port. Empty is the embedded server. */
const NATS_SERVER = /^$|^((nats|tls|ws|wss):\/\/)?([^\s/@,]+@)?([^\s/:,@[\]]+|\[[0-9a-f:.]+\])(:\d{1,5})?\/?$/i;

export const GatewayConfig = z.object({
  nats: z
    .object({
      /** Empty: start the embedded nats-server. Several servers: separate the URLs with commas. */
      url: z
        .string()
        .default('')
        .refine((v) => v.split(',').every((u) => NATS_SERVER.test(u.trim())), 'expected nats://host:port (or tls://, ws://, wss://, or host:port), several separated by commas'),
      user: z.string().optional(),
      pass: z.string().optional(),
      token: z.string().optional(),
      /** TLS to the NATS servers (ignored by the embedded server, which listens on 127.0.0.1 by default). */
      tls: z
        .object({
          caFile: z.string().min(1).optional(),
          certFile: z.string().min(1).optional(),
          keyFile: z.string().min(1).optional(),
          serverName: z.string().min(1).optional(),
          handshakeFirst: z.boolean().default(false),
        })
        .optional(),
      /** A creds file (user JWT + NKey seed) for operator/JWT deployments. */
      credsFile: z.string().min(1).optional(),
      /** An NKey user seed ("SU…"); give it as ${VAR}, it is masked in logs. */
      nkey: z.string().min(1).optional(),
      replicas: z.number().int().min(1).max(5).default(1),
      /** replicas > 1 on a server whose compare-and-set lets two writers win: guard updates, or refuse to start. */
      unsafeCas: z.enum(['guard', 'refuse']).default('guard'),
      duplicateWindow: PositiveDuration.prefault('2m'),
      retention: PositiveDuration.prefault('7d'),
      dedupTtl: PositiveDuration.prefault('30d'),
      leaseTtl: PositiveDuration.prefault('15s'),
      embedded: z
        .object({
          binary: z.string().default('nats-server'),
          dataDir: DataDir.default('./data'),
          host: z.string().default('127.0.0.1'),
          /** 0 picks a free port; the URL is logged, and written with the server's credential to <dataDir>/nats.url (mode 0600). */
          port: z.number().int().min(0).max(65535).default(0),
          /**
           * Restart the server when its JetStream has not answered (or answered that it is off)
           * this long and its volume has room again: a full disk leaves JetStream so until the
           * server restarts (jetstream-watchdog.ts). 0 turns this off.
           */
          restartStuckJetStream: Duration.prefault('1m').refine((ms) => ms === 0 || ms >= 10_000, 'at least 10s (two looks of 5 s), or 0 to turn it off'),
        })
        .prefault({}),
    })
    .prefault({}),
  http: z
    .object({
      host: z.string().default('0.0.0.0'),
      port: z.number().int().min(0).max(65535).default(8080),
      bodyLimit: ByteSize.prefault('30MB'),
      /**
       * How long a request may take to arrive, headers and body (then 408). Fastify turns Node's
       * own 5-minute limit off: a body sent a byte at a time held its connection for ever, with
       * no token needed. 2 minutes is 30 MB at 2 Mbit/s.
       */
      requestTimeout: PositiveDuration.prefault('2m'),
      /**
       * What /healthz and /readyz tell a caller without a valid API token: `token` the status and
       * its short reasons only (the full answer names mailboxes, logins, upstream hosts and error
       * texts, and the port is open to the network by default); `open` the full answer to anyone,
       * as before 2026-12.
       */
      probeDetails: z.enum(['token', 'open']).default('token'),
    })
    .prefault({}),
  log: z
    .object({
      level: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
      /** Customers' mail addresses and phones in log lines: masked (`i***@mail.ru`), or shown as they are. */
      personalData: z.enum(['mask', 'show']).default('mask'),
    })
    .prefault({}),
  router: z
    .object({
      enabled: z.boolean().default(true),
      // Ticket ids name NATS keys, which take Latin letters only: a Cyrillic "Т-" looks like "T-".
      ticketPrefix: z.string().regex(/^[A-Za-z]{1,8}-?$/, '1 to 8 Latin letters (A–Z), optionally ending with "-"; no Cyrillic ("Т" typed on a Russian keyboard is not "T"): ticket ids name keys in NATS').default('T-'),
      firstTicketNumber: z.number().int().positive().default(1001),
      /** A chat message after close reopens the ticket within this window, else opens a new one. */
      reopenWindow: Duration.prefault('7d'),
      /**
       * Customer organisations' own mail domains: someone there who took no part in a ticket joins
       * it by its subject token [#T-1042] when a participant is at the same domain (a colleague
       * answering in the thread). Nowhere else: ticket numbers are guessable (src/router/threading.ts).
       */
      colleagueDomains: ColleagueDomains,
      /** Messages processed at once (different conversations in parallel, each in order). */
      concurrency: z.number().int().min(1).max(4096).default(256),
      /**
       * Inbound partitions: each conversation hashes to one, each partition is consumed in order
       * by one replica at a time. Fixed when the deployment is first provisioned.
       */
      partitions: z.number().int().min(1).max(1024).default(32),
      /** How often the owner of the unpartitioned subjects moves inbound messages stored where no router reads them (src/router/strays.ts). */
      straySweep: PositiveDuration.prefault('1m'),
      ackWait: PositiveDuration.prefault('30s'),
      /**
       * Routing (a partition's messages, delivery outcomes) or commands with work waiting and no
       * progress for this long make /readyz unready (`loop … stalled`) until they move again: a
       * stream or bucket without quorum while NATS is connected (docs/operating.md, Stalled routing).
       * Above a leader election (seconds) and the retry backoff of routing (up to 10 s).
       */
      stallAfter: PositiveDuration.prefault('60s'),
      /** Language of the texts the gateway writes itself (acknowledgement, rating request, lead alerts). */
      language: z.enum(LANGUAGES).default('ru'),
      /** Per-text overrides; see src/core/texts.ts for the names and their placeholders. */
      texts: TextOverrides.prefault({}),
      autoAcknowledge: z
        .object({
          enabled: z.boolean().default(false),
          /** Same as router.texts.autoAcknowledge (kept for older configs); default: per language, from the business hours. */
          text: TextTemplate('autoAcknowledge').optional(),
          perSenderPerHour: z.number().int().min(0).default(3),
        })
        .prefault({}),
      csat: z
        .object({
          enabled: z.boolean().default(false),
          /** Ask this long after the ticket was resolved or closed. */
          delay: Duration.prefault('2d'),
          /** Same as router.texts.satisfactionRequest (kept for older configs). */
          text: TextTemplate('satisfactionRequest').optional(),
          /** A bare 1–5 answer within this window after the request is the rating. */
          window: PositiveDuration.prefault('7d'),
          /** Ratings at or below this are sent to the lead (router.sla.escalate). */
          lowRating: z.number().int().min(1).max(5).default(3),
        })
        .prefault({}),
      sla: z
        .object({
          enabled: z.boolean().default(false),
          /** Ticket opened → first agent reply sent, in business time. */
          firstResponse: PositiveDuration.prefault('1h'),
          /** Customer's last message → agent reply, in business time. */
          noAnswer: PositiveDuration.prefault('4h'),
          /** null: the clock runs 24/7. */
          businessHours: BusinessHoursConfig.nullable().prefault({}),
          checkInterval: PositiveDuration.prefault('30s'),
          /** A lead's chat on any configured channel: breaches are posted there. */
          escalate: z
            .object({
              channel: SubjectToken,
              account: SubjectToken,
              conversationId: z.string().min(1),
              kind: z.enum(['private', 'group', 'channel', 'email']).default('private'),
            })
            .optional(),
        })
        .prefault({}),
    })
    .prefault({}),
  outbound: z
    .object({
      /** Transient send failures are retried this many times with backoff before dead-lettering. */
      maxAttempts: z.number().int().min(1).max(100).default(8),
      backoffBase: Duration.prefault('1s'),
      backoffMax: Duration.prefault('5m'),
      /**
       * How many gateways may die holding one reply (before or, where the receiver deduplicates,
       * during its platform call), each taken over by the next, before it fails for good as
       * `gateway_died_while_sending`: a reply that kills the gateway must not crash-loop it.
       * At least 1, so a single restart still sends what the dead gateway held (docs/operating.md).
       */
      maxTakeovers: z.number().int().min(1).max(100).default(3),
    })
    .prefault({}),
  media: z.object({ maxBytes: ByteSize.prefault('25MB') }).prefault({}),
  /** Refusals are stored bounded: per letter, per source and in total (docs/events.md, dead letters). */
  deadLetters: z
    .object({
      /** Letters older than this are dropped (the OMNI_DLQ stream's max_age). */
      maxAge: Duration.prefault('14d'),
      /** The whole dead-letter stream; the oldest letters go first. */
      maxBytes: ByteSize.prefault('1GB'),
      /** A bigger payload is kept as its head only (not replayable). Under a NATS message (1 MB) with room for the letter. */
      maxPayloadBytes: ByteSize.refine((n) => n >= 1024 && n <= 512 * 1024, 'between 1KB and 512KB').prefault('256KB'),
      /** Letters one outside source (a connector account, the router, the loop guard) may store per minute; more are counted, not stored. Failed replies, webhook deliveries and helpdesk syncs are always stored. */
      perMinute: z.number().int().min(1).default(60),
      burst: z.number().int().min(1).default(120),
    })
    .prefault({}),
  /**
   * How long each kind of data is kept (docs/data.md, retention). 0 keeps it for ever. Messages in
   * transit are `nats.retention`, dead letters `deadLetters.maxAge`; a ticket's log, KV record,
   * thread index entries and attachment references live as long as the ticket.
   */
  retention: z
    .object({
      /**
       * A ticket resolved or closed longer ago than this is deleted whole, everywhere (log, KV, index, SQL, its attachments).
       * At least a day: `3m` is three minutes, not months (an outside trial's lawyer wrote it meaning months), and would erase every closed ticket for good.
       */
      tickets: Duration.refine((ms) => ms === 0 || ms >= 86_400_000, 'at least 1d, or 0 to keep tickets for ever ("m" is minutes: write months in days, e.g. 90d, or years, e.g. 3y)').prefault(0),
      /** Attachment bytes and reference records older than this are deleted from the object store (a log entry then names a file that is gone). At least an hour, for the same reason. */
      attachments: Duration.refine((ms) => ms === 0 || ms >= 3_600_000, 'at least 1h, or 0 to keep files for ever ("m" is minutes: write months in days, e.g. 90d, or years, e.g. 1y)').prefault(0),
      /** Copies of ticket events on OMNI_EVENTS (what webhooks and subscribers read). */
      events: Duration.refine((ms) => ms >= 3_600_000, 'at least 1h (ticket events must outlive the dedup window and a webhook outage)').prefault('30d'),
      /** How often the retention sweeper looks for what expired. */
      sweepInterval: PositiveDuration.prefault('1h'),
    })
    .prefault({}),
  /** The live ticket store (KV omni_tickets and the thread index omni_threads); docs/data.md. */
  tickets: z
    .object({
      /**
       * A ticket resolved or closed longer ago than this leaves KV (its record and index keys);
       * the log and the SQL read model keep it, lists and search find it, a new message in its
       * conversation opens a new ticket. Longer than router.reopenWindow. 0 keeps every ticket
       * in KV for ever (it then grows by every ticket opened).
       */
      evictClosedAfter: Duration.prefault('30d'),
    })
    .prefault({}),
  /** GET /v1/reports/*: durations count business time on router.sla.businessHours (when set). */
  reports: z
    .object({
      /** A contact's new ticket within this long after a resolved one is a repeat contact. */
      repeatContactWindow: PositiveDuration.prefault('7d'),
      /** Days and weeks are cut in this zone; default: the business hours' zone, else UTC. */
      timezone: TimeZone.optional(),
    })
    .prefault({}),
  api: z
    .object({
      tokens: z.array(ApiToken).default([]).superRefine((tokens, ctx) => {
        // One value given two roles: the last one in the list won, silently (a helpdesk token equal
        // to an admin's could erase people; one equal to a read-only token could write nothing).
        const first = new Map<string, number>();
        for (const [i, t] of tokens.entries()) {
          const j = first.get(t.token);
          if (j === undefined) first.set(t.token, i);
          else ctx.addIssue({ code: 'custom', path: [i, 'token'], message: `the same value as api.tokens[${j}] ("${tokens[j]!.name}"): every token must be its own, or one of their roles silently wins` });
        }
      }),
      /** /metrics needs a token (any, read-only is enough) instead of being open to the network. */
      metricsRequireToken: z.boolean().default(false),
      /**
       * One info line per /v1 request ("api access": token, route, ticket or contact id, status),
       * the record of who read which ticket; never the query string or the body.
       */
      accessLog: z.boolean().default(true),
      /**
       * Reverse proxies or ingress controllers in front of the gateway (IP addresses or CIDR
       * ranges): from these peers the client is read from X-Forwarded-For, for authThrottle.
       */
      trustedProxies: z.array(z.string().refine(isIpOrRange, 'an IP address or a CIDR range (10.0.0.0/8, fd00::/8)')).max(100).default([]),
      /**
       * Wrong API tokens and web-form channel secrets per client address: after `failures` within
       * `window` the address is answered 429 for a whole `window`, whatever it presents. Counted
       * by the socket's peer address (behind a reverse proxy: the client's when the proxy is in
       * trustedProxies, else the proxy's, shared by every client), an IPv6 address by its /64.
       */
      authThrottle: z
        .object({
          failures: z.number().int().min(1).max(100_000).default(20),
          window: PositiveDuration.prefault('1m'),
          /** Addresses remembered at once (about 100 bytes each); past this the oldest is forgotten. */
          trackedAddresses: z.number().int().min(100).max(1_000_000).default(10_000),
        })
        .prefault({}),
    })
    .prefault({}),
  /**
   * The SQL read model (docs/data.md): PGlite in `dataDir` by default, PostgreSQL when `url` is
   * set. The URL carries no credentials (config refuses them): give user/password here, the
   * password as ${VAR}.
   */
  database: z
    .object({
      /** postgres://host:port/database; empty: embedded PGlite. */
      url: z.string().default(''),
      user: z.string().min(1).optional(),
      password: z.string().min(1).optional(),
      /** PGlite's directory; default: <nats.embedded.dataDir>/sql. */
      dataDir: DataDir.min(1).optional(),
      /** PostgreSQL connections per process. */
      poolSize: z.number().int().min(1).max(100).default(10),
      /** Ticket-log entries the projection applies per transaction. */
      batchSize: z.number().int().min(1).max(10_000).default(500),
    })
    .prefault({}),
  webhooks: z.array(Webhook).default([]),
  connectors: z.array(ConnectorEntry).default([]),
  /** Helpdesks kept in step with the tickets (docs/helpdesks/): each `type` validates its own options. */
  helpdesks: z.array(HelpdeskEntry).default([]),
  /** SIGTERM to exit: readiness drain, intake stop, in-flight work, NATS and the embedded server, all within this. */
  shutdownTimeout: Duration.prefault('10s'),
  /** After SIGTERM the listener stays open this long answering /readyz 503, so load balancers notice. */
  shutdownDrain: Duration.prefault('1s'),
});
export type GatewayConfig = z.infer<typeof GatewayConfig>;

/** The connection settings of `nats` (the URL is the configured one; the embedded server has its own). */
export function natsAccess(c: GatewayConfig): NatsAccess {
  const { url, user, pass, token, tls, credsFile, nkey } = c.nats;
  return { url, user, pass, token, tls, credsFile, nkey };
}
