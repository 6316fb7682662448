/**
 * One Baileys session for one account: holds the cross-replica lease, builds sockets with the
 * KV auth state, follows connection.update (QR, pairing code, open, close) and decides on every
 * close by DisconnectReason: reconnect with backoff, reconnect at once (restartRequired), forget
 * the device and pair again (loggedOut), or stop and say why (connectionReplaced, forbidden).
 */
import QRCode from 'qrcode';
import type { Lease } from '../../core/lease.js';
import { errorMessage } from '../../core/errors.js';
import type { ConnectorContext, HealthTracker } from '../contract.js';
import { clearKvAuth, loadKvAuth, type KvAuth } from './auth-state.js';
import { Browsers, DisconnectReason, makeCacheableSignalKeyStore, type BaileysEventMap, type ConnectionState } from './baileys.js';
import { socketFactory, type WaSocketLike } from './socket.js';
import type { WhatsAppOptions } from './index.js';
import { sleep } from '../../core/sleep.js';

export type SessionEvents = Partial<BaileysEventMap>;
type CloseOutcome = { kind: 'closed'; code?: number; message: string } | { kind: 'stopped' } | { kind: 'lease-lost' };

export interface PairingInfo {
  qr?: string;
  qrAt?: string;
  pairingCode?: string;
}

export class WhatsAppSession {
  sock?: WaSocketLike;
  open = false;
  auth?: KvAuth;
  pairing: PairingInfo = {};
  /** Set when the session stopped for good (replaced, banned): send() reports it. */
  haltedReason?: string;
  private queue: Promise<void> = Promise.resolve();
  /** A QR was shown since the last open: the next open is a new pairing, not a restore. */
  private pairedNow = false;

  constructor(
    private readonly o: WhatsAppOptions,
    private readonly ctx: ConnectorContext,
    private readonly health: HealthTracker,
    /** Called for every event batch, in order; the session itself handles connection and creds. */
    private readonly onEvents: (events: SessionEvents, sock: WaSocketLike) => Promise<void>,
  ) {}

  /** Runs until `signal` aborts: lease, connect, reconnect. */
  async run(signal: AbortSignal): Promise<void> {
    while (!signal.aborted) {
      this.health.set('starting', 'waiting for the session lease (one live WhatsApp session per account across gateway processes)');
      let lease: Lease;
      try {
        lease = await this.ctx.lease('session');
      } catch {
        return; // aborted while waiting
      }
      try {
        const halted = await this.runLeased(lease, signal);
        if (halted) return;
      } finally {
        await lease.release();
      }
    }
  }

  /** Returns true when the session must not be restarted automatically. */
  private async runLeased(lease: Lease, signal: AbortSignal): Promise<boolean> {
    let failures = 0;
    while (!signal.aborted) {
      const outcome = await this.connectOnce(lease, signal);
      this.open = false;
      if (outcome.kind === 'stopped') return true;
      if (outcome.kind === 'lease-lost') {
        this.health.set('disconnected', 'session lease lost; another gateway process may run this account now');
        return false;
      }
      const { code, message } = outcome;
      switch (code) {
        case DisconnectReason.loggedOut: {
          const removed = await clearKvAuth(this.ctx.state);
          this.pairing = {};
          this.health.set('auth_failed', `logged_out: the device was unlinked on the phone; ${removed} stored auth keys cleared, a new pairing is needed`);
          failures = 0;
          continue; // a fresh socket with fresh creds shows a new QR
        }
        case DisconnectReason.connectionReplaced:
          this.haltedReason = 'connection_replaced: another WhatsApp Web session for this number took over; restart the connector to take it back';
          this.health.set('stalled', this.haltedReason);
          return true;
        case DisconnectReason.forbidden:
        case DisconnectReason.multideviceMismatch:
          this.haltedReason = `${code === DisconnectReason.forbidden ? 'forbidden' : 'multidevice_mismatch'}: WhatsApp refused the session (${message}); the number may be banned or must be re-linked`;
          this.health.set('auth_failed', this.haltedReason);
          return true;
        case DisconnectReason.restartRequired:
          this.ctx.log.info('WhatsApp asked for a restart (normal after pairing); reconnecting');
          continue;
        default: {
          failures++;
          const delay = Math.min(this.o.reconnect.maxDelayMs, this.o.reconnect.minDelayMs * 2 ** (failures - 1));
          this.health.set('disconnected', `connection closed (${code ?? 'no code'}: ${message}); reconnecting in ${delay} ms`);
          await sleep(delay, signal);
        }
      }
    }
    return true;
  }

  private async connectOnce(lease: Lease, signal: AbortSignal): Promise<CloseOutcome> {
    const auth = await loadKvAuth(this.ctx.state);
    this.auth = auth;
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
        getMessage: async () => undefined,
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
        // Let queued event batches finish before the next socket starts.
        void this.queue.then(() => {
          unsubscribe();
          resolve(outcome);
        });
      };
      const onAbort = () => finish({ kind: 'stopped' }, true);
      signal.addEventListener('abort', onAbort, { once: true });
      void lease.lost.then(() => finish({ kind: 'lease-lost' }, true));
      const unsubscribe = sock.ev.process(async (events: SessionEvents) => {
        if (events['creds.update']) {
          Object.assign(auth.state.creds, events['creds.update']);
          await auth.saveCreds().catch((err) => this.ctx.log.error({ err: errorMessage(err) }, 'could not store WhatsApp creds'));
        }
        const update = events['connection.update'];
        let closed: CloseOutcome | undefined;
        if (update) {
          closed = this.onConnection(update, sock, () => {
            if (pairingRequested || !this.o.pairing.phoneNumber || auth.state.creds.registered) return;
            pairingRequested = true;
            sock.requestPairingCode(this.o.pairing.phoneNumber).then(
              (code) => (this.pairing.pairingCode = code),
              (err) => this.ctx.log.warn({ err: errorMessage(err) }, 'could not get a WhatsApp pairing code'),
            );
          });
        }
        this.queue = this.queue.then(() => this.onEvents(events, sock)).catch((err) => this.ctx.log.error({ err: errorMessage(err) }, 'WhatsApp event handling failed'));
        if (closed) finish(closed, false);
        await this.queue;
      });
    });
  }

  /** Returns the close outcome when the socket closed. */
  private onConnection(update: Partial<ConnectionState>, sock: WaSocketLike, askPairingCode: () => void): CloseOutcome | undefined {
    if (update.qr) {
      this.pairedNow = true;
      this.pairing = { ...this.pairing, qr: update.qr, qrAt: new Date().toISOString() };
      this.health.set('pairing_needed', `scan the QR code: GET /connectors/whatsapp/${this.ctx.account}/qr.png (API token), or use the pairing code`);
      askPairingCode();
      void this.printQr(update.qr);
    }
    if (update.connection === 'open') {
      this.open = true;
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
