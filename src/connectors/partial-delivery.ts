/**
 * A reply that a channel sends as several messages (text split at the platform's limit, each file
 * its own message) and that is refused for good after some of them went out: the failure names
 * what the customer got and what not. Without it the agent saw only the platform's reason
 * ("too_large: Request Entity Too Large") and either resent the whole reply (the text twice) or
 * believed the customer had nothing.
 */
import { PermanentDeliveryError } from '../core/errors.js';

/** The parts of a reply for a person, in sending order: «the text» / «text part 2 of 3», «file «Счёт.pdf»». */
export function partNames(textParts: number, fileNames: readonly string[]): string[] {
  const texts = Array.from({ length: textParts }, (_, i) => (textParts === 1 ? 'the text' : `text part ${i + 1} of ${textParts}`));
  return [...texts, ...fileNames.map((name) => `file «${name}»`)];
}

/** `err` as is when nothing went out yet; else the same reason code, its message followed by what was and was not delivered. */
export function partlyDelivered(err: PermanentDeliveryError, parts: readonly string[], sent: number): PermanentDeliveryError {
  if (sent <= 0 || sent >= parts.length) return err;
  return new PermanentDeliveryError(`${err.message}; delivered before this: ${parts.slice(0, sent).join(', ')}; not delivered: ${parts.slice(sent).join(', ')}`, err.reason);
}
