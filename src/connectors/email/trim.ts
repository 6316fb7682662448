/**
 * The ticket text of a mail: what the person wrote this time, without the quoted history and
 * the signature under it. The full body stays in `fullText`/`html`, so trimming only has to be
 * good, not perfect; when in doubt (nothing would be left) the whole text is kept.
 */

/** Lines that start the quoted previous message in the clients Russian teams get mail from. */
const QUOTE_HEADERS: RegExp[] = [
  /^-{2,}\s*(Original Message|Исходное сообщение|Пересылаемое сообщение|Forwarded message|Перенаправленное сообщение)\s*-{2,}/i,
  /^(On|Am|Le)\s.{4,200}\s(wrote|schrieb|a écrit)\s*:\s*$/i,
  // Gmail/Yandex/Mail.ru: "12 марта 2024 г., в 10:15, Иван <ivan@x.ru> написал(а):"
  /^.{0,200}(написал|написала|написал\(а\)|пишет)\s*:\s*$/i,
  // Outlook: a "From:/От:" line directly followed by "Sent:/Отправлено:" (or Date/Дата)
  /^\*?(From|От|Кому|Von)\s*:\*?\s.+$/i,
  /^_{10,}\s*$/,
];
const OUTLOOK_NEXT = /^\*?(Sent|Date|Отправлено|Дата|To|Кому|Gesendet)\s*:/i;

/**
 * A mail client's attribution line above the quote, whatever its wording: one line (or one the
 * client wrapped onto two, wrappedAttribution) that ends with ":" and names the sender's address
 * in <>; a date or a time alone does not make one.
 * Russian Gmail writes "пн, 7 дек. 2026 г. в 01:46, Служба поддержки <support@example.ru>:",
 * Yandex `07.12.2026, 01:46, "Служба поддержки" <support@example.ru>:`, Mail.ru "Понедельник,
 * 7 декабря 2026, 1:46 +03:00 от Служба поддержки <support@example.ru>:", none of them a verb
 * QUOTE_HEADERS knows. It only counts when the quote follows it (attributionAt).
 */
const ATTRIBUTION_MAX = 400;
const ADDRESS = /<\s*[^\s<>@]+@[^\s<>]+\s*>/;
const DATE_OR_TIME: RegExp[] = [
  /(^|\D)\d{1,2}:\d{2}(\D|$)/, // 01:46, 1:46 AM
  /(^|\D)\d{1,2}[./]\d{1,2}[./]\d{2,4}(\D|$)/, // 07.12.2026, 12/7/26
  /(^|\D)\d{4}-\d{2}-\d{2}(\D|$)/, // 2026-12-07
  /(^|\D)\d{1,2}\s+\p{L}{3,}\.?,?\s+\d{4}(\D|$)/u, // 7 дек. 2026, 7 декабря 2026, 7 Dec 2026
  /\p{L}{3,}\.?\s+\d{1,2},?\s+\d{4}(\D|$)/u, // Dec 7, 2026
];
const namesWhen = (s: string) => DATE_OR_TIME.some((re) => re.test(s));
const namesWhoOrWhen = (s: string) => ADDRESS.test(s) || namesWhen(s);
/** A wrapped attribution's second line that starts with the address: "<support@x.ru>:", "<support@x.ru> wrote:", "… a écrit :". */
const ADDRESS_THEN_VERB = /^<\s*[^\s<>@]+@[^\s<>]+\s*>(?:\s+\p{L}+(?:\(\p{L}+\))?){0,2}\s*:$/u;

/** Signature delimiters and phone-client footers. */
const SIGNATURE: RegExp[] = [
  /^--\s?$/,
  /^(Sent from my|Отправлено с|Отправлено из|Sent from Mail for|Получено с помощью|Отправлено через)(\s.*)?$/i,
];

export function trimReply(full: string): string {
  const lines = full.replace(/\r\n?/g, '\n').split('\n');
  let end = lines.length;
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i]!.trim();
    if (line.startsWith('>')) {
      // A block of ">" lines ends the new text unless it is an inline quote followed by more answer.
      if (!hasOwnTextAfter(lines, i)) {
        end = i;
        break;
      }
      // Past the block at once: judged line by line, a long quote took time by its square (8,000 lines: 1 s).
      i = quoteBlockEnd(lines, i) - 1;
      continue;
    }
    if (SIGNATURE.some((re) => re.test(lines[i]!.trimEnd()))) {
      end = i;
      break;
    }
    // The attribution goes with the quote under it, as the quote alone would (keep an interleaved answer).
    const quote = attributionAt(lines, i);
    if (quote !== undefined && !hasOwnTextAfter(lines, quote)) {
      end = i;
      break;
    }
    const header = QUOTE_HEADERS.findIndex((re) => re.test(line));
    if (header === 3) {
      const next = lines.slice(i + 1, i + 3).map((l) => l.trim());
      if (!next.some((l) => OUTLOOK_NEXT.test(l))) continue;
    }
    if (header >= 0) {
      end = i;
      break;
    }
  }
  const kept = lines.slice(0, end).join('\n').trim();
  return kept.length > 0 ? kept : full.trim();
}

/** True when non-quoted, non-empty lines follow the quote block starting at `i` (interleaved answer). */
function hasOwnTextAfter(lines: string[], i: number): boolean {
  const j = quoteBlockEnd(lines, i);
  if (j >= lines.length) return false;
  const rest = lines[j]!.trim();
  return !SIGNATURE.some((re) => re.test(rest)) && !QUOTE_HEADERS.some((re) => re.test(rest)) && attributionAt(lines, j) === undefined;
}

/** The first line after the quote block starting at `i` that is neither quoted nor blank. */
function quoteBlockEnd(lines: string[], i: number): number {
  let j = i;
  while (j < lines.length && (lines[j]!.trim().startsWith('>') || lines[j]!.trim() === '')) j++;
  return j;
}

/**
 * When line `i` starts an attribution (ATTRIBUTION_MAX above) directly followed, after blank
 * lines only, by a `>` line: that line's index. A line ending with ":" that no quote follows is
 * never one: it is the customer's own. Whether one line or two (wrappedAttribution), it names the
 * sender's <address>: a date or a time alone does not make one.
 */
function attributionAt(lines: string[], i: number): number | undefined {
  const first = lines[i]!.trim();
  if (!first || first.startsWith('>') || first.length > ATTRIBUTION_MAX) return undefined;
  let last = i;
  if (!first.endsWith(':')) {
    if (!wrappedAttribution(first, lines[i + 1]?.trim() ?? '')) return undefined;
    last = i + 1;
  } else if (!ADDRESS.test(first)) {
    // A date or a time alone is no attribution: "Ошибка появилась сегодня в 10:15, текст такой:"
    // above the customer's own quote of an error is their sentence (review). Every client's
    // attribution names the sender's address; one that names none is kept.
    return undefined;
  }
  let q = last + 1;
  while (q < lines.length && lines[q]!.trim() === '') q++;
  return q < lines.length && lines[q]!.trim().startsWith('>') ? q : undefined;
}

/**
 * Whether two lines are one attribution the client wrapped (Gmail wraps long lines): together
 * they end with ":" and name an <address>, and the first is no finished sentence. The break is
 * - inside the <> or after it: the first line names the date or the address, or opens the "<"
 *   ("On Mon, Dec 7, 2026 at 1:46 AM Support Team of Some Company <" / "support@example.com>
 *   wrote:"), and the second names neither a date nor a whole <address> — else the second is
 *   an attribution of its own, and the first the customer's sentence above it;
 * - or just before the <>: the first names the date or the time and no address, the second is
 *   the <address> and at most a verb ("пн, 7 дек. 2026 г. в 01:46, Служба поддержки" /
 *   "<support@romashka.ru>:"). A real one-line attribution under a customer's line names its
 *   own date, so it is not glued to theirs.
 */
function wrappedAttribution(first: string, second: string): boolean {
  const joined = `${first} ${second}`;
  if (!second.endsWith(':') || second.startsWith('>') || joined.length > ATTRIBUTION_MAX) return false;
  if (/[.!?…]$/.test(first) || !ADDRESS.test(joined)) return false;
  if ((namesWhoOrWhen(first) || /<\s*$/.test(first)) && !namesWhoOrWhen(second)) return true;
  return namesWhen(first) && !ADDRESS.test(first) && ADDRESS_THEN_VERB.test(second);
}
