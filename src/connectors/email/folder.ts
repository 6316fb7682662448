/**
 * Reads one IMAP folder: its own imapflow connection, IDLE for new mail (re-issued before the
 * 29-minute mark), a fallback poll, reconnect with backoff. Each sync takes the mail above the
 * checkpoint in UID order, in batches: fetch, publish (resolves once JetStream stored it), then
 * mark it \Seen + our keyword (or move it), then advance the checkpoint. A crash anywhere in
 * between means the mail is read again and the Message-ID-based event id makes it a duplicate.
 */
import { ImapFlow } from 'imapflow';
import type { ConnectorState } from '../../core/schema.js';
import { errorMessage } from '../../core/errors.js';
import { InvalidEventError, type ConnectorContext } from '../contract.js';
import { CheckpointStore, type Checkpoint } from './checkpoint.js';
import { normalizeMail, type NormalizeDeps } from './normalize.js';
import type { EmailOptions, MailboxOptions } from './index.js';

/** Fetch sources in chunks of at most this many bytes, so a batch of big mails stays bounded in memory. */
const CHUNK_BYTES = 32 * 1024 * 1024;

export interface FolderWatcherDeps {
  ctx: ConnectorContext;
  options: EmailOptions;
  mailbox: MailboxOptions;
  folder: string;
  normalize: NormalizeDeps;
  report(state: ConnectorState, detail?: string): void;
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
  private loop?: Promise<void>;
  private readonly checkpoints: CheckpointStore;
  private readonly label: string;
  /** Consecutive failed connects or syncs: drives the reconnect backoff. */
  private failures = 0;

  constructor(private readonly d: FolderWatcherDeps) {
    this.checkpoints = new CheckpointStore(d.ctx.state, d.mailbox.address, d.folder);
    this.label = `${d.mailbox.address}/${d.folder}`;
  }

  start(): void {
    this.loop = this.run();
  }

  /** Finishes the mail in hand (publish, acknowledge, checkpoint), then logs out. */
  async stop(): Promise<void> {
    this.stopped = true;
    this.wakeUp?.();
    await this.loop;
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
      try {
        await client.connect();
        client.on('exists', () => void this.trigger());
        // The folder was deleted or renamed under us: the next sync reopens it (or waits for it).
        client.on('mailboxClose', () => void this.trigger(true));
        // The poll re-selects the folder: a folder deleted and recreated under an open session is
        // not always announced, and SELECT is what reveals the new UIDVALIDITY.
        poll = setInterval(() => void this.trigger(true), options.pollIntervalMs);
        await this.trigger(true);
        await Promise.race([closed, woken]);
      } catch (err) {
        this.failures++;
        const e = err as { authenticationFailed?: boolean; responseText?: string };
        if (e.authenticationFailed) this.d.report('auth_failed', `${this.label}: IMAP login refused${e.responseText ? ` (${e.responseText})` : ''}`);
        else this.d.report('disconnected', `${this.label}: ${errorMessage(err)}`);
      } finally {
        if (poll) clearInterval(poll);
        await this.syncing?.catch(() => {});
        await client.logout().catch(() => client.close());
      }
      if (!this.stopped) {
        this.d.report('disconnected', `${this.label}: connection closed; reconnecting`);
        await sleep(Math.min(options.reconnectMaxMs, 250 * 2 ** Math.min(this.failures, 10)), () => this.stopped, (wake) => (this.wakeUp = wake));
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
      if (this.d.mailbox.afterProcessing === 'move') await this.ensureProcessedFolder(client);
    }
    const mb = client.mailbox;
    if (!mb) return;
    const uidValidity = String(mb.uidValidity);
    let cp = await this.checkpoints.load();
    if (!cp || cp.uidValidity !== uidValidity) {
      if (cp) {
        this.d.ctx.log.warn({ folder: this.label, from: cp.uidValidity, to: uidValidity }, 'UIDVALIDITY changed: stored UIDs are void; rescanning the folder for unprocessed mail');
      }
      const filter = !cp && this.d.options.firstRun === 'unseen' ? 'unseen' : 'unprocessed';
      cp = { uidValidity, lastUid: 0, filterUntil: Math.max(0, Number(mb.uidNext ?? 1) - 1), filter };
      await this.checkpoints.save(cp);
    }
    this.d.report('connected');
    while (!this.stopped && client.usable) {
      const uids = await this.pending(client, cp);
      if (uids.length === 0) break;
      await this.processBatch(client, cp, uids.slice(0, this.d.options.batchSize));
    }
  }

  /** UIDs above the checkpoint, oldest first; inside the one-time scan range only those the filter admits. */
  private async pending(client: ImapFlow, cp: Checkpoint): Promise<number[]> {
    const all = ((await client.search({ uid: `${cp.lastUid + 1}:*` }, { uid: true })) || []).filter((u) => u > cp.lastUid);
    all.sort((a, b) => a - b);
    if (!cp.filterUntil || cp.lastUid >= cp.filterUntil) return all;
    const criteria = {
      uid: `${cp.lastUid + 1}:${cp.filterUntil}`,
      unKeyword: this.d.options.processedKeyword,
      ...(cp.filter === 'unseen' ? { seen: false } : {}),
    };
    const admitted = new Set((await client.search(criteria, { uid: true })) || []);
    const out = all.filter((u) => u > cp.filterUntil! || admitted.has(u));
    if (!out.some((u) => u <= cp.filterUntil!)) {
      // The scan range holds nothing more to take: close it.
      cp.lastUid = Math.max(cp.lastUid, cp.filterUntil);
      delete cp.filterUntil;
      delete cp.filter;
      await this.checkpoints.save(cp);
    }
    return out;
  }

  private async processBatch(client: ImapFlow, cp: Checkpoint, batch: number[]): Promise<void> {
    const keyword = this.d.options.processedKeyword;
    this.d.ctx.log.debug({ folder: this.label, uids: `${batch[0]}..${batch[batch.length - 1]}`, count: batch.length }, 'reading mail batch');
    const metas: MessageMeta[] = [];
    for await (const m of client.fetch(batch.join(','), { uid: true, flags: true, size: true }, { uid: true })) {
      metas.push({ uid: m.uid, size: m.size ?? 0, flags: m.flags ?? new Set() });
    }
    metas.sort((a, b) => a.uid - b.uid);
    const done: number[] = [];
    let chunk: MessageMeta[] = [];
    let chunkBytes = 0;
    const flush = async () => {
      const handled = await this.ingestChunk(client, chunk);
      done.push(...handled);
      const complete = handled.length === chunk.length;
      chunk = [];
      chunkBytes = 0;
      return complete;
    };
    let complete = true;
    for (const m of metas) {
      if (m.flags.has(keyword)) {
        done.push(m.uid); // already ours (restored or copied back): acknowledge, do not publish again
        continue;
      }
      if (chunk.length > 0 && chunkBytes + m.size > CHUNK_BYTES) {
        complete = await flush();
        if (!complete) break;
      }
      chunk.push(m);
      chunkBytes += Math.min(m.size, this.d.options.maxMessageBytes);
    }
    if (complete && chunk.length > 0) complete = await flush();
    if (done.length > 0) await this.acknowledge(client, done);
    // Mail expunged between SEARCH and FETCH has no meta: it is gone, step over it too.
    const last = complete ? batch[batch.length - 1]! : Math.max(cp.lastUid, ...done);
    cp.lastUid = Math.max(cp.lastUid, last);
    await this.checkpoints.save(cp);
  }

  /** Fetches and publishes a chunk in UID order; returns the UIDs handled (stops early when stopping). */
  private async ingestChunk(client: ImapFlow, chunk: MessageMeta[]): Promise<number[]> {
    const max = this.d.options.maxMessageBytes;
    const whole = chunk.filter((m) => m.size <= max).map((m) => m.uid);
    const oversized = chunk.filter((m) => m.size > max).map((m) => m.uid);
    const raw = new Map<number, { bytes: Buffer; note?: string }>();
    // Collect first: issuing commands inside a running FETCH loop would deadlock imapflow.
    if (whole.length > 0) {
      for await (const m of client.fetch(whole.join(','), { uid: true, source: true }, { uid: true })) if (m.source) raw.set(m.uid, { bytes: m.source });
    }
    if (oversized.length > 0) {
      for await (const m of client.fetch(oversized.join(','), { uid: true, headers: true }, { uid: true })) {
        const size = chunk.find((c) => c.uid === m.uid)?.size ?? 0;
        const note = `[The mail is ${size} bytes, above the ${max}-byte limit: only its headers were read. Open it in the mailbox ${this.d.mailbox.address}, folder ${this.d.folder}.]`;
        if (m.headers) raw.set(m.uid, { bytes: Buffer.concat([m.headers, Buffer.from('\r\n')]), note });
      }
    }
    const handled: number[] = [];
    for (const m of chunk) {
      if (this.stopped) break;
      const r = raw.get(m.uid);
      if (r) await this.ingest(m.uid, r.bytes, r.note);
      handled.push(m.uid);
    }
    return handled;
  }

  private async ingest(uid: number, raw: Buffer, note?: string): Promise<void> {
    const { ctx, mailbox } = this.d;
    const where = `${mailbox.address} folder ${this.d.folder} uid ${uid}`;
    const n = await normalizeMail(raw, mailbox.address, this.d.normalize, note);
    if (n.kind === 'invalid') {
      await ctx.deadLetter(`email ${where}: ${n.reason}`, raw);
      return;
    }
    try {
      await ctx.publish(n.event);
    } catch (err) {
      if (!(err instanceof InvalidEventError)) throw err;
      await ctx.deadLetter(`email ${where}: ${err.message}`, raw);
    }
  }

  /** Tells the server the mail is done: only ever after its event was stored. */
  private async acknowledge(client: ImapFlow, uids: number[]): Promise<void> {
    const set = uids.join(',');
    const { mailbox, options } = this.d;
    if (mailbox.afterProcessing === 'move') {
      await client.messageFlagsAdd(set, [options.processedKeyword], { uid: true });
      await client.messageMove(set, mailbox.processedFolder, { uid: true });
    } else {
      await client.messageFlagsAdd(set, ['\\Seen', options.processedKeyword], { uid: true });
    }
  }

  private async ensureProcessedFolder(client: ImapFlow): Promise<void> {
    const folder = this.d.mailbox.processedFolder;
    const list = await client.list();
    if (!list.some((f) => f.path === folder)) await client.mailboxCreate(folder).catch(() => {});
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
