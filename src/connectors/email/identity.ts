/**
 * Who a mail is from, i.e. whom the answer goes to. RFC 5322 wants one mailbox in From, but
 * mailers send what they send: Python's `email` package, old 1C and CMS mailers put the whole
 * `Имя <addr>` into one RFC 2047 encoded word, which mailparser (3.9.4+) rightly refuses to read
 * an address out of: it hands back a name holding the decoded text and an empty address. That
 * text is parsed again here, so such a mail has a sender. A From with no mailbox, or with several
 * (a list, where RFC 5322 wants a Sender), gives way to Reply-To, then Sender, then Return-Path
 * (the envelope sender the delivering server recorded); which one was used rides on the event.
 */
import addressparser from 'nodemailer/lib/addressparser/index.js';
import type { AddressObject, ParsedMail } from 'mailparser';
import { isMailbox } from '../../core/mail-address.js';

export const SENDER_HEADERS = ['from', 'reply-to', 'sender', 'return-path'] as const;
export type SenderHeader = (typeof SENDER_HEADERS)[number];

export interface Mailbox {
  address: string;
  name?: string;
}

export type SenderVerdict = { ok: true; mailbox: Mailbox; header: SenderHeader; refused: string[] } | { ok: false; refused: string[] };

/** The first header, in the fallback order, that names exactly one valid mailbox. */
export function pickSender(mail: ParsedMail): SenderVerdict {
  const refused: string[] = [];
  for (const header of SENDER_HEADERS) {
    const field = mail.headers.get(header) as AddressObject | AddressObject[] | string | undefined;
    if (field === undefined) continue;
    const found = mailboxesOf(field);
    if (found.length === 1) return { ok: true, mailbox: found[0]!, header, refused };
    refused.push(`${header}: ${found.length === 0 ? 'no valid mailbox' : `${found.length} mailboxes`} in ${JSON.stringify(textOf(field))}`);
  }
  return { ok: false, refused };
}

function mailboxesOf(field: AddressObject | AddressObject[] | string): Mailbox[] {
  // mailparser parses the address headers; should one come as a string, parse it the same way.
  const groups: AddressObject[] = typeof field === 'string' ? [{ value: addressparser(field), text: field, html: '' } as AddressObject] : Array.isArray(field) ? field : [field];
  const out: Mailbox[] = [];
  for (const group of groups) {
    for (const a of group.value) {
      for (const entry of a.group ?? [a]) {
        if (entry.address) {
          if (isMailbox(entry.address)) out.push({ address: entry.address.toLowerCase(), name: entry.name || undefined });
          continue;
        }
        // No address but a name: the decoded text of an encoded word that held the whole mailbox.
        if (entry.name && /@/.test(entry.name)) {
          for (const inner of addressparser(entry.name, { flatten: true })) {
            if (inner.address && isMailbox(inner.address)) out.push({ address: inner.address.toLowerCase(), name: inner.name || undefined });
          }
        }
      }
    }
  }
  return out;
}

function textOf(field: AddressObject | AddressObject[] | string): string {
  if (typeof field === 'string') return field;
  return (Array.isArray(field) ? field : [field]).map((f) => f.text).join(', ');
}
