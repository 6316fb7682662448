/**
 * The keys a web form's ids become. A conversation is found by its id, so the id must be one the
 * site authenticated (README, "The webhook channel"); the gateway can only make the ways of writing
 * one id agree, and give a sender the site marks unverified ids nobody else can write.
 */

/** Ids the gateway gives unverified senders' messages: refused from clients, so none can be written. */
export const UNVERIFIED_PREFIX = 'unverified:';

const EMAIL = /^[^\s@]+@[^\s@]+\.[^\s@]+$/;

/**
 * An id as a key: surrounding whitespace trimmed, an email address in lower case (the local part
 * too: mail practice treats it case-insensitively, and a form's "OLGA@client.ru" is the same person
 * as "olga@client.ru"). Anything else keeps its case: a site's account ids may differ by it.
 */
export function keyOfId(written: string): string {
  const trimmed = written.trim();
  return EMAIL.test(trimmed) ? trimmed.toLowerCase() : trimmed;
}

/** The conversation and sender ids of an unverified sender's message: its own, made from the message id (unique in the account). */
export function unverifiedId(messageId: string): string {
  return `${UNVERIFIED_PREFIX}${messageId}`;
}
