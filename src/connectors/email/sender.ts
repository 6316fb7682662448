/**
 * Outbound mail for one mailbox through a pooled nodemailer SMTP transport: threading headers
 * from the router, our deterministic Message-ID (a retry sends the same one, so a duplicate is
 * recognisable downstream), attachments from the object store, Auto-Submitted on automated
 * replies. SMTP 4xx and connection trouble are transient; 5xx is a permanent failure carrying
 * the server's reply. Wire marks (contract.ts marksWire): a reply is "maybe sent" from the moment
 * it is handed to a free SMTP connection, and "not sent" again when the transaction failed before
 * the server took a byte of the message (see sendMail below).
 */
import nodemailer, { type Transporter } from 'nodemailer';
import MailComposer from 'nodemailer/lib/mail-composer/index.js';
import type Mail from 'nodemailer/lib/mailer/index.js';
import type SMTPPool from 'nodemailer/lib/smtp-pool/index.js';
import type { Readable } from 'node:stream';
import { Pacer } from '../../core/pacer.js';
import { Semaphore } from '../../core/lanes.js';
import { PermanentDeliveryError, TransientDeliveryError, errorMessage } from '../../core/errors.js';
import type { MediaStore } from '../../core/media.js';
import type { OutboundMessage } from '../../core/schema.js';
import { fromHeader, replaceFrom, subjectHeader } from './from-header.js';
import { domainOf } from '../../core/mail-domains.js';
import { addressKey } from '../../core/mail-address.js';
import { MAX_REFUSED_COPIES, type RefusedCopy } from '../../core/schema.js';
import { outboundMessageId, type MessageIdKey } from './ids.js';
import type { MailboxOptions } from './index.js';
import type { SendAttempt } from '../contract.js';
import { WireMarks } from '../wire-marks.js';

interface SmtpErrorLike {
  code?: string;
  responseCode?: number;
  response?: string;
  command?: string;
}

const CONNECTION_CODES = new Set(['ECONNECTION', 'ETIMEDOUT', 'ESOCKET', 'EDNS', 'ECONNREFUSED', 'ECONNRESET', 'EPIPE', 'ETLS']);

/**
 * What the pool did with one message's body: each stream it opened for a connection (a message
 * whose connection failed before the DATA goes out over another one). `hooked`: our stream plugin
 * saw the message, so `streams` is all there is to know.
 */
interface BodyProbe {
  hooked: boolean;
  streams: Readable[];
}

/** The sendMail option carrying the probe to our stream plugin (nodemailer keeps unknown options in mail.data). */
const PROBE = 'omnigateBodyProbe';

export class MailboxSender {
  private transport?: Transporter<SMTPPool.SentMessageInfo>;
  private readonly pacer: Pacer;
  /**
   * One reply per pooled connection: past them, replies wait here (claimed) rather than in
   * nodemailer's queue, where they would count as maybe sent.
   */
  private readonly connections: Semaphore;
  readonly domain: string;

  constructor(
    private readonly mailbox: MailboxOptions,
    private readonly media: MediaStore,
    private readonly onAuthFailed: (detail: string) => void,
    private readonly ids: MessageIdKey = { installationId: '' },
  ) {
    this.domain = messageIdDomain(mailbox);
    this.pacer = new Pacer(mailbox.smtp.perMinute > 0 ? 60_000 / mailbox.smtp.perMinute : 0, 0);
    this.connections = new Semaphore(mailbox.smtp.maxConnections);
  }

  private smtp(): Transporter<SMTPPool.SentMessageInfo> {
    const s = this.mailbox.smtp;
    this.transport ??= nodemailer.createTransport({
      pool: true,
      host: s.host,
      port: s.port,
      secure: s.secure,
      requireTLS: !s.secure && s.starttls,
      ignoreTLS: !s.secure && !s.starttls,
      auth: s.user ? { user: s.user, pass: s.pass ?? '' } : undefined,
      tls: { rejectUnauthorized: s.rejectUnauthorized },
      maxConnections: s.maxConnections,
      connectionTimeout: s.timeoutMs,
      greetingTimeout: Math.min(30_000, s.timeoutMs),
      socketTimeout: s.timeoutMs,
      logger: false,
    });
    this.transport.use('stream', probeBody);
    return this.transport;
  }

  /** The mail's Message-ID, and the copies the server refused while it took the To; throws when the To was refused. */
  async send(msg: OutboundMessage, attempt?: SendAttempt): Promise<{ platformMessageId: string; refusedCopies?: RefusedCopy[] }> {
    const email = msg.email;
    if (!email) throw new PermanentDeliveryError('the outbound message has no email block (recipients, subject)', 'bad_request');
    const messageId = outboundMessageId(msg.ticketId, msg.id, this.domain, this.ids);
    const attachments = [];
    for (const a of msg.attachments) {
      const bytes = await this.media.get(a.objectKey);
      if (!bytes) throw new PermanentDeliveryError(`attachment ${a.name} is not in the object store`, 'attachment_missing');
      attachments.push({ filename: a.name, content: Buffer.from(bytes), contentType: a.mimeType });
    }
    const headers: Record<string, string | { prepared: true; value: string }> = {};
    // A non-ASCII subject goes as whole-word encoded words of ours (from-header.ts says why), which
    // nodemailer writes as they are; the subject option would have it encoded again.
    const subject = subjectHeader(email.subject);
    if (subject) headers.Subject = { prepared: true, value: subject };
    if (msg.automated) {
      // RFC 3834, and ask Exchange not to answer our automatic mail with its own.
      headers['Auto-Submitted'] = 'auto-replied';
      headers['X-Auto-Response-Suppress'] = 'All';
    }
    if (this.mailbox.smtp.perMinute > 0) await this.pacer.wait(this.mailbox.address);
    // One SMTP transaction: nothing of the reply went out before it.
    const wire = await WireMarks.begin(attempt, () => false);
    const probe: BodyProbe = { hooked: false, streams: [] };
    await this.connections.acquire();
    try {
      const mail = await this.compose({
        from: { name: this.mailbox.name ?? '', address: this.mailbox.address },
        to: email.to,
        cc: email.cc.length > 0 ? email.cc : undefined,
        subject: subject ? undefined : email.subject,
        text: msg.text,
        html: msg.html,
        messageId,
        inReplyTo: email.inReplyTo,
        references: email.references.length > 0 ? email.references : undefined,
        headers,
        attachments,
      });
      await wire.calling();
      const info = await this.smtp().sendMail({ ...mail, [PROBE]: probe } as Mail.Options);
      if (info.rejected.length > 0 && info.accepted.length === 0) {
        throw new PermanentDeliveryError(`all recipients refused: ${info.rejected.join(', ')}`, 'recipient_rejected');
      }
      return { platformMessageId: messageId, ...refusalsOf(info, email.to) };
    } catch (err) {
      if (bodyKeptBack(probe)) await wire.refused();
      throw this.classify(err);
    } finally {
      this.connections.release();
    }
  }

  /**
   * The mail as nodemailer sends it, except a non-ASCII display name, which goes into a From
   * line of our own (from-header.ts says why): then the message is built here and sent raw.
   */
  private async compose(mail: Mail.Options): Promise<Mail.Options> {
    const header = fromHeader(this.mailbox.name, this.mailbox.address);
    if (!header) return mail;
    const node = new MailComposer({ ...mail, from: this.mailbox.address }).compile();
    const raw = replaceFrom(await node.build(), header);
    return { envelope: node.getEnvelope(), raw, messageId: mail.messageId };
  }

  async close(): Promise<void> {
    this.transport?.close();
  }

  private classify(err: unknown): Error {
    if (err instanceof PermanentDeliveryError || err instanceof TransientDeliveryError) return err;
    const e = err as SmtpErrorLike;
    const reply = e.response ? `SMTP ${e.command ? `${e.command}: ` : ''}${e.response}` : errorMessage(err);
    if (e.code === 'EAUTH') {
      // Our credentials, not the recipient: retry (and alert) rather than fail the reply for good.
      this.onAuthFailed(`${this.mailbox.address}: SMTP login refused (${e.response ?? errorMessage(err)})`);
      return new TransientDeliveryError(`SMTP authentication failed: ${reply}`);
    }
    if (e.responseCode && e.responseCode >= 500) {
      const reason = e.code === 'EENVELOPE' ? 'recipient_rejected' : e.code === 'EMESSAGE' ? 'message_rejected' : 'smtp_rejected';
      return new PermanentDeliveryError(reply, reason);
    }
    if (e.responseCode && e.responseCode >= 400) return new TransientDeliveryError(reply);
    if (e.code && CONNECTION_CODES.has(e.code)) return new TransientDeliveryError(`SMTP connection problem: ${reply}`);
    return new TransientDeliveryError(`SMTP send failed: ${reply}`);
  }
}

interface RcptRefusal {
  recipient?: string;
  responseCode?: number;
  response?: string;
}

/**
 * What the server's RCPT refusals mean for a mail it took for some recipients: a refused To is the
 * reply not delivered (an outside trial: the customer's own address refused with 550, the Cc
 * accepted, and the reply recorded `sent`: the SLA timers counted it answered). Permanently
 * refused: failed, as a bounce of the To is (router/bounces.ts); refused for now (4xx,
 * greylisting): sent again, copies and all (the same Message-ID: a copy received twice is
 * recognisable). Refused copies go back to the router with the `sent`, which notes them on the
 * ticket and stops copying the permanently refused ones, as for a bounced copy.
 */
function refusalsOf(info: { rejected: unknown[]; rejectedErrors?: RcptRefusal[] }, to: string[]): { refusedCopies?: RefusedCopy[] } {
  if (info.rejected.length === 0) return {};
  const errors = info.rejectedErrors ?? [];
  const refusal = (address: string) => errors.find((e) => e.recipient !== undefined && addressKey(e.recipient) === addressKey(address));
  const toKeys = new Set(to.map(addressKey));
  const refused = info.rejected.map((r) => String(typeof r === 'object' && r !== null && 'address' in r ? (r as { address: unknown }).address : r));
  const refusedTo = refused.filter((a) => toKeys.has(addressKey(a)));
  if (refusedTo.length > 0) {
    const replies = refusedTo.map((a) => `${a}: ${refusal(a)?.response ?? 'refused'}`).join('; ');
    const copies = refused.length > refusedTo.length ? ' (the server took the mail for its copies)' : '';
    if (refusedTo.every((a) => (refusal(a)?.responseCode ?? 550) >= 500)) throw new PermanentDeliveryError(`SMTP RCPT TO refused the reply's To: ${replies}${copies}`, 'recipient_rejected');
    throw new TransientDeliveryError(`SMTP RCPT TO deferred the reply's To: ${replies}${copies}`);
  }
  return {
    refusedCopies: refused.slice(0, MAX_REFUSED_COPIES).map((address) => {
      const r = refusal(address);
      return { address, reason: r?.response ?? 'refused at RCPT TO', ...(r?.responseCode !== undefined && r.responseCode < 500 ? { temporary: true } : {}) };
    }),
  };
}

/**
 * The right-hand side of our Message-IDs: `messageIdDomain`, else the mailbox address's domain.
 * The config takes only a full address, so there is always one; the refusal names the option
 * that would give it, for a sender built some other way.
 */
function messageIdDomain(mailbox: MailboxOptions): string {
  const domain = mailbox.messageIdDomain?.toLowerCase() ?? domainOf(mailbox.address);
  if (!domain) throw new Error(`mailbox ${mailbox.address}: the address has no domain for our Message-IDs; set messageIdDomain`);
  return domain;
}

/**
 * nodemailer's stream plugin: notes each stream the pool opens on the message's body. A pooled
 * connection pipes it into the socket only once the server answered DATA with 354, after the
 * greeting, login, MAIL FROM and every RCPT TO; until then the stream has emitted nothing.
 */
const probeBody: Mail.PluginFunction<SMTPPool.SentMessageInfo> = (mail, done) => {
  const probe = (mail.data as Record<string, unknown>)[PROBE] as BodyProbe | undefined;
  if (probe) {
    const message = mail.message as unknown as { createReadStream(...args: unknown[]): Readable };
    const open = message.createReadStream.bind(message);
    message.createReadStream = (...args) => {
      const stream = open(...args);
      probe.streams.push(stream);
      return stream;
    };
    probe.hooked = true;
  }
  done();
};

/**
 * Whether the server certainly has no byte of the message: the transaction failed while
 * connecting, at the greeting, login, MAIL FROM, RCPT TO or the DATA command itself. Once the
 * body began to flow the server may have accepted it (a connection lost after the final dot), so
 * it stays maybe sent; and so it does when the plugin did not see the message (nodemailer changed).
 */
function bodyKeptBack(probe: BodyProbe): boolean {
  return probe.hooked && probe.streams.every((s) => s.readableDidRead === false);
}
