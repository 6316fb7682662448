/**
 * PR_RTF_COMPRESSED ([MS-OXRTFCP]): the formatted body Outlook puts in winmail.dat, LZ77 over a
 * 4 KiB ring that starts filled with a fixed RTF preamble. Bounded: the output never grows past
 * the size the header declares, and that is refused above RTF_MAX_BYTES before anything is read.
 */

export const RTF_MAX_BYTES = 16 * 1024 * 1024;

const COMPRESSED = 0x75465a4c; // "LZFu"
const UNCOMPRESSED = 0x414c454d; // "MELA"
const PREAMBLE =
  '{\\rtf1\\ansi\\mac\\deff0\\deftab720{\\fonttbl;}{\\f0\\fnil \\froman \\fswiss \\fmodern \\fscript \\fdecor MS Sans SerifSymbolArialTimes New RomanCourier{\\colortbl\\red0\\green0\\blue0\r\n\\par \\pard\\plain\\f0\\fs20\\b\\i\\u\\tab\\tx';

/** The RTF, or why it could not be read. */
export function decompressRtf(data: Buffer): { ok: true; rtf: Buffer } | { ok: false; reason: string } {
  if (data.byteLength < 16) return { ok: false, reason: `compressed RTF of ${data.byteLength} bytes has no header` };
  const rawSize = data.readUInt32LE(4);
  const type = data.readUInt32LE(8);
  if (rawSize > RTF_MAX_BYTES) return { ok: false, reason: `compressed RTF says it is ${rawSize} bytes (limit ${RTF_MAX_BYTES})` };
  // 17 input bytes (a control byte and 8 references) make at most 8 × 17 output bytes: a larger
  // size is a lie, and nothing is allocated for it.
  if (rawSize > (data.byteLength - 16) * 8 + 8) return { ok: false, reason: `compressed RTF says it is ${rawSize} bytes, more than its ${data.byteLength} bytes can hold` };
  if (type === UNCOMPRESSED) return { ok: true, rtf: data.subarray(16, 16 + rawSize) };
  if (type !== COMPRESSED) return { ok: false, reason: `compressed RTF of unknown type 0x${type.toString(16)}` };
  const ring = Buffer.alloc(4096);
  ring.write(PREAMBLE, 'latin1');
  let at = PREAMBLE.length;
  const out = Buffer.alloc(rawSize);
  let n = 0;
  let p = 16;
  const put = (b: number) => {
    out[n++] = b;
    ring[at] = b;
    at = (at + 1) & 0xfff;
  };
  while (p < data.byteLength && n < rawSize) {
    const control = data[p++]!;
    for (let bit = 0; bit < 8 && n < rawSize; bit++) {
      if ((control & (1 << bit)) === 0) {
        if (p >= data.byteLength) return { ok: false, reason: 'compressed RTF is truncated' };
        put(data[p++]!);
        continue;
      }
      if (p + 2 > data.byteLength) return { ok: false, reason: 'compressed RTF is truncated' };
      const ref = data.readUInt16BE(p);
      p += 2;
      const offset = ref >> 4;
      if (offset === at) return { ok: true, rtf: out.subarray(0, n) }; // the end marker
      const length = (ref & 0xf) + 2;
      for (let i = 0; i < length && n < rawSize; i++) put(ring[(offset + i) & 0xfff]!);
    }
  }
  return n < rawSize ? { ok: false, reason: 'compressed RTF is truncated' } : { ok: true, rtf: out };
}
