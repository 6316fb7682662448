/**
 * A small TNEF writer for the winmail.dat tests, laid out as Outlook writes it ([MS-OXTNEF]):
 * signature, key, message attributes (code page, body, MAPI properties), then per attachment
 * attAttachRendData, attAttachTitle, attAttachData and attAttachment (its MAPI properties).
 */
import iconv from 'iconv-lite';

const CRLF = '\r\n';

export const ATT = {
  oemCodepage: 0x00069007,
  body: 0x0002800c,
  msgProps: 0x00069003,
  attachRendData: 0x00069002,
  attachTitle: 0x00018010,
  attachData: 0x0006800f,
  attachment: 0x00069005,
} as const;

export const PT = { long: 0x0003, string8: 0x001e, unicode: 0x001f, binary: 0x0102, object: 0x000d } as const;
export const PR = { body: 0x1000, rtfCompressed: 0x1009, attachData: 0x3701, attachMethod: 0x3705, longFilename: 0x3707, mimeTag: 0x370e } as const;

export function attribute(level: 1 | 2, id: number, data: Buffer, o: { badChecksum?: boolean } = {}): Buffer {
  const head = Buffer.alloc(9);
  head[0] = level;
  head.writeUInt32LE(id >>> 0, 1);
  head.writeUInt32LE(data.byteLength, 5);
  let sum = 0;
  for (const b of data) sum = (sum + b) & 0xffff;
  const tail = Buffer.alloc(2);
  tail.writeUInt16LE(o.badChecksum ? (sum + 1) & 0xffff : sum);
  return Buffer.concat([head, data, tail]);
}

export function tnefStream(attributes: Buffer[]): Buffer {
  const head = Buffer.alloc(6);
  head.writeUInt32LE(0x223e9f78, 0);
  head.writeUInt16LE(0x4c2a, 4);
  return Buffer.concat([head, ...attributes]);
}

export interface Prop {
  type: number;
  id: number;
  value: Buffer | string | number;
  /** A named property (id ≥ 0x8000) with a string name, as Outlook writes its own. */
  name?: string;
}

const u32 = (n: number) => {
  const b = Buffer.alloc(4);
  b.writeUInt32LE(n >>> 0);
  return b;
};
const pad = (b: Buffer) => Buffer.concat([b, Buffer.alloc((4 - (b.byteLength % 4)) % 4)]);

export function mapiProps(props: Prop[]): Buffer {
  const out: Buffer[] = [u32(props.length)];
  for (const p of props) {
    const tag = Buffer.alloc(4);
    tag.writeUInt16LE(p.type, 0);
    tag.writeUInt16LE(p.id, 2);
    out.push(tag);
    if (p.name !== undefined) {
      const name = Buffer.from(`${p.name}\0`, 'utf16le');
      out.push(Buffer.alloc(16, 0xab), u32(1), u32(name.byteLength), pad(name));
    }
    if (p.type === PT.long) {
      out.push(u32(p.value as number));
      continue;
    }
    const raw = typeof p.value === 'string' ? Buffer.from(`${p.value}\0`, p.type === PT.unicode ? 'utf16le' : 'latin1') : (p.value as Buffer);
    const value = p.type === PT.object ? Buffer.concat([Buffer.alloc(16, 0x11), raw]) : raw;
    out.push(u32(1), u32(value.byteLength), pad(value));
  }
  return Buffer.concat(out);
}

export interface TnefFileSpec {
  /** attAttachTitle, bytes as the sender's code page wrote them (a NUL is added). */
  title?: Buffer;
  longFilename?: string;
  mimeTag?: string;
  data?: Buffer;
  /** An embedded Outlook message (attach method 5) instead of a file. */
  embedded?: boolean;
  badChecksum?: boolean;
}

/** PR_RTF_COMPRESSED holding `rtf` stored uncompressed ("MELA"), as the format allows. */
export function rtfUncompressed(rtf: string): Buffer {
  const body = Buffer.from(rtf, 'latin1');
  return Buffer.concat([u32(body.byteLength + 12), u32(body.byteLength), u32(0x414c454d), u32(0), body]);
}

/** The compressed example of [MS-OXRTFCP] 3.1.1: `{\rtf1\ansi\ansicpg1252\pard hello world}\r\n`. */
export const SPEC_LZFU = Buffer.from('2d0000002b0000004c5a4675f1c5c7a703000a007263706731323542320af32068656c090020627705b06c647d0a800fa0', 'hex');

/** `rtf`: the PR_RTF_COMPRESSED bytes. */
export function winmailDat(o: { codepage?: number; body?: Buffer; rtf?: Buffer; files: TnefFileSpec[] }): Buffer {
  const attrs: Buffer[] = [];
  if (o.codepage !== undefined) attrs.push(attribute(1, ATT.oemCodepage, Buffer.concat([u32(o.codepage), u32(0)])));
  if (o.body) attrs.push(attribute(1, ATT.body, Buffer.concat([o.body, Buffer.from([0])])));
  const msg: Prop[] = [{ type: PT.long, id: 0x0e07, value: 0 }, { type: PT.unicode, id: 0x8001, name: 'x-omni-test', value: 'named' }];
  if (o.rtf) msg.push({ type: PT.binary, id: PR.rtfCompressed, value: o.rtf });
  attrs.push(attribute(1, ATT.msgProps, mapiProps(msg)));
  for (const f of o.files) {
    attrs.push(attribute(2, ATT.attachRendData, Buffer.alloc(14)));
    if (f.title) attrs.push(attribute(2, ATT.attachTitle, Buffer.concat([f.title, Buffer.from([0])])));
    if (f.data && !f.embedded) attrs.push(attribute(2, ATT.attachData, f.data, { badChecksum: f.badChecksum }));
    const props: Prop[] = [{ type: PT.long, id: PR.attachMethod, value: f.embedded ? 5 : 1 }];
    if (f.longFilename) props.push({ type: PT.unicode, id: PR.longFilename, value: f.longFilename });
    if (f.mimeTag) props.push({ type: PT.string8, id: PR.mimeTag, value: f.mimeTag });
    if (f.embedded) props.push({ type: PT.object, id: PR.attachData, value: winmailDat({ files: [] }) });
    attrs.push(attribute(2, ATT.attachment, mapiProps(props)));
  }
  return tnefStream(attrs);
}

export const cp1251 = (s: string) => iconv.encode(s, 'windows-1251');

function base64Lines(b: Buffer): string {
  return (b.toString('base64').match(/.{1,76}/g) ?? []).join(CRLF);
}

/** An Outlook mail: a plain-text part and winmail.dat; or, with `text: null`, the TNEF as the whole mail. */
export function outlookMail(o: { messageId: string; subject: string; text: string | null; tnef: Buffer; name?: string }): Buffer {
  const head = [
    'From: =?utf-8?B?' + Buffer.from('Сергей Орлов').toString('base64') + '?= <orlov@client.example.ru>',
    'To: support@example.ru',
    `Subject: =?utf-8?B?${Buffer.from(o.subject).toString('base64')}?=`,
    `Date: ${new Date().toUTCString().replace('GMT', '+0000')}`,
    `Message-ID: ${o.messageId}`,
    'MIME-Version: 1.0',
    'X-MS-TNEF-Correlator: <00000000A1B2C3@client.example.ru>',
  ];
  const name = o.name ?? 'winmail.dat';
  if (o.text === null) {
    return Buffer.from([...head, `Content-Type: application/ms-tnef; name="${name}"`, 'Content-Transfer-Encoding: base64', `Content-Disposition: attachment; filename="${name}"`, '', base64Lines(o.tnef), ''].join(CRLF), 'latin1');
  }
  const b = 'outlook-b0undary';
  return Buffer.from([
    ...head, `Content-Type: multipart/mixed; boundary="${b}"`, '',
    `--${b}`, 'Content-Type: text/plain; charset=utf-8', 'Content-Transfer-Encoding: base64', '', base64Lines(Buffer.from(o.text, 'utf8')),
    `--${b}`, `Content-Type: application/ms-tnef; name="${name}"`, 'Content-Transfer-Encoding: base64', `Content-Disposition: attachment; filename="${name}"`, '', base64Lines(o.tnef),
    `--${b}--`, '',
  ].join(CRLF), 'latin1');
}
