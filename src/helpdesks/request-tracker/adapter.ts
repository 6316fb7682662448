/**
 * omnigate → Request Tracker: creates the RT ticket of an omnigate ticket (found again by the
 * "External ID" custom field after a crash, never made twice) and writes later events to it.
 *
 * How a customer's message is written. RT has three ways to add a message, and only one shows
 * the agent a public message from the customer without RT mailing the customer:
 *  - REST2 `comment`: internal, so the agent would read the customer's words as a colleague's note;
 *  - the mail gateway (`/REST/1.0/NoAuth/mail-gateway`): the transaction would be the customer's
 *    own, but it needs an email address per customer (RT then autoreplies and notifies them by
 *    mail, bypassing the channel they wrote on) and the Everyone right to create tickets without
 *    authentication;
 *  - REST2 `correspond` as the adapter's user: a public message in the ticket's history. RT's
 *    notification scrips mail the requestors of a correspondence, so the requestor users this
 *    adapter makes have **no email address**: RT has nobody to mail, owners and AdminCcs are still
 *    notified as for any customer mail, and every answer reaches the customer only through
 *    omnigate, on the channel they wrote on. We chose this one.
 * Everything the adapter writes is by its own RT user, which the poller never takes back.
 */
import { createHash } from 'node:crypto';
import type { Logger } from '../../core/logger.js';
import { helpdeskTexts, type HelpdeskTexts } from '../texts.js';
import type { MediaStore } from '../../core/media.js';
import type { Attachment, LogEntry, TicketEvent } from '../../core/schema.js';
import { HelpdeskRefusedError, HelpdeskUnavailableError, firstMessageOf, type ApplyContext, type ApplyOutcome, type ExternalTicket } from '../contract.js';
import { RtRefusedError, RtUnavailableError, type RtAttachmentInput, type RtClient, type RtMessageInput } from './client.js';
import { DEFAULT_STATUS_TO_RT, type RequestTrackerOptions } from './options.js';
import { cutToChars, headlineOf } from '../headline.js';
import { MergedAway } from './merged-away.js';

type Inbound = Extract<LogEntry, { kind: 'inbound' }>['event'];

export class RtWriter {
  private readonly statusToRt: Record<string, string>;
  private readonly merged: MergedAway;

  constructor(
    private readonly client: RtClient,
    private readonly o: RequestTrackerOptions,
    private readonly media: MediaStore,
    private readonly log: Logger,
    private readonly onAuthFailure: (detail: string) => void,
    private readonly texts: HelpdeskTexts = helpdeskTexts('en'),
  ) {
    this.statusToRt = { ...DEFAULT_STATUS_TO_RT, ...o.statusToRt };
    this.merged = new MergedAway(client, log, texts, (rtId, content) => this.alreadyWritten(rtId, 'Comment', content));
  }

  ticketUrl(id: number | string): string {
    return `${this.o.url.replace(/\/+$/, '')}/Ticket/Display.html?id=${id}`;
  }

  async ensureTicket(event: TicketEvent): Promise<ExternalTicket> {
    return this.rt(async () => {
      const field = this.o.externalIdField;
      const ours = `${this.o.externalIdPrefix}${event.ticketId}`;
      const found = await this.client.findTicketsByCustomField(field, ours);
      if (found.length > 0) {
        if (found.length > 1) this.log.warn({ ticketId: event.ticketId, rtTickets: found }, 'several RT tickets carry this omnigate ticket id; using the oldest');
        this.log.info({ ticketId: event.ticketId, rtTicket: found[0] }, 'RT ticket found by its External ID (made by an earlier attempt): not creating another');
        return { externalId: String(found[0]), url: this.ticketUrl(found[0]!) };
      }
      const queue = this.queueFor(event.channel, event.account);
      const requestor = await this.requestor(event);
      // The first message when this event announces it; for a ticket older than the adapter, a
      // later event, which the host also hands to apply: then a short first article only.
      const entry = firstMessageOf(event);
      const message = entry
        ? await this.customerMessage(entry)
        : { content: this.texts.earlierMessagesFollow(`#${event.ticketNumber}`, event.channel) };
      const id = await this.client.createTicket({
        queue,
        subject: subjectOf(event, entry),
        requestors: [requestor],
        customFields: { [field]: ours },
        ...message,
        status: this.statusToRt[event.status] === 'new' ? undefined : this.statusToRt[event.status],
      });
      this.log.info({ ticketId: event.ticketId, rtTicket: id, queue, why: `queue rule for ${event.channel}/${event.account}` }, 'RT ticket created');
      // RT ignores a custom field that does not apply to the queue (200, no error): without it the
      // ticket could not be found after a crash, and every retry would make another one.
      const made = await this.client.getTicket(id);
      if (!(made.customFields[field] ?? []).includes(ours)) {
        await this.client.comment(id, {
          content: `omnigate could not set the custom field "${field}" on this ticket: it does not apply to queue ${queue}. Apply it to the queue (Admin → Custom Fields); until then omnigate does not sync this ticket.`,
        });
        throw new HelpdeskRefusedError('custom_field_not_applied', `RT ticket ${id} was created but RT ignored custom field "${field}" (not applied to queue "${queue}")`);
      }
      return { externalId: String(id), url: this.ticketUrl(id) };
    });
  }

  async tellAgents(externalId: string, text: string): Promise<void> {
    const rtId = Number(externalId);
    if (!Number.isInteger(rtId) || rtId <= 0) return;
    await this.rt(async () => {
      await this.client.comment(rtId, { content: text });
    });
  }

  /**
   * REST2 cannot delete a ticket: its Subject becomes the omnigate ticket id (the customer's
   * words are gone from the ticket list and from searches) and its Status `deleted` (out of every
   * queue and search by default). Its transactions (messages, attachments) and the requestor stay
   * in RT's database until an operator runs rt-shredder (docs/helpdesks/request-tracker.md).
   * Needs the RT user's ModifyTicket and DeleteTicket rights: RT answers 200 without doing it
   * when one is missing, so the outcome is read back, and a refusal is parked naming them.
   */
  async erase(ticket: ExternalTicket, ticketId: string): Promise<void> {
    const rtId = Number(ticket.externalId);
    if (!Number.isInteger(rtId) || rtId <= 0) throw new HelpdeskRefusedError('invalid_mapping', `mapped RT ticket id "${ticket.externalId}" is not a number`);
    await this.rt(async () => {
      try {
        await this.client.setSubject(rtId, ticketId);
        await this.client.setStatus(rtId, 'deleted');
      } catch (err) {
        if (err instanceof RtRefusedError && err.status === 404) {
          this.log.info({ ticketId, rtTicket: rtId }, 'RT ticket already gone (shredded): nothing to remove');
          return;
        }
        throw err;
      }
      const now = await this.client.getTicket(rtId);
      if (now.status !== 'deleted' || now.subject !== ticketId) {
        throw new HelpdeskRefusedError(
          'permission_missing',
          `RT did not mark ticket ${rtId} deleted (Status "${now.status}", Subject ${now.subject === ticketId ? 'replaced' : 'not replaced'}): RT user ${this.o.user} needs the ModifyTicket and DeleteTicket rights on queue "${now.queue}"; grant them and replay this dead letter, or delete the ticket by hand`,
        );
      }
      this.log.info({ ticketId, rtTicket: rtId }, 'RT ticket marked deleted, its subject replaced: its omnigate ticket was erased (rt-shredder removes its transactions)');
    });
  }

  async apply(event: TicketEvent, ctx: ApplyContext): Promise<ApplyOutcome> {
    const mapped = Number(ctx.ticket.externalId);
    if (!Number.isInteger(mapped) || mapped <= 0) throw new HelpdeskRefusedError('invalid_mapping', `mapped RT ticket id "${ctx.ticket.externalId}" is not a number`);
    return this.rt(async () => {
      const entry = event.entry;
      if (!writes(event)) return 'ignored';
      // The mapped ticket, or the one an agent merged it into (merged-away.ts).
      const rtId = await this.merged.live(mapped, event);
      switch (event.type) {
        case 'ticket.message': {
          if (entry?.kind !== 'inbound') return 'ignored';
          const message = await this.customerMessage(entry.event);
          if (!(ctx.uncertain && (await this.alreadyWritten(rtId, 'Correspond', message.content)))) await this.client.correspond(rtId, message);
          await this.followWaiting(rtId, event);
          return 'applied';
        }
        case 'ticket.reply': {
          if (entry?.kind !== 'outbound') return 'ignored';
          const m = entry.message;
          const by = m.author?.name ?? m.author?.id ?? 'omnigate';
          // A reply sent from outside RT (the API, an automatic acknowledgement): a comment, so RT's
          // correspondence scrips do not treat it as an agent's answer; its text says it was sent.
          const content = `${m.text}\n\n${this.texts.sentBy(`${by}, ${event.channel}`)}`;
          if (!(ctx.uncertain && (await this.alreadyWritten(rtId, 'Comment', content)))) {
            await this.client.comment(rtId, { content, attachments: await this.files(m.attachments) });
          }
          // A reply moves the omnigate ticket to pending without a ticket.status event (the reply
          // is the change): the RT ticket follows from the reply's own status, or it stayed `new`.
          // Only from what a reply moves (new, open): a reply replayed late must not take back a
          // resolve an agent made in RT meanwhile.
          await this.followStatus(rtId, event, [this.statusToRt.new, this.statusToRt.open]);
          return 'applied';
        }
        case 'ticket.note': {
          if (entry?.kind !== 'note') return 'ignored';
          const content = `${entry.text}\n\n${this.texts.noteBy(entry.author.name ?? entry.author.id)}`;
          if (ctx.uncertain && (await this.alreadyWritten(rtId, 'Comment', content))) return 'applied';
          await this.client.comment(rtId, { content });
          return 'applied';
        }
        case 'ticket.status':
          return (await this.followStatus(rtId, event)) ? 'applied' : 'ignored';
        case 'ticket.delivery_failed': {
          const d = event.lastDelivery;
          const reason = d?.reason ?? (entry?.kind === 'delivery' ? (entry.status.reason ?? 'unknown reason') : 'unknown reason');
          const content = this.texts.deliveryFailed(event.channel, reason);
          if (!(ctx.uncertain && (await this.alreadyWritten(rtId, 'Comment', content)))) await this.client.comment(rtId, { content });
          await this.followWaiting(rtId, event);
          return 'applied';
        }
        case 'ticket.edited': {
          if (entry?.kind !== 'edited') return 'ignored';
          await this.client.comment(rtId, { content: this.texts.edited(event.channel, entry.event.text) });
          return 'applied';
        }
        case 'ticket.deleted':
          await this.client.comment(rtId, { content: this.texts.deleted(event.channel) });
          return 'applied';
        default:
          return 'ignored';
      }
    });
  }

  /**
   * The customer wrote back, or a reply failed: omnigate's ticket is open again without a
   * ticket.status event (the message or the failure is the change), and the RT ticket was left
   * `stalled`, waiting on the customer while the customer waited on us. Only from the waiting
   * states a reply moves to: a resolve an agent made in RT meanwhile is not taken back.
   */
  private async followWaiting(rtId: number, event: TicketEvent): Promise<void> {
    await this.followStatus(rtId, event, [this.statusToRt.new, this.statusToRt.pending]);
  }

  /** Sets the RT status the event's omnigate status maps to, when it differs; whether it did. */
  private async followStatus(rtId: number, event: TicketEvent, onlyFrom?: Array<string | undefined>): Promise<boolean> {
    const target = this.statusToRt[event.status];
    if (!target) return false;
    const current = await this.client.getTicket(rtId);
    if (current.status === target) return false;
    if (onlyFrom && !onlyFrom.includes(current.status)) return false;
    await this.client.setStatus(rtId, target);
    this.log.info({ ticketId: event.ticketId, rtTicket: rtId, from: current.status, to: target }, 'RT status set from omnigate');
    return true;
  }

  queueFor(channel: string, account: string): string {
    const rule = this.o.queues.find((r) => (!r.channel || r.channel === channel) && (!r.account || r.account === account));
    return rule?.queue ?? this.o.queue;
  }

  /** The customer's RT user (no email address: RT must never mail them itself); its name. */
  private async requestor(event: TicketEvent): Promise<string> {
    const contact = event.contact;
    const name = requestorName(this.o.requestorPrefix, event.channel, event.account, contact?.id ?? `ticket-${event.ticketId}`);
    const handles = Object.entries(contact?.handles ?? {}).map(([k, v]) => `${k}: ${v}`);
    const user = await this.client.ensureUser({
      name,
      realName: contact?.displayName,
      comments: [`Customer on ${event.channel} (account ${event.account}), written by omnigate.`, ...handles].join('\n'),
    });
    return user.name;
  }

  private async customerMessage(m: Inbound): Promise<RtMessageInput> {
    const attachments = await this.files(m.attachments);
    const failed = m.attachments.filter((a) => a.status === 'failed' || !a.objectKey).map((a) => `[file not received: ${a.name}${a.error ? ` (${a.error})` : ''}]`);
    const text = [m.email ? (m.fullText ?? m.text) : m.text, ...failed].filter((s) => s).join('\n\n');
    if (!text && m.html) return { content: m.html, contentType: 'text/html', attachments };
    return { content: text || (attachments.length ? `[${attachments.map((a) => a.fileName).join(', ')}]` : '[empty message]'), attachments };
  }

  private async files(list: Array<Pick<Attachment, 'objectKey' | 'name' | 'mimeType'> & { status?: string }>): Promise<RtAttachmentInput[]> {
    const out: RtAttachmentInput[] = [];
    for (const a of list) {
      if (!a.objectKey || a.status === 'failed') continue;
      const bytes = await this.media.get(a.objectKey);
      if (!bytes) {
        this.log.warn({ objectKey: a.objectKey, name: a.name }, 'attachment bytes are gone from the media store; writing the message without it');
        continue;
      }
      out.push({ fileName: a.name, mimeType: a.mimeType, bytes: Buffer.from(bytes) });
    }
    return out;
  }

  /** After an attempt that may have landed: did our user already write this text on the ticket? */
  private async alreadyWritten(rtId: number, type: 'Correspond' | 'Comment', content: string): Promise<boolean> {
    const recent = await this.client.recentTransactionsBy(rtId, this.o.user, type, 5);
    for (const txn of recent) {
      const parts = await this.client.transactionParts(txn);
      if (parts.some((p) => p.content?.trim() === content.trim())) {
        this.log.info({ rtTicket: rtId, transaction: txn }, 'an earlier attempt already wrote this message to RT: not writing it again');
        return true;
      }
    }
    return false;
  }

  /** Runs an RT call, turning the client's errors into the contract's. */
  private async rt<T>(fn: () => Promise<T>): Promise<T> {
    try {
      return await fn();
    } catch (err) {
      if (err instanceof RtRefusedError) {
        // Wrong credentials are fixed by an operator, not by parking the event: keep retrying.
        if (err.status === 401) {
          this.onAuthFailure(err.message);
          throw new HelpdeskUnavailableError(`${err.message} (check the token / password of RT user ${this.o.user})`, undefined, true);
        }
        throw new HelpdeskRefusedError(`http_${err.status}`, err.message);
      }
      if (err instanceof RtUnavailableError) throw new HelpdeskUnavailableError(err.message);
      throw err;
    }
  }
}

/** Events apply() writes to RT (the rest are ignored before RT is asked anything). */
function writes(event: TicketEvent): boolean {
  const kind = event.entry?.kind;
  switch (event.type) {
    case 'ticket.message':
      return kind === 'inbound';
    case 'ticket.reply':
      return kind === 'outbound';
    case 'ticket.note':
      return kind === 'note';
    case 'ticket.edited':
      return kind === 'edited';
    case 'ticket.status':
    case 'ticket.delivery_failed':
    case 'ticket.deleted':
      return true;
    default:
      return false;
  }
}

function subjectOf(event: TicketEvent, entry: Inbound | undefined): string {
  if (entry?.email?.subject) return [...entry.email.subject].slice(0, 200).join('');
  const who = event.contact?.displayName ?? entry?.sender.displayName ?? event.contact?.id ?? 'customer';
  const head = cutToChars(headlineOf(entry), 58);
  return `${event.channel}: ${who}${head ? ` — ${head}` : ''}`;
}

/**
 * `<prefix><channel>.<account>.<contact id>`, without ":" (RT reads "type:name") or "@" (RT would
 * take it for an email address and make another user it mails); when a character had to be
 * replaced, a hash of the original keeps two contacts apart. RT names are at most 200 characters.
 */
export function requestorName(prefix: string, channel: string, account: string, contactId: string): string {
  const raw = `${channel}.${account}.${contactId}`;
  let clean = raw.replace(/[:@\s]/g, '_');
  const hash = createHash('sha256').update(raw).digest('hex').slice(0, 10);
  if (clean !== raw) clean = `${clean}.${hash}`;
  if (prefix.length + clean.length > 200) clean = `${channel}.${account}.${hash}`;
  return `${prefix}${clean}`;
}
