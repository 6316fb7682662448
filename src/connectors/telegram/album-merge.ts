/**
 * The normalized items of one album (in message order) → one message: the first item's identity
 * (event id, platform id, reply), every item's text joined, every item's files and parts. Pure.
 */
import { escapeHtml } from './format.js';
import type { Normalized } from './normalize.js';

export function mergeAlbum(items: Normalized[]): Normalized {
  // One unreadable item parks the album whole (with every item): half an album is not what was sent.
  const invalid = items.find((n) => n.kind === 'invalid');
  if (invalid) return invalid;
  const events = items.filter((n): n is Extract<Normalized, { kind: 'event' }> => n.kind === 'event' && n.event.type === 'message.inbound');
  if (events.length === 0) return items[0]!;
  if (events.length === 1) return events[0]!;
  const first = events[0]!.event as Extract<Normalized, { kind: 'event' }>['event'] & { type: 'message.inbound' };
  const withText = events.map((n) => n.event as typeof first).filter((e) => e.text);
  const text = withText.map((e) => e.text).join('\n\n');
  const html = withText.some((e) => e.html) ? withText.map((e) => e.html ?? escapeHtml(e.text ?? '')).join('<br><br>') : undefined;
  return {
    kind: 'event',
    files: events.flatMap((n) => n.files),
    event: {
      ...first,
      text,
      html,
      parts: events.flatMap((n) => (n.event as typeof first).parts ?? []),
    },
  };
}
