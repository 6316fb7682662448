/**
 * What counts as a mail address, and when two are the same one: the one rule for the email
 * connector (whom a mail is from) and for the router and API (whom a reply goes to).
 */
import { INVISIBLE_IN_ID } from './display-text.js';

// Local part and domain without whitespace or the characters that delimit addresses; the domain
// may be an IDN in Unicode. Deliberately loose: the SMTP server is the judge of deliverability.
const MAILBOX = /^[^\s@<>()[\]\\,;:"]+@[^\s@<>()[\]\\,;:"'.]+(?:\.[^\s@<>()[\]\\,;:"'.]+)*$/u;

/** A direction override or zero-width character (display-text.ts): "ivan\u202e@x.ru" shows as another address, so it is none. */
const INVISIBLE = new RegExp(`[${INVISIBLE_IN_ID}]`);

export function isMailbox(address: string): boolean {
  return MAILBOX.test(address) && !address.startsWith('.') && !address.includes('..') && !INVISIBLE.test(address);
}

/**
 * How addresses are compared: trimmed, lower case. RFC 5321 leaves the local part's case to the
 * receiving server, but every mail service people use ignores it, and the connector already
 * records inbound addresses in lower case: "Boss@Firm.ru" and "boss@firm.ru" are one person.
 */
export function addressKey(address: string): string {
  return address.trim().toLowerCase();
}
