/**
 * Customers' mail addresses and phone numbers masked in log lines (`log.personalData: mask`, the
 * default). A log collector keeps lines for as long as it likes and erasure (docs/data.md) cannot
 * reach it, while a platform's error text quotes the address it refused ("550 5.1.1
 * <ivan@mail.ru>: no such user"). The ticket log, which erasure does reach, keeps them whole.
 *
 * An address keeps its first character and its domain (`i***@mail.ru`: enough to tell a mail.ru
 * customer from a colleague's domain); a phone its country digit and last two (`+7********67`).
 * The gateway's own mailboxes are not personal data and stay readable.
 */

/** A mail address as it appears in free text: Latin or Cyrillic, the domain with a dot in it. */
const ADDRESS = /[\p{L}\p{N}._%+-]+@[\p{L}\p{N}-]+(?:\.[\p{L}\p{N}-]+)*\.[\p{L}]{2,}/gu;
/** A phone written with its "+": 10 to 15 digits, spaces, dots, dashes and brackets between them. */
const PHONE = /\+\d(?:[\d\s().-]{8,22})\d/g;

const ownAddresses = new Set<string>();
let masking = true;

/** The gateway's own addresses (mailboxes, aliases): shown as they are. */
export function registerOwnAddress(address: string): void {
  ownAddresses.add(address.toLowerCase());
}

/** `show` turns masking off for this process (a development machine; docs/operating.md). */
export function setPersonalDataInLogs(mode: 'mask' | 'show'): void {
  masking = mode === 'mask';
}

export function maskPersonalData(text: string): string {
  if (!masking || text.length < 6) return text;
  let out = text.indexOf('@') >= 0 ? text.replace(ADDRESS, maskAddress) : text;
  if (out.indexOf('+') >= 0) out = out.replace(PHONE, maskPhone);
  return out;
}

/** A WhatsApp number as the platform writes it, without "+" (`79161234567`, a JID): masked where a field holds one (PHONE_FIELDS in logger.ts). */
const BARE_PHONE = /^\d{10,15}(?=$|@)/;

export function maskBarePhone(text: string): string {
  if (!masking) return text;
  const m = BARE_PHONE.exec(text);
  return m ? `${maskPhone(`+${m[0]}`).slice(1)}${text.slice(m[0].length)}` : text;
}

/**
 * A Message-ID for a log field, where it is kept whole (logger.ts: it names a mail, and threading
 * is debugged by it), but masked as an address when it is one of its own mail's addresses (From,
 * To, Cc, Reply-To; case aside): broken mailers write `Message-ID: <maria.ivanova@inbox.ru>`, which
 * put the customer's address in the log whole. Only then: an id that merely looks like an address
 * (`<1a2b.3c@mail.ru>`) names no one, and an operator needs it whole to find the mail.
 */
export function loggableMessageId(messageId: string, addresses: Iterable<string | undefined>): string {
  if (!masking) return messageId;
  const bare = messageId.trim().replace(/^<(.*)>$/, '$1').trim();
  const lower = bare.toLowerCase();
  for (const a of addresses) if (a && a.trim().toLowerCase() === lower) return messageId.replace(bare, maskAddress(bare));
  return messageId;
}

function maskAddress(address: string): string {
  if (ownAddresses.has(address.toLowerCase())) return address;
  const at = address.lastIndexOf('@');
  return `${[...address.slice(0, at)][0]}***${address.slice(at)}`;
}

function maskPhone(phone: string): string {
  const digits = phone.replace(/\D/g, '');
  if (digits.length < 10 || digits.length > 15) return phone;
  return `+${digits[0]}${'*'.repeat(digits.length - 3)}${digits.slice(-2)}`;
}
