/**
 * What a helpdesk ticket is called: the customer's own title (a mail's subject, a web form's), or
 * else the first line of the first message that says something. Russian customers open nearly
 * every message with «Здравствуйте!»: titled by that line, every ticket in a queue looked alike.
 */
import type { InboundMessage } from '../core/schema.js';

/** A line that is a greeting and nothing more (with a name or punctuation after it at most). */
const GREETING_ONLY = /^(здравствуйте|здравствуй|добрый\s+(день|вечер|утро)|доброе\s+утро|доброго\s+(дня|времени\s+суток)|привет|приветствую|hello|hi|hey|good\s+(morning|afternoon|evening)|dear\s+\S+)([\s,]+[\p{L}.-]+){0,3}[\s!.,:;)]*$/iu;

export function headlineOf(first: Pick<InboundMessage, 'subject' | 'email' | 'text'> | undefined): string {
  const own = (first?.subject ?? first?.email?.subject ?? '').trim();
  if (own) return own;
  const lines = (first?.text ?? '').split('\n').map((l) => l.trim()).filter(Boolean);
  return lines.find((l) => !GREETING_ONLY.test(l)) ?? lines[0] ?? '';
}

/** At most `max` characters (not UTF-16 units: half an emoji is not text a helpdesk's database takes), an ellipsis where cut. */
export function cutToChars(text: string, max: number): string {
  const chars = [...text];
  return chars.length > max ? `${chars.slice(0, max - 1).join('')}…` : text;
}
