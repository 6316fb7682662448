/**
 * Phone numbers as the gateway compares and stores them: E.164, "+" and digits. One function for
 * every place a phone becomes a value to match — contact identities (read-model/contacts.ts),
 * contact lookups (GET /v1/contacts?phone=, the ticket list's contact filter, erasure's check
 * that an identifier belongs to a contact) and erasure's search of stored payloads
 * (core/erasure.ts). Connectors keep the number as the platform gave it in the event.
 *
 * Before anything is read, a number is folded to ASCII (NFKC: fullwidth "８９１６…" and "＋", and
 * the decimal digits of any script) and an extension is dropped ("доб. 123", "ext. 12", "x12",
 * "#12", "добавочный 5"): it reaches a person inside one switchboard, it is no part of whose
 * number it is, and a contact or a stored text holds the number without it.
 *
 * Written without "+", a number is taken as international ("79161234567") except:
 * - `00…` and `810…` (the international prefixes of most countries and of the old Russian
 *   plan, "8 10 49 30 …"): the prefix goes, the rest is the international number;
 * - Russian and Kazakh domestic numbers, `8` + 10 digits whose area code starts with 3, 4, 6, 7,
 *   8 or 9 ("8 916 111-00-01", "8 495 …", "8 800 …", "8 727 …" in Almaty): `+7` + the 10 digits.
 *   Vietnam's +84 numbers written without "+" or "00" ("84951234567") read as Moscow's 8 495;
 *   for a Russian-speaking support team the domestic format is by far the likelier.
 * With "+" a number is international as written and never rewritten.
 *
 * Ten digits without "+" ("(916) 123-45-67") are two numbers at once: a +7 number typed without
 * its 8 or +7, or a whole number of a country with short ones (Belgium's +32 2 123 45 67 is
 * "3221234567") — and a platform id (a WhatsApp id has no "+", a Telegram user id is often ten
 * digits). normalizePhone and phoneDigitForms, which read platform ids too, never guess; what an
 * operator types is read both ways where that is safe (phoneLookupValues) and refused where it
 * is not (an erasure: api/data-routes.ts, ambiguousPhone).
 */

/** The fewest digits an international number has once the old Russian prefix 810 is taken off. */
const MIN_INTERNATIONAL = 8;

/** The fewest digits a form must have to be searched for inside stored texts: shorter ones are inside other people's ids and numbers. */
const MIN_SEARCHED_DIGITS = 10;

/** `8` + a 10-digit number of the +7 zone: area codes 3xx, 4xx, 8xx, 9xx (Russia), 6xx and 7xx (Kazakhstan). */
const DOMESTIC_7 = /^8([346789]\d{9})$/;

/** A national number of the +7 zone, 10 digits (DOMESTIC_7 less its 8). */
const NATIONAL_7 = /^[346789]\d{9}$/;

/**
 * An extension at the end of a number: "доб. 123", "добавочный 5", "ext. 12", "extension 12",
 * "x12", "#12", ";ext=12" (RFC 3966), maybe in brackets or after a comma.
 */
const EXTENSION = /[\s,;]*\(?\s*(?:доб(?:авочный)?|ext(?:ension)?|x|#)\s*[.:=]?\s*\d{1,6}\s*\)?\s*$/iu;

/** The longest text an extension is looked for in ("+7 (495) 123-45-67, добавочный 123456" is 38). */
const MAX_WITH_EXTENSION = 64;

/** A phone as people write one: digits, "+" in front, spaces, brackets, dots, dashes of any kind. */
const WRITTEN = /^\+?[\d\s().\p{Pd}]+$/u;

/** E.164 ("+79161110001"), or undefined when `raw` is not a phone number (fewer than 7 or more than 15 digits). */
export function normalizePhone(raw: string): string | undefined {
  const digits = internationalDigits(readable(raw));
  return digits && digits.length >= 7 && digits.length <= 15 ? `+${digits}` : undefined;
}

function internationalDigits(written: string): string {
  const digits = written.replace(/\D/g, '');
  if (written.startsWith('+')) return digits;
  // 810 only when a whole international number is left: "8101234567" (a Telegram chat id, a US
  // (810) number) is no "810" + "1234567", which matched an unrelated contact "+1234567".
  if (digits.startsWith('00')) return digits.slice(2);
  if (digits.startsWith('810') && digits.length - 3 >= MIN_INTERNATIONAL) return digits.slice(3);
  const domestic = DOMESTIC_7.exec(digits);
  return domestic ? `7${domestic[1]}` : digits;
}

/**
 * Values to look a phone up by: its E.164 form; the form stored before the domestic `8…` format
 * was understood ("+89161110001", what a Telegram contact card "89161110001" became), so a
 * contact stored then is still found — by an erasure request above all; and for ten digits
 * without "+" (ambiguousPhone) the +7 reading too: a lookup that finds both people shows the
 * operator both, where one reading alone would miss the one they meant.
 */
export function phoneLookupValues(raw: string): string[] {
  const normal = normalizePhone(raw);
  if (!normal) return [];
  const values = new Set([normal]);
  const digits = readable(raw).replace(/\D/g, '');
  if (digits.length >= 7 && digits.length <= 15) values.add(`+${digits}`);
  const plus7 = ambiguousPhone(raw);
  if (plus7) values.add(plus7);
  return [...values];
}

/**
 * A phone kept as the customer wrote it — a web form's or a helpdesk's claimed "8 (903) 111-22-33",
 * which no platform proved and which is recorded on the ticket as typed — is compared by its
 * digits alone. `digits`: the digit strings of every lookup value (so "+7 903 …", "8 903 …",
 * "7903…" and ten digits with their +7 reading all meet); `unprefixed`: the ten national digits
 * of a +7 number, which match only a record written without "+" ("903 111-22-33" is this number
 * typed without its 8 or +7, "+903 111 22 33" is not). The same both-ways reading as
 * phoneLookupValues: a lookup shows every person the number may be.
 */
export function recordedPhoneForms(raw: string): { digits: string[]; unprefixed: string[] } {
  const digits = new Set<string>();
  const unprefixed = new Set<string>();
  for (const value of phoneLookupValues(raw)) {
    for (const form of phoneDigitForms(value)) digits.add(form);
    const national = /^\+7([346789]\d{9})$/.exec(value);
    if (national) unprefixed.add(national[1]!);
  }
  return { digits: [...digits], unprefixed: [...unprefixed] };
}

/**
 * The +7 reading of a number written without "+" as exactly ten digits that a +7-zone number
 * could be ("(916) 123-45-67", "9161234567"); undefined for anything else. The same digits are
 * also a whole number of another country and may be a platform id: see the top of this file.
 */
export function ambiguousPhone(raw: string): string | undefined {
  const written = writtenPhone(raw);
  if (!written || written.startsWith('+')) return undefined;
  const digits = written.replace(/\D/g, '');
  return NATIONAL_7.test(digits) ? `+7${digits}` : undefined;
}

/**
 * `raw` as a phone number when it is written as one — digits and phone punctuation only, after
 * folding to ASCII and without an extension ("+7 495 123-45-67 доб. 123" is "+7 495 123-45-67");
 * undefined for anything else (an address, a username, a sentence).
 */
export function writtenPhone(raw: string): string | undefined {
  const written = readable(raw);
  return WRITTEN.test(written) && /\d/.test(written) ? written : undefined;
}

/**
 * The digit strings a phone is written as in stored payloads: as given, international
 * ("79161110001"), and for the +7 zone the domestic "89161110001" too. Erasure searches for each,
 * so "+7 916 111-00-01" also finds a raw body that had "89161110001".
 */
export function phoneDigitForms(raw: string): string[] {
  const forms = new Set<string>();
  const given = readable(raw).replace(/\D/g, '');
  if (given) forms.add(given);
  const normal = normalizePhone(raw);
  if (normal) {
    const international = normal.slice(1);
    forms.add(international);
    if (/^7[346789]\d{9}$/.test(international)) forms.add(`8${international.slice(1)}`);
  }
  // A form of seven digits ("8101234567" less its "810") matched every message holding them.
  return [...forms].filter((f) => f.length >= MIN_SEARCHED_DIGITS);
}

/**
 * `text` with every digit in ASCII: NFKC folds the fullwidth "８" (what a Japanese or Chinese
 * keyboard types), "①" and the mathematical digits; the decimal digits of other scripts ("٩")
 * NFKC leaves, and they are mapped by their value. Everything else is NFKC as well ("＋" is "+").
 */
export function asciiDigits(text: string): string {
  const folded = text.normalize('NFKC');
  // Only a text with something beyond ASCII can hold such a digit: the common case skips the walk.
  return /[^\x00-\x7f]/.test(folded) ? folded.replace(/\p{Nd}/gu, digitValue) : folded;
}

/**
 * Unicode keeps every script's decimal digits in runs of ten, 0 to 9 (a stability policy), and
 * runs that touch (the mathematical ones) start on a 0: a digit's value is its distance from the
 * start of the unbroken stretch of digits it is in, modulo ten.
 */
function digitValue(digit: string): string {
  let value = DIGIT_VALUES.get(digit);
  if (value === undefined) {
    const at = digit.codePointAt(0)!;
    let start = at;
    while (start > 0 && /\p{Nd}/u.test(String.fromCodePoint(start - 1))) start--;
    value = String((at - start) % 10);
    DIGIT_VALUES.set(digit, value);
  }
  return value;
}

/** Each digit's value once: a text of many digits walked each back to its zero was quadratic. Bounded by Unicode's few hundred digits. */
const DIGIT_VALUES = new Map<string, string>();

/** `raw` folded to ASCII digits, trimmed, without an extension. */
function readable(raw: string): string {
  const text = asciiDigits(raw).trim();
  // A number with its extension is a few dozen characters: a longer text is none to cut one
  // from, and the search for one stays short whatever a platform sends as a "phone".
  if (text.length > MAX_WITH_EXTENSION) return text;
  const ext = EXTENSION.exec(text);
  // Only after a number: "x12" or "#12" alone is no extension of anything.
  return ext && /\d/.test(text.slice(0, ext.index)) ? text.slice(0, ext.index).trim() : text;
}
