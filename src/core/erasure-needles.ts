/**
 * What identifies the person an erasure is for in a stored payload (erasure.ts): the identifiers
 * it was given and found in the person's ticket logs, their phones in every way texts write them,
 * and the ticket ids, each matched only where it is whole, never inside another person's.
 */
import { asciiDigits, phoneDigitForms, writtenPhone } from './phone.js';
import { hashKey } from './subjects.js';

/** Identifiers this short match too much by substring; they are matched as whole JSON values only. */
const MIN_SUBSTRING_NEEDLE = 6;

/**
 * What identifies the person in a stored payload. Long identifiers match anywhere in the text as
 * whole words (an address inside "Name <addr>" or a raw webhook body); short ones (a Telegram
 * user id "42") only as a whole JSON string or number, which a message's text never is.
 */
export class Needles {
  private readonly exact = new Set<string>();
  /** Longer identifiers: anywhere in a text, but only whole (an@mail.ru is not inside ivan@mail.ru). */
  private readonly substrings: RegExp[] = [];
  /** Phones, as the digit strings they may be written as: matched only as a whole number in a text (phones.ts). */
  private readonly phones = new Set<string>();
  /** Ticket ids: inside other ids too ("T-1001:…" outbound ids), but never as the head of a longer one (T-10012). */
  private readonly tokens: RegExp[] = [];
  private readonly ackKeys = new Set<string>();

  constructor(identities: string[]) {
    for (const i of identities) this.add(i);
  }

  add(identity: string): void {
    const v = identity.trim().toLowerCase();
    if (!v) return;
    this.addExact(v);
    // Auto-acknowledgement stamps are keyed by the sender (router/auto-acknowledgement.ts): they go too.
    this.ackKeys.add(`autoack.${hashKey(v)}`);
    // A phone written "+7 916 123-45-67" in one place is "79161234567" in another, "89161234567"
    // (the Russian domestic format) or "8 (916) 123-45-67" in a third: found as a whole number in
    // any of them, never inside a longer one (a card number held "89161234567", and another
    // customer's messages were erased with it). Its extension ("доб. 123") is not searched for:
    // texts write the number without it as often as with it (phone.ts).
    const phone = writtenPhone(v);
    if (phone) {
      for (const digits of phoneDigitForms(phone)) this.phones.add(digits);
      return;
    }
    if (v.length >= MIN_SUBSTRING_NEEDLE) this.substrings.push(wholeIdentifier(v));
  }

  addExact(value: string): void {
    const v = value.trim().toLowerCase();
    if (v) this.exact.add(v);
  }

  addToken(id: string): void {
    const v = id.trim().toLowerCase();
    if (v) this.tokens.push(new RegExp(`(^|[^a-z0-9-])${v.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}(?![a-z0-9])`));
  }

  isAckKey(key: string): boolean {
    return this.ackKeys.has(key);
  }

  /** Whether the text writes one of the phones, however it is spaced, or one of its digit runs is one. */
  private holdsPhone(text: string): boolean {
    for (const m of text.matchAll(WRITTEN_NUMBER)) {
      const run = m[0];
      if (phoneDigitForms(run).some((d) => this.phones.has(d))) return true;
      // Two numbers one space apart read as one run: each whole group of digits is looked at too.
      for (const group of run.split(/\s+/)) if (phoneDigitForms(group).some((d) => this.phones.has(d))) return true;
    }
    return false;
  }

  matches(text: string): boolean {
    const lower = text.toLowerCase();
    for (const s of this.substrings) if (s.test(lower)) return true;
    for (const t of this.tokens) if (t.test(lower)) return true;
    if (this.phones.size > 0 && this.holdsPhone(lower)) return true;
    // A number the customer typed in fullwidth digits ("８９１６…") is theirs as much.
    if (this.phones.size > 0 && NON_ASCII_DIGIT.test(lower) && this.holdsPhone(asciiDigits(lower))) return true;
    if (this.exact.size === 0) return false;
    // Whole values: "…":"42" or :42, as JSON writes them.
    for (const m of lower.matchAll(/"((?:[^"\\]|\\.)*)"|(-?\d+)/g)) {
      const value = m[1] !== undefined ? unescapeJson(m[1]) : m[2]!;
      if (this.exact.has(value)) return true;
    }
    return false;
  }
}

/**
 * An identifier as a whole word of a text: not preceded by a character an address, a handle or an
 * id may hold (so `an@mail.ru` does not match `ivan@mail.ru`, nor `f1-user-7` the head of
 * `f1-user-70`), and not followed by one either, a dot only where the word goes on after it (an
 * address ends a sentence with one; `mail.ru.com` is another domain). A handle followed by `@`
 * is the head of an address, someone else's.
 */
function wholeIdentifier(v: string): RegExp {
  const escaped = v.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
  // A JSON payload writes a line break before it as a backslash and `n`, and Go's encoder `<` as
  // `\u003c`: the `n` or the hex digits are not part of the word.
  return new RegExp(`(?:(?<![\\p{L}\\p{N}._%+\\-])|(?<=\\\\[nrt])|(?<=\\\\u[0-9a-f]{4}))${escaped}(?![\\p{L}\\p{N}_%+@\\-]|\\.[\\p{L}\\p{N}])`, 'u');
}

/** A digit that is not ASCII: only a text holding one is folded (asciiDigits) and searched again. */
const NON_ASCII_DIGIT = /[^\P{N}0-9]/u;

/** A number as texts write it: digits, maybe a leading +, single spaces, dots, dashes or brackets between them; not inside a longer run of digits. */
const WRITTEN_NUMBER = /(?<![\d+])\+?\(?\d(?:[ .()-]{0,2}\d){6,16}(?!\d)/g;

function unescapeJson(s: string): string {
  if (!s.includes('\\')) return s;
  try {
    return JSON.parse(`"${s}"`) as string;
  } catch {
    return s;
  }
}
