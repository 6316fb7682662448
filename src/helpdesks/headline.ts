/**
 * What a helpdesk ticket is called: the customer's own title (a mail's subject, a web form's), or
 * else the first line of the first message that says something. Russian customers open nearly
 * every message with «Здравствуйте!»: titled by that line, every ticket in a queue looked alike.
 */
import type { InboundMessage } from '../core/schema.js';

/** A greeting, in any case. */
const GREETING = /^(здравствуйте|здравствуй|добрый\s+(день|вечер|утро)|доброе\s+утро|доброго\s+(дня|времени\s+суток)|привет|приветствую|hello|hi|hey|good\s+(morning|afternoon|evening)|dear)/iu;
/**
 * What may follow a greeting on a line that says nothing more: a name (one or two capitalised
 * words, "Анна", "Мария Ивановна", "team") and punctuation. "Здравствуйте, не работает оплата" is
 * a request, not a greeting. Case-sensitive, unlike the greeting itself.
 */
const NAME_AFTER = /^([\s,]+(\p{Lu}[\p{L}.-]*|team|all|support|коллеги|друзья)){0,2}[\s!.,:;)]*$/u;

export function headlineOf(first: Pick<InboundMessage, 'subject' | 'email' | 'text'> | undefined): string {
  const own = (first?.subject ?? first?.email?.subject ?? '').trim();
  if (own) return own;
  const lines = (first?.text ?? '').split('\n').map((l) => l.trim()).filter(Boolean);
  return lines.find((l) => !greetingOnly(l)) ?? lines[0] ?? '';
}

function greetingOnly(line: string): boolean {
  const greeting = GREETING.exec(line);
  return greeting !== null && NAME_AFTER.test(line.slice(greeting[0].length));
}

/** At most `max` characters (not UTF-16 units: half an emoji is not text a helpdesk's database takes), an ellipsis where cut. */
export function cutToChars(text: string, max: number): string {
  const chars = [...text];
  return chars.length > max ? `${chars.slice(0, max - 1).join('')}…` : text;
}
