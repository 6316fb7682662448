/**
 * Identifiers: our outbound Message-IDs (the router's marker rule and echo detection rely on the
 * `<omni.<ticket>.<hash>@<domain>>` shape) and the platform ids of inbound mail, which come from
 * the Message-ID so the same mail seen twice (renumbered by the server, a UIDVALIDITY change,
 * two watched folders) is one event.
 */
import { createHash, createHmac } from 'node:crypto';
import { normalizeMessageId } from '../../core/message-id.js';
import { visibleId } from '../../core/schema-base.js';

const sha256 = (data: string | Uint8Array) => createHash('sha256').update(data).digest('hex');

/** What our Message-IDs are made with: this installation's id, and its secret (omni_meta, bus-provision.ts). */
export interface MessageIdKey {
  installationId: string;
  /** Without it (older versions; tests) the id follows from public facts alone. */
  secret?: Uint8Array;
}

/**
 * Deterministic from the outbound id and this installation: a retry of the same reply reuses the
 * same Message-ID, while staging and production on one domain (or a reinstall) never collide.
 * The installation id is also visible, so an operator can tell which installation sent a mail.
 * Keyed by the installation's secret: outbound ids of automated mail are predictable
 * (`T-1003:<installation>:<hash of "auto-acknowledgement">`), and a stranger who computed the
 * Message-ID of a ticket's acknowledgement sent it first, claiming the customer's answer to it.
 */
export function outboundMessageId(ticketId: string, outboundId: string, domain: string, key: MessageIdKey | string = ''): string {
  const { installationId, secret } = typeof key === 'string' ? { installationId: key, secret: undefined } : key;
  const input = installationId ? `${installationId}\u0000${outboundId}` : outboundId;
  const hash = secret?.length ? createHmac('sha256', secret).update(input).digest('hex') : sha256(input);
  const tail = installationId ? `.${installationId}` : '';
  return `<omni.${ticketId}.${hash.slice(0, 24)}${tail}@${domain}>`;
}

/** Any Message-ID we generated (for any ticket, any of our domains, with or without the installation id). */
export const OUR_MESSAGE_ID = /<omni\.[A-Za-z0-9_-]+\.[0-9a-f]{24}(?:\.[0-9a-z]{1,32})?@[^>\s]+>/i;

export function isOurMessageId(messageId: string, domains: ReadonlySet<string>): boolean {
  const m = /^<?omni\.[A-Za-z0-9_-]+\.[0-9a-f]{24}(?:\.[0-9a-z]{1,32})?@([^>\s]+)>?$/i.exec(messageId.trim());
  return !!m && domains.has(m[1]!.toLowerCase());
}


/**
 * `<mailbox>:<message-id>#<copy>`; a very long Message-ID (or one with a direction override or
 * zero-width character) is hashed to keep the event id within
 * bounds. `<copy>` tells mails that share a Message-ID apart unless they are copies of one mail
 * (seen twice: renumbered by the server, a UIDVALIDITY change, two watched folders, a replay): a
 * hash of the sender and of the Date and Subject headers as written (copyHeaders), which every
 * copy has unchanged. Without it, a mailer that gives every mail the same Message-ID (some do), or
 * another sender's mail reusing one, was taken for a copy of the first and dropped, silently.
 */
export function platformId(mailbox: string, messageId: string, copy: { from: string; headers: string }): string {
  const bare = normalizeMessageId(messageId);
  const fingerprint = sha256(`${copy.from.toLowerCase()}\u0000${copy.headers}`).slice(0, 12);
  // Hashed too when it holds a character an id must not (a direction override): the mail is
  // still taken, its id cannot disguise itself; threading reads the Message-ID itself, not this.
  return `${mailbox.toLowerCase()}:${bare.length <= 300 && visibleId(bare) ? bare : `sha256.${sha256(bare)}`}#${fingerprint}`;
}

/**
 * The Date and Subject headers of a raw mail as written (unfolded, white space collapsed), not
 * as parsed: mailparser puts the current time in place of a Date it cannot read (`Пн, 12 мар
 * 2024`, `15.03.2024` from CRM mailers), and a Subject's decoding follows the legacy-charset guess,
 * which can differ between a mail and its headers-only copy: either would give every reading of
 * one mail another id, and store it again.
 */
export function copyHeaders(raw: Uint8Array): string {
  const text = Buffer.from(raw.buffer, raw.byteOffset, raw.byteLength).toString('latin1');
  const end = /\r?\n\r?\n/.exec(text);
  const head = (end ? text.slice(0, end.index) : text).replace(/\r?\n[ \t]+/g, ' ');
  const value = (name: string) => new RegExp(`^${name}:[ \\t]*(.*)$`, 'im').exec(head)?.[1]?.replace(/\s+/g, ' ').trim() ?? '';
  return `${value('date')}\u0000${value('subject')}`;
}

/**
 * A Message-ID longer than a header line may be (RFC 5322: 998 characters) is none. The ticket
 * keeps a mail's id three times (thread key, last id, reference chain): one of 300 KB made the
 * ticket record 922 KB, and the sender's next mail could not be stored, retried for ever
 * (outside trial t11). No mailer makes one; ids in In-Reply-To and References are held to it too.
 */
export const MAX_MESSAGE_ID_CHARS = 998;

/** The Message-ID a mail goes by: its own, or a stand-in from its bytes when it has none (also `<>`, `< >`: empty is none; over MAX_MESSAGE_ID_CHARS is none). */
export function effectiveMessageId(header: string | undefined, raw: Uint8Array): string {
  const given = header?.trim();
  return given && given.length <= MAX_MESSAGE_ID_CHARS && normalizeMessageId(given).trim() ? given : syntheticMessageId(raw);
}

/** A stable stand-in for a mail that has no Message-ID: the same bytes get the same id. */
export function syntheticMessageId(raw: Uint8Array): string {
  return `<nomid.${sha256(raw).slice(0, 40)}@omnigate.invalid>`;
}
