/**
 * Text shown to agents as someone's name or a message's title (a display name, a chat's title, a
 * subject). Unicode direction overrides and isolates (U+202A–U+202E, U+2066–U+2069) make a name
 * display in another order than it is written: "\u202eПётр" shows as a different name in Zammad,
 * RT and the console, which is how senders are impersonated. They are taken out; the marks a
 * right-to-left name needs (U+200E, U+200F) stay. So are control characters: a terminal escape
 * (ESC [31m) in a name colours an operator's `tail -f` and a NUL cannot be stored in PostgreSQL;
 * line breaks and tabs become one space (a title is one line).
 */
const DIRECTION_CONTROLS = '\\u202a-\\u202e\\u2066-\\u2069';
const UNSAFE = new RegExp(`[\\u0000-\\u001f\\u007f-\\u009f${DIRECTION_CONTROLS}]`);
const LINE_BREAKS = /[\t\n\r]+/g;
const DROPPED = new RegExp(UNSAFE.source, 'g');

/**
 * Characters that do not show, as a regular-expression class: the direction controls above, and
 * the marks and zero-width characters a name may need but an id never does (LRM/RLM U+200E/F,
 * the Arabic letter mark U+061C, zero-width space and joiners U+200B–U+200D, word joiner and
 * invisible operators U+2060–U+2064, the deprecated format controls U+206A–U+206F, BOM U+FEFF,
 * soft hyphen U+00AD, Mongolian vowel separator U+180E). Two ids that differ only by one look
 * the same in a log line and in the console, and an override makes one id read as another: ids
 * holding one are refused at the edge (schema-base.ts, mail-address.ts), where names are cleaned.
 */
export const INVISIBLE_IN_ID = `\\u00ad\\u061c\\u180e\\u200b-\\u200f${DIRECTION_CONTROLS}\\u2060-\\u2064\\u206a-\\u206f\\ufeff`;

export function displayText(text: string): string {
  if (!UNSAFE.test(text)) return text;
  return text.replace(LINE_BREAKS, ' ').replace(DROPPED, '');
}

/**
 * A message's text with NUL made U+FFFD: PostgreSQL cannot store U+0000, so the read model showed
 * U+FFFD where the ticket log kept the NUL; now both hold the same. Nothing else is changed: a
 * customer's text is theirs.
 */
export function withoutNul(text: string): string {
  return text.includes('\u0000') ? text.replaceAll('\u0000', '\uFFFD') : text;
}
