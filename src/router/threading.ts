/**
 * Threading: which ticket an inbound message belongs to, and why. Rules, in order:
 *  email  In-Reply-To, then References (newest first), against the Message-IDs of mail we sent
 *         (the `out.` index, which only our deliveries write), then of mail we received — a match is
 *         accepted only from someone who took part in that ticket, so replies to one mail sent
 *         to many do not merge strangers; then the subject tokens "[#T-1042]" (the first five, a
 *         participant's ticket before a colleague's) — from a participant
 *         or a colleague: someone at a domain the operator declared a customer organisation's
 *         (router.colleagueDomains) where a participant is too. Numbers are guessable, and a
 *         shared domain proves nothing at a public mail service, which no built-in list can name
 *         in full (a stranger at narod.ru joined a customer's ticket there): undeclared, a
 *         domain lets nobody in. Then our own Message-ID marker "<omni.T-1042.…@…>" surviving in
 *         any header, then the "[#T-1042]" our replies carry in their text, found in the quoted
 *         history (both from participants only); else a new ticket, whose log says which ticket
 *         the mail named and why it did not join it. A mail whose sender proves nothing (taken
 *         from a fallback header, or its From found forged by the receiving server: sender-trust.ts)
 *         joins no existing ticket by any of these rules.
 *  chats  one open ticket per (channel, account, chat[, thread]); after close, a message reopens
 *         the ticket within the reopen window, otherwise opens a new one; after the ticket was
 *         evicted (tickets.evictClosedAfter, eviction.ts), a new one, whose log says so.
 * Every decision carries the rule and the matched value, written into the ticket log.
 */
import type { InboundMessage, Ticket, ThreadMatch } from '../core/schema.js';
import { CLOSED_STATUSES } from '../core/schema.js';
import { asciiDomain, domainOf, isPublicMailDomain, mailDomainOf } from '../core/mail-domains.js';
import { orderKey } from '../core/subjects.js';
import { senderDoubt } from './sender-trust.js';
import { normalizeMessageId } from '../core/message-id.js';
import { IndexKeys, type Floor } from './thread-keys.js';
import type { TicketStore } from './tickets.js';

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
  /** router.colleagueDomains: customer organisations' own mail domains (any form: compared as asciiDomain); none by default. */
  colleagueDomains?: readonly string[];
  /** This installation's id (omni_meta), which ends every Message-ID it mints; '' (default): any id of our shape is ours. */
  installationId?: string;
}

/** Why a mail that named a ticket did not join it, per ticket: said in the log of the ticket it opens. */
type Refusals = Map<string, string>;
const MAX_REFUSALS_LOGGED = 3;
/** How many of a mail's References (the newest) threading looks up; the event keeps them all. */
export const MAX_REFERENCES_CONSULTED = 100;

export function subjectTokenPattern(prefix: string): RegExp {
  const p = prefix.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
  return new RegExp(`\\[#(${p}\\d+)\\]`);
}

/** How many "[#T-…]" tokens of one subject are looked at: forwards of forwards name a few, never dozens. */
export const MAX_SUBJECT_TOKENS = 5;

/** The distinct tickets a subject names by token, in order, at most MAX_SUBJECT_TOKENS. */
export function subjectTokens(subject: string, prefix: string): string[] {
  const all = new RegExp(subjectTokenPattern(prefix).source, 'g');
  const found: string[] = [];
  for (const m of subject.matchAll(all)) {
    if (!found.includes(m[1]!)) found.push(m[1]!);
    if (found.length === MAX_SUBJECT_TOKENS) break;
  }
  return found;
}

export function markerPattern(prefix: string): RegExp {
  const p = prefix.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
  return new RegExp(`^<?omni\\.(${p}\\d+)\\.`, 'i');
}

/**
 * Every Message-ID we mint starts `omni.` (email connector ids.ts), at whatever domain an
 * account's messageIdDomain names, and ends in this installation's id. Found on a mail we did
 * not send (not in the `out.` index: echoes of ours are parked before threading), it is forged:
 * it is never indexed as the mail's own, where it would stand for ours in the `mid.` index and
 * pull replies to our mail into the forger's ticket. One whose installation tail is another's
 * (a customer or supplier that runs omnigate too) is that installation's, and indexed like any
 * mailer's id: ours carry our tail and a keyed hash, so it can never be one we will send.
 */
const OUR_SHAPE = /^<?omni\./i;
/** The parts of a full id of ours: `<omni.<ticket>.<24 hex>[.<installation>]@domain>` (ids.ts). */
const OUR_GRAMMAR = /^<?omni\.[A-Za-z0-9_-]+\.[0-9a-f]{24}(?:\.([0-9a-z]{1,32}))?@[^>\s]+>?$/i;

/**
 * Whether `messageId` claims to be one of this installation's (`installationId`; '' when unknown:
 * every id of our shape). Anything of our shape that is not another installation's full id
 * counts as ours: a mangled forgery must not escape the rule by its spelling.
 */
export function hasOurShape(messageId: string, installationId = ''): boolean {
  const id = messageId.trim();
  if (!OUR_SHAPE.test(id)) return false;
  const tail = OUR_GRAMMAR.exec(id)?.[1];
  return !installationId || tail === undefined || tail.toLowerCase() === installationId.toLowerCase();
}

/** Said in the log of a mail whose own Message-ID has our shape (hasOurShape). */
export const FORGED_NOTE = 'its own Message-ID has the shape of ours but is none we sent (forged): not indexed';

export class Threader {
  private readonly tokenRe: RegExp;
  private readonly markerRe: RegExp;
  private readonly colleagueDomains: ReadonlySet<string>;

  constructor(
    private readonly store: TicketStore,
    private readonly o: ThreadingOptions,
  ) {
    this.tokenRe = subjectTokenPattern(store.prefix);
    this.markerRe = markerPattern(store.prefix);
    // The config gives them in ASCII form already; a Threader built without it is compared the same way.
    this.colleagueDomains = new Set((o.colleagueDomains ?? []).flatMap((d) => asciiDomain(d) ?? []));
  }

  /** Whether a Message-ID claims to be one this installation minted (hasOurShape). */
  claimsOurs(messageId: string): boolean {
    return hasOurShape(messageId, this.o.installationId);
  }

  /** The key that orders work: messages with the same key are processed one at a time. */
  laneKey(e: Parameters<typeof orderKey>[0]): string {
    return orderKey(e);
  }

  async resolve(e: InboundMessage, fresh = false): Promise<Resolution> {
    if (e.email) {
      const refused: Refusals = new Map();
      const forged = this.claimsOurs(e.email.messageId);
      const found = await this.resolveEmail(e, { fresh }, refused);
      if (found) return forged ? { ...found, match: { ...found.match, value: `${found.match.value} (${FORGED_NOTE})` } } : found;
      // At most a few, each ticket once: a mail's References may name any number of tickets.
      const notes = [...refused.values()].slice(0, MAX_REFUSALS_LOGGED);
      if (refused.size > MAX_REFUSALS_LOGGED) notes.push(`and ${refused.size - MAX_REFUSALS_LOGGED} more tickets`);
      const missing = await this.missingNote(e);
      if (missing) notes.push(missing);
      // Said even when it named no ticket we have: whoever reads the log learns why it stands alone.
      const doubt = refused.size === 0 ? senderDoubt(e.email) : undefined;
      if (doubt) notes.push(`${doubt}: it joins no existing ticket`);
      if (forged) notes.push(FORGED_NOTE);
      const why = notes.length ? ` (${notes.join('; ')})` : '';
      // A forged id of ours claims a key of this sender's, never the one replies to ours are found by.
      const conversationKey = forged ? IndexKeys.emailMessageIdOfSender(e.email.messageId, e.email.from) : IndexKeys.emailMessageId(e.email.messageId);
      return { kind: 'new', match: { rule: 'new-ticket', value: normalizeMessageId(e.email.messageId) + why }, conversationKey };
    }
    const resolved = await this.resolveChat(e, e.conversation.id, { fresh });
    // A conversation opened before its connector normalised ids (a web form's "OLGA@client.ru ")
    // is bound under the id as written: its open (or reopenable) ticket takes the message still.
    // Anything new is bound under the normal form, so the two forms meet there from now on.
    const written = e.conversation.writtenId;
    if (resolved.kind === 'existing' || !written || written === e.conversation.id) return resolved;
    const before = await this.resolveChat(e, written, { fresh });
    return before.kind === 'existing' ? before : resolved;
  }

  private async resolveEmail(e: InboundMessage, o: { fresh: boolean }, refused: Refusals): Promise<Resolution | null> {
    const email = e.email!;
    const sender = email.from.toLowerCase();
    // A sender taken from a fallback header, or whose From the receiving server found forged, is
    // nobody's word (sender-trust.ts): such a mail threads into no existing ticket by any rule,
    // so its Reply-To and Cc become participants of none.
    const doubt = senderDoubt(email);
    const takesPart = (t: Ticket) => !doubt && isParticipant(t, sender);
    const refuse = (ticket: string, how: string, why = doubt ?? `${sender} took no part in it`) => {
      if (!refused.has(ticket)) refused.set(ticket, `${how} ${ticket}, but ${why}: a ticket of its own`);
    };
    const candidates: Array<[ThreadMatch['rule'], string]> = [];
    if (email.inReplyTo) candidates.push(['email-in-reply-to', email.inReplyTo]);
    // The newest only: each is one or two KV reads, and a 500 KB header names 60,000 (25 s of the
    // router's time for one mail from anyone). A reply names the mail it answers last.
    for (const ref of email.references.slice(-MAX_REFERENCES_CONSULTED).reverse()) candidates.push(['email-references', ref]);
    for (const [rule, messageId] of candidates) {
      // Our own sent mail first: only our deliveries write `out.`, while `mid.` holds what inbound
      // mail carried, first writer wins. A stranger who wrote one of our future ids there (a mail
      // of theirs carrying it) had the replies to our mail land in their ticket. Only ids of our
      // shape can be ours: a customer's costs no second lookup.
      const own = this.claimsOurs(messageId) ? await this.store.lookup(IndexKeys.ownMessageId(messageId), o) : null;
      const hit = own ?? (await this.store.lookup(IndexKeys.emailMessageId(messageId), o));
      if (!hit) continue;
      const ticket = await this.store.get(hit.value, o);
      if (!ticket) continue;
      if (!takesPart(ticket.value)) {
        refuse(ticket.value.id, `${rule === 'email-in-reply-to' ? 'In-Reply-To' : 'References'} names a mail of`);
        continue;
      }
      return this.existing(ticket.value, { rule, value: normalizeMessageId(messageId) });
    }
    // Every token, not the first only: "Fwd: [#T-1001] Re: [#T-1002]" from T-1002's customer is
    // T-1002's. A participant's ticket before a colleague's; the log says which token joined.
    const tokens = subjectTokens(email.subject, this.store.prefix);
    const named: Array<{ token: string; ticket: Ticket }> = [];
    for (const token of tokens) {
      const ticket = await this.store.get(token, o);
      if (ticket) named.push({ token, ticket: ticket.value });
    }
    const value = (token: string, why?: string) => {
      const notes = [why, tokens.length > 1 ? `token ${tokens.indexOf(token) + 1} of ${tokens.length} in the subject` : undefined].filter(Boolean);
      return notes.length ? `${token} (${notes.join(', ')})` : token;
    };
    const own = named.find((n) => takesPart(n.ticket));
    if (own) return this.existing(own.ticket, { rule: 'email-subject-token', value: value(own.token) });
    for (const { token, ticket } of named) {
      const colleague = doubt ? { ok: false, why: doubt } : this.colleague(ticket, sender);
      if (colleague.ok) return this.existing(ticket, { rule: 'email-subject-token', value: value(token, colleague.why) });
      refuse(ticket.id, 'the subject names', colleague.why);
    }
    for (const [, messageId] of candidates) {
      // Another installation's ids name its tickets, not ours.
      const marked = this.claimsOurs(messageId) ? this.markerRe.exec(messageId.trim())?.[1] : undefined;
      if (!marked) continue;
      const ticket = await this.store.get(marked, o);
      if (!ticket) continue;
      if (takesPart(ticket.value)) return this.existing(ticket.value, { rule: 'email-marker', value: normalizeMessageId(messageId) });
      refuse(ticket.value.id, 'a Message-ID of ours names');
    }
    // Our replies carry "[#T-1042]" in their text too: it survives in the quoted history when a
    // relay rewrote our Message-ID, the client dropped In-Reply-To and the subject was changed.
    const quoted = this.tokenRe.exec(e.fullText ?? e.text)?.[1];
    if (quoted) {
      const ticket = await this.store.get(quoted, o);
      if (ticket && takesPart(ticket.value)) return this.existing(ticket.value, { rule: 'email-marker', value: `body [#${quoted}]` });
      if (ticket) refuse(ticket.value.id, 'the quoted text names');
    }
    return null;
  }

  /**
   * A conversation's tickets are bound by epoch (IndexKeys.conversationEpoch), each binding
   * create-only: the newest epoch's ticket takes the message, or reopens within the window; past
   * it, a new ticket is bound at the next epoch. Two routers deciding that at once race one
   * create and the loser joins the winner's ticket: one conversation never gets two tickets.
   */
  private async resolveChat(e: InboundMessage, id: string, o: { fresh: boolean }): Promise<Resolution> {
    const conversation = IndexKeys.conversation(e.channel, e.account, id, e.conversation.threadId);
    const value = e.conversation.threadId ? `${id}/${e.conversation.threadId}` : id;
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
    return (await this.store.evicted(named)) ? `names ${named}, closed long ago and evicted from the ticket store: a new ticket` : '';
  }

  /**
   * Someone at the same company as a participant (the customer's manager answering in the
   * thread), at a domain the operator declared a customer organisation's: a shared domain is no
   * evidence anywhere else (public mail services, which no list names in full). Nor is an
   * In-Reply-To naming a mail of ours: a Message-ID is copied freely from any mail that shows it
   * (ours are keyed by a secret since the outside trial T9, but older ones followed from the
   * ticket number and the installation id). `why` is said in the log either way.
   */
  private colleague(ticket: Ticket, address: string): { ok: boolean; why: string } {
    // Compared in ASCII form (ivan@компания.рф and ivan@xn--80aqeigdi5k.xn--p1ai are one domain),
    // said in the log as the mail wrote it.
    const domain = domainOf(address);
    const ascii = mailDomainOf(address);
    if (!domain || !ascii) return { ok: false, why: `${address} took no part in it` };
    // The config refuses public services; the check stays for a Threader built without it.
    if (isPublicMailDomain(ascii)) return { ok: false, why: `${address} took no part in it, and ${domain} is a public mail service` };
    if (!this.colleagueDomains.has(ascii)) return { ok: false, why: `${address} took no part in it, and ${domain} is not a customer organisation's domain (router.colleagueDomains)` };
    if (!ticket.participants.some((p) => mailDomainOf(p) === ascii)) return { ok: false, why: `${address} took no part in it, and nobody at ${domain} did` };
    return { ok: true, why: `a colleague at ${domain}, router.colleagueDomains` };
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
