/**
 * The helpdesk adapter contract: the one small interface every helpdesk (Zammad, Request Tracker,
 * …) implements, and the context the gateway's helpdesk host hands it. An adapter knows its
 * helpdesk's API and this file; never the router, the API or a connector (lint enforces it).
 *
 * Division of labour — the host (src/helpdesks/host.ts) does everything that is the same for
 * every helpdesk, so an adapter is only the translation to one API:
 *
 * Towards the helpdesk (omnigate → helpdesk). The host consumes the ticket events
 * (`omni.events.ticket.*`, docs/events.md) with one durable consumer per configured helpdesk
 * (`helpdesk-<id>`), in stream order per ticket, under a lease (`helpdesk.<id>`) so one replica
 * syncs. For each event it:
 *  - drops our own echo: a reply, note or status change whose author id starts with
 *    `helpdeskAuthorPrefix(id)` came from this helpdesk (an agent's answer we took), and is never
 *    written back to it;
 *  - looks the ticket up in the mapping store (omnigate ticket id ↔ helpdesk ticket id);
 *  - without a mapping, calls `ensureTicket` (for `ticket.created`, or the first event seen of a
 *    ticket older than the adapter), records the mapping, stores the helpdesk id on the omnigate
 *    ticket (`externalRefs`, via the `omni.cmd.link` command), then
 *  - on `ticket.erased` (the omnigate ticket was erased), calls `erase` with the mapping, then
 *    forgets the mapping; without a mapping there is nothing to remove;
 *  - calls `apply` for every other event. The first message is announced twice by the router
 *    (`ticket.created`, and `ticket.message` with match rule `new-ticket`): `ensureTicket` writes
 *    it from whichever comes first, and neither reaches `apply`.
 * A throw of `HelpdeskUnavailableError` (or any error that is not a refusal: a network error, a
 * 5xx, a 429) is retried with capped exponential backoff, holding that ticket's lane — later events
 * of the ticket wait, other tickets go on — for as long as `retryFor` allows (default 24 h), then
 * parked. A throw of `HelpdeskRefusedError` (the helpdesk said no for good: a 422, a 403) parks
 * the event at once on `omni.dlq.helpdesk.<id>` with the reason, and the lane moves on.
 *
 * Exactly once towards the helpdesk. `ensureTicket` MUST be idempotent: the gateway can die after
 * the helpdesk created the ticket and before the mapping was recorded; the event then comes again
 * and the adapter must find the ticket it made (by the omnigate ticket id it stored in a custom
 * field / attribute of the helpdesk ticket) instead of creating a second one. `apply` is called
 * once per event; when an earlier attempt of the same event may have reached the helpdesk (it was
 * in flight when the gateway died, or timed out), `ApplyContext.uncertain` is true, and the adapter
 * should look before it writes again when its helpdesk lets it (else a rare duplicate article).
 *
 * Towards omnigate (agent → customer). The adapter learns of agents' work (a webhook it mounts on
 * `ctx.http`, polling in `start()`) and hands each item to `ctx.takeAnswer`. The host maps the
 * helpdesk ticket back to the omnigate ticket and sends the matching command on the bus
 * (`omni.cmd.reply` / `.note` / `.status`, the path the REST API uses) with the idempotency key
 * `helpdesk:<id>:<answer.id>`: an answer is taken once however often the helpdesk repeats it (a
 * webhook retry, a poll that overlaps a webhook). `ctx.taken(answer.id)` tells a poller whether an
 * answer was already taken. The adapter must itself drop what it wrote (echo filtering on its
 * side: articles created by its integration user, customer articles): only agents' work is an
 * answer. Internal comments become omnigate notes (`kind: 'note'`), never replies.
 *
 * Ids: a helpdesk ticket id (`externalId`) and an answer id are strings the adapter chooses and
 * keeps stable (Zammad: ticket id / article id; RT: ticket id / transaction id).
 */
import type { z } from 'zod';
import type { HelpdeskTexts } from './texts.js';
import type { Logger } from '../core/logger.js';
import type { MediaStore } from '../core/media.js';
import type { HttpMount } from '../core/http.js';
import type { LogEntry, OutboundAttachment, TicketEvent, TicketStatus } from '../core/schema.js';

/** The author id prefix of everything taken from helpdesk `id`: `helpdesk:<id>:`. */
export function helpdeskAuthorPrefix(id: string): string {
  return `helpdesk:${id}:`;
}

/**
 * The customer's first message when this event announces it: the router announces it twice, as
 * `ticket.created` and as `ticket.message` with rule `new-ticket`; any other event, undefined.
 */
export function firstMessageOf(event: TicketEvent): Extract<LogEntry, { kind: 'inbound' }>['event'] | undefined {
  const entry = event.entry;
  return entry?.kind === 'inbound' && (event.type === 'ticket.created' || entry.match.rule === 'new-ticket') ? entry.event : undefined;
}

/** The helpdesk ticket that belongs to one omnigate ticket. */
export interface ExternalTicket {
  /** The helpdesk's id for the ticket (Zammad ticket id, RT ticket number), stable forever. */
  externalId: string;
  /** Where an operator opens it (shown in the API's externalRefs); optional. */
  url?: string;
  /**
   * Set by the host: the id of the first message the ticket was opened with, '' when it was opened
   * from a later event (its first message held back, then replayed: written as a message then).
   */
  openedWith?: string;
}

export interface ApplyContext {
  /** The mapping recorded when the helpdesk ticket was made. */
  ticket: ExternalTicket;
  /**
   * An earlier attempt of this same event may have reached the helpdesk (the gateway died during
   * it, or it timed out): look before writing again where the helpdesk allows.
   */
  uncertain: boolean;
}

/** What the host does with an event after `apply`: `ignored` kinds are counted, not an error. */
export type ApplyOutcome = 'applied' | 'ignored';

/** Something an agent did in the helpdesk that omnigate must act on. */
export type AgentAnswer = {
  /**
   * Stable and unique within this helpdesk for this piece of work (Zammad article id, RT
   * transaction id, `status:<ticket>:<change stamp>`): the idempotency key is derived from it.
   */
  id: string;
  /** The helpdesk ticket it belongs to (mapped back to the omnigate ticket by the host). */
  externalId: string;
  /** The omnigate ticket id when the helpdesk told it (custom field): used if no mapping is found. */
  ticketId?: string;
  /** The agent (helpdesk user id and display name): recorded as `helpdesk:<id>:<agentId>`. */
  agent: { id: string; name?: string };
} & (
  | {
      /** A public answer: sent to the customer on the ticket's channel. */
      kind: 'reply';
      text: string;
      html?: string;
      /** Files the adapter already put into `ctx.media` (see `MediaStore.put`). */
      attachments?: OutboundAttachment[];
    }
  | { /** An internal comment: an omnigate note, never sent. */ kind: 'note'; text: string }
  | { /** The agent changed the ticket's status (already mapped to omnigate's). */ kind: 'status'; status: TicketStatus }
);

/** What became of an answer handed to `takeAnswer`. */
export type AnswerOutcome =
  | { outcome: 'taken'; ticketId: string; replayed: boolean }
  /** No omnigate ticket for this helpdesk ticket (not one of ours): nothing to do, do not retry. */
  | { outcome: 'unknown_ticket' }
  /**
   * The helpdesk ticket is linked to an omnigate ticket that is gone (erased on request or by
   * retention): nothing can be sent; the agents were told on the helpdesk ticket where it can say so.
   */
  | { outcome: 'ticket_gone'; ticketId: string }
  /** Refused for good (invalid, outside the channel's reply window): parked with the reason. */
  | { outcome: 'refused'; reason: string };

export interface HelpdeskHealth {
  state: 'starting' | 'connected' | 'disconnected' | 'auth_failed' | 'standby' | 'stopped';
  detail?: string;
  since: string;
}

/** Per-helpdesk durable state (poll cursors) in the omni_state bucket, under `helpdesk.<id>.`. */
export interface HelpdeskState {
  get(key: string): Promise<{ value: string; revision: number } | null>;
  put(key: string, value: string): Promise<number>;
  delete(key: string): Promise<void>;
}

export interface HelpdeskContext {
  /** The configured `id` of this helpdesk (several of one type may run side by side). */
  readonly id: string;
  /**
   * This installation's id (omni_meta, made once per bus data): written into the helpdesk with
   * the omnigate ticket id where the helpdesk has no other way to tell installations apart, so a
   * reinstall or a second gateway on one helpdesk never takes another's tickets for its own.
   */
  readonly installationId: string;
  /** What the adapter writes by itself (notes, signatures), in the team's language (`router.language`). */
  readonly texts: HelpdeskTexts;
  readonly log: Logger;
  /** Attachments: read a customer's file (`get(objectKey)`), store an agent's (`put`). */
  readonly media: MediaStore;
  readonly state: HelpdeskState;
  /**
   * The gateway's HTTP server, for the helpdesk's webhook. Mount in `create()` (before the
   * server listens) under `/helpdesks/<id>/`; every replica serves it (taking an answer is
   * idempotent, so it does not matter which one the helpdesk reaches).
   */
  readonly http: HttpMount;
  /** Aborted when the gateway stops. */
  readonly signal: AbortSignal;
  /**
   * Act on an agent's answer (see the file comment). Resolves once omnigate has it (the command
   * answered); rejects when it could not say (NATS or the router unreachable): the caller answers
   * its webhook with an error so the helpdesk retries, or keeps its poll cursor where it was.
   * Answers of one helpdesk ticket are taken one at a time in the order of the calls.
   */
  takeAnswer(answer: AgentAnswer): Promise<AnswerOutcome>;
  /** True when an answer with this id was already taken (a poller skips it). */
  taken(answerId: string): Promise<boolean>;
  /** The mapping for an omnigate ticket, or null. */
  lookup(ticketId: string): Promise<ExternalTicket | null>;
  /** Report a state change (shown in /readyz, logged). */
  setHealth(state: HelpdeskHealth['state'], detail?: string): void;
}

export interface HelpdeskAdapter {
  /**
   * Called when this replica becomes the one syncing (it took the lease): start polling or other
   * background intake here (under `ctx.signal`). Resolve once running; the helpdesk being down is
   * not a reason to reject.
   */
  start(): Promise<void>;
  /** This replica stops syncing (lease lost or gateway stopping): end what `start` began. */
  stop(): Promise<void>;
  /**
   * Create the helpdesk ticket for an omnigate ticket — or find the one an earlier attempt made
   * (idempotent: look up by `event.ticketId` first). `event` is `ticket.created` with the first
   * message as `entry` (kind `inbound`: text, attachments, sender), or the first event the host
   * saw of the ticket: the same first message as `ticket.message` (rule `new-ticket`); for a
   * ticket older than the adapter, any later event, which `apply` then gets as well — then write
   * a short first article saying so.
   * The contact is found or created from `event.contact` (handles: email, phone, username, …).
   */
  ensureTicket(event: TicketEvent): Promise<ExternalTicket>;
  /**
   * An internal note on a helpdesk ticket, for what omnigate must tell its agents outside any
   * ticket event (an answer that cannot be sent because its omnigate ticket was erased). Optional:
   * without it, the log says it.
   */
  tellAgents?(externalId: string, text: string): Promise<void>;
  /**
   * Apply one later event to the helpdesk ticket: `ticket.message` (a customer message: a
   * customer article with its attachments), `ticket.reply` (a reply sent from elsewhere, e.g.
   * the REST API: an agent article the helpdesk must not send itself), `ticket.note` (internal),
   * `ticket.status` (mapped to the helpdesk's state), `ticket.delivery_failed` (an internal note
   * telling the agent the customer did not get the answer, and why). Return `ignored` for kinds
   * the helpdesk has no use for.
   */
  apply(event: TicketEvent, ctx: ApplyContext): Promise<ApplyOutcome>;
  /**
   * The omnigate ticket was erased (`ticket.erased`: a person's erasure, or retention): remove
   * the helpdesk ticket with its articles as far as the helpdesk's API allows. Idempotent (a
   * ticket already gone is done). The host forgets the mapping afterwards. Throw
   * `HelpdeskRefusedError` naming the missing permission when the helpdesk refuses: the event is
   * parked for an operator. Without it, the event is parked (`erase_unsupported`).
   */
  erase?(ticket: ExternalTicket, ticketId: string): Promise<void>;
  health(): HelpdeskHealth;
}

export interface HelpdeskFactory<Options = unknown> {
  /** The `type` in config (`zammad`, `request-tracker`). */
  readonly type: string;
  /** The adapter's own options, validated once at start; errors name the key and the file. */
  readonly options: z.ZodType<Options, any>;
  create(options: Options, ctx: HelpdeskContext): HelpdeskAdapter;
}

/** The helpdesk is down or overloaded (network error, 5xx, 429): retried with backoff. */
export class HelpdeskUnavailableError extends Error {
  constructor(
    message: string,
    /** The helpdesk's Retry-After, in ms, when it gave one. */
    readonly retryAfterMs?: number,
    /** The helpdesk refused our credentials (401): health says `auth_failed`, an operator fixes it; retried meanwhile. */
    readonly authFailed = false,
  ) {
    super(message);
    this.name = 'HelpdeskUnavailableError';
  }
}

/**
 * The helpdesk refused for good (validation error, permission): a retry cannot help. `code` is a
 * short stable label (`http_422`, `http_403`, `invalid_event`); the message says what and why.
 */
export class HelpdeskRefusedError extends Error {
  constructor(
    readonly code: string,
    message: string,
  ) {
    super(message);
    this.name = 'HelpdeskRefusedError';
  }
}
