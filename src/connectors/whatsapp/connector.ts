/**
 * WhatsApp Web connector (Baileys). Intake: messages.upsert `notify` batches become inbound events
 * (history `append` only when configured), media decrypted by Baileys into the object store, @lid
 * senders mapped to their phone JID, our own messages ignored. Outbound: paced per chat, quoted
 * replies built from the last customer message we kept in KV, media from the object store.
 * The pairing QR is served as PNG and JSON on authenticated routes.
 * `omnigate dlq --replay` takes a parked message through the same path as intake (take()), the
 * outcome told rather than parked again (replay.ts reads the letter).
 */
import QRCode from 'qrcode';
import { createHash } from 'node:crypto';
import { Pacer } from '../../core/pacer.js';
import { PermanentDeliveryError, SendElsewhereError, TransientDeliveryError, errorMessage } from '../../core/errors.js';
import { sleep, backoffMs, untilAborted } from '../../core/sleep.js';
import type { OutboundAttachment, OutboundMessage } from '../../core/schema.js';
import { HealthTracker, InvalidEventError, type Connector, type ConnectorContext, type ConnectorLoop, type ReplayOutcome, type SendAttempt, type SendResult } from '../contract.js';
import { WireMarks } from '../wire-marks.js';
import { isLidUser, jidNormalizedUser, type AnyMessageContent, type Contact, type MiscMessageGenerationOptions, type WAMessage } from './baileys.js';
import { normalizeMessage, platformId, type NormalizeContext, type StoredQuote } from './normalize.js';
import { letterOf, readLetter, otherNumber } from './replay.js';
import { downloadMedia } from './media-download.js';
import { WhatsAppSession, type SessionEvents } from './session.js';
import type { WaSocketLike } from './socket.js';
import type { WhatsAppOptions } from './index.js';

const LID_PREFIX = 'wa-lid-';
/** A replay waits this long for the session to open (right after a start or a reconnect) before it is refused. */
const REPLAY_SESSION_WAIT_MS = 5_000;

/** What became of one message: intake parks `invalid`, a replay reports it. */
type TakeResult = { kind: 'published'; duplicate: boolean } | { kind: 'skipped' | 'invalid'; reason: string };
const quoteKey = (chat: string) => `wa-quote-${Buffer.from(chat).toString('base64url')}`;

/**
 * The id of one part of an outbound message, in Baileys' own format ("3EB0" + 18 hex digits, as
 * generateMessageIDV2): a retry after a timeout sends the same id, which WhatsApp takes as the
 * same message instead of a second copy.
 */
export function outboundMessageId(account: string, outboundId: string, part: number): string {
  return `3EB0${createHash('sha256').update(`${account}\n${outboundId}\n${part}`).digest('hex').toUpperCase().slice(0, 18)}`;
}

export class WhatsAppConnector implements Connector {
  /**
   * send() says when it calls sendMessage (contract.ts): a reply waiting in the pacer is not
   * "maybe sent". It never takes a call back: Baileys does not tell a refusal that sent nothing
   * from one that may have.
   */
  readonly marksWire = true;
  private readonly health_: HealthTracker;
  private readonly pacer: Pacer;
  private readonly session: WhatsAppSession;
  private readonly stopping = new AbortController();
  private readonly lidToPhone = new Map<string, string>();
  /**
   * Steps already delivered per outbound id, so a retry after a partial send continues, not
   * repeats. Dropped when the reply is sent here, else when the runtime settles it (`settled`).
   */
  private readonly progress = new Map<string, { sent: number; firstId?: string }>();
  private sessionLoop?: ConnectorLoop;

  constructor(
    private readonly o: WhatsAppOptions,
    private readonly ctx: ConnectorContext,
  ) {
    this.health_ = new HealthTracker(ctx);
    this.pacer = new Pacer(o.pacing.privateChatIntervalMs, o.pacing.perSecond);
    this.session = new WhatsAppSession(o, ctx, this.health_, (events, sock) => this.onEvents(events, sock));
    ctx.onReplay((payload, meta) => this.replay(payload, meta));
  }

  async start(): Promise<void> {
    const base = `/connectors/whatsapp/${this.ctx.account}`;
    this.ctx.http.route('GET', `${base}/qr.png`, () => this.qrPng(), { auth: true });
    this.ctx.http.route('GET', `${base}/pairing`, async () => ({ status: 200, body: this.pairingJson() }), { auth: true });
    // Supervised: a session loop that ends or throws is noticed and started again with backoff.
    this.sessionLoop = this.ctx.run('session', async ({ signal }) => {
      const stop = AbortSignal.any([signal, this.stopping.signal]);
      await this.loadLidMap(stop);
      await this.session.run(stop);
    });
  }

  async stop(): Promise<void> {
    this.stopping.abort();
    await this.sessionLoop?.stop();
    this.health_.set('stopped');
  }

  /** Only the process holding the session lease can send; the others leave replies to it. */
  canSend(): boolean {
    return this.session.leased;
  }

  health() {
    return this.health_.get();
  }

  private async qrPng() {
    const qr = this.session.pairing.qr;
    if (!qr) return { status: 404, body: { error: 'no_qr', message: `no pairing in progress (state: ${this.health_.get().state})` } };
    const png = await QRCode.toBuffer(qr, { type: 'png', width: 320, margin: 2 });
    return { status: 200, headers: { 'content-type': 'image/png', 'cache-control': 'no-store' }, body: png };
  }

  private pairingJson() {
    const h = this.health_.get();
    const p = this.session.pairing;
    return {
      account: this.ctx.account,
      state: h.state,
      detail: h.detail,
      qr: p.qr ?? null,
      qrAt: p.qrAt ?? null,
      qrPng: p.qr ? `/connectors/whatsapp/${this.ctx.account}/qr.png` : null,
      pairingCode: p.pairingCode ?? null,
    };
  }

  // ---- intake ----

  /** Before the session starts, or @lid customers would open second conversations meanwhile. */
  private async loadLidMap(signal: AbortSignal): Promise<void> {
    for (let attempt = 1; !signal.aborted; attempt++) {
      try {
        for (const key of await this.ctx.state.keys(LID_PREFIX)) {
          const entry = await this.ctx.state.get(key);
          if (entry) this.lidToPhone.set(`${key.slice(LID_PREFIX.length)}@lid`, entry.value);
        }
        return;
      } catch (err) {
        const delay = backoffMs(attempt - 1, this.o.reconnect.minDelayMs, this.o.reconnect.maxDelayMs);
        this.health_.set('disconnected', `could not read the stored @lid mappings: ${errorMessage(err)}; retrying in ${delay} ms`);
        await sleep(delay, signal);
      }
    }
  }

  /** Never throws: the mapping is used from memory at once; storing it only helps after a restart. */
  private async learnLid(lid: string | undefined | null, phoneJid: string | undefined | null): Promise<void> {
    if (!lid || !phoneJid) return;
    const l = jidNormalizedUser(lid);
    const p = jidNormalizedUser(phoneJid);
    if (!isLidUser(l) || !p.endsWith('@s.whatsapp.net') || this.lidToPhone.get(l) === p) return;
    this.lidToPhone.set(l, p);
    await this.ctx.state.put(`${LID_PREFIX}${l.split('@')[0]}`, p).catch((err) => {
      this.ctx.log.warn({ lid: l, err: errorMessage(err) }, 'could not store a WhatsApp @lid mapping; kept in memory');
    });
  }

  private normalizeContext(): NormalizeContext {
    const me = this.session.auth?.state.creds.me;
    const self = new Set<string>();
    if (me?.id) self.add(jidNormalizedUser(me.id));
    if (me?.lid) self.add(jidNormalizedUser(me.lid));
    return {
      channel: this.ctx.channel,
      account: this.ctx.account,
      self,
      groups: this.o.groups,
      resolve: (jid) => this.lidToPhone.get(jid) ?? jid,
    };
  }

  private async onEvents(events: SessionEvents, sock: WaSocketLike): Promise<void> {
    const share = events['chats.phoneNumberShare'];
    if (share) await this.learnLid(share.lid, share.jid);
    for (const c of [...(events['contacts.upsert'] ?? []), ...(events['contacts.update'] ?? [])] as Partial<Contact>[]) {
      if (c.lid && c.id) await this.learnLid(c.lid, c.id);
    }
    const upsert = events['messages.upsert'];
    if (upsert && (upsert.type === 'notify' || this.o.history === 'ingest')) {
      for (const m of upsert.messages) await this.intake(m, sock);
    }
    const history = events['messaging-history.set'];
    if (history && this.o.history === 'ingest') {
      for (const m of history.messages) await this.intake(m, sock);
    }
  }

  /**
   * Baileys has already acknowledged the message to WhatsApp, which will not send it again: each
   * message is handled on its own, and what cannot be published is parked, never dropped. Such a
   * letter (NATS gone past the publish's patience, the gateway stopping) is what a replay heals.
   */
  private async intake(msg: WAMessage, sock: WaSocketLike): Promise<void> {
    try {
      await this.ingest(msg, sock);
    } catch (err) {
      const reason = `whatsapp message ${msg.key?.id ?? '?'} could not be published: ${errorMessage(err)}`;
      try {
        await this.ctx.deadLetter(reason, letterOf(msg), { meta: this.letterMeta() });
      } catch (dlqErr) {
        // The last copy we have: the log line carries the whole message.
        this.ctx.log.error({ id: msg.key?.id, reason, err: errorMessage(dlqErr), message: msg }, 'WhatsApp message lost: neither published nor dead-lettered');
      }
    }
  }

  /** Resolves once the message is stored, parked or deliberately skipped; rejects when it could not be published. */
  private async ingest(msg: WAMessage, sock: WaSocketLike): Promise<void> {
    const r = await this.take(msg, sock, { replay: false });
    if (r.kind === 'invalid') await this.ctx.deadLetter(`whatsapp message ${msg.key?.id ?? '?'}: ${r.reason}`, letterOf(msg), { meta: this.letterMeta() });
  }

  /** What a replay needs besides the message: the number (our own JID) the message was sent to. */
  private letterMeta(): Record<string, string> | undefined {
    const me = this.session.auth?.state.creds.me?.id;
    return me ? { me: jidNormalizedUser(me) } : undefined;
  }

  /**
   * `omnigate dlq --replay` of a parked message: the same path as intake (normalisation with the
   * loop guard and the @lid map, media through Baileys, publish, the quote), the outcome told
   * rather than parked again. Only on the process holding an open session: our own JID (the loop
   * guard) and media re-upload requests need it. A failure a retry can heal (NATS away) rejects:
   * the replay answers "replay failed", nothing is published, and the letter can be replayed again.
   */
  private async replay(payload: Buffer, meta: Record<string, string>): Promise<ReplayOutcome> {
    const letter = readLetter(payload);
    if (!letter.ok) return { outcome: 'refused', reason: letter.reason };
    if (this.session.haltedReason) return { outcome: 'refused', reason: `the WhatsApp session of "${this.ctx.account}" is halted (${this.session.haltedReason}); replay after it is connected again` };
    if (this.session.leased && !this.session.open) await this.sessionOpen(REPLAY_SESSION_WAIT_MS);
    const sock = this.session.sock;
    if (!this.session.leased) {
      // Any gateway with the account answers a replay; only one holds the session.
      return { outcome: 'refused', reason: `the WhatsApp session of "${this.ctx.account}" runs in another gateway process (this one is on standby); replay again, the replay may reach that process` };
    }
    if (!sock || !this.session.open) {
      const h = this.health_.get();
      return { outcome: 'refused', reason: `not connected to WhatsApp yet (session ${h.state}${h.detail ? `: ${h.detail}` : ''}); try again when the connector is connected` };
    }
    const me = this.letterMeta()?.me;
    const foreign = otherNumber(meta, me, this.ctx.account);
    if (foreign) return { outcome: 'refused', reason: foreign };
    const r = await this.take(letter.message, sock, { replay: true });
    if (r.kind === 'published') return { outcome: 'published', duplicate: r.duplicate };
    if (r.kind === 'skipped') return { outcome: 'refused', reason: `skipped: ${r.reason}` };
    return { outcome: 'invalid', reason: r.reason };
  }

  private async sessionOpen(ms: number): Promise<void> {
    const until = Date.now() + ms;
    while (!this.session.open && Date.now() < until && !this.ctx.signal.aborted) await sleep(100, this.ctx.signal);
  }

  /**
   * One message through normalisation, media download and publish; the quote is kept after.
   * Rejects only on what a retry can heal (ctx.publish gave up: NATS away, the gateway stopping).
   */
  private async take(msg: WAMessage, sock: WaSocketLike, o: { replay: boolean }): Promise<TakeResult> {
    let n: ReturnType<typeof normalizeMessage>;
    try {
      n = normalizeMessage(msg, this.normalizeContext());
    } catch (err) {
      // Pure and given a decoded message: a throw is about this message, parked, not retried.
      n = { kind: 'invalid', reason: `cannot read the message: ${errorMessage(err)}` };
    }
    if (n.kind === 'skip') {
      if (n.loopGuard) this.ctx.dropped('loop_guard', n.reason);
      this.ctx.log.debug({ id: msg.key?.id, reason: n.reason }, 'WhatsApp message skipped');
      return { kind: 'skipped', reason: n.reason };
    }
    if (n.kind === 'invalid') return n;
    const event = n.event;
    if (event.type === 'message.inbound' && n.media) event.attachments = [await downloadMedia(this.ctx, this.o, msg, n.media, sock)];
    // ctx.publish waits out a NATS outage itself; it gives up only on an invalid event or at shutdown.
    let duplicate: boolean;
    try {
      duplicate = (await this.ctx.publish(event)).duplicate;
    } catch (err) {
      if (err instanceof InvalidEventError) return { kind: 'invalid', reason: err.message };
      throw err;
    }
    if (n.quote) await this.keepQuote(event.conversation.id, n.quote, msg, o.replay);
    return { kind: 'published', duplicate };
  }

  /**
   * The chat's last customer message, for quoting the reply. A replayed message is older than
   * what the chat may have had since: it is kept only when the chat has none.
   */
  private async keepQuote(chat: string, quote: StoredQuote, msg: WAMessage, replay: boolean): Promise<void> {
    try {
      if (replay && (await this.ctx.state.get(quoteKey(chat)))) return;
      await this.ctx.state.put(quoteKey(chat), JSON.stringify(quote));
    } catch (err) {
      // Only costs the quote on the next reply to this chat.
      this.ctx.log.warn({ id: msg.key?.id, err: errorMessage(err) }, 'could not store the WhatsApp message for quoting');
    }
  }

  // ---- outbound ----

  /** The runtime stored the reply's final outcome (contract.ts `settled`): its progress goes. */
  settled(outboundId: string): void {
    this.progress.delete(outboundId);
  }

  async send(msg: OutboundMessage, attempt?: SendAttempt): Promise<SendResult> {
    const jid = msg.conversation.id;
    if (!/^[^@\s]+@(s\.whatsapp\.net|g\.us|lid)$/.test(jid)) {
      throw new PermanentDeliveryError(`"${jid}" is not a WhatsApp chat JID`, 'invalid_jid');
    }
    const sock = this.session.sock;
    // Halted is account-wide, whichever process holds the lease: no replica can send.
    if (this.session.haltedReason) throw new TransientDeliveryError(`WhatsApp session is not connected (${this.session.haltedReason})`, 5000);
    if (!this.session.leased) {
      throw new SendElsewhereError(`the WhatsApp session of "${this.ctx.account}" runs in another gateway process (this one is on standby)`);
    }
    if (!sock || !this.session.open) {
      const h = this.health_.get();
      throw new TransientDeliveryError(`WhatsApp session is not connected (session ${h.state}${h.detail ? `: ${h.detail}` : ''})`, 5000);
    }
    const quoted = msg.replyTo ? await this.quoteFor(jid, msg.replyTo) : undefined;
    const interval = msg.conversation.kind === 'group' ? this.o.pacing.groupIntervalMs : this.o.pacing.privateChatIntervalMs;
    const steps = (msg.text ? 1 : 0) + msg.attachments.length;
    const progress = this.progress.get(msg.id) ?? { sent: 0 };
    this.progress.set(msg.id, progress);
    const wire = await WireMarks.begin(attempt, () => progress.sent > 0);
    try {
      for (let i = progress.sent; i < steps; i++) {
        const content = i === 0 && msg.text ? { text: msg.text } : await this.mediaContent(msg.attachments[i - (msg.text ? 1 : 0)]!);
        await this.pacer.wait(jid, interval, this.ctx.signal);
        const options: MiscMessageGenerationOptions = { messageId: outboundMessageId(this.ctx.account, msg.id, i), ...(i === 0 && quoted ? { quoted } : {}) };
        // Baileys uploads a medium and relays the message in this one call: the upload counts as the wire.
        await wire.calling();
        const sending = sock.sendMessage(jid, content, options);
        // Kept even when the send completes after our timeout: the phone may ask for it again.
        void sending.then((m) => m?.key?.id && m.message && this.session.sent.set(m.key.id, m.message), () => {});
        const sent = await withTimeout(sending, this.o.sendTimeoutMs);
        progress.sent = i + 1;
        progress.firstId ??= platformId(jid, sent?.key?.id ?? options.messageId!);
      }
      this.progress.delete(msg.id);
      return { platformMessageId: progress.firstId ?? platformId(jid, outboundMessageId(this.ctx.account, msg.id, 0)) };
    } catch (err) {
      throw classify(err);
    }
  }

  /** The stored last customer message of the chat, when it is the one the reply answers. */
  private async quoteFor(jid: string, replyTo: string): Promise<WAMessage | undefined> {
    const entry = await this.ctx.state.get(quoteKey(jid));
    if (!entry) return undefined;
    const q = JSON.parse(entry.value) as StoredQuote;
    if (q.platformId !== replyTo) return undefined;
    return { key: q.key, message: { conversation: q.text } } as WAMessage;
  }

  private async mediaContent(a: OutboundAttachment): Promise<AnyMessageContent> {
    const bytes = await this.ctx.media.get(a.objectKey);
    if (!bytes) throw new PermanentDeliveryError(`attachment ${a.name} is not in the object store`, 'attachment_missing');
    const data = Buffer.from(bytes);
    const mimetype = a.mimeType;
    if (/^image\/(jpeg|png)$/.test(mimetype)) return { image: data, mimetype };
    if (mimetype.startsWith('video/')) return { video: data, mimetype };
    if (mimetype.startsWith('audio/')) return { audio: data, mimetype };
    return { document: data, mimetype, fileName: a.name };
  }
}

function classify(err: unknown): Error {
  if (err instanceof PermanentDeliveryError || err instanceof TransientDeliveryError) return err;
  const code = (err as { output?: { statusCode?: number } }).output?.statusCode;
  if (code === 400 || code === 404 || code === 406) {
    return new PermanentDeliveryError(`WhatsApp refused the message (${code}): ${errorMessage(err)}`, `rejected_${code}`);
  }
  return new TransientDeliveryError(`WhatsApp send failed${code ? ` (${code})` : ''}: ${errorMessage(err)}`);
}

function withTimeout<T>(p: Promise<T>, ms: number): Promise<T> {
  return untilAborted(p, AbortSignal.timeout(ms)).catch((err) => {
    if ((err as Error)?.name === 'TimeoutError') throw new TransientDeliveryError(`WhatsApp send did not complete within ${ms} ms`);
    throw err;
  });
}
