/**
 * Bytes of a text in a single-byte charset (windows-1251, KOI8-R, cp866…), built from TextDecoder's
 * own table: Node has no encoder for them, and what the gateway decodes with is what tests encode with.
 */
export function encodeIn(text: string, charset: string): Buffer {
  if (charset === 'utf-8') return Buffer.from(text);
  const all = Buffer.from(Array.from({ length: 256 }, (_, i) => i));
  const table = new Map([...new TextDecoder(charset).decode(all)].map((c, i) => [c, i]));
  return Buffer.from([...text].map((c) => {
    const byte = table.get(c);
    if (byte === undefined) throw new Error(`${charset} has no ${c}`);
    return byte;
  }));
}
