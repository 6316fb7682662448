/**
 * Phone numbers as the gateway compares and stores them: E.164, "+" and digits. One function for
 * every place a phone becomes a value to match — contact identities (read-model/contacts.ts),
 * contact lookups (GET /v1/contacts?phone=, the ticket list's contact filter, erasure's check
 * that an identifier belongs to a contact) and erasure's search of stored payloads
 * (core/erasure.ts). Connectors keep the number as the platform gave it in the event.
 *
 * Written without "+", a number is taken as international ("79161234567") except:
 * - `00…` and `810…` (the international prefixes of most countries and of the old Russian
 *   plan, "8 10 49 30 …"): the prefix goes, the rest is the international number;
 * - Russian and Kazakh domestic numbers, `8` + 10 digits whose area code starts with 3, 4, 6, 7,
 *   8 or 9 ("8 916 111-00-01", "8 495 …", "8 800 …", "8 727 …" in Almaty): `+7` + the 10 digits.
 *   Vietnam's +84 numbers written without "+" or "00" ("84951234567") read as Moscow's 8 495;
 *   for a Russian-speaking support team the domestic format is by far the likelier.
 * With "+" a number is international as written and never rewritten.
 */

/** The fewest digits an international number has once the old Russian prefix 810 is taken off. */
const MIN_INTERNATIONAL = 8;

/** The fewest digits a form must have to be searched for inside stored texts: shorter ones are inside other people's ids and numbers. */
const MIN_SEARCHED_DIGITS = 10;

/** `8` + a 10-digit number of the +7 zone: area codes 3xx, 4xx, 8xx, 9xx (Russia), 6xx and 7xx (Kazakhstan). */
const DOMESTIC_7 = /^8([346789]\d{9})$/;

/** E.164 ("+79161110001"), or undefined when `raw` is not a phone number (fewer than 7 or more than 15 digits). */
export function normalizePhone(raw: string): string | undefined {
  const digits = internationalDigits(raw);
  return digits && digits.length >= 7 && digits.length <= 15 ? `+${digits}` : undefined;
}

function internationalDigits(raw: string): string {
  const written = raw.trim();
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
 * Values to look a phone up by: its E.164 form, and the form stored before the domestic `8…`
 * format was understood ("+89161110001", what a Telegram contact card "89161110001" became), so
 * a contact stored then is still found — by an erasure request above all.
 */
export function phoneLookupValues(raw: string): string[] {
  const normal = normalizePhone(raw);
  if (!normal) return [];
  const digits = raw.replace(/\D/g, '');
  const before = digits.length >= 7 && digits.length <= 15 ? `+${digits}` : undefined;
  return before && before !== normal ? [normal, before] : [normal];
}

/**
 * The digit strings a phone is written as in stored payloads: as given, international
 * ("79161110001"), and for the +7 zone the domestic "89161110001" too. Erasure searches for each,
 * so "+7 916 111-00-01" also finds a raw body that had "89161110001".
 */
export function phoneDigitForms(raw: string): string[] {
  const forms = new Set<string>();
  const given = raw.replace(/\D/g, '');
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
