/**
 * Reads one IMAP folder: its own imapflow connection, IDLE for new mail (re-issued before the
 * 29-minute mark), a fallback poll, reconnect with backoff. Each sync takes the mail above the
 * checkpoint in UID order, in batches: fetch, publish (resolves once JetStream stored it), then
 * mark it \Seen + our keyword (or move it), then advance the checkpoint to the highest UID below
 * which every mail was handled. A crash anywhere in between means the mail is read again and the
 * Message-ID-based event id makes it a duplicate. A mail the server returns no content for is
 * neither acknowledged nor stepped over: it is tried again, and parked after a few attempts.
 * A dead letter, unlike an event, has no id to be deduplicated by: a parked mail is flagged at
 * once, and remembered until it is, so that a sync failing after the park (a dropped session, a
 * refused flag store, a lost lease) reads it again without parking it a second time.
 */
import { ImapFlow } from 'imapflow';
import type { ConnectorState } from '../../core/schema.js';
import { errorMessage } from '../../core/errors.js';
import type { ConnectorContext, ConnectorLoop, Fence } from '../contract.js';
import { acknowledge, confirmUidValidity, ensureProcessedFolder, type AcknowledgeIn } from './acknowledge.js';
import { flagParked, parkKey } from './parked-mail.js';
import { CheckpointStore, scanCheckpoint, type Checkpoint } from './checkpoint.js';
import { publishMail } from './intake.js';
import type { NormalizeDeps } from './normalize.js';
import type { EmailOptions, MailboxOptions } from './index.js';
import { sessionFailure } from './session-failure.js';
import { MAX_ATTEMPTS, ReadAttempts } from './read-attempts.js';
import { fetchSources } from './fetch-sources.js';
import { pendingUids, type PendingIn } from './pending-mail.js';
import { backoffMs } from '../../core/sleep.js';

/** Fetch sources in chunks of at most this many bytes, so a batch of big mails stays bounded in memory. */
const CHUNK_BYTES = 32 * 1024 * 1024;
const RETRY_MS = 2000;
/** A folder that stays caught up rewrites its checkpoint's caughtUpAt at most this often. */
const CAUGHT_UP_REFRESH_MS = 60 * 60 * 1000;

export interface FolderWatcherDeps {
  ctx: ConnectorContext;
  options: EmailOptions;
  mailbox: MailboxOptions;
  folder: string;
  normalize: NormalizeDeps;
  report(state: ConnectorState, detail?: string): void;
  /** The mailbox lease: IMAP flags and the UID checkpoint are written only while it is valid. */
  fence: Fence;
  /**
   * `uidValidity:uid` of mail of this folder parked as a dead letter whose parked flags the
   * server has not confirmed yet: read again, it is flagged, not parked again. Owned by the
   * connector, so it outlives this watcher (a lost and retaken lease starts a new one).
   */
  unflagged: Set<string>;
}

interface MessageMeta {
  uid: number;
  size: number;
  flags: Set<string>;
}

export class FolderWatcher {
  private client?: ImapFlow;
  private stopped = false;
  private wakeUp?: () => void;
  private syncing?: Promise<void>;
  private again = false;
  private reselect = false;
  private loop?: ConnectorLoop;
  private readonly checkpoints: CheckpointStore;
  private readonly label: string;
  private readonly acknowledgeIn: AcknowledgeIn;
  private readonly pendingIn: PendingIn;
  /** Consecutive failed connects or syncs: drives the reconnect backoff. */
  private failures = 0;
  /** Failed reads per UID: kept across sessions, since a failed read may end one. */
  private readonly attempts: ReadAttempts;
  /** UIDs of this sync left for a later one; the checkpoint stays below them. */
  private readonly deferred = new Set<number>();
  private retryTimer?: NodeJS.Timeout;

  constructor(private readonly d: FolderWatcherDeps) {
    this.checkpoints = new CheckpointStore(d.ctx.state.fencedBy(d.fence), d.mailbox.address, d.folder);
    this.label = `${d.mailbox.address}/${d.folder}`;
    this.attempts = new ReadAttempts(d.ctx.log, this.label);
    this.pendingIn = { processedKeyword: d.options.processedKeyword, nothingDeferred: () => this.deferred.size === 0, save: (cp) => this.checkpoints.save(cp) };
    this.acknowledgeIn = { mailbox: d.mailbox, options: d.options, fence: d.fence, log: d.ctx.log, label: this.label };
  }

  start(): void {
    // Supervised: a session loop that ends or throws is noticed and started again with backoff.
    this.loop = this.d.ctx.run(`imap:${this.label}`, () => this.run());
  }

  /** Finishes the mail in hand (publish, acknowledge, checkpoint), then logs out. */
  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.retryTimer);
    this.wakeUp?.();
    await this.loop?.stop();
  }

  private async run(): Promise<void> {
    const { ctx, mailbox, options } = this.d;
    while (!this.stopped) {
      const client = new ImapFlow({
        host: mailbox.imap.host,
        port: mailbox.imap.port,
        secure: mailbox.imap.secure,
        doSTARTTLS: mailbox.imap.secure ? undefined : mailbox.imap.starttls,
        tls: { rejectUnauthorized: mailbox.imap.rejectUnauthorized },
        auth: { user: mailbox.imap.user, pass: mailbox.imap.pass },
        logger: false,
        maxIdleTime: options.idleRestartMs,
        // Our commands come in quick bursts: go back to IDLE soon after, so new mail is announced at once.
        autoIdleDelay: 50,
      });
      this.client = client;
      const closed = new Promise<void>((resolve) => client.once('close', () => resolve()));
      const woken = new Promise<void>((resolve) => (this.wakeUp = resolve));
      client.on('error', (err: Error) => ctx.log.warn({ folder: this.label, err: errorMessage(err) }, 'imap connection error'));
      let poll: NodeJS.Timeout | undefined;
      // Why this session ended, when it failed: decided once, in the catch below, for this
      // iteration only (a client event may fire more than once; this is not set from one).
      let failure: { state: ConnectorState; detail: string } | undefined;
      try {
        await client.connect();
        client.on('exists', () => void this.trigger()); // eslint-disable-line @typescript-eslint/no-floating-promises -- trigger() never rejects: a failed sync is reported and retried inside it
        // The folder was deleted or renamed under us: the next sync reopens it (or waits for it).
        client.on('mailboxClose', () => void this.trigger(true)); // eslint-disable-line @typescript-eslint/no-floating-promises -- trigger() never rejects: a failed sync is reported and retried inside it
        // The poll re-selects the folder: a folder deleted and recreated under an open session is
        // not always announced, and SELECT is what reveals the new UIDVALIDITY.
        poll = setInterval(() => void this.trigger(true), options.pollIntervalMs); // eslint-disable-line @typescript-eslint/no-floating-promises -- trigger() never rejects: a failed sync is reported and retried inside it
        await this.trigger(true);
        await Promise.race([closed, woken]);
      } catch (err) {
        this.failures++;
        failure = sessionFailure(err, this.label, this.d.mailbox.imap.pass);
        this.d.report(failure.state, failure.detail);
      } finally {
        if (poll) clearInterval(poll);
        await this.syncing?.catch(() => {});
        await client.logout().catch(() => client.close());
      }
      if (!this.stopped) {
        // A failed connect keeps its own report through the close and the backoff: a refused
        // login stays `auth_failed` (it flipped to `disconnected` here, and ops never learned the
        // password was wrong) until a login succeeds and the sync reports `connected`.
        if (!failure) this.d.report('disconnected', `${this.label}: connection closed; reconnecting`);
        await sleep(backoffMs(Math.min(this.failures, 10), 250, options.reconnectMaxMs), () => this.stopped, (wake) => (this.wakeUp = wake));
      }
    }
  }

  /** Runs a sync now, or once more after the running one (an IDLE notification during a sync is not lost). */
  private trigger(reselect = false): Promise<void> {
    this.reselect ||= reselect;
    if (this.syncing) {
      this.again = true;
      return this.syncing;
    }
    this.syncing = (async () => {
      try {
        do {
          this.again = false;
          const reopen = this.reselect;
          this.reselect = false;
          await this.sync(reopen);
        } while (this.again && !this.stopped);
        this.failures = 0;
      } catch (err) {
        if (this.stopped) return;
        this.failures++;
        this.d.report('stalled', `${this.label}: ${errorMessage(err)}`);
        this.d.ctx.log.warn({ folder: this.label, err: errorMessage(err) }, 'mail sync failed; starting a new IMAP session');
        // A fresh session after a backoff: some servers keep failing a session whose selected
        // folder was deleted and recreated (Dovecot answers SERVERBUG), and the reconnect also
        // re-reads everything from the checkpoint.
        this.client?.close();
      } finally {
        this.syncing = undefined;
      }
    })();
    return this.syncing;
  }

  private async sync(reselect: boolean): Promise<void> {
    const client = this.client;
    if (!client?.usable || this.stopped) return;
    if (reselect || !client.mailbox || client.mailbox.path !== this.d.folder) {
      try {
        await client.mailboxOpen(this.d.folder);
      } catch (err) {
        throw new Error(`cannot open folder "${this.d.folder}": ${(err as { responseText?: string }).responseText ?? errorMessage(err)}`);
      }
      if (this.d.mailbox.afterProcessing === 'move') await ensureProcessedFolder(client, this.d.mailbox.processedFolder);
    }
    const mb = client.mailbox;
    if (!mb) return;
    const uidValidity = String(mb.uidValidity);
    let cp = await this.checkpoints.load();
    if (!cp || cp.uidValidity !== uidValidity) {
      const old = cp;
      cp = scanCheckpoint(old, uidValidity, Number(mb.uidNext ?? 1), this.d.options.firstRun);
      if (old) {
        const how = cp.since ? `unprocessed mail received since ${cp.since.slice(0, 10)}` : `the first-run rule (${cp.filter}): it was never fully read`;
        this.d.ctx.log.warn({ folder: this.label, from: old.uidValidity, to: uidValidity }, `UIDVALIDITY changed: stored UIDs are void; rescanning the folder, taking ${how}`);
      }
      await this.checkpoints.save(cp);
    }
    if (this.attempts.under(uidValidity)) {
      // Mail parked under another UIDVALIDITY is other mail now (its flags, if any, went with it).
      for (const key of this.d.unflagged) if (!key.startsWith(`${uidValidity}:`)) this.d.unflagged.delete(key);
    }
    this.deferred.clear();
    this.d.report('connected');
    const startUid = cp.lastUid;
    // Past deferred mail the checkpoint cannot move, so the sync keeps its own place.
    let cursor = cp.lastUid;
    while (!this.stopped && client.usable) {
      const searchedAt = Date.now();
      const uids = await pendingUids(client, cp, cursor, this.pendingIn);
      if (uids.length === 0) {
        if (this.deferred.size === 0) await this.caughtUp(cp, searchedAt, cp.lastUid !== startUid);
        break;
      }
      const batch = uids.slice(0, this.d.options.batchSize);
      await this.processBatch(client, cp, batch);
      cursor = batch[batch.length - 1]!;
    }
    if (this.deferred.size > 0 && !this.stopped) {
      this.retryTimer ??= setTimeout(() => {
        this.retryTimer = undefined;
        void this.trigger(true); // eslint-disable-line @typescript-eslint/no-floating-promises -- trigger() never rejects: a failed sync is reported and retried inside it
      }, RETRY_MS);
    }
  }

  private async caughtUp(cp: Checkpoint, at: number, advanced: boolean): Promise<void> {
    if (!advanced && cp.caughtUpAt && at - Date.parse(cp.caughtUpAt) < CAUGHT_UP_REFRESH_MS) return;
    cp.caughtUpAt = new Date(at).toISOString();
    await this.checkpoints.save(cp);
  }

  private async processBatch(client: ImapFlow, cp: Checkpoint, batch: number[]): Promise<void> {
    const keyword = this.d.options.processedKeyword;
    this.d.ctx.log.debug({ folder: this.label, uids: `${batch[0]}..${batch[batch.length - 1]}`, count: batch.length }, 'reading mail batch');
    const metas: MessageMeta[] = [];
    for await (const m of client.fetch(batch.join(','), { uid: true, flags: true, size: true }, { uid: true })) {
      metas.push({ uid: m.uid, size: m.size ?? 0, flags: m.flags ?? new Set() });
    }
    metas.sort((a, b) => a.uid - b.uid);
    const handled = new Set<number>();
    // Parked, flags still to set; parked and flagged already (nothing more to tell the server).
    const parked = new Set<number>();
    const settled = new Set<number>();
    let chunk: MessageMeta[] = [];
    let chunkBytes = 0;
    const flush = async () => {
      const done = await this.ingestChunk(client, cp, chunk);
      for (const uid of done.handled) handled.add(uid);
      for (const uid of done.parked) parked.add(uid);
      for (const uid of done.settled) settled.add(uid);
      chunk = [];
      chunkBytes = 0;
    };
    for (const m of metas) {
      if (this.stopped) break;
      if (m.flags.has(keyword)) {
        handled.add(m.uid); // already ours (restored or copied back): acknowledge, do not publish again
        this.d.unflagged.delete(parkKey(cp, m.uid));
        if (m.flags.has(this.d.options.parkedKeyword)) {
          // Parked before and flagged: it must stay unread where it is, not be marked handled.
          settled.add(m.uid);
          continue;
        }
        this.d.ctx.dropped('duplicate', `${this.where(m.uid)} carries ${keyword}: processed before`);
        continue;
      }
      if (chunk.length > 0 && chunkBytes + m.size > CHUNK_BYTES) await flush();
      chunk.push(m);
      chunkBytes += Math.min(m.size, this.d.options.maxMessageBytes);
    }
    if (chunk.length > 0 && !this.stopped) await flush();
    if (handled.size > 0) {
      await confirmUidValidity(client, this.d.folder, cp);
      await acknowledge(client, this.acknowledgeIn, [...handled].filter((uid) => !parked.has(uid) && !settled.has(uid)), [...parked]);
      for (const uid of parked) this.d.unflagged.delete(parkKey(cp, uid));
    }
    // The checkpoint moves only over handled mail: a mail handled out of order (ours already, or
    // after a deferred one) is read again next time and skipped by its keyword.
    const present = new Set(metas.map((m) => m.uid));
    let mark = cp.lastUid;
    for (const uid of batch) {
      if (uid <= mark) continue;
      if (present.has(uid) && !handled.has(uid)) break;
      mark = uid; // handled, or expunged between SEARCH and FETCH
    }
    for (const uid of this.deferred) if (uid > cp.lastUid) mark = Math.min(mark, uid - 1);
    if (mark > cp.lastUid) {
      cp.lastUid = mark;
      await this.checkpoints.save(cp);
    }
  }

  /**
   * Fetches and publishes a chunk in UID order; returns the UIDs handled (stops early when
   * stopping), and among them those parked as dead letters: `settled` when their parked flags
   * are set already, `parked` when they are still to be set.
   */
  private async ingestChunk(client: ImapFlow, cp: Checkpoint, chunk: MessageMeta[]): Promise<{ handled: number[]; parked: number[]; settled: number[] }> {
    const max = this.d.options.maxMessageBytes;
    const spent = new Set(chunk.filter((m) => this.attempts.spent(m.uid)).map((m) => m.uid));
    const raw = await fetchSources(client, {
      whole: chunk.filter((m) => m.size <= max && !spent.has(m.uid)).map((m) => m.uid),
      oversized: chunk.filter((m) => m.size > max && !spent.has(m.uid)),
      maxBytes: max,
      mailbox: this.d.mailbox.address,
      folder: this.d.folder,
    }, (uid, error) => this.attempts.failed(uid, error));
    const handled: number[] = [];
    const parked: number[] = [];
    try {
      for (const m of chunk) {
        if (this.stopped) break;
        const key = parkKey(cp, m.uid);
        const r = raw.get(m.uid);
        if (this.d.unflagged.has(key)) {
          // Its dead letter is stored already; only the flags did not land: set them, park nothing.
          this.d.ctx.log.info({ folder: this.label, uid: m.uid }, 'mail parked before but not flagged yet: flagging it, not parking it again');
          parked.push(m.uid);
        } else if (r) {
          const outcome = await publishMail(this.d.ctx, this.d.normalize, this.d.mailbox.address, this.where(m.uid), r.bytes, r.note);
          if (outcome === 'parked') {
            this.d.unflagged.add(key);
            parked.push(m.uid);
          }
        } else if (spent.has(m.uid)) {
          await this.parkUnreadable(cp, m);
          this.d.unflagged.add(key);
          parked.push(m.uid);
        } else {
          this.attempts.failed(m.uid, 'the server returned no content for it');
          this.deferred.add(m.uid);
          continue;
        }
        this.attempts.forget(m.uid);
        handled.push(m.uid);
      }
    } finally {
      // Flag parked mail now, not with the rest of the batch: a failure later in the batch (or a
      // crash) must not leave a stored dead letter whose mail looks unread and new. When even
      // this fails, `unflagged` keeps the mail from being parked again when it is read again.
      if (parked.length > 0) await flagParked(client, this.acknowledgeIn, this.d.folder, cp, parked, this.d.unflagged);
    }
    const settled = parked.filter((uid) => !this.d.unflagged.has(parkKey(cp, uid)));
    return { handled, parked: parked.filter((uid) => !settled.includes(uid)), settled };
  }

  /** Parked by its place on the server: there are no bytes to park. */
  private async parkUnreadable(cp: Checkpoint, m: MessageMeta): Promise<void> {
    const a = this.attempts.of(m.uid);
    const { address } = this.d.mailbox;
    await this.d.ctx.deadLetter(
      `email ${this.where(m.uid)}: the server returned no content for this mail in ${a?.count ?? MAX_ATTEMPTS} attempts (last: ${a?.error ?? 'unknown'}); not published`,
      { mailbox: address, folder: this.d.folder, uidValidity: cp.uidValidity, uid: m.uid, size: m.size },
      { code: 'unreadable_mail' },
    );
  }

  private where(uid: number): string {
    return `${this.d.mailbox.address} folder ${this.d.folder} uid ${uid}`;
  }
}

function sleep(ms: number, stopped: () => boolean, onWake: (wake: () => void) => void): Promise<void> {
  return new Promise((resolve) => {
    if (stopped()) return resolve();
    const t = setTimeout(resolve, ms);
    onWake(() => {
      clearTimeout(t);
      resolve();
    });
  });
}
