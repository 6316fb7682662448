/**
 * One Baileys session for one account: holds the cross-replica lease, builds sockets with the
 * KV auth state, follows connection.update (QR, pairing code, open, close) and decides on every
 * close by DisconnectReason: reconnect with backoff, reconnect at once (restartRequired), forget
 * the device and pair again (loggedOut), or stop and say why (connectionReplaced, forbidden).
 * Errors of its own (NATS, the auth store) never end it: it reports them and tries again.
 */
import QRCode from 'qrcode';
import type { Lease } from '../../core/lease.js';
import { errorMessage } from '../../core/errors.js';
import type { AccountState, ConnectorContext, HealthTracker } from '../contract.js';
import { clearKvAuth, loadKvAuth, type KvAuth } from './auth-state.js';
import type { proto } from '@whiskeysockets/baileys';
import { Browsers, DisconnectReason, makeCacheableSignalKeyStore, type BaileysEventMap, type ConnectionState } from './baileys.js';
import { clearHalt, readHalt, writeHalt, type HaltState } from './halt.js';
import { socketFactory, type WaSocketLike } from './socket.js';
import type { WhatsAppOptions } from './index.js';
import { BoundedCache } from '../../core/bounded-cache.js';
import { sleep, backoffMs } from '../../core/sleep.js';

export type SessionEvents = Partial<BaileysEventMap>;
type CloseOutcome = { kind: 'closed'; code?: number; message: string } | { kind: 'stopped' } | { kind: 'lease-lost' };
type LeasedEnd = 'stopped' | 'lease-lost' | 'halted';

/** How often a halted session looks whether an operator restart took the account back. */
const HALT_POLL_MS = 5000;
const CREDS_SAVE_ATTEMPTS = 5;

export interface PairingInfo {
  qr?: string;
  qrAt?: string;
  pairingCode?: string;
}

export class WhatsAppSession {
  sock?: WaSocketLike;
  open = false;
  /** True while this process holds the session lease: only the holder can send for the account. */
  leased = false;
  auth?: KvAuth;
  pairing: PairingInfo = {};
  /** Set while the session is stopped for good (replaced, banned), here or by another process. */
  haltedReason?: string;
  /**
   * What we sent lately, by message id: a customer's phone that could not decrypt one asks for a
   * retry, and Baileys can re-encrypt it only if getMessage returns the content.
   */
  readonly sent = new BoundedCache<proto.IMessage>(500);
  private queue: Promise<void> = Promise.resolve();
  /** A QR was shown since the last open: the next open is a new pairing, not a restore. */
  private pairedNow = false;
  /** Consecutive failures without an open connection in between: the backoff exponent. */
  private failures = 0;
  /** The last creds save failed: the in-memory creds are newer than the stored ones. */
  private credsDirty = false;
  /** A halt recorded after this moment was not answered by a restart of ours: respect it. */
  private readonly startedAt = Date.now();
  /** The session lease while held. */
  private lease?: Lease;
  /**
   * Session writes (creds, Signal keys, the halt marker) go through the lease held now: a process
   * that woke after its lease ran out must not overwrite the creds another process now uses.
   */
  private readonly store: AccountState;

  constructor(
    private readonly o: WhatsAppOptions,
    private readonly ctx: ConnectorContext,
    private readonly health: HealthTracker,
    /** Called for every event batch, in order; the session itself handles connection and creds. */
    private readonly onEvents: (events: SessionEvents, sock: WaSocketLike) => Promise<void>,
  ) {
    const held = () => this.lease;
    this.store = ctx.state.fencedBy({
      key: `${ctx.channel}.${ctx.account}.session`,
      get token() {
        return held()?.token ?? 0;
      },
      valid: () => held()?.valid() ?? false,
    });
  }

  /** Runs until `signal` aborts: lease, connect, reconnect. */
  async run(signal: AbortSignal): Promise<void> {
    const stopping = () => signal.aborted || this.ctx.signal.aborted;
    while (!stopping()) {
      let halted = false;
      try {
        if (await this.haltedElsewhere()) {
          await sleep(HALT_POLL_MS, signal);
          continue;
        }
        this.health.set('starting', 'waiting for the session lease (one live WhatsApp session per account across gateway processes)');
        const lease = await this.ctx.lease('session');
        this.lease = lease;
        this.leased = true;
        try {
          // The halt may have been recorded while we waited for the lease.
          halted = await this.haltedElsewhere();
          if (!halted && (await this.runLeased(lease, signal)) === 'halted') await this.holdWhileHalted(lease, signal);
        } finally {
          this.leased = false;
          this.open = false;
          if (this.credsDirty && this.auth) await this.saveCreds(this.auth, 1);
          await lease.release();
          this.lease = undefined;
        }
        if (halted) await sleep(HALT_POLL_MS, signal);
      } catch (err) {
        if (stopping()) return;
        await this.backoff(`session error: ${errorMessage(err)}`, signal);
      }
    }
  }

  private async backoff(why: string, signal: AbortSignal): Promise<void> {
    this.failures++;
    const delay = backoffMs(this.failures - 1, this.o.reconnect.minDelayMs, this.o.reconnect.maxDelayMs);
    this.ctx.log.warn({ delayMs: delay, failures: this.failures }, `WhatsApp ${why}`);
    this.health.set('disconnected', `${why}; reconnecting in ${delay} ms`);
    await sleep(delay, signal);
  }

  private async runLeased(lease: Lease, signal: AbortSignal): Promise<LeasedEnd> {
    let lost = false;
    void lease.lost.then(() => (lost = true)); // eslint-disable-line @typescript-eslint/no-floating-promises -- lease.lost only ever resolves
    let reload = true;
    while (!signal.aborted && !lost) {
      try {
        // Unsaved creds are newer than the stored ones: keep them rather than go back.
        if (reload && !(this.auth && this.credsDirty)) this.auth = await loadKvAuth(this.store);
        reload = false;
        const outcome = await this.connectOnce(this.auth!, lease, signal);
        this.open = false;
        if (outcome.kind === 'stopped') return 'stopped';
        if (outcome.kind === 'lease-lost') break;
        const next = await this.afterClose(outcome, signal);
        if (next === 'halted') return next;
        reload = next === 'reload';
      } catch (err) {
        this.open = false;
        if (signal.aborted) return 'stopped';
        await this.backoff(`session error: ${errorMessage(err)}`, signal);
      }
    }
    if (signal.aborted) return 'stopped';
    this.health.set('disconnected', 'session lease lost; another gateway process may run this account now');
    return 'lease-lost';
  }

  private async afterClose(outcome: { code?: number; message: string }, signal: AbortSignal): Promise<'again' | 'reload' | 'halted'> {
    const { code, message } = outcome;
    switch (code) {
      case DisconnectReason.loggedOut: {
        const removed = await clearKvAuth(this.store);
        this.credsDirty = false;
        this.pairing = {};
        this.health.set('auth_failed', `logged_out: the device was unlinked on the phone; ${removed} stored auth keys cleared, a new pairing is needed`);
        this.failures = 0;
        return 'reload'; // a fresh socket with fresh creds shows a new QR
      }
      case DisconnectReason.connectionReplaced:
        return this.halt('stalled', 'connection_replaced: another WhatsApp Web session for this number took over; restart the gateway process to take it back');
      case DisconnectReason.forbidden:
      case DisconnectReason.multideviceMismatch:
        return this.halt('auth_failed', `${code === DisconnectReason.forbidden ? 'forbidden' : 'multidevice_mismatch'}: WhatsApp refused the session (${message}); the number may be banned or must be re-linked, then restart the gateway process`);
      case DisconnectReason.restartRequired:
        this.ctx.log.info('WhatsApp asked for a restart (normal after pairing); reconnecting');
        return 'again';
      default:
        await this.backoff(`connection closed (${code ?? 'no code'}: ${message})`, signal);
        return 'again';
    }
  }

  private halt(state: HaltState['state'], reason: string): 'halted' {
    this.haltedReason = reason;
    this.health.set(state, reason);
    return 'halted';
  }

  /**
   * Keeps the lease while halted, so a standby process does not connect and knock the other
   * session off again; the marker covers the time after this process is gone. Returns when the
   * marker was removed (an operator restarted another process), the lease is lost, or on stop.
   */
  private async holdWhileHalted(lease: Lease, signal: AbortSignal): Promise<void> {
    let lost = false;
    void lease.lost.then(() => (lost = true)); // eslint-disable-line @typescript-eslint/no-floating-promises -- lease.lost only ever resolves
    let recorded = false;
    while (!signal.aborted && !lost) {
      try {
        const marker = await readHalt(this.ctx.state);
        if (marker && recorded) {
          await sleep(HALT_POLL_MS, signal);
          continue;
        }
        if (!marker && recorded) {
          this.ctx.log.info('WhatsApp halt marker removed by a restarted gateway process; handing the session over');
          this.haltedReason = undefined;
          return;
        }
        await writeHalt(this.store, { state: this.health.get().state === 'auth_failed' ? 'auth_failed' : 'stalled', reason: this.haltedReason ?? 'halted', at: Date.now() });
        recorded = true;
      } catch (err) {
        this.ctx.log.warn({ err: errorMessage(err) }, 'could not read or record the WhatsApp halt marker; still holding the session lease');
        await sleep(HALT_POLL_MS, signal);
      }
    }
  }

  /**
   * True when a halt recorded after this connector started stands: another process (or this one,
   * before it lost the lease) was replaced or refused. A halt recorded before we started is the
   * one an operator restart answers: it is removed and the session connects.
   */
  private async haltedElsewhere(): Promise<boolean> {
    const marker = await readHalt(this.ctx.state);
    if (!marker) {
      this.haltedReason = undefined;
      return false;
    }
    if (marker.at < this.startedAt) {
      this.ctx.log.info({ reason: marker.reason, at: new Date(marker.at).toISOString() }, 'WhatsApp halt from before this start cleared: taking the session back');
      await clearHalt(this.ctx.state);
      this.haltedReason = undefined;
      return false;
    }
    this.haltedReason = marker.reason;
    this.health.set(marker.state, `${marker.reason} (since ${new Date(marker.at).toISOString()})`);
    return true;
  }

  /** Stores the in-memory creds, retrying; on failure they stay in memory for the next socket. */
  private async saveCreds(auth: KvAuth, attempts = CREDS_SAVE_ATTEMPTS): Promise<void> {
    for (let attempt = 1; ; attempt++) {
      try {
        await auth.saveCreds();
        this.credsDirty = false;
        return;
      } catch (err) {
        if (attempt >= attempts || this.ctx.signal.aborted) {
          this.credsDirty = true;
          this.ctx.log.error({ err: errorMessage(err), attempts: attempt }, 'could not store WhatsApp creds; keeping them in memory and retrying before the next connection');
          return;
        }
        await sleep(backoffMs(attempt, 100, 5_000));
      }
    }
  }

  private async connectOnce(auth: KvAuth, lease: Lease, signal: AbortSignal): Promise<CloseOutcome> {
    if (this.credsDirty) await this.saveCreds(auth);
    const logger = this.ctx.log.child({ lib: 'baileys' }, { level: this.o.libraryLogLevel });
    const sock = socketFactory()(
      {
        auth: { creds: auth.state.creds, keys: makeCacheableSignalKeyStore(auth.state.keys, logger) },
        logger,
        printQRInTerminal: false,
        browser: Browsers.ubuntu('omnigate'),
        markOnlineOnConnect: false,
        syncFullHistory: false,
        shouldSyncHistoryMessage: () => this.o.history === 'ingest',
        getMessage: async (key) => (key.id ? this.sent.get(key.id) : undefined),
      },
      this.ctx.account,
    );
    this.sock = sock;
    let pairingRequested = false;
    return new Promise<CloseOutcome>((resolve) => {
      let settled = false;
      const finish = (outcome: CloseOutcome, endSocket: boolean) => {
        if (settled) return;
        settled = true;
        signal.removeEventListener('abort', onAbort);
        if (endSocket) {
          try {
            sock.end(undefined);
          } catch {
            /* already closed */
          }
        }
        // Let queued event batches (and creds saves) finish before the next socket starts.
        void this.queue.then(() => { // eslint-disable-line @typescript-eslint/no-floating-promises -- the queue ends in a .catch that logs, so it never rejects
          unsubscribe();
          resolve(outcome);
        });
      };
      const onAbort = () => finish({ kind: 'stopped' }, true);
      signal.addEventListener('abort', onAbort, { once: true });
      void lease.lost.then(() => finish({ kind: 'lease-lost' }, true)); // eslint-disable-line @typescript-eslint/no-floating-promises -- lease.lost only ever resolves
      const unsubscribe = sock.ev.process((events: SessionEvents) => {
        const creds = events['creds.update'];
        if (creds) Object.assign(auth.state.creds, creds);
        const update = events['connection.update'];
        let closed: CloseOutcome | undefined;
        if (update) {
          closed = this.onConnection(update, () => {
            if (pairingRequested || !this.o.pairing.phoneNumber || auth.state.creds.registered) return;
            pairingRequested = true;
            sock.requestPairingCode(this.o.pairing.phoneNumber).then(
              (code) => (this.pairing.pairingCode = code),
              (err) => this.ctx.log.warn({ err: errorMessage(err) }, 'could not get a WhatsApp pairing code'),
            );
          });
        }
        // Baileys does not await this handler: the chain keeps saves and intake in event order,
        // and a close waits for it, so the next socket never starts on creds not yet stored.
        this.queue = this.queue
          .then(async () => {
            if (creds) await this.saveCreds(auth);
            await this.onEvents(events, sock);
          })
          .catch((err) => this.ctx.log.error({ err: errorMessage(err) }, 'WhatsApp event handling failed'));
        if (closed) finish(closed, false);
        return this.queue;
      });
    });
  }

  /** Returns the close outcome when the socket closed. */
  private onConnection(update: Partial<ConnectionState>, askPairingCode: () => void): CloseOutcome | undefined {
    if (update.qr) {
      this.pairedNow = true;
      this.pairing = { ...this.pairing, qr: update.qr, qrAt: new Date().toISOString() };
      this.health.set('pairing_needed', `scan the QR code: GET /connectors/whatsapp/${this.ctx.account}/qr.png (API token), or use the pairing code`);
      askPairingCode();
      void this.printQr(update.qr); // eslint-disable-line @typescript-eslint/no-floating-promises -- printQr never rejects (a failed QR rendering just prints nothing)
    }
    if (update.connection === 'open') {
      this.open = true;
      this.failures = 0;
      this.pairing = {};
      this.haltedReason = undefined;
      this.health.set('connected', this.auth?.restored && !this.pairedNow ? 'session restored from stored auth' : 'paired');
      this.pairedNow = false;
    }
    if (update.connection === 'close') {
      const err = update.lastDisconnect?.error as (Error & { output?: { statusCode?: number } }) | undefined;
      return { kind: 'closed', code: err?.output?.statusCode, message: err ? errorMessage(err) : 'closed' };
    }
    return undefined;
  }

  private async printQr(qr: string): Promise<void> {
    this.ctx.log.warn({ account: this.ctx.account }, `WhatsApp pairing needed: open /connectors/whatsapp/${this.ctx.account}/qr.png with an API token, or scan the QR printed on stderr`);
    if (!this.o.pairing.printQr) return;
    const art = await QRCode.toString(qr, { type: 'terminal', small: true }).catch(() => '');
    if (art) process.stderr.write(`\nWhatsApp account "${this.ctx.account}": scan with WhatsApp > Linked devices\n${art}\n`);
  }
}
