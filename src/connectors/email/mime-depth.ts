/**
 * How deep a mail's MIME structure nests (multipart inside multipart, a message/rfc822 inside a
 * part), read from the raw bytes before mailparser sees them. Real mail nests a handful of levels;
 * a fuzzer's or an attacker's mail nests thousands, and mailparser then fails with a message about
 * node counts that says nothing of nesting. A mail deeper than MAX_MIME_DEPTH is refused with a
 * reason that says so, as Dovecot refuses to look deeper than 100 levels.
 */

/** Deepest MIME nesting a mail may have (the top-level entity is level 0). */
export const MAX_MIME_DEPTH = 100;
/** Bytes of one header block read before the scan gives up on it. */
const HEADER_SCAN_BYTES = 2 * 1024 * 1024;

/**
 * The deepest nesting level in `raw`, or `limit + 1` as soon as it is past `limit` (the scan stops
 * there). Boundaries are matched as mailparser's splitter matches them: a line `--boundary` opens
 * the next part of the innermost multipart declaring it, `--boundary--` closes it.
 */
export function mimeDepth(raw: Buffer, limit = MAX_MIME_DEPTH): number {
  const text = raw.toString('latin1');
  // Open multiparts, innermost last: their boundary and the level of their parts.
  const open: { boundary: string; level: number }[] = [];
  let inHeader = true;
  let level = 0;
  let header = '';
  let inContentType = false;
  let headerAt = 0;
  let max = 0;
  let pos = 0;
  const endHeader = () => {
    const ct = /(?:^|\n)content-type:[ \t]*([^;\s]+)([^\n]*)/i.exec(header);
    header = '';
    inContentType = false;
    headerAt = pos;
    const type = ct?.[1]?.toLowerCase() ?? '';
    const boundary = ct ? /;\s*boundary\s*=\s*(?:"([^"]*)"|([^;\s]+))/i.exec(ct[2] ?? '') : null;
    const b = boundary?.[1] ?? boundary?.[2];
    if (type.startsWith('multipart/') && b) {
      open.push({ boundary: b, level: level + 1 });
      inHeader = false;
    } else if (type === 'message/rfc822' || type === 'message/global') {
      level += 1; // the body is a mail of its own: its header block follows
      max = Math.max(max, level);
      return;
    } else {
      inHeader = false;
    }
  };
  while (pos < text.length && max <= limit) {
    if (!inHeader && !text.startsWith('--', pos)) {
      // In a body only boundary lines matter: skip to the next line starting with "--".
      const next = text.indexOf('\n--', pos);
      if (next < 0) break;
      pos = next + 1;
    }
    let end = text.indexOf('\n', pos);
    if (end < 0) end = text.length;
    const line = text.slice(pos, end).replace(/\r$/, '');
    pos = end + 1;
    if (line.startsWith('--') && open.length > 0) {
      const mark = line.trimEnd();
      let hit = -1;
      let closing = false;
      for (let i = open.length - 1; i >= 0; i--) {
        const b = open[i]!.boundary;
        if (mark === `--${b}`) hit = i;
        else if (mark === `--${b}--`) {
          hit = i;
          closing = true;
        }
        if (hit >= 0) break;
      }
      if (hit >= 0) {
        if (header) endHeader();
        if (closing) {
          open.length = hit; // the epilogue belongs to the multipart around it
          inHeader = false;
        } else {
          open.length = hit + 1;
          level = open[hit]!.level;
          max = Math.max(max, level);
          inHeader = true;
          header = '';
          inContentType = false;
          headerAt = pos;
        }
        continue;
      }
    }
    if (!inHeader) continue;
    // A header block this long is mailparser's to refuse (its limit is 1 MB): no need to read on.
    if (pos - headerAt > HEADER_SCAN_BYTES) break;
    if (line === '') endHeader();
    else if (/^[ \t]/.test(line)) {
      if (inContentType) header += ` ${line.trim()}`; // folded
    } else {
      // Only Content-Type is kept: a header block of many megabytes is not copied.
      inContentType = /^content-type:/i.test(line);
      if (inContentType) header = `\n${line}`;
    }
  }
  return Math.min(max, limit + 1);
}
