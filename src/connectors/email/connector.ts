/**
 * Email connector: for each configured mailbox, a lease (one replica reads a mailbox), one
 * FolderWatcher per watched folder, and one SMTP sender for replies. Health is the worst state
 * among the mailbox parts, naming which one.
 */
import type { ConnectorState, OutboundMessage } from '../../core/schema.js';
import { PermanentDeliveryError, errorMessage } from '../../core/errors.js';
import { HealthTracker, type Connector, type ConnectorContext, type ConnectorLoop, type SendAttempt, type SendResult } from '../contract.js';
import { FolderWatcher } from './folder.js';
import { replayMail } from './intake.js';
import type { NormalizeDeps } from './normalize.js';
import { MailboxSender } from './sender.js';
import type { EmailOptions, MailboxOptions } from './index.js';

/** Worse states first: the connector reports the worst one among its parts. */
const SEVERITY: ConnectorState[] = ['auth_failed', 'stalled', 'disconnected', 'rate_limited', 'pairing_needed', 'starting', 'connected', 'stopped'];

export class EmailConnector implements Connector {
  /** The sender says when a reply reaches an SMTP connection (contract.ts): one waiting out smtp.perMinute is not "maybe sent". */
  readonly marksWire = true;
  private readonly health_: HealthTracker;
  private readonly senders = new Map<string, MailboxSender>();
  private readonly parts = new Map<string, { state: ConnectorState; detail?: string }>();
  private readonly intakes: ConnectorLoop[] = [];
  private readonly watchers = new Set<FolderWatcher>();
  private readonly stopping = new AbortController();
  private readonly normalize: NormalizeDeps;
  /** Per folder (`address/folder`): parked mail whose flags the server has not confirmed (FolderWatcherDeps.unflagged). */
  private readonly unflagged = new Map<string, Set<string>>();

  constructor(
    private readonly o: EmailOptions,
    private readonly ctx: ConnectorContext,
  ) {
    this.health_ = new HealthTracker(ctx);
    for (const m of o.mailboxes) {
      this.senders.set(m.address.toLowerCase(), new MailboxSender(m, ctx.media, (detail) => this.report(`smtp:${m.address}`, 'auth_failed', detail), { installationId: ctx.installationId, secret: ctx.messageIdSecret }));
    }
    this.normalize = {
      channel: ctx.channel,
      account: ctx.account,
      media: ctx.media,
      maxAttachmentBytes: o.maxAttachmentBytes ?? ctx.media.maxBytes,
      maxBodyChars: o.maxBodyChars,
      ours: {
        // Every email entry's mailboxes and aliases: mail from sales@ into support@ is our own.
        addresses: new Set([...o.mailboxes.map((m) => m.address.toLowerCase()), ...ctx.channelAddresses]),
        domains: new Set([...this.senders.values()].map((s) => s.domain)),
      },
      ownAddresses: ownAddresses(o, ctx),
      authentication: { trustedAuthServIds: o.trustedAuthServIds ?? [], requireAuthenticatedSender: o.requireAuthenticatedSender },
    };
    const mailboxes = new Set(o.mailboxes.map((m) => m.address.toLowerCase()));
    ctx.onReplay((raw, meta) => replayMail(ctx, this.normalize, mailboxes, raw, meta));
  }

  async start(): Promise<void> {
    // Supervised: a mailbox loop that ends or throws is noticed and started again with backoff.
    for (const m of this.o.mailboxes) this.intakes.push(this.ctx.run(`mailbox:${m.address.toLowerCase()}`, () => this.runMailbox(m)));
  }

  async stop(): Promise<void> {
    this.stopping.abort();
    await Promise.all([...this.watchers].map((w) => w.stop()));
    await Promise.all(this.intakes.map((l) => l.stop()));
    await Promise.all([...this.senders.values()].map((s) => s.close()));
    this.health_.set('stopped');
  }

  health() {
    return this.health_.get();
  }

  async send(msg: OutboundMessage, attempt?: SendAttempt): Promise<SendResult> {
    const sender = this.senders.get(msg.conversation.id.toLowerCase());
    if (!sender) {
      throw new PermanentDeliveryError(`mailbox ${msg.conversation.id} is not configured on email account ${this.ctx.account}`, 'mailbox_not_configured');
    }
    const sent = await sender.send(msg, attempt);
    const key = `smtp:${msg.conversation.id.toLowerCase()}`;
    if (this.parts.get(key)?.state === 'auth_failed') this.report(key, 'connected');
    return sent;
  }

  /** Holds the mailbox's lease while its folders are read; gives it up and waits again if lost. */
  private async runMailbox(m: MailboxOptions): Promise<void> {
    const signal = this.stopping.signal;
    while (!signal.aborted) {
      let lease;
      try {
        lease = await this.ctx.lease(`mailbox:${m.address.toLowerCase()}`);
      } catch (err) {
        if (signal.aborted || this.ctx.signal.aborted) return;
        this.ctx.log.warn({ mailbox: m.address, err: errorMessage(err) }, 'could not take the mailbox lease; retrying');
        await new Promise((r) => setTimeout(r, 1000));
        continue;
      }
      if (signal.aborted) {
        await lease.release();
        return;
      }
      const watchers = m.folders.map(
        (folder) =>
          new FolderWatcher({
            ctx: this.ctx,
            options: this.o,
            mailbox: m,
            folder,
            normalize: this.normalize,
            fence: lease,
            unflagged: this.unflaggedOf(`${m.address.toLowerCase()}/${folder}`),
            report: (state, detail) => this.report(`imap:${m.address}/${folder}`, state, detail),
          }),
      );
      for (const w of watchers) {
        this.watchers.add(w);
        w.start();
      }
      const stopped = new Promise<void>((r) => signal.addEventListener('abort', () => r(), { once: true }));
      await Promise.race([lease.lost, stopped]);
      if (!signal.aborted) this.ctx.log.warn({ mailbox: m.address }, 'mailbox lease lost: stopping intake until it is ours again');
      await Promise.all(watchers.map((w) => w.stop()));
      for (const w of watchers) this.watchers.delete(w);
      await lease.release();
    }
  }

  private unflaggedOf(folder: string): Set<string> {
    let set = this.unflagged.get(folder);
    if (!set) this.unflagged.set(folder, (set = new Set()));
    return set;
  }

  private report(part: string, state: ConnectorState, detail?: string): void {
    this.parts.set(part, { state, detail });
    let worst: { state: ConnectorState; detail?: string } = { state: 'connected' };
    for (const p of this.parts.values()) if (SEVERITY.indexOf(p.state) < SEVERITY.indexOf(worst.state)) worst = p;
    this.health_.set(worst.state, worst.state === 'connected' ? undefined : worst.detail);
  }
}

/** The events carry at most this many own addresses (EmailMeta.ownAddresses). */
const OWN_ADDRESSES_MAX = 100;

/**
 * Told to the router with each mail, which never copies them on a reply: this entry's addresses
 * first, then the other email entries' (support@ answering a customer who Cc'd sales@ as well).
 */
function ownAddresses(o: EmailOptions, ctx: ConnectorContext): string[] {
  const all = [...new Set([...o.mailboxes.flatMap((m) => [m.address, ...m.aliases]).map((a) => a.toLowerCase()), ...ctx.channelAddresses])];
  if (all.length > OWN_ADDRESSES_MAX) {
    ctx.log.warn({ left: all.slice(OWN_ADDRESSES_MAX) }, `more than ${OWN_ADDRESSES_MAX} own addresses over the email entries: the rest may be copied on replies of this account`);
  }
  return all.slice(0, OWN_ADDRESSES_MAX);
}
