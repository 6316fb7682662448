/**
 * Text shown to agents as someone's name or a message's title. Unicode direction overrides and
 * isolates (U+202A–U+202E, U+2066–U+2069) make a name display in another order than it is
 * written: "\u202eПётр" shows as a different name in Zammad, RT and the console, which is how
 * senders are impersonated. They are taken out; the marks a right-to-left name needs (U+200E,
 * U+200F) stay.
 */
const DIRECTION_CONTROLS = /[\u202a-\u202e\u2066-\u2069]/g;

export function withoutDirectionControls(text: string): string {
  return text.replace(DIRECTION_CONTROLS, '');
}
