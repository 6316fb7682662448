/**
 * What counts as the answer to a satisfaction request. Only an answer that is nothing but a
 * rating: a complaint that happens to start with a digit («5 минут назад снова списали деньги!»,
 * «2 дня жду…», "3 times I tried") is a message, and reopens the ticket like any other.
 *
 * Accepted (with surrounding spaces and a final "." or "!" ignored):
 *   5                 a bare digit 1–5
 *   4/5  4 из 5  4 of 5  4 out of 5
 *   5⭐  5 ⭐  ⭐5  5★
 *   ⭐⭐⭐⭐  ★★★☆☆    a star scale (the filled stars are the rating)
 *   5️⃣  (or 5⃣)      a keycap emoji
 *   ５                a fullwidth digit (a Japanese or Chinese keyboard layout), as its digit
 *   пять  Пятёрка  четыре из пяти  five    the number as a word (один, два, one, two only with «из пяти»)
 */

const STAR = '(?:⭐|🌟|★)';
const DIGIT = '([1-5])';
const FORMS: RegExp[] = [
  new RegExp(`^${DIGIT}$`, 'u'),
  new RegExp(`^${DIGIT}\\s*(?:/|из|of|out of)\\s*5$`, 'iu'),
  new RegExp(`^${DIGIT}\\s*${STAR}$`, 'u'),
  new RegExp(`^${STAR}\\s*${DIGIT}$`, 'u'),
  new RegExp(`^${DIGIT}\\uFE0F?\\u20E3$`, 'u'),
];
/** The numbers 1–5 as words, and the school grades («пятёрка»), as people answer in words. */
const WORDS: Record<string, number> = {
  единица: 1, двойка: 2, три: 3, тройка: 3, three: 3,
  четыре: 4, четвёрка: 4, четверка: 4, four: 4,
  пять: 5, пятёрка: 5, пятерка: 5, пятёрочка: 5, пятерочка: 5, пятёрку: 5, пятерку: 5, five: 5,
  четвёрочка: 4, четверочка: 4, четвёрку: 4, четверку: 4, тройку: 3,
};
/**
 * What people put around a rating in Russian: «оценка: 5», «ставлю 5», «на пятёрку», «твёрдая
 * пятёрка» before it; «баллов», «+», «с плюсом» after it; quotes around it. Taken off before the
 * forms above are tried, so «5 баллов, но долго» is still a message.
 */
const AROUND_BEFORE = /^(?:(?:моя\s+)?оценка|ставлю|ставим|на|твёрдая|твердая|твёрдое|твердое|уверенная|rating|score)\s*[:\-–—]?\s*/iu;
const AROUND_AFTER = /\s*(?:балл(?:а|ов)?|\+|с\s+плюсом|points?|plus)$/iu;
/**
 * Only with "out of five": alone they are everyday answers ("Один" — how many items; "Две" —
 * how many cards; "one" — which one), and a low rating escalates to the lead.
 */
const SCALED_WORDS: Record<string, number> = { один: 1, одна: 1, one: 1, два: 2, две: 2, two: 2 };
const IN_WORDS = /^([a-zа-яё]+)(\s*(?:\/|из|of|out of)\s*(?:5|пяти|five))?$/u;

// Stars with optional empty stars after them; the variation selector some keyboards add is dropped first.
const SCALE = /^((?:⭐|🌟|★)+)(☆*)$/u;

/** The rating (1–5) the text is, or undefined when the text is anything else. */
export function parseRating(text: string): number | undefined {
  // Fullwidth digits (０–９) are digits; not NFKC, which also made "①" and "¹" a rating.
  const s = text.normalize('NFC').replace(/[\uFF10-\uFF19]/gu, (d) => String.fromCharCode(d.charCodeAt(0) - 0xfee0)).replace(/\uFE0F(?!\u20E3)/g, '').trim().replace(/[.!]+$/u, '').trim();
  if (!s || s.length > 40) return undefined;
  const bare = s.replace(/[\u200b-\u200d\u2060\ufeff]/gu, '').replace(/^[«"'“„]+|[»"'”]+$/gu, '').replace(AROUND_BEFORE, '').replace(AROUND_AFTER, '').trim();
  if (bare !== s) return bare ? parseRating(bare) : undefined;
  for (const re of FORMS) {
    const m = re.exec(s);
    if (m) return Number(m[1]);
  }
  const word = IN_WORDS.exec(s.toLowerCase());
  if (word && Object.hasOwn(WORDS, word[1]!)) return WORDS[word[1]!];
  if (word?.[2] && Object.hasOwn(SCALED_WORDS, word[1]!)) return SCALED_WORDS[word[1]!];
  const scale = SCALE.exec(s.replace(/\s+/g, ''));
  if (scale) {
    const filled = [...scale[1]!].length;
    const empty = [...scale[2]!].length;
    if (filled >= 1 && filled <= 5 && (empty === 0 || filled + empty === 5)) return filled;
  }
  return undefined;
}
