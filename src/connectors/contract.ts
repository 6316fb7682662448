/**
 * The connector contract: the one small interface every channel implements, and the context the
 * gateway hands it. A connector knows its platform and this file; never the router, never another
 * connector. Everything it publishes goes through ctx, which validates against the event schema.
 */
import type { z } from 'zod';
import type { ReplayHandler } from '../core/replay.js';
export type { ReplayHandler, ReplayOutcome } from '../core/replay.js';
import type { Logger } from '../core/logger.js';
import type { MediaStore } from '../core/media.js';
import type { HttpMount } from '../core/http.js';
import type { Lease } from '../core/lease.js';
import type { LoopRun } from '../core/supervisor.js';
import type { TemplateSupport } from '../core/reply-templates.js';
import type { ConnectorState, ConversationStateEvent, InboundEventInput, OutboundMessage, RefusedCopy } from '../core/schema.js';

export interface SendResult {
  /** The platform's id for what was sent (Telegram message_id, Slack ts, email Message-ID). */
  platformMessageId: string;
  /** Copies (email Cc) the platform refused while it took the message for its To: noted on the ticket. */
  refusedCopies?: RefusedCopy[];
}

export interface ConnectorHealth {
  state: ConnectorState;
  detail?: string;
  since: string;
}

export interface Connector {
  /** Begin intake. Resolve once the connector is running (not when the platform is reachable). */
  start(): Promise<void>;
  /** Stop intake and finish what is in flight; the platform keeps what was not acknowledged. */
  stop(): Promise<void>;
  /**
   * Send one outbound message. Throw TransientDeliveryError to be retried (with the platform's
   * retry-after if known) or PermanentDeliveryError to fail it with a reason. Pacing is the
   * connector's job; retries, idempotency and delivery events are the runtime's.
   */
  send(message: OutboundMessage, attempt?: SendAttempt): Promise<SendResult>;
  /**
   * The runtime stored this message's final outcome (sent, or failed: refused, retries exhausted,
   * erased, given up after takeovers); this process will not send it again. What the connector
   * keeps per message across attempts (parts already delivered) goes here: dropped only on a
   * success or a refusal seen by the sender, the entry of a reply whose last attempt failed
   * transiently stayed for the life of the process. Absent: the connector keeps nothing, or
   * bounds it itself (Slack: its 1,000 most recent).
   */
  settled?(outboundId: string): void;
  health(): ConnectorHealth;
  /**
   * False when this process cannot send for the account at all while another replica can (a
   * WhatsApp Web session lives in the one process holding its lease). The runtime then leaves
   * the message to that replica, before recording any attempt. Absent means always true.
   */
  canSend?(): boolean;
  /**
   * True when sending one message twice cannot reach the customer twice: the receiver
   * deduplicates by our idempotency key (`message.id`, sent as `Idempotency-Key` by the webhook
   * channel). After a crash in the middle of a send, the runtime then sends again instead of
   * reporting `outcome_unknown`. Absent means false: Telegram, Slack, WhatsApp and email have no
   * such key, and a second send is a second message in the chat.
   */
  readonly resendSafe?: boolean;
  /**
   * True when the connector calls `attempt.onWire()` right before each platform call that may
   * deliver (after its pacing and rate-limit waits) and `attempt.offWire()` when the platform
   * refused a call before anything of the message was delivered. The runtime then records a
   * message as possibly delivered only from that moment: a gateway killed while its replies
   * waited in the pacer had sent none of them, and reported them all `outcome_unknown`. Absent:
   * the whole of `send()` counts as possibly on the wire. Senders mark through `wire-marks.ts`.
   */
  readonly marksWire?: boolean;
}

/**
 * Which call this is for one outbound message: the runtime's attempt count (1 = first; a resend
 * after a gateway died in the middle of a send counts on) and the gateway instance making it. A
 * channel whose receiver deduplicates (resendSafe) passes them on, so the receiver can tell a
 * repeat from a new message and see who sent it.
 */
export interface SendAttempt {
  attempt: number;
  replica?: string;
  /** See `Connector.marksWire`: a platform call that may deliver is about to be made. */
  onWire?: () => Promise<void>;
  /** See `Connector.marksWire`: the platform refused before anything of this message was delivered. */
  offWire?: () => Promise<void>;
}

/** Durable per-account state (checkpoints, offsets, auth) in the omni_state bucket. */
export interface AccountState {
  get(key: string): Promise<{ value: string; revision: number } | null>;
  put(key: string, value: string): Promise<number>;
  /** Compare-and-set: fails if the revision moved (0 = must not exist). */
  update(key: string, value: string, revision: number): Promise<number>;
  delete(key: string): Promise<void>;
  keys(prefix?: string): Promise<string[]>;
  /**
   * The same state, with every write (put, update, delete) refused with `StaleLeaseError` once
   * `fence.valid()` is false: a holder that woke after its lease ran out by the clock (paused,
   * cut off) must not move a checkpoint or a session record another replica now owns. Reads pass.
   */
  fencedBy(fence: Fence): AccountState;
}

/** What fences an effect: a Lease, or anything that answers for the lease held now. */
export interface Fence {
  readonly key: string;
  /** The lease's fencing token (its revision when taken); 0 when none is held. */
  readonly token: number;
  valid(): boolean;
}

/** A write by a holder whose lease ran out (by the clock) or was lost: refused before it is sent. */
export class StaleLeaseError extends Error {
  constructor(fence: Fence, what: string) {
    super(`${what} refused: lease ${fence.key} (fence ${fence.token}) is no longer held by this process`);
    this.name = 'StaleLeaseError';
  }
}

export interface PublishResult {
  /** True when JetStream already had this event id (platform redelivery, replay). */
  duplicate: boolean;
  seq: number;
}

export interface ConnectorContext {
  readonly channel: string;
  readonly account: string;
  /** This installation's id (created once, kept in the bus): part of every id we mint for the platform. */
  readonly installationId: string;
  /** The key ids we mint are made with where they must not be guessable (email Message-IDs); never logged. */
  readonly messageIdSecret: Uint8Array;
  /**
   * The gateway's own addresses on this channel over every configured entry (each factory's
   * `ownAddresses`), lower case: another entry's mailbox is ours too (no reply copies it, mail
   * from it is our echo). Empty for channels without addresses.
   */
  readonly channelAddresses: ReadonlySet<string>;
  readonly log: Logger;
  readonly media: MediaStore;
  readonly state: AccountState;
  readonly http: HttpMount;
  /** Aborted when the gateway stops. */
  readonly signal: AbortSignal;
  /**
   * Validate and publish an inbound event on omni.in.<channel>.<account> with the event id as
   * Nats-Msg-Id. Resolves only after JetStream stored it: acknowledge the platform after this.
   * Retries while NATS is unreachable; rejects on invalid events (see `InvalidEventError`).
   * `giveUpAfterMs`: for a sender waiting on an HTTP answer, stop retrying then and reject, so it
   * is told 503 and retries, instead of waiting (holding a connection) through a NATS outage.
   */
  publish(event: InboundEventInput, opts?: { giveUpAfterMs?: number }): Promise<PublishResult>;
  /** Report a state change; published on omni.events.connector.<channel>.<account>. */
  setState(state: ConnectorState, detail?: string): void;
  /**
   * Park what could not become an event, with the reason; nothing is silently dropped. `code` is
   * the metric's reason label (default `invalid_payload`); `meta` is what a replay needs besides
   * the payload (see `onReplay`). Counted always; stored within the account's dead-letter rate.
   */
  deadLetter(reason: string, payload: unknown, opts?: { code?: string; meta?: Record<string, string> }): Promise<void>;
  /** Count what the connector drops on purpose: our own echo (loop guard) or a copy it already had. */
  dropped(kind: 'loop_guard' | 'duplicate', detail: string): void;
  /**
   * Take dead letters of this account back through the connector (`omnigate dlq --replay`): the
   * handler gets the parked payload and its meta and publishes it as intake would. Without a
   * handler, the account's letters are refused at replay.
   */
  onReplay(handler: ReplayHandler): void;
  /**
   * Report a later delivery outcome the platform told us about asynchronously (WhatsApp Cloud
   * "delivered"/"read"/"failed" webhooks, an email bounce matched by the connector). The send()
   * result itself is reported by the runtime; use this only for what arrives afterwards.
   */
  reportDelivery(report: DeliveryReport): Promise<void>;
  /**
   * Announce that our standing in a conversation changed (blocked, unblocked, removed, promoted)
   * on omni.events.conversation.<channel>.<account>. Resolves once stored.
   */
  announceConversation(change: ConversationChange): Promise<void>;
  /** Single-runner lease for this account across gateway replicas. */
  lease(name?: string): Promise<Lease>;
  /**
   * Run a long-lived loop (polling, an IMAP session, a socket) under the gateway's supervisor, as
   * `connector.<channel>.<account>.<name>`. The body runs until `run.signal` aborts (the returned
   * handle's stop(), or the gateway stopping); if it ends or throws before that it is started
   * again after a jittered backoff, and the connector shows `stalled` (then `failed` after
   * repeated failures) with the error until it runs again. Call `run.progress()` after useful work.
   */
  run(name: string, body: (run: LoopRun) => Promise<void>): ConnectorLoop;
}

/** A loop started with ctx.run. */
export interface ConnectorLoop {
  /** Aborts the body's signal and waits for it to end; no restart follows. */
  stop(): Promise<void>;
}


export interface DeliveryReport {
  outboundId: string;
  ticketId: string;
  status: 'sent' | 'delivered' | 'read' | 'failed';
  platformMessageId?: string;
  reason?: string;
}

export type ConversationChange = Omit<ConversationStateEvent, 'v' | 'type' | 'channel' | 'account'>;

export interface ConnectorFactory<Options = unknown> {
  /** The `type` in config (e.g. "whatsapp-cloud"). */
  readonly type: string;
  /** The channel token on the bus (e.g. "whatsapp"): two transports may share a channel. */
  readonly channel: string;
  /** Validated once at start; errors name the key and the config file. */
  readonly options: z.ZodType<Options, any>;
  create(options: Options, ctx: ConnectorContext): Connector;
  /** The addresses an entry with these options sends and receives at (email: its mailboxes and aliases), for every entry of the channel. */
  ownAddresses?(options: Options): string[];
  /**
   * What an entry with these options does with a reply's `template`, from its options alone: the
   * router refuses a template that does not fit before accepting the reply, also on a replica
   * that does not host the entry now. Absent: the channel sends `text` only (`{ kind: 'none' }`).
   */
  replyTemplates?(options: Options): TemplateSupport;
  /** What is valid in an entry's options but likely a risk not meant (check-config prints them, start logs them). */
  warnings?(options: Options): string[];
}

export class InvalidEventError extends Error {
  constructor(
    message: string,
    /** The event field at fault (dotted path), where one is. */
    readonly field?: string,
  ) {
    super(message);
    this.name = 'InvalidEventError';
  }
}

/** The stable event id used as dedup key end to end. */
export function eventId(channel: string, account: string, platformId: string): string {
  return `${channel}:${account}:${platformId}`;
}

/** A small health tracker connectors can embed: state plus when it last changed. */
export class HealthTracker {
  private current: ConnectorHealth = { state: 'starting', since: new Date().toISOString() };
  constructor(private readonly ctx: Pick<ConnectorContext, 'setState'>) {}

  set(state: ConnectorState, detail?: string): void {
    if (state === this.current.state && detail === this.current.detail) return;
    this.current = { state, detail, since: new Date().toISOString() };
    this.ctx.setState(state, detail);
  }

  get(): ConnectorHealth {
    return this.current;
  }
}
