/**
 * Attachments whose base64 is broken. mailparser's decoder (libbase64) drops every character that
 * is not base64 and decodes the rest, silently: a part cut or mangled on the way (a line of
 * "!!!", a relay's inserted text, a quartet cut short) became a file of garbage bytes the agent
 * opened as "damaged". Found here in the raw mail, part by part, and told apart by what mailparser
 * made of them (the same bytes), so the caller can say so under the text instead of storing them.
 */
const ALPHABET = /[^A-Za-z0-9+/=]/g;

/** What libbase64 made of each base64 part body of `raw` that is not valid base64 (a shape the caller compares attachments' content with). */
export function brokenBase64Contents(raw: Buffer): Buffer[] {
  const text = raw.toString('latin1');
  if (!/content-transfer-encoding:\s*base64/i.test(text)) return [];
  const boundaries = [...text.matchAll(/boundary\s*=\s*(?:"([^"\r\n]+)"|([^;\s]+))/gi)].map((m) => `--${m[1] ?? m[2]}`);
  const out: Buffer[] = [];
  for (const m of text.matchAll(/^content-transfer-encoding:[ \t]*base64[ \t]*\r?$/gim)) {
    const headerEnd = /\r?\n\r?\n/.exec(text.slice(m.index));
    if (!headerEnd) continue;
    const start = m.index + headerEnd.index + headerEnd[0].length;
    const end = nextBoundary(text, start, boundaries);
    const body = text.slice(start, end);
    if (!broken(body)) continue;
    out.push(decoded(body.replace(ALPHABET, '')));
  }
  return out;
}

/**
 * Not base64: a character outside the alphabet (white space aside), or a segment whose length no
 * encoder writes (one character into a quartet). Padding inside is not broken: some encoders pad
 * every line, and libbase64 reads such a body segment by segment.
 */
function broken(body: string): boolean {
  const s = body.replace(/\s+/g, '');
  if (/[^A-Za-z0-9+/=]/.test(s)) return true;
  return s.split(/=+/).some((segment) => segment.length % 4 === 1);
}

/** As libbase64 decodes: each padded segment on its own. */
function decoded(cleaned: string): Buffer {
  return Buffer.concat(cleaned.split(/=+/).map((segment) => Buffer.from(segment, 'base64')));
}

/** Where the body starting at `from` ends: the next line that opens with one of the mail's boundaries, else the end. */
function nextBoundary(text: string, from: number, boundaries: string[]): number {
  let end = text.length;
  for (const b of boundaries) {
    const at = text.indexOf(`\n${b}`, from - 1);
    if (at >= 0 && at < end) end = at;
  }
  return end;
}
