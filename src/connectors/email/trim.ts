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
      continue;
    }
    if (SIGNATURE.some((re) => re.test(lines[i]!.trimEnd()))) {
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
  let j = i;
  while (j < lines.length && (lines[j]!.trim().startsWith('>') || lines[j]!.trim() === '')) j++;
  if (j >= lines.length) return false;
  const rest = lines[j]!.trim();
  return !SIGNATURE.some((re) => re.test(rest)) && !QUOTE_HEADERS.some((re) => re.test(rest));
}
