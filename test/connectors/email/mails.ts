/**
 * Raw RFC 5322 mails for the email tests, built byte by byte so charsets and encodings are exactly
 * what legacy clients send (windows-1251 and KOI8-R bodies, RFC 2047 encoded words, DSNs).
 */
import iconv from 'iconv-lite';

const CRLF = '\r\n';
let counter = 0;

export interface MailSpec {
  from?: string;
  to?: string;
  cc?: string;
  replyTo?: string;
  subject?: string;
  messageId?: string | null;
  inReplyTo?: string;
  references?: string;
  date?: string;
  headers?: Record<string, string>;
  text?: string;
}

export function uniqueId(tag = 'm'): string {
  return `<${tag}.${process.pid}.${Date.now()}.${++counter}@client.example.ru>`;
}

/** A plain UTF-8 text mail (8bit). */
export function plainMail(spec: MailSpec): Buffer {
  const headers = baseHeaders(spec);
  headers.push('MIME-Version: 1.0', 'Content-Type: text/plain; charset=utf-8', 'Content-Transfer-Encoding: 8bit');
  return Buffer.from(headers.join(CRLF) + CRLF + CRLF + (spec.text ?? 'Здравствуйте!').replace(/\r?\n/g, CRLF) + CRLF, 'utf8');
}

function baseHeaders(spec: MailSpec): string[] {
  const h = [
    `From: ${spec.from ?? 'Иван Петров <ivan@client.example.ru>'}`,
    `To: ${spec.to ?? 'support@example.ru'}`,
    `Subject: ${spec.subject ?? 'Вопрос'}`,
    `Date: ${spec.date ?? new Date().toUTCString().replace('GMT', '+0000')}`,
  ];
  if (spec.messageId !== null) h.push(`Message-ID: ${spec.messageId ?? uniqueId()}`);
  if (spec.cc) h.push(`Cc: ${spec.cc}`);
  if (spec.replyTo) h.push(`Reply-To: ${spec.replyTo}`);
  if (spec.inReplyTo) h.push(`In-Reply-To: ${spec.inReplyTo}`);
  if (spec.references) h.push(`References: ${spec.references}`);
  for (const [k, v] of Object.entries(spec.headers ?? {})) h.push(`${k}: ${v}`);
  return h.map((line) => line.replace(/^(Subject|From|To|Cc|Reply-To): (.*)$/, (_m, k: string, v: string) => `${k}: ${encodeWordsIfNeeded(v)}`));
}

/** UTF-8 header values become RFC 2047 base64 words, so the header bytes stay ASCII. */
function encodeWordsIfNeeded(value: string): string {
  if (/^[\x20-\x7e]*$/.test(value)) return value;
  return value.replace(/[^<>,]*[^\x20-\x7e][^<>,]*/g, (part) => {
    const lead = part.match(/^\s*/)![0];
    const trail = part.match(/\s*$/)![0];
    const core = part.trim();
    return `${lead}=?UTF-8?B?${Buffer.from(core, 'utf8').toString('base64')}?=${trail}`;
  });
}

/** Encoded word in a legacy charset, e.g. =?koi8-r?Q?...?= or =?windows-1251?B?...?= */
export function encodedWord(text: string, charset: string, encoding: 'B' | 'Q'): string {
  const bytes = iconv.encode(text, charset);
  if (encoding === 'B') return `=?${charset}?B?${bytes.toString('base64')}?=`;
  let q = '';
  for (const b of bytes) q += (b >= 0x30 && b <= 0x39) || (b >= 0x41 && b <= 0x5a) || (b >= 0x61 && b <= 0x7a) ? String.fromCharCode(b) : b === 0x20 ? '_' : `=${b.toString(16).toUpperCase().padStart(2, '0')}`;
  return `=?${charset}?Q?${q}?=`;
}

function qp(bytes: Buffer): string {
  let out = '';
  let line = '';
  for (const b of bytes) {
    const piece = b === 0x0a ? '\n' : b === 0x0d ? '' : (b >= 33 && b <= 126 && b !== 61) || b === 32 ? String.fromCharCode(b) : `=${b.toString(16).toUpperCase().padStart(2, '0')}`;
    if (piece === '\n') {
      out += line + CRLF;
      line = '';
      continue;
    }
    if (line.length + piece.length > 75) {
      out += `${line}=${CRLF}`;
      line = '';
    }
    line += piece;
  }
  return out + line;
}

function base64Lines(bytes: Buffer): string {
  return bytes.toString('base64').replace(/.{76}/g, `$&${CRLF}`);
}

/**
 * multipart/mixed: a windows-1251 quoted-printable text part, a KOI8-R 8bit HTML part (as an
 * alternative), a big binary attachment and an inline image; subject as a KOI8-R encoded word.
 */
export function legacyCharsetMail(o: { subject: string; text1251: string; htmlKoi8: string; attachment: Buffer; attachmentName: string; inline: Buffer; messageId: string }): Buffer {
  const mixed = 'mixed-b0undary-1';
  const alt = 'alt-b0undary-2';
  const head = [
    'From: =?windows-1251?B?' + iconv.encode('Ольга Смирнова', 'windows-1251').toString('base64') + '?= <olga@client.example.ru>',
    'To: support@example.ru',
    `Cc: ${encodedWord('Главбух', 'koi8-r', 'B')} <glavbuh@client.example.ru>`,
    `Reply-To: ${encodedWord('Бухгалтерия', 'windows-1251', 'Q')} <buh@client.example.ru>`,
    `Subject: ${encodedWord(o.subject, 'koi8-r', 'Q')}`,
    `Date: ${new Date().toUTCString().replace('GMT', '+0000')}`,
    `Message-ID: ${o.messageId}`,
    'MIME-Version: 1.0',
    `Content-Type: multipart/mixed; boundary="${mixed}"`,
  ].join(CRLF);
  const parts = [
    `--${mixed}`,
    `Content-Type: multipart/alternative; boundary="${alt}"`,
    '',
    `--${alt}`,
    'Content-Type: text/plain; charset=windows-1251',
    'Content-Transfer-Encoding: quoted-printable',
    '',
    qp(iconv.encode(o.text1251, 'windows-1251')),
    `--${alt}`,
    'Content-Type: text/html; charset="koi8-r"',
    'Content-Transfer-Encoding: 8bit',
    '',
  ].join(CRLF);
  const afterHtml = [
    '',
    `--${alt}--`,
    '',
    `--${mixed}`,
    `Content-Type: application/octet-stream; name="${encodedWord(o.attachmentName, 'windows-1251', 'B')}"`,
    'Content-Transfer-Encoding: base64',
    `Content-Disposition: attachment; filename="${encodedWord(o.attachmentName, 'windows-1251', 'B')}"`,
    '',
    base64Lines(o.attachment),
    `--${mixed}`,
    'Content-Type: image/png; name="logo.png"',
    'Content-Transfer-Encoding: base64',
    'Content-ID: <logo@client.example.ru>',
    'Content-Disposition: inline; filename="logo.png"',
    '',
    base64Lines(o.inline),
    `--${mixed}--`,
    '',
  ].join(CRLF);
  return Buffer.concat([Buffer.from(head + CRLF + CRLF + parts + CRLF, 'latin1'), iconv.encode(o.htmlKoi8, 'koi8-r'), Buffer.from(afterHtml, 'latin1')]);
}

/** A delivery status notification (RFC 3464) for one of our mails, with its headers attached. */
export function bounceMail(o: {
  originalMessageId: string;
  to: string;
  diagnostic: string;
  /** One report block per recipient instead of the single failed `to`. */
  recipients?: Array<{ address: string; action?: string; diagnostic?: string; original?: string }>;
}): Buffer {
  const b = 'dsn-boundary-7';
  const blocks = (o.recipients ?? [{ address: o.to, diagnostic: o.diagnostic }]).flatMap((r) => [
    ...(r.original ? [`Original-Recipient: rfc822;${r.original}`] : []),
    `Final-Recipient: rfc822; ${r.address}`,
    `Action: ${r.action ?? 'failed'}`,
    `Status: ${(r.action ?? 'failed') === 'failed' ? '5.1.1' : '2.0.0'}`,
    ...(r.diagnostic ? [`Diagnostic-Code: smtp; ${r.diagnostic}`] : []),
    '',
  ]);
  return Buffer.from(
    [
      'From: Mail Delivery System <MAILER-DAEMON@mx.example.ru>',
      'To: support@example.ru',
      'Subject: Undelivered Mail Returned to Sender',
      `Date: ${new Date().toUTCString().replace('GMT', '+0000')}`,
      `Message-ID: ${uniqueId('dsn')}`,
      'Auto-Submitted: auto-replied',
      'MIME-Version: 1.0',
      `Content-Type: multipart/report; report-type=delivery-status; boundary="${b}"`,
      '',
      `--${b}`,
      'Content-Type: text/plain; charset=us-ascii',
      '',
      `I'm sorry to have to inform you that your message could not be delivered to ${o.to}.`,
      '',
      `--${b}`,
      'Content-Type: message/delivery-status',
      '',
      'Reporting-MTA: dns; mx.example.ru',
      '',
      ...blocks,
      `--${b}`,
      'Content-Type: text/rfc822-headers',
      '',
      'From: support@example.ru',
      `To: ${o.to}`,
      `Message-ID: ${o.originalMessageId}`,
      'Subject: Re: test',
      '',
      `--${b}--`,
      '',
    ].join(CRLF),
    'utf8',
  );
}

/** multipart/alternative with UTF-8 8bit text and HTML parts, for bodies of any length. */
export function alternativeMail(o: { messageId: string; subject: string; text: string; html: string }): Buffer {
  const b = 'alt-long-3';
  const head = baseHeaders({ messageId: o.messageId, subject: o.subject });
  head.push('MIME-Version: 1.0', `Content-Type: multipart/alternative; boundary="${b}"`);
  const part = (type: string, body: string) => [`--${b}`, `Content-Type: ${type}; charset=utf-8`, 'Content-Transfer-Encoding: 8bit', '', body.replace(/\r?\n/g, CRLF)].join(CRLF);
  return Buffer.from([head.join(CRLF), '', part('text/plain', o.text), part('text/html', o.html), `--${b}--`, ''].join(CRLF), 'utf8');
}

/**
 * What old mailers send: 8-bit Cyrillic in the From name, the Subject and the body, with no
 * charset anywhere (no RFC 2047 words, no charset parameter). `multipart` wraps the text in a
 * multipart/mixed as a quoted-printable part without a charset.
 */
export function unlabelledMail(o: { charset: 'windows-1251' | 'koi8-r' | 'cp866'; messageId: string; fromName: string; subject: string; text: string; contentType?: string; multipart?: boolean }): Buffer {
  const enc = (s: string) => iconv.encode(s, o.charset);
  const ascii = (s: string) => Buffer.from(s, 'latin1');
  const head = [ascii('From: '), enc(o.fromName), ascii(` <petrov@client.example.ru>${CRLF}To: support@example.ru${CRLF}Subject: `), enc(o.subject)];
  head.push(ascii(`${CRLF}Date: ${new Date().toUTCString().replace('GMT', '+0000')}${CRLF}Message-ID: ${o.messageId}${CRLF}`));
  const body = enc(o.text.replace(/\r?\n/g, CRLF));
  if (!o.multipart) {
    if (o.contentType) head.push(ascii(`MIME-Version: 1.0${CRLF}Content-Type: ${o.contentType}${CRLF}Content-Transfer-Encoding: 8bit${CRLF}`));
    return Buffer.concat([...head, ascii(CRLF), body, ascii(CRLF)]);
  }
  const b = 'legacy-mixed-5';
  head.push(ascii(`MIME-Version: 1.0${CRLF}Content-Type: multipart/mixed; boundary="${b}"${CRLF}`));
  const part = [`--${b}`, 'Content-Type: text/plain', 'Content-Transfer-Encoding: quoted-printable', '', qp(body), `--${b}--`, ''].join(CRLF);
  return Buffer.concat([...head, ascii(CRLF), ascii(part)]);
}

/** More MIME parts than mailparser accepts (1000): it refuses the whole mail. */
export function manyPartsMail(messageId: string, parts = 1100): Buffer {
  const body = Array.from({ length: parts }, (_, i) => `--many${CRLF}Content-Type: text/plain${CRLF}${CRLF}part ${i}${CRLF}`).join('');
  return Buffer.from([`From: spam@client.example.ru`, 'To: support@example.ru', 'Subject: parts', `Message-ID: ${messageId}`, 'MIME-Version: 1.0', 'Content-Type: multipart/mixed; boundary="many"', '', `${body}--many--`, ''].join(CRLF));
}

/** A header block over mailparser's 1 MB limit: unreadable, and too big to ride in a dead letter. */
export function hugeHeaderMail(messageId: string, lines = 20_000): Buffer {
  const trace = Array.from({ length: lines }, (_, i) => `X-Trace-${i}: ${'relay.example.ru '.repeat(4)}`);
  return Buffer.from([`From: relay@client.example.ru`, 'To: support@example.ru', 'Subject: loop', `Message-ID: ${messageId}`, ...trace, '', 'body', ''].join(CRLF));
}

/** Multipart inside multipart, `depth` levels deep, with one text part at the bottom (a fuzzer's mail). */
export function nestedMail(messageId: string, depth = 3000): Buffer {
  let open = '';
  let close = '';
  for (let i = 0; i < depth; i++) {
    open += `Content-Type: multipart/mixed; boundary="n${i}"${CRLF}${CRLF}--n${i}${CRLF}`;
    close = `${CRLF}--n${i}--${CRLF}` + close;
  }
  return Buffer.from([`From: fuzz@client.example.ru`, 'To: support@example.ru', 'Subject: nested', `Message-ID: ${messageId}`, 'MIME-Version: 1.0', `${open}Content-Type: text/plain${CRLF}${CRLF}deep${close}`].join(CRLF));
}

/** Text in a charset (iconv-lite's name; `utf-8` too), as raw bytes with no label anywhere near. */
export interface RawText {
  text: string;
  charset: string;
}

/**
 * A Russian mailer's mix: raw 8-bit Subject, From name and attachment file name, each in its own
 * charset, over a text part in another. `bodyLabel` is the text part's charset parameter (none
 * when absent: an unlabelled body).
 */
export function mixedCharsetMail(o: { messageId: string; subject: RawText; fromName: RawText; body: RawText; bodyLabel?: string; file: RawText }): Buffer {
  const enc = (t: RawText) => iconv.encode(t.text, t.charset);
  const ascii = (s: string) => Buffer.from(s, 'latin1');
  const b = 'mixed-charsets-7';
  return Buffer.concat([
    ascii('From: '), enc(o.fromName), ascii(` <petrov@client.example.ru>${CRLF}To: support@example.ru${CRLF}Subject: `), enc(o.subject),
    ascii(`${CRLF}Date: ${new Date().toUTCString().replace('GMT', '+0000')}${CRLF}Message-ID: ${o.messageId}${CRLF}`),
    ascii(`MIME-Version: 1.0${CRLF}Content-Type: multipart/mixed; boundary="${b}"${CRLF}${CRLF}--${b}${CRLF}`),
    ascii(`Content-Type: text/plain${o.bodyLabel ? `; charset=${o.bodyLabel}` : ''}${CRLF}Content-Transfer-Encoding: 8bit${CRLF}${CRLF}`),
    enc({ ...o.body, text: o.body.text.replace(/\r?\n/g, CRLF) }),
    ascii(`${CRLF}--${b}${CRLF}Content-Type: application/octet-stream${CRLF}Content-Disposition: attachment; filename="`), enc(o.file),
    ascii(`"${CRLF}Content-Transfer-Encoding: base64${CRLF}${CRLF}JVBERi0xLjQK${CRLF}--${b}--${CRLF}`),
  ]);
}
