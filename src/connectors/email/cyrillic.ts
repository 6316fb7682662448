/**
 * Which single-byte Cyrillic charset a run of bytes was written in, judged by how Russian each
 * reading looks. Every charset puts the letters at other bytes, and case swaps between them
 * (windows-1251's capitals are KOI8-R's small letters), so the wrong reading is made of letter
 * pairs Russian rarely has, letters it has not (Serbian Ђ, Macedonian Ѕ), box drawings and
 * symbols, or words with capitals in the middle. The readings are scored by letter pairs (word
 * start and end included) and the likeliest wins; a reading that scores as well as another stays
 * behind the one it ties with, so a tie goes to `prefer` (the mail's body charset), then to the
 * order below. Short strings are where this is weakest: a two-letter abbreviation («ТЗ», «КП») has
 * little to go on, so capitals-only words of up to four letters are scored as initials.
 */
import iconv from 'iconv-lite';

/** iconv-lite's names, which mailparser decodes with (TextDecoder calls the last x-mac-cyrillic). */
export const CYRILLIC = ['windows-1251', 'koi8-r', 'ibm866', 'iso-8859-5', 'maccyrillic'] as const;
export type Cyrillic = (typeof CYRILLIC)[number];

/** The likeliest charset of bytes that are not UTF-8; `prefer` wins only a tie. */
export function guessCyrillic(bytes: Uint8Array, prefer?: Cyrillic): Cyrillic {
  let best: Cyrillic = CYRILLIC[0];
  let top = -Infinity;
  for (const cs of prefer ? [prefer, ...CYRILLIC.filter((c) => c !== prefer)] : CYRILLIC) {
    const s = plausibility(bytes, cs);
    if (s > top) [best, top] = [cs, s];
  }
  return best;
}

export function decodeCyrillic(bytes: Uint8Array, charset: Cyrillic): string {
  return iconv.decode(Buffer.from(bytes), charset);
}

const ALPHABET = '_абвгдежзийклмнопрстуфхцчшщъыьэюяё';
/**
 * log2 of P(next letter | letter) plus 10, 1–9, and 0 for a pair never seen; `_` is a word's
 * start (row) or end (column). Counted over some 250,000 words of Russian prose (Russian manual
 * pages and a translation catalogue); ё has е's row and column, for ё is mostly written as е.
 */
const PAIRS = [
  '0456464267062466757555114210104124', // _
  '7156345461655571555712345230000355', // а
  '5610036024066158073070401065700036', // б
  '7803117016066357245440200110710027', // в
  '5401153006016159080060001000000003', // г
  '5814138206047467353350121100520138', // д
  '8124463431556673276711212220000113', // е
  '1610079008041281001020000000000009', // ж
  '6935162104033667030060000000510122', // з
  '8344336155445663357703444120000566', // и
  '9001151000058130116500000200000001', // й
  '7801005417016038065550030000001005', // к
  '6610107407021056001140004100581677', // л
  '8714008006012447201050000000510058', // м
  '5701157018021067002544112000710147', // н
  '7167564544557653565611225310001114', // о
  '4700006006003029581150030000300016', // п
  '5804217507011538124363201400510137', // р
  '6523125106066527725840232200440165', // с
  '7715017006041247276051001000470017', // т
  '7223476541364631657603106150001616', // у
  '2900006007001008060241000000000006', // ф
  '9201001005000018062010000000000001', // х
  '7603008009000000000050000000600008', // ц
  '5800008007042072010710000300010008', // ч
  '5700008009034052030020000000000008', // ш
  '0700009008000000000050000000050009', // щ
  '0000009000000000000000000000000079', // ъ
  '8046137020745610533600704200000007', // ы
  '9001101083050171006411021300100421', // ь
  '0100000000066140000901100500000000', // э
  '9040040000141110012700008070000200', // ю
  '9016136140111421021500421130000416', // я
  '8124463431556673276711212220000113', // ё
];
/** In bits, what a reading pays for what is not a Russian letter or a pair of them. */
const COST = { unseenPair: 10, otherEastSlavic: 14, sign: 10, other: 20, mixedScript: 20, caseInsideWord: 6, initial: 1, yo: 2 };
/** Letters of Ukrainian and Belarusian, which share the Russian charsets. */
const OTHER_EAST_SLAVIC = 'іїєґў';
/** Non-letters a file name or subject may well hold next to Cyrillic. */
const SIGNS = '№«»–—\u00a0…';

function pair(a: number, b: number): number {
  const d = Number(PAIRS[a]![b]);
  return d === 0 ? -COST.unseenPair : d - 10;
}

/** Higher is more Russian; only differences between readings of the same bytes mean anything. */
function plausibility(bytes: Uint8Array, charset: Cyrillic): number {
  const text = decodeCyrillic(bytes, charset); // one character per byte in all five
  let score = 0;
  [...text].forEach((c, i) => {
    if (bytes[i]! < 0x80 || ALPHABET.includes(c.toLowerCase())) return;
    score -= OTHER_EAST_SLAVIC.includes(c.toLowerCase()) ? COST.otherEastSlavic : SIGNS.includes(c) ? COST.sign : COST.other;
  });
  for (const word of text.match(/\p{L}+/gu) ?? []) {
    if (!/\p{Script=Cyrillic}/u.test(word)) continue;
    if (/\P{Script=Cyrillic}/u.test(word)) score -= COST.mixedScript;
    if (/\p{Ll}\p{Lu}/u.test(word)) score -= COST.caseInsideWord;
    if (/\p{Lu}{2}\p{Ll}/u.test(word)) score -= COST.caseInsideWord;
    // Letters outside the Russian alphabet paid above; for the pairs they end a word.
    const low = [...word.toLowerCase()].map((c) => (ALPHABET.includes(c) ? c : '_')).join('');
    if (/^\p{Lu}{2,4}$/u.test(word) && !low.includes('_')) {
      for (const c of low) score += pair(0, ALPHABET.indexOf(c)) - COST.initial;
      continue;
    }
    const padded = `_${low}_`;
    for (let i = 0; i + 1 < padded.length; i++) {
      const [a, b] = [padded[i]!, padded[i + 1]!];
      if (a !== '_' || b !== '_') score += pair(ALPHABET.indexOf(a), ALPHABET.indexOf(b)) - (b === 'ё' ? COST.yo : 0);
    }
  }
  return score;
}
