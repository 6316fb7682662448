/**
 * Whom an email reply goes to: "reply all", as Zammad and Freshdesk answer. To the author of the
 * mail it answers (the ticket's newest mail, the one In-Reply-To names), Cc everyone else on that
 * mail's To and Cc, and the ticket's customer when someone else wrote it; not earlier writers the
 * newest mail left out (a customer who drops a colleague to raise something private is not
 * copied to them, as their mail client's reply all would not); never the gateway's own addresses,
 * nor a copy whose mail bounced (until they write again), each address once (case-insensitive),
 * at most MAX_RECIPIENTS in Cc. By default only people the
 * ticket's mail named are chosen; an agent's explicit `to`/`cc` may name anyone.
 */
import { addressKey } from '../core/mail-address.js';
import { MAX_RECIPIENTS, PARTY_LIST_MAX, REPLIES_KEPT, type EmailMeta, type EmailParties, type Ticket } from '../core/schema.js';

/** The people of a ticket's mail after one more inbound mail (runs inside a compare-and-set: idempotent). */
export function withMailParties(prev: EmailParties | undefined, mail: EmailMeta): EmailParties {
  // The newest report wins: a mailbox or alias added to the connector counts from its next mail.
  const own = mail.ownAddresses ? distinct(mail.ownAddresses.map(addressKey)) : (prev?.own ?? []);
  const ours = new Set(own);
  const others = (list: string[]) => distinct(list.map(addressKey)).filter((a) => a && !ours.has(a)).slice(0, PARTY_LIST_MAX);
  // Where the author asked answers to go (Reply-To), as the contact's replyTo has always been used.
  const replyTo = mail.replyTo && !ours.has(addressKey(mail.replyTo)) ? mail.replyTo : undefined;
  const author = addressKey(replyTo ?? mail.from);
  const authors = distinct([...(prev?.authors ?? []), author]);
  // Whoever writes into the ticket has a mailbox that works again: copied once more.
  const bouncedCopies = prev?.bouncedCopies?.filter((a) => a !== author && a !== addressKey(mail.from));
  return {
    last: { author, to: others(mail.to), cc: others(mail.cc) },
    // Over the bound: the opener and the newest writers stay.
    authors: authors.length > PARTY_LIST_MAX ? [authors[0]!, ...authors.slice(-(PARTY_LIST_MAX - 1))] : authors,
    own,
    ...(prev?.replies ? { replies: prev.replies } : {}),
    ...(bouncedCopies?.length ? { bouncedCopies } : {}),
  };
}

/** The ticket's mail people after an agent's reply went To `to` (idempotent: a retry replaces its own record). */
export function withReplyTo(prev: EmailParties | undefined, outboundId: string, to: string[], cc: string[] = []): EmailParties {
  const p = prev ?? { authors: [], own: [] };
  const keep = (list: string[]) => distinct(list.map(addressKey)).slice(0, PARTY_LIST_MAX);
  const replies = [...(p.replies ?? []).filter((r) => r.outboundId !== outboundId), { outboundId, to: keep(to), ...(cc.length ? { cc: keep(cc) } : {}) }];
  return { ...p, replies: replies.slice(-REPLIES_KEPT) };
}

/** The reply's Message-ID, once it was sent: what a bounce names. */
export function withReplyMessageId(p: EmailParties | undefined, outboundId: string, messageId: string): EmailParties | undefined {
  const reply = p?.replies?.find((r) => r.outboundId === outboundId);
  if (!p || !reply || reply.messageId === messageId) return p;
  return { ...p, replies: p.replies!.map((r) => (r === reply ? { ...r, messageId } : r)) };
}

/** Copies that bounced: left out of later replies by default (the newest kept past the bound). */
export function withBouncedCopies(p: EmailParties, addresses: string[]): EmailParties {
  const bouncedCopies = distinct([...(p.bouncedCopies ?? []), ...addresses.map(addressKey)]);
  return { ...p, bouncedCopies: bouncedCopies.slice(-PARTY_LIST_MAX) };
}

export interface ChosenRecipients {
  to: string[];
  cc: string[];
  /** Addresses the agent named that no mail of the ticket did (logged: the agent's choice). */
  outside: string[];
  /** Default Cc addresses left out over MAX_RECIPIENTS. */
  cut: string[];
}

/**
 * The reply's To and Cc. Explicit lists replace their part of the default; with `to` alone, the
 * default's people not in it stay in Cc (reply all to someone else), and `cc: []` copies nobody.
 * Automated mail (acknowledgement, satisfaction request) goes to the contact alone, as before:
 * copying a whole thread on an automatic message is noise, and a loop risk with autoresponders.
 */
export function replyRecipients(t: Ticket, explicit: { to?: string[]; cc?: string[] }, automated: boolean): ChosenRecipients {
  const p = t.emailParties;
  const ours = new Set([addressKey(t.conversation.id), ...(p?.own ?? [])]);
  const contact = addressKey(t.contact.handles.replyTo ?? t.contact.handles.email ?? t.contact.id);
  // Tickets recorded before emailParties existed keep today's answer: the contact alone.
  const last = automated ? undefined : p?.last;
  const author = last && !ours.has(last.author) ? last.author : contact;
  // A copy that bounced is left out of what we choose (the agent may still name it).
  const bounced = new Set(p?.bouncedCopies ?? []);
  const defaultCc = last ? [...last.to, ...last.cc, ...(last.author !== contact ? [contact] : [])].filter((a) => !bounced.has(addressKey(a))) : [];
  const to = explicit.to ? distinct(explicit.to) : [author];
  const toKeys = new Set(to.map(addressKey));
  const source = explicit.cc ?? (explicit.to ? [author, ...defaultCc] : defaultCc);
  // The gateway's own addresses are dropped from what we chose, not from what the agent wrote.
  const candidates = distinct(source).filter((a) => !toKeys.has(addressKey(a)) && (explicit.cc !== undefined || !ours.has(addressKey(a))));
  const known = new Set([contact, ...t.participants.map(addressKey), ...defaultCc, ...(last ? [last.author] : [])]);
  const named = [...(explicit.to ?? []), ...(explicit.cc ?? [])];
  return {
    to,
    cc: candidates.slice(0, MAX_RECIPIENTS),
    outside: distinct(named).filter((a) => !known.has(addressKey(a))),
    cut: candidates.slice(MAX_RECIPIENTS),
  };
}

/** Each address once, compared case-insensitively; the first spelling is kept. */
function distinct(list: string[]): string[] {
  const seen = new Set<string>();
  const out: string[] = [];
  for (const a of list) {
    const key = addressKey(a);
    if (!key || seen.has(key)) continue;
    seen.add(key);
    out.push(a.trim());
  }
  return out;
}
