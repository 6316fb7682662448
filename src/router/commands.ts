/**
 * Commands on the bus (request/reply, queue group "router"): omni.cmd.reply, omni.cmd.note,
 * omni.cmd.status. The REST API uses these same subjects, so validation and idempotency are one
 * implementation. A repeated idempotency key returns the first result and does nothing else
 * (command-idempotency.ts).
 */
import { createHash, randomUUID } from 'node:crypto';
import type { Msg } from '@nats-io/transport-node';
import type { z } from 'zod';
import type { Bus } from '../core/bus.js';
import { Supervisor, type SupervisedLoop } from '../core/supervisor.js';
import type { Logger } from '../core/logger.js';
import { errorMessage, isJetStreamRefusal, isNatsUnavailable } from '../core/errors.js';
import { OutageLog } from '../core/outage-log.js';
import { JsonInputError, parseJsonBody } from '../core/json-input.js';
import { addressKey } from '../core/mail-address.js';
import {
  CLOSED_STATUSES,
  LinkCommand,
  MAX_RECIPIENTS,
  NoteCommand,
  OutboundMessage,
  ReplyCommand,
  StatusCommand,
  UNDELIVERED_REASON_PREFIX,
  describeZodError,
  type LogEntry,
  type SendPurpose,
  type Ticket,
} from '../core/schema.js';
import { Subjects, hashKey } from '../core/subjects.js';
import { afterHeaders, holdsReply } from '../core/reply-order.js';
import { commandClaims, runOnce } from './command-idempotency.js';
import { ReplySlots } from './reply-slot.js';
import type { Journal, LoggedIds } from './journal.js';
import { emailHeaders, withTicketFooter } from './reply-mail.js';
import { replyRecipients, withReplyTo, type ChosenRecipients } from './mail-recipients.js';
import type { TicketStore } from './tickets.js';
import { outsideWindowMessage, templateRefusal } from './reply-template.js';
import type { TemplateSupportLookup } from '../core/reply-templates.js';

export type CommandResult =
  | { ok: true; result: Record<string, unknown>; replayed?: boolean }
  | { ok: false; error: { code: 'invalid_request' | 'ticket_not_found' | 'ticket_evicted' | 'in_progress' | 'outside_reply_window' | 'internal'; message: string; field?: string } };

export class CommandHandler {
  private readonly loops: SupervisedLoop[] = [];
  private readonly replySlots: ReplySlots;
  /** Other attempts' idempotency claims, watched for staleness across requests (a client retries one key many times). */
  private readonly claims = commandClaims();
  /** `command failed` for NATS or JetStream away: once at error, then counted (outage-log.ts). */
  private readonly outage: OutageLog;

  /** The line naming the ticket under mail we send (router.language / router.texts.mailTicketLine); the token must stay in it. */
  ticketLine: (token: string) => string = (token) => `Номер обращения: ${token}`;

  /** What each channel account does with a reply's template (from config; routing.ts); unknown: not checked here. */
  templateSupport: TemplateSupportLookup = () => undefined;

  constructor(
    private readonly bus: Bus,
    private readonly store: TicketStore,
    private readonly journal: Journal,
    private readonly log: Logger,
    private readonly supervisor = new Supervisor(log),
  ) {
    this.replySlots = new ReplySlots(bus, log);
    this.outage = new OutageLog(log, 'command');
  }

  start(): void {
    const bind = (name: 'reply' | 'note' | 'status' | 'link', run: (body: unknown, signal: AbortSignal) => Promise<CommandResult>) => {
      const loop = this.supervisor.run(`commands.${name}`, async ({ signal, progress, hold, failed }) => {
        const sub = this.bus.nc.subscribe(Subjects.command(name), { queue: 'router' });
        // Drain, not unsubscribe: requests already delivered to us are still answered.
        const onAbort = () => void sub.drain().catch(() => sub.unsubscribe());
        signal.addEventListener('abort', onAbort, { once: true });
        // Commands being answered: the loop ends only after them, so a stop does not close the
        // bus under a reply that was logged and not yet published (its retry would send it twice).
        const answering = new Set<Promise<void>>();
        try {
          for await (const m of sub) {
            // A command being answered is work waiting; one answered `internal` is no progress:
            // commands that hang or keep failing for router.stallAfter are a stall (supervisor.ts).
            hold(1);
            const p: Promise<void> = this.answer(m, run, signal)
              .then((moved) => (moved ? progress() : failed()))
              .catch((err) => this.log.warn({ err: errorMessage(err), subject: m.subject }, 'command answer not sent'))
              .finally(() => {
                answering.delete(p);
                hold(-1);
              });
            answering.add(p);
          }
        } finally {
          signal.removeEventListener('abort', onAbort);
          await Promise.all(answering);
        }
      }, { essential: true });
      this.loops.push(loop);
    };
    // A stop ends a command's wait for another attempt's claim (command-idempotency.ts), not its work.
    bind('reply', (b, signal) => this.reply(b, { signal }));
    bind('note', (b, signal) => this.note(b, { signal }));
    bind('status', (b, signal) => this.status(b, { signal }));
    bind('link', (b) => this.link(b));
  }

  async stop(): Promise<void> {
    await Promise.all(this.loops.map((l) => l.stop()));
  }

  /** Answers one command; false when it failed on our side (answered `internal`). */
  private async answer(m: Msg, run: (body: unknown, signal: AbortSignal) => Promise<CommandResult>, signal: AbortSignal): Promise<boolean> {
    let body: unknown;
    try {
      // The same JSON edge as the HTTP API's (depth, UTF-8, NUL, a key given twice, 1e400): a
      // command sent on NATS directly skipped it, and {"text":"a","text":"b"} went out as "b".
      body = parseJsonBody(Buffer.from(m.data.buffer, m.data.byteOffset, m.data.byteLength));
    } catch (err) {
      const refused = err instanceof JsonInputError ? err : new JsonInputError('body is not valid JSON');
      m.respond(JSON.stringify({ ok: false, error: { code: refused.kind === 'json' ? 'invalid_json' : 'invalid_request', message: refused.message, field: refused.field } }));
      return true;
    }
    let result: CommandResult;
    try {
      result = await run(body, signal);
      this.outage.succeeded();
    } catch (err) {
      // NATS or JetStream away (no stream leader, a bucket without quorum) fails every command
      // alike until it is back: one line for it, not one per command. A defect: every time.
      if (isNatsUnavailable(err) || isJetStreamRefusal(err)) this.outage.failed({ err: errorMessage(err), subject: m.subject });
      else this.log.error({ err: errorMessage(err), subject: m.subject }, 'command failed');
      result = { ok: false, error: { code: 'internal', message: errorMessage(err) } };
    }
    m.respond(JSON.stringify(result));
    return result.ok || result.error.code !== 'internal';
  }

  /** `purpose` other than agent_reply marks the message automated (email adds Auto-Submitted) and leaves the ticket's status alone. */
  async reply(body: unknown, opts: { purpose?: SendPurpose; signal?: AbortSignal } = {}): Promise<CommandResult> {
    const purpose = opts.purpose ?? 'agent_reply';
    const automated = purpose !== 'agent_reply';
    const cmd = parse(ReplyCommand, body);
    if ('error' in cmd) return cmd.error;
    const c = cmd.value;
    return runOnce(this.bus, this.log, this.claims, 'reply', c.idempotencyKey ? `${c.ticketId}\u0000${c.idempotencyKey}` : undefined, async (earlierAttemptAt) => {
      // The ticket's replies one at a time from reading their predecessor to recording themselves
      // (reply-slot.ts): two accepted at once named the same predecessor and went out in either order.
      const slot = await this.replySlots.acquire(c.ticketId, opts.signal);
      if (!slot) return { ok: false, error: { code: 'in_progress', message: `another reply to ${c.ticketId} is still being queued (or the gateway is stopping); nothing was sent, send it again` } };
      try {
        return await this.queueReply(c, automated, purpose, earlierAttemptAt);
      } finally {
        await slot.release();
      }
    }, opts.signal);
  }

  /**
   * Logs, publishes after the ticket's newest reply, records as the newest and announces the reply,
   * in its slot: the ticket's events keep the replies' order too.
   */
  private async queueReply(c: ReplyCommand, automated: boolean, purpose: SendPurpose, earlierAttemptAt: number | undefined): Promise<CommandResult> {
    // Fresh: the reply names the ticket's newest reply, which another replica may have sent.
    const found = await this.store.get(c.ticketId, { fresh: true });
    if (!found) return missing(this.store, c.ticketId);
    const ticket = found.value;
    // Refused now rather than accepted and failed by the connector a moment later.
    if (!c.template && !automated && ticket.replyWindowEndsAt && Date.now() > Date.parse(ticket.replyWindowEndsAt)) {
      return { ok: false, error: { code: 'outside_reply_window', message: outsideWindowMessage(ticket, this.templateSupport(ticket.channel, ticket.account)), field: 'template' } };
    }
    const misfit = templateRefusal(this.templateSupport(ticket.channel, ticket.account), ticket, c);
    if (misfit) return { ok: false, error: { code: 'invalid_request', ...misfit } };
    const isEmail = ticket.conversation.kind === 'email';
    const named = c.to ? 'to' : c.cc ? 'cc' : undefined;
    if (named && !isEmail) {
      return { ok: false, error: { code: 'invalid_request', message: `${named}: recipients are chosen only on email tickets; ${ticket.id} is a ${ticket.channel} conversation, answered where it came from`, field: named } };
    }
    const id = outboundId(ticket.id, this.bus.installationId, c.idempotencyKey);
    const recipients = isEmail ? this.recipientsOf(ticket, c, automated) : undefined;
    const outbound = OutboundMessage.parse({
      v: 1,
      type: 'message.outbound',
      id,
      ticketId: ticket.id,
      channel: ticket.channel,
      account: ticket.account,
      conversation: ticket.conversation,
      ...(isEmail ? withTicketFooter(ticket.id, c.text, c.html, this.ticketLine) : { text: c.text, html: c.html }),
      attachments: c.attachments,
      replyTo: ticket.lastInboundPlatformId,
      email: recipients && emailHeaders(ticket, this.store.prefix, recipients),
      author: c.author,
      createdAt: new Date().toISOString(),
      automated,
      purpose,
      template: c.template,
    });
    const entry: LogEntry = { kind: 'outbound', at: outbound.createdAt, message: outbound };
    await this.journal.appendUnlessLogged(ticket.id, entry, `out:${id}`, await this.loggedBefore(ticket.id, earlierAttemptAt));
    // Sent after the ticket's previous reply (core/reply-order.ts); not after itself, when a
    // retry finds its own earlier attempt recorded.
    const previous = ticket.lastOutbound?.id === id ? undefined : ticket.lastOutbound;
    const published = await this.bus.publishJson(Subjects.outbound(ticket.channel, ticket.account), outbound, id, previous && afterHeaders(previous));
    // A lower sequence than the recorded reply's: a concurrent reply got a later one, or OMNI_OUT
    // was recreated since (sequences start again) and the record would never move on.
    const recordGone = previous !== undefined && published.seq <= previous.seq && !(await holdsReply(this.bus.jsm, previous));
    const updated = await this.store.mutate(ticket.id, (t) => {
      const newest = (t.lastOutbound?.seq ?? 0) < published.seq || (recordGone && t.lastOutbound?.id === previous?.id);
      if (newest) t.lastOutbound = { id, seq: published.seq };
      // An automatic acknowledgement is not an agent's answer: the ticket still waits for one.
      if (automated) return newest ? t : null;
      // Whom we wrote to takes part: their answer to this mail joins the ticket (threading
      // accepts In-Reply-To and References only from participants), an agent's choice included.
      for (const a of [...(outbound.email?.to ?? []), ...(outbound.email?.cc ?? [])].map(addressKey)) if (!t.participants.includes(a)) t.participants.push(a);
      // Its To, so a bounce can tell the customer's failure from a copy's (bounces.ts).
      if (outbound.email) t.emailParties = withReplyTo(t.emailParties, id, outbound.email.to, outbound.email.cc);
      t.updatedAt = entry.at;
      if (t.status === 'new' || t.status === 'open') {
        t.status = 'pending';
        t.statusOp = undefined; // a later change: an earlier one's retry must not log it now
      }
      return t;
    });
    await this.journal.emit('ticket.reply', updated ?? ticket, `out:${id}`, entry);
    return { ok: true, result: { ticketId: ticket.id, outboundId: id, status: (updated ?? ticket).status } };
  }

  /** The reply's To and Cc (mail-recipients.ts), with what an operator should be able to find later in the log. */
  private recipientsOf(ticket: Ticket, c: ReplyCommand, automated: boolean): ChosenRecipients {
    const chosen = replyRecipients(ticket, { to: c.to, cc: c.cc }, automated);
    // Counted, not named: the addresses are customers' personal data, and the reply's entry in the
    // ticket log (which erasure reaches, unlike a log collector) records who it went to.
    if (c.to || c.cc) {
      this.log.info({ ticketId: ticket.id, author: c.author.id, to: chosen.to.length, cc: chosen.cc.length, notInTicket: chosen.outside.length }, 'email reply addressed by the agent (the addresses are in the ticket log)');
    }
    if (chosen.cut.length > 0) {
      this.log.info({ ticketId: ticket.id, left: chosen.cut.length }, `email reply copies at most ${MAX_RECIPIENTS} addresses; the rest left out (not copied: see the ticket log for who was)`);
    }
    return chosen;
  }

  async note(body: unknown, opts: { signal?: AbortSignal } = {}): Promise<CommandResult> {
    const cmd = parse(NoteCommand, body);
    if ('error' in cmd) return cmd.error;
    const c = cmd.value;
    const key = c.idempotencyKey ? `${c.ticketId}\u0000${c.idempotencyKey}` : undefined;
    return runOnce(this.bus, this.log, this.claims, 'note', key, async (earlierAttemptAt) => {
      const found = await this.store.get(c.ticketId);
      if (!found) return missing(this.store, c.ticketId);
      // From the key when there is one: an attempt repeated after a failure or a crash writes the
      // same entry, which the log's dedup (or the lookup below) keeps once.
      const id = `note:${key ? hashKey(key).slice(0, 32) : randomUUID()}`;
      const entry: LogEntry = { kind: 'note', at: new Date().toISOString(), id, text: c.text, author: c.author };
      await this.journal.appendUnlessLogged(c.ticketId, entry, id, await this.loggedBefore(c.ticketId, earlierAttemptAt));
      await this.journal.emit('ticket.note', found.value, id, entry);
      return { ok: true, result: { ticketId: c.ticketId, noteId: id } };
    }, opts.signal);
  }

  /** What an earlier attempt at the command (begun at `earlierAttemptAt`, ms) logged, when the duplicate window may not cover it. */
  private loggedBefore(ticketId: string, earlierAttemptAt: number | undefined): Promise<LoggedIds | undefined> {
    return this.journal.loggedIfDedupLapsed(ticketId, earlierAttemptAt === undefined ? undefined : earlierAttemptAt * 1e6);
  }

  link(body: unknown): Promise<CommandResult> {
    return linkCommand(this.store, body);
  }

  async status(body: unknown, opts: { signal?: AbortSignal } = {}): Promise<CommandResult> {
    const cmd = parse(StatusCommand, body);
    if ('error' in cmd) return cmd.error;
    const c = cmd.value;
    const key = c.idempotencyKey ? `${c.ticketId}\u0000${c.idempotencyKey}` : undefined;
    return runOnce(this.bus, this.log, this.claims, 'status', key, async (earlierAttemptAt) => {
      const at = new Date().toISOString();
      // From the key when there is one, and kept on the ticket with the change: a retry after the
      // change was made but its log entry failed (the command answered an error) logs it then.
      // Without it the ticket would be closed while its log, the read model and every helpdesk
      // still said open.
      const id = `status:${key ? hashKey(key).slice(0, 32) : randomUUID()}`;
      // The status replaced is that of the run whose write landed: after a conflict it may differ from the first read.
      const applied = await this.store.apply(
        c.ticketId,
        (t) => {
          if (t.status === c.status) {
            const ours = key !== undefined && t.statusOp?.id === id ? t.statusOp : undefined;
            return { next: null, outcome: { from: ours?.from ?? t.status, ours } };
          }
          const from = t.status;
          t.status = c.status;
          t.updatedAt = at;
          t.closedAt = CLOSED_STATUSES.has(c.status) ? at : undefined;
          t.statusOp = key ? { id, from, at } : undefined;
          return { next: t, outcome: { from, ours: t.statusOp } };
        },
        // "No change" is not checked by any write: with a key it is judged on the stored record.
        { fresh: key !== undefined },
      );
      if (!applied) return missing(this.store, c.ticketId);
      const { from, ours } = applied.outcome;
      // A close is the agent's call (spam, a duplicate, thanks said elsewhere) and is never refused;
      // but closing over replies the customer never got must not look like an answered ticket.
      // The ticket keeps failedReplies (GET /v1/tickets?failedReplies=true, the console's mark).
      const undelivered = CLOSED_STATUSES.has(c.status) ? (applied.ticket.failedReplies ?? []) : [];
      if (ours || (!key && applied.changed)) {
        const entry: LogEntry = {
          kind: 'status',
          at: ours?.at ?? at,
          from,
          to: c.status,
          author: c.author,
          ...(undelivered.length > 0 ? { reason: undeliveredReason(undelivered), undeliveredReplies: undelivered } : {}),
        };
        // The change may have been made by an attempt older than the duplicate window: look for its entry.
        const since = ours?.at && applied.changed === false ? Date.parse(ours.at) * 1e6 : earlierAttemptAt !== undefined ? earlierAttemptAt * 1e6 : undefined;
        const logged = await this.journal.loggedIfDedupLapsed(c.ticketId, since);
        await this.journal.appendUnlessLogged(c.ticketId, entry, id, logged);
        await this.journal.emit('ticket.status', applied.ticket, id, entry);
      }
      const warnings = undelivered.map((f) => ({
        code: 'undelivered_reply',
        outboundId: f.outboundId,
        at: f.at,
        reason: f.reason,
        message: `${c.status} while reply ${f.outboundId} has not reached the customer (${f.reason}); the ticket stays listed with failedReplies until it goes out (a replay from the dead letters)`,
      }));
      return { ok: true, result: { ticketId: c.ticketId, from, status: c.status, ...(warnings.length > 0 ? { warnings } : {}) } };
    }, opts.signal);
  }
}

/**
 * omni.cmd.link: the ticket's id in another system (a helpdesk adapter records the helpdesk
 * ticket it made). One ref per system; linking again with the same values changes nothing, so
 * no idempotency key is needed. Not a ticket event: the helpdesk host would only see its own echo.
 */
export async function linkCommand(store: TicketStore, body: unknown): Promise<CommandResult> {
  const cmd = parse(LinkCommand, body);
  if ('error' in cmd) return cmd.error;
  const c = cmd.value;
  const applied = await store.apply(c.ticketId, (t) => {
    const refs = t.externalRefs ?? [];
    const prior = refs.find((r) => r.system === c.system);
    if (prior && prior.externalId === c.externalId && prior.url === c.url) return { next: null, outcome: prior };
    const ref = { system: c.system, externalId: c.externalId, url: c.url, linkedAt: new Date().toISOString() };
    t.externalRefs = [...refs.filter((r) => r.system !== c.system), ref];
    return { next: t, outcome: ref };
  });
  if (!applied) return missing(store, c.ticketId);
  return { ok: true, result: { ticketId: c.ticketId, externalRef: applied.outcome, changed: applied.changed } };
}

/**
 * The outbound id (the connector's idempotency key, and the seed of an email's Message-ID): the
 * ticket, this installation, and the client's idempotency key hashed (or a fresh UUID without one).
 */
export function outboundId(ticketId: string, installationId: string, idempotencyKey?: string): string {
  const key = idempotencyKey ? createHash('sha256').update(idempotencyKey).digest('hex').slice(0, 24) : randomUUID();
  return `${ticketId}:${installationId}:${key}`;
}

function parse<T extends z.ZodType>(schema: T, body: unknown): { value: z.infer<T> } | { error: CommandResult } {
  const r = schema.safeParse(body);
  if (r.success) return { value: r.data };
  const issue = r.error.issues[0]!;
  return { error: { ok: false, error: { code: 'invalid_request', message: describeZodError(r.error), field: issue.path.join('.') } } };
}

/** No record: an evicted ticket (its log is kept) is told apart from one that never existed. */
async function missing(store: TicketStore, id: string): Promise<CommandResult> {
  if (await store.evicted(id)) {
    return {
      ok: false,
      error: {
        code: 'ticket_evicted',
        message: `ticket ${id} was closed long ago and evicted from the live store (tickets.evictClosedAfter); its history is at GET /v1/tickets/${id}/log. A new message from the customer opens a new ticket`,
        field: 'ticketId',
      },
    };
  }
  return { ok: false, error: { code: 'ticket_not_found', message: `no ticket with id ${id}`, field: 'ticketId' } };
}

/** The status entry's reason on a close over failed replies: what the console shows next to the change, and status_changes.reason keeps. */
function undeliveredReason(failed: ReadonlyArray<{ outboundId: string; reason: string }>): string {
  const newest = failed[failed.length - 1]!;
  const more = failed.length > 1 ? ` and ${failed.length - 1} more` : '';
  return `${UNDELIVERED_REASON_PREFIX}: ${newest.outboundId} (${newest.reason})${more}`;
}
