/**
 * Threading: which ticket an inbound message belongs to, and why. Rules, in order:
 *  email  In-Reply-To, then References (newest first), against stored Message-IDs — a match is
 *         accepted only from someone who took part in that ticket, so replies to one mail sent
 *         to many do not merge strangers; then the subject token "[#T-1042]" — from a participant
 *         or a colleague at the same company domain (numbers are guessable); then our own
 *         Message-ID marker "<omni.T-1042.…@…>" surviving in any header, then the "[#T-1042]"
 *         our replies carry in their text, found in the quoted history (both from participants
 *         only); else a new ticket.
 *  chats  one open ticket per (channel, account, chat[, thread]); after close, a message reopens
 *         the ticket within the reopen window, otherwise opens a new one; after the ticket was
 *         evicted (tickets.evictClosedAfter, eviction.ts), a new one, whose log says so.
 * Every decision carries the rule and the matched value, written into the ticket log.
 */
import type { InboundMessage, Ticket, ThreadMatch } from '../core/schema.js';
import { CLOSED_STATUSES } from '../core/schema.js';
import { orderKey } from '../core/subjects.js';
import { IndexKeys, normalizeMessageId, type Floor, type TicketStore } from './tickets.js';

/** What the log of the ticket opened after an eviction says about the one before it. */
function afterEviction(floor: Floor): string {
  return `; ${floor.ticket} was closed long ago and evicted from the ticket store`;
}

export type Resolution =
  | { kind: 'existing'; ticket: Ticket; match: ThreadMatch; reopen: boolean }
  | { kind: 'new'; match: ThreadMatch; conversationKey: string; previous?: string };

export interface ThreadingOptions {
  reopenWindowMs: number;
  now: () => number;
}

export function subjectTokenPattern(prefix: string): RegExp {
  const p = prefix.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
  return new RegExp(`\\[#(${p}\\d+)\\]`);
}

export function markerPattern(prefix: string): RegExp {
  const p = prefix.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
  return new RegExp(`^<?omni\\.(${p}\\d+)\\.`, 'i');
}

export class Threader {
  private readonly tokenRe: RegExp;
  private readonly markerRe: RegExp;

  constructor(
    private readonly store: TicketStore,
    private readonly o: ThreadingOptions,
  ) {
    this.tokenRe = subjectTokenPattern(store.prefix);
    this.markerRe = markerPattern(store.prefix);
  }

  /** The key that orders work: messages with the same key are processed one at a time. */
  laneKey(e: Parameters<typeof orderKey>[0]): string {
    return orderKey(e);
  }

  async resolve(e: InboundMessage, fresh = false): Promise<Resolution> {
    if (e.email) {
      const found = await this.resolveEmail(e, { fresh });
      if (found) return found;
      const why = await this.missingNote(e);
      return { kind: 'new', match: { rule: 'new-ticket', value: normalizeMessageId(e.email.messageId) + why }, conversationKey: IndexKeys.emailMessageId(e.email.messageId) };
    }
    return this.resolveChat(e, { fresh });
  }

  private async resolveEmail(e: InboundMessage, o: { fresh: boolean }): Promise<Resolution | null> {
    const email = e.email!;
    const sender = email.from.toLowerCase();
    const candidates: Array<[ThreadMatch['rule'], string]> = [];
    if (email.inReplyTo) candidates.push(['email-in-reply-to', email.inReplyTo]);
    for (const ref of [...email.references].reverse()) candidates.push(['email-references', ref]);
    for (const [rule, messageId] of candidates) {
      const hit = await this.store.lookup(IndexKeys.emailMessageId(messageId), o);
      if (!hit) continue;
      const ticket = await this.store.get(hit.value, o);
      if (!ticket) continue;
      if (!isParticipant(ticket.value, sender)) continue;
      return this.existing(ticket.value, { rule, value: normalizeMessageId(messageId) });
    }
    const token = this.tokenRe.exec(email.subject)?.[1];
    if (token) {
      const ticket = await this.store.get(token, o);
      if (ticket && (isParticipant(ticket.value, sender) || isColleague(ticket.value, sender))) {
        return this.existing(ticket.value, { rule: 'email-subject-token', value: token });
      }
    }
    for (const [, messageId] of candidates) {
      const marked = this.markerRe.exec(messageId.trim())?.[1];
      if (!marked) continue;
      const ticket = await this.store.get(marked, o);
      if (ticket && isParticipant(ticket.value, sender)) return this.existing(ticket.value, { rule: 'email-marker', value: normalizeMessageId(messageId) });
    }
    // Our replies carry "[#T-1042]" in their text too: it survives in the quoted history when a
    // relay rewrote our Message-ID, the client dropped In-Reply-To and the subject was changed.
    const quoted = this.tokenRe.exec(e.fullText ?? e.text)?.[1];
    if (quoted) {
      const ticket = await this.store.get(quoted, o);
      if (ticket && isParticipant(ticket.value, sender)) return this.existing(ticket.value, { rule: 'email-marker', value: `body [#${quoted}]` });
    }
    return null;
  }

  /**
   * A conversation's tickets are bound by epoch (IndexKeys.conversationEpoch), each binding
   * create-only: the newest epoch's ticket takes the message, or reopens within the window; past
   * it, a new ticket is bound at the next epoch. Two routers deciding that at once race one
   * create and the loser joins the winner's ticket: one conversation never gets two tickets.
   */
  private async resolveChat(e: InboundMessage, o: { fresh: boolean }): Promise<Resolution> {
    const conversation = IndexKeys.conversation(e.channel, e.account, e.conversation.id, e.conversation.threadId);
    const value = e.conversation.threadId ? `${e.conversation.id}/${e.conversation.threadId}` : e.conversation.id;
    let epoch = this.store.knownEpoch(conversation);
    // Not seen since this replica took the partition over: another owner may have opened newer
    // tickets meanwhile, and an older one found open (an agent reopened it) must not take the
    // message while a newer one is there. Walked forward once; known from then on.
    let lookAhead = !this.store.epochKnown(conversation);
    for (;;) {
      const key = IndexKeys.conversationEpoch(conversation, epoch);
      const hit = await this.store.lookup(key, o);
      if (!hit) {
        // Bindings below the floor were evicted with their tickets: the chain goes on at the floor.
        const floor = await this.store.floor(conversation);
        if (floor && floor.epoch > epoch) {
          epoch = this.jump(conversation, floor);
          continue;
        }
        const after = floor && floor.epoch === epoch ? afterEviction(floor) : '';
        // Nothing is bound at or after this epoch (they are bound in order): it is the newest.
        this.store.noteEpoch(conversation, epoch);
        return { kind: 'new', match: { rule: 'new-ticket', value: after ? `${value} (epoch ${epoch}${after})` : value }, conversationKey: key };
      }
      let ticket = await this.store.get(hit.value, o);
      // A new ticket is decided on the record as it is now, not as this replica cached it: an
      // agent (or a message on another replica) may have reopened it since.
      if (ticket && !o.fresh && CLOSED_STATUSES.has(ticket.value.status) && !this.withinReopenWindow(ticket.value)) ticket = await this.store.get(hit.value, { fresh: true });
      if (!ticket) {
        // No record behind the binding: evicted (the floor was raised past it first), or claimed
        // but never written (a crash between the two), which is finished with this message.
        const floor = await this.store.floor(conversation);
        if (floor && floor.epoch > epoch) {
          epoch = this.jump(conversation, floor);
          continue;
        }
        return { kind: 'new', match: { rule: 'new-ticket', value }, conversationKey: key, previous: hit.value };
      }
      const t = ticket.value;
      const closed = CLOSED_STATUSES.has(t.status);
      if (o.fresh || lookAhead || (closed && !this.withinReopenWindow(t))) {
        // A newer binding exists when another router already opened the next ticket.
        const next = IndexKeys.conversationEpoch(conversation, epoch + 1);
        if (await this.store.lookup(next, { fresh: true })) {
          epoch++;
          this.store.noteEpoch(conversation, epoch);
          continue;
        }
        // The next binding may be gone with its evicted ticket while this older one lived on (an
        // agent reopened it): the chain goes on at the floor, and a new ticket is never bound below it.
        const floor = await this.store.floor(conversation);
        if (floor && floor.epoch > epoch + 1) {
          epoch = this.jump(conversation, floor);
          continue;
        }
        lookAhead = false;
        this.store.noteEpoch(conversation, epoch);
      }
      if (!closed) return { kind: 'existing', ticket: t, match: { rule: 'open-conversation', value }, reopen: false };
      if (this.withinReopenWindow(t)) return { kind: 'existing', ticket: t, match: { rule: 'reopened', value }, reopen: true };
      this.store.noteEpoch(conversation, epoch + 1);
      return { kind: 'new', match: { rule: 'new-ticket', value: `${value} (epoch ${epoch + 1})` }, conversationKey: IndexKeys.conversationEpoch(conversation, epoch + 1) };
    }
  }

  private jump(conversation: string, floor: Floor): number {
    this.store.noteEpoch(conversation, floor.epoch);
    return floor.epoch;
  }

  /**
   * Why a message that names a ticket (subject token, marker, quoted text) still opens a new one
   * when that ticket is not in the store: said in the new ticket's log.
   */
  private async missingNote(e: InboundMessage): Promise<string> {
    const email = e.email!;
    const named = this.tokenRe.exec(email.subject)?.[1] ?? this.tokenRe.exec(e.fullText ?? e.text)?.[1];
    if (!named || (await this.store.get(named))) return '';
    return (await this.store.evicted(named)) ? ` (names ${named}, closed long ago and evicted from the ticket store: a new ticket)` : '';
  }

  private existing(ticket: Ticket, match: ThreadMatch): Resolution {
    const reopen = CLOSED_STATUSES.has(ticket.status);
    return { kind: 'existing', ticket, match, reopen };
  }

  private withinReopenWindow(t: Ticket): boolean {
    const closedAt = t.closedAt ? Date.parse(t.closedAt) : Date.parse(t.updatedAt);
    return this.o.now() - closedAt <= this.o.reopenWindowMs;
  }
}

export function isParticipant(ticket: Ticket, address: string): boolean {
  return ticket.participants.length === 0 || ticket.participants.includes(address);
}

/**
 * Someone at the same company as a participant (the customer's manager answering in the thread).
 * Not for public mail services, where a shared domain says nothing about who someone is.
 */
function isColleague(ticket: Ticket, address: string): boolean {
  const domain = domainOf(address);
  if (!domain || PUBLIC_MAIL_DOMAINS.has(domain)) return false;
  return ticket.participants.some((p) => domainOf(p) === domain);
}

function domainOf(address: string): string | undefined {
  const at = address.lastIndexOf('@');
  return at > 0 ? address.slice(at + 1).toLowerCase() : undefined;
}

const PUBLIC_MAIL_DOMAINS = new Set([
  'gmail.com', 'googlemail.com', 'yandex.ru', 'ya.ru', 'yandex.com', 'yandex.by', 'yandex.kz', 'mail.ru', 'bk.ru', 'inbox.ru',
  'list.ru', 'internet.ru', 'rambler.ru', 'lenta.ru', 'autorambler.ru', 'ro.ru', 'outlook.com', 'hotmail.com', 'live.com',
  'msn.com', 'icloud.com', 'me.com', 'mac.com', 'yahoo.com', 'proton.me', 'protonmail.com', 'gmx.com', 'gmx.de', 'aol.com',
  'zoho.com', 'ukr.net', 'tut.by', 'qip.ru', 'pochta.ru',
]);
