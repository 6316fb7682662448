/**
 * A bounded reader of TNEF ([MS-OXTNEF]), the `winmail.dat` Outlook and Exchange attach to
 * "rich text" mail: the customer's files and sometimes the body are inside it. Only what a ticket
 * needs is read: each attachment's bytes and name, the message's plain-text body and the OEM code
 * page the 8-bit strings are in. The input is hostile: every length is checked against the bytes
 * left before anything is read by it (nothing is allocated: files are views into the input), the
 * number of files is capped, and every step consumes bytes, so the walk ends.
 */
import { isUtf8 } from 'node:buffer';
import iconv from 'iconv-lite';
import { legacyFileName } from './charset.js';
import { decompressRtf } from './rtf-compressed.js';

export const TNEF_SIGNATURE = 0x223e9f78;

export interface TnefFile {
  name?: string;
  /** PR_ATTACH_MIME_TAG, when the sender recorded one. */
  mimeType?: string;
  contentId?: string;
  data?: Buffer;
  /** Why the file's bytes are not here (an embedded Outlook item), when they are not. */
  missing?: string;
}

export interface TnefContents {
  files: TnefFile[];
  /** The plain-text body (attBody or PR_BODY), when the TNEF carries one. */
  body?: string;
  /** The formatted body (PR_RTF_COMPRESSED decompressed), when there is one. */
  rtf?: Buffer;
  /** Why a formatted body that is there could not be read. */
  rtfProblem?: string;
  /** PR_HTML, the body as HTML (Exchange writes it for HTML mail), bytes as they are. */
  html?: Buffer;
  /** Attributes whose checksum did not match: their bytes may be damaged. */
  badChecksums: string[];
}

export type TnefResult = { ok: true; contents: TnefContents } | { ok: false; reason: string };

export class TnefError extends Error {}

const LVL_MESSAGE = 1;
const LVL_ATTACHMENT = 2;

// Attribute ids with their type in the high word, as they appear on the wire.
const ATT_BODY = 0x0002800c;
const ATT_ATTACH_DATA = 0x0006800f;
const ATT_ATTACH_TITLE = 0x00018010;
const ATT_ATTACH_REND_DATA = 0x00069002;
const ATT_MSG_PROPS = 0x00069003;
const ATT_ATTACHMENT = 0x00069005;
const ATT_OEM_CODEPAGE = 0x00069007;

// MAPI property ids (low word of the tag).
const PR_BODY = 0x1000;
const PR_RTF_COMPRESSED = 0x1009;
const PR_HTML = 0x1013;
const PR_DISPLAY_NAME = 0x3001;
const PR_ATTACH_DATA = 0x3701;
const PR_ATTACH_FILENAME = 0x3704;
const PR_ATTACH_METHOD = 0x3705;
const PR_ATTACH_LONG_FILENAME = 0x3707;
const PR_ATTACH_MIME_TAG = 0x370e;
const PR_ATTACH_CONTENT_ID = 0x3712;

const PT_STRING8 = 0x001e;
const PT_UNICODE = 0x001f;
const PT_BINARY = 0x0102;
const PT_OBJECT = 0x000d;
const MV_FLAG = 0x1000;
/** Fixed-size MAPI types and their size on the wire (PT_SHORT and PT_BOOLEAN are padded to 4). */
const FIXED_SIZE: Readonly<Record<number, number>> = {
  0x0001: 4, 0x0002: 4, 0x0003: 4, 0x0004: 4, 0x0005: 8, 0x0006: 8, 0x0007: 8, 0x000a: 4, 0x000b: 4, 0x0014: 8, 0x0040: 8, 0x0048: 16,
};

/** Reads `bytes` as TNEF; never throws, never reads past the end, never keeps more than `maxFiles` files. */
export function parseTnef(bytes: Buffer, maxFiles: number): TnefResult {
  try {
    return { ok: true, contents: walk(bytes, maxFiles) };
  } catch (err) {
    if (err instanceof TnefError) return { ok: false, reason: err.message };
    throw err;
  }
}

export function isTnef(bytes: Buffer): boolean {
  return bytes.byteLength >= 6 && bytes.readUInt32LE(0) === TNEF_SIGNATURE;
}

interface RawFile {
  title?: Buffer;
  props: Map<number, PropValue>;
  data?: Buffer;
}

type PropValue = { type: number; value: Buffer | number };

function walk(bytes: Buffer, maxFiles: number): TnefContents {
  if (!isTnef(bytes)) throw new TnefError('no TNEF signature at the start');
  const raw: RawFile[] = [];
  let codepage: number | undefined;
  let attBody: Buffer | undefined;
  let msgProps = new Map<number, PropValue>();
  const badChecksums: string[] = [];
  const current = (): RawFile => {
    if (raw.length === 0) open();
    return raw[raw.length - 1]!;
  };
  const open = () => {
    if (raw.length >= maxFiles) throw new TnefError(`more than ${maxFiles} attachments inside`);
    raw.push({ props: new Map() });
  };
  let pos = 6; // signature and legacy key
  while (pos < bytes.byteLength) {
    if (bytes.byteLength - pos < 11) throw new TnefError(`truncated: ${bytes.byteLength - pos} stray bytes at offset ${pos}`);
    const level = bytes[pos]!;
    const id = bytes.readUInt32LE(pos + 1);
    const length = bytes.readUInt32LE(pos + 5);
    const start = pos + 9;
    const left = bytes.byteLength - start - 2;
    const name = `attribute 0x${id.toString(16).padStart(8, '0')} at offset ${pos}`;
    if (length > left) throw new TnefError(`truncated: ${name} claims ${length} bytes, ${Math.max(left, 0)} are left`);
    if (level !== LVL_MESSAGE && level !== LVL_ATTACHMENT) throw new TnefError(`${name} has unknown level ${level}`);
    const data = bytes.subarray(start, start + length);
    if (checksum(data) !== bytes.readUInt16LE(start + length)) badChecksums.push(name);
    pos = start + length + 2;
    if (level === LVL_MESSAGE) {
      if (id === ATT_OEM_CODEPAGE && length >= 4) codepage = data.readUInt32LE(0);
      else if (id === ATT_BODY) attBody = data;
      else if (id === ATT_MSG_PROPS) msgProps = readProps(data, name);
      continue;
    }
    if (id === ATT_ATTACH_REND_DATA) open();
    else if (id === ATT_ATTACH_TITLE) current().title = data;
    else if (id === ATT_ATTACH_DATA) current().data = data;
    else if (id === ATT_ATTACHMENT) for (const [k, v] of readProps(data, name)) current().props.set(k, v);
  }
  const text = (v: PropValue | undefined) => (v ? propText(v, codepage) : undefined);
  const files = raw.map((f): TnefFile => {
    const bin = f.props.get(PR_ATTACH_DATA);
    const method = f.props.get(PR_ATTACH_METHOD)?.value;
    const data = f.data ?? (bin?.type === PT_BINARY ? (bin.value as Buffer) : undefined);
    const name = text(f.props.get(PR_ATTACH_LONG_FILENAME)) || (f.title && stringIn(f.title, codepage)) || text(f.props.get(PR_ATTACH_FILENAME)) || text(f.props.get(PR_DISPLAY_NAME)) || undefined;
    const embedded = bin?.type === PT_OBJECT || method === 5 || method === 6;
    return {
      name,
      mimeType: text(f.props.get(PR_ATTACH_MIME_TAG)) || undefined,
      contentId: text(f.props.get(PR_ATTACH_CONTENT_ID))?.replace(/^<|>$/g, '') || undefined,
      data: embedded ? undefined : data,
      missing: embedded ? 'an Outlook item embedded in the mail (a message or an OLE object), which is not unpacked' : data ? undefined : 'no data for it in the TNEF',
    };
  });
  const bodyProp = msgProps.get(PR_BODY);
  const body = (bodyProp ? propText(bodyProp, codepage) : attBody ? stringIn(attBody, codepage) : undefined)?.replace(/\r\n?/g, '\n');
  const rtfProp = msgProps.get(PR_RTF_COMPRESSED)?.value;
  const rtf = Buffer.isBuffer(rtfProp) ? decompressRtf(rtfProp) : undefined;
  const html = msgProps.get(PR_HTML)?.value;
  return {
    files,
    body: body?.trim() ? body : undefined,
    rtf: rtf?.ok ? rtf.rtf : undefined,
    rtfProblem: rtf && !rtf.ok ? rtf.reason : undefined,
    html: Buffer.isBuffer(html) && html.byteLength > 0 ? html : undefined,
    badChecksums,
  };
}

function checksum(data: Buffer): number {
  let sum = 0;
  for (let i = 0; i < data.byteLength; i++) sum = (sum + data[i]!) & 0xffff;
  return sum;
}

/**
 * A MAPI property list (attMsgProps, attAttachment). Only the last value of a multi-valued
 * property is kept; none of the properties read here is multi-valued.
 */
function readProps(data: Buffer, where: string): Map<number, PropValue> {
  const r = new Reader(data, where);
  const props = new Map<number, PropValue>();
  const count = r.u32('property count');
  // Each property takes at least 8 bytes: a count past that is a lie, and is not looped over.
  if (count > r.left / 8) throw new TnefError(`${where}: ${count} properties cannot fit in ${r.left} bytes`);
  for (let i = 0; i < count; i++) {
    const type = r.u16('property type');
    const id = r.u16('property id');
    if (id >= 0x8000) {
      r.skip(16, 'named property GUID');
      const kind = r.u32('named property kind');
      if (kind === 0) r.skip(4, 'named property id');
      else r.skip(padded(r.u32('named property name length')), 'named property name');
    }
    const base = type & ~MV_FLAG;
    const variable = base === PT_STRING8 || base === PT_UNICODE || base === PT_BINARY || base === PT_OBJECT;
    const values = type & MV_FLAG || variable ? r.u32('value count') : 1;
    if (values > r.left / 4) throw new TnefError(`${where}: ${values} values cannot fit in ${r.left} bytes`);
    for (let v = 0; v < values; v++) {
      if (variable) {
        const value = r.bytes(r.u32('value length'), 'value');
        r.skip(padded(value.byteLength) - value.byteLength, 'padding');
        // PT_OBJECT starts with the interface id of what is embedded.
        props.set(id, { type: base, value: base === PT_OBJECT ? value.subarray(16) : value });
      } else {
        const size = FIXED_SIZE[base];
        if (size === undefined) throw new TnefError(`${where}: property 0x${id.toString(16)} has unknown type 0x${type.toString(16)}`);
        const value = r.bytes(size, 'value');
        props.set(id, { type: base, value: size >= 4 ? value.readUInt32LE(0) : 0 });
      }
    }
  }
  return props;
}

const padded = (n: number) => n + ((4 - (n % 4)) % 4);

class Reader {
  private pos = 0;
  constructor(
    private readonly data: Buffer,
    private readonly where: string,
  ) {}

  get left(): number {
    return this.data.byteLength - this.pos;
  }

  bytes(n: number, what: string): Buffer {
    if (n > this.left) throw new TnefError(`${this.where}: ${what} claims ${n} bytes, ${this.left} are left`);
    const out = this.data.subarray(this.pos, this.pos + n);
    this.pos += n;
    return out;
  }

  skip(n: number, what: string): void {
    this.bytes(n, what);
  }

  u32(what: string): number {
    return this.bytes(4, what).readUInt32LE(0);
  }

  u16(what: string): number {
    return this.bytes(2, what).readUInt16LE(0);
  }
}

function propText(p: PropValue, codepage: number | undefined): string | undefined {
  if (!Buffer.isBuffer(p.value)) return undefined;
  if (p.type === PT_UNICODE) return p.value.toString('utf16le').split('\0')[0];
  if (p.type === PT_STRING8) return stringIn(p.value, codepage);
  return undefined;
}

/**
 * An 8-bit string in the TNEF's OEM code page (attOemCodepage: 1251 from a Russian Windows).
 * Without one, or with the Western 1252 that misconfigured machines declare over Cyrillic bytes,
 * the connector's legacy guess reads it (charset.ts), as it reads raw 8-bit MIME file names.
 */
export function stringIn(bytes: Buffer, codepage: number | undefined): string {
  const end = bytes.indexOf(0);
  const s = end >= 0 ? bytes.subarray(0, end) : bytes;
  if (!/[\x80-\xff]/.test(s.toString('latin1'))) return s.toString('latin1');
  if (isUtf8(s)) return s.toString('utf8');
  const label = codepage === undefined ? undefined : `cp${codepage}`;
  if (label && codepage !== 1252 && codepage !== 20127 && iconv.encodingExists(label)) return iconv.decode(s, label);
  return legacyFileName(s.toString('latin1'));
}
