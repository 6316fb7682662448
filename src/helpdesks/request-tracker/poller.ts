/**
 * Request Tracker → omnigate: agents' work is read from RT's transactions, in id order, from a
 * checkpoint kept in omnigate's state bucket (`cursor`). Transaction ids are monotonic, so "id >
 * cursor" misses nothing and a restart continues where the last confirmed answer left off; the
 * host's idempotency key (`helpdesk:<id>:txn-<transaction id>`) makes an answer taken again after
 * a crash before the checkpoint a no-op.
 *
 * What is taken: `Correspond` (a public answer → a reply on the customer's channel), `Comment`
 * (→ an internal note), `Status` changes (→ omnigate status, mapped). What is not: everything
 * our own RT user wrote (the echo filter), and what RT_System did on its own (a scrip opening
 * a ticket after a correspondence is RT's consequence of a message, not an agent's decision).
 * Transactions of RT tickets without our External ID are not ours (mail that reached RT directly).
 *
 * An optional signed webhook (the RT scrip in the docs) only wakes the poller: the request is
 * answered before RT is called back, because RT runs scrips while it holds its SQLite write lock.
 */
import { createHmac, timingSafeEqual } from 'node:crypto';
import type { Logger } from '../../core/logger.js';
import type { MediaStore } from '../../core/media.js';
import type { Attachment, OutboundAttachment, TicketStatus } from '../../core/schema.js';
import { backoffMs, sleep } from '../../core/sleep.js';
import type { AgentAnswer, HelpdeskContext } from '../contract.js';
import { RtRefusedError, type RtClient, type RtTransaction } from './client.js';
import { DEFAULT_STATUS_FROM_RT, type RequestTrackerOptions } from './options.js';
import { MERGE_TYPES, MergeSets, isMerge } from './merges.js';

const CURSOR_KEY = 'cursor';
/** RT's own user: its transactions are consequences of someone else's (scrips), never an agent's. */
const RT_SYSTEM = 'RT_System';

export class RtPoller {
  private readonly statusFromRt: Record<string, TicketStatus>;
  /** RT ticket id → the omnigate ticket id in its External ID field ('' when it has none). */
  private readonly externalIds = new Map<number, string>();
  private readonly merges: MergeSets;
  private wake?: () => void;
  /** A nudge arrived during a pass: run the next one without waiting. */
  private pending = false;
  private abort?: AbortController;
  private running?: Promise<void>;
  failures = 0;

  constructor(
    private readonly client: RtClient,
    private readonly o: RequestTrackerOptions,
    private readonly ctx: Pick<HelpdeskContext, 'takeAnswer' | 'taken' | 'state' | 'log' | 'signal'>,
    private readonly media: MediaStore,
    private readonly onHealth: (ok: boolean, detail?: string) => void,
  ) {
    this.statusFromRt = { ...DEFAULT_STATUS_FROM_RT, ...o.statusFromRt };
    this.merges = new MergeSets(client);
  }

  private get log(): Logger {
    return this.ctx.log;
  }

  start(): void {
    if (this.running) return;
    this.merges.forget(); // merges read by another replica's poller were never seen here
    const abort = new AbortController();
    this.abort = abort;
    const onStop = () => abort.abort();
    this.ctx.signal.addEventListener('abort', onStop, { once: true });
    this.running = this.loop(abort.signal).finally(() => this.ctx.signal.removeEventListener('abort', onStop));
  }

  async stop(): Promise<void> {
    this.abort?.abort();
    this.wake?.();
    await this.running;
    this.running = undefined;
  }

  /** Poll now (webhook doorbell); harmless while a pass is running: the next one starts at once. */
  nudge(): void {
    this.pending = true;
    this.wake?.();
  }

  private async loop(signal: AbortSignal): Promise<void> {
    while (!signal.aborted) {
      this.pending = false;
      try {
        const took = await this.pass(signal);
        this.failures = 0;
        this.onHealth(true);
        if (took >= this.o.pollBatch) continue; // more waiting: no pause
      } catch (err) {
        this.failures++;
        const delay = backoffMs(this.failures, this.o.pollInterval, Math.max(60_000, this.o.pollInterval));
        this.log.warn({ err, failures: this.failures, retryInMs: delay }, 'RT poll failed; the cursor stays where it was');
        this.onHealth(false, (err as Error).message);
        await this.pause(delay, signal);
        continue;
      }
      if (!this.pending) await this.pause(this.o.pollInterval, signal);
    }
  }

  private async pause(ms: number, signal: AbortSignal): Promise<void> {
    await new Promise<void>((resolve) => {
      this.wake = resolve;
      sleep(ms, signal).then(resolve, resolve);
    });
    this.wake = undefined;
  }

  /** One poll: take what agents did since the cursor, advancing it after each. Returns how many transactions it read. */
  async pass(signal: AbortSignal): Promise<number> {
    let cursor = await this.cursor();
    const txns = await this.client.transactionsAfter(cursor, { types: ['Correspond', 'Comment', 'Status', ...MERGE_TYPES], limit: this.o.pollBatch });
    for (const txn of txns) {
      if (signal.aborted) break;
      await this.handle(txn);
      cursor = txn.id;
      await this.ctx.state.put(CURSOR_KEY, String(cursor));
    }
    return txns.length;
  }

  private async cursor(): Promise<number> {
    const stored = await this.ctx.state.get(CURSOR_KEY);
    if (stored) return Number(stored.value);
    const start = this.o.startFrom === 'now' ? await this.client.lastTransactionId() : this.o.startFrom;
    await this.ctx.state.put(CURSOR_KEY, String(start));
    this.log.info({ cursor: start }, `RT poller starts after transaction ${start} (startFrom: ${this.o.startFrom})`);
    return start;
  }

  private async handle(txn: RtTransaction): Promise<void> {
    if (MERGE_TYPES.includes(txn.type)) {
      // Whoever merged (an agent, a scrip, this adapter): the sets of merged tickets changed.
      if (isMerge(txn)) this.merges.forget();
      return;
    }
    if (txn.creator === this.o.user) {
      this.log.debug({ transaction: txn.id, type: txn.type }, 'RT transaction skipped: written by the adapter itself (echo)');
      return;
    }
    if (txn.creator === RT_SYSTEM) {
      this.log.debug({ transaction: txn.id, type: txn.type }, 'RT transaction skipped: made by RT itself (a scrip), not by an agent');
      return;
    }
    if (txn.type === 'Status' && txn.field !== 'Status') return;
    const targets = await this.targets(txn.ticketId);
    if (targets.length === 0) {
      this.log.debug({ transaction: txn.id, rtTicket: txn.ticketId }, 'RT transaction skipped: its ticket has no External ID (not an omnigate ticket)');
      return;
    }
    // Read from RT (and its files stored) once, however many tickets the answer goes to.
    let said: Promise<Said> | undefined;
    const read = (ticketId: string) => (said ??= this.said(txn, ticketId));
    for (const target of targets) {
      // The surviving ticket's answer keeps the key it always had; a merged one's is its own.
      const answerId = target.rtTicket === txn.ticketId ? `txn-${txn.id}` : `txn-${txn.id}-${target.rtTicket}`;
      if (await this.ctx.taken(answerId)) continue;
      const answer = await this.answer(txn, answerId, target.ticketId, target.rtTicket, read);
      if (!answer) return;
      const outcome = await this.ctx.takeAnswer(answer);
      const merged = target.rtTicket === txn.ticketId ? undefined : target.rtTicket;
      if (outcome.outcome === 'taken') {
        this.log.info({ transaction: txn.id, rtTicket: txn.ticketId, mergedRtTicket: merged, ticketId: outcome.ticketId, kind: answer.kind, agent: txn.creator, replayed: outcome.replayed }, `RT ${txn.type} taken as ${answer.kind}${merged ? ' (for a ticket merged into it)' : ''}`);
      } else if (outcome.outcome === 'refused') {
        this.log.warn({ transaction: txn.id, rtTicket: txn.ticketId, mergedRtTicket: merged, reason: outcome.reason }, `RT ${txn.type} refused by omnigate`);
      } else if (outcome.outcome === 'unknown_ticket') {
        this.log.info({ transaction: txn.id, rtTicket: txn.ticketId, mergedRtTicket: merged }, 'RT transaction skipped: omnigate has no ticket for it');
      }
    }
  }

  /**
   * The omnigate tickets an agent's transaction on this RT ticket answers: its own (External ID)
   * and those of the tickets merged into it. RT merges the requestors too and mails every one of
   * them an agent's correspondence; before, only the surviving ticket's customer got the answer,
   * and a customer whose ticket was merged away (or into a ticket not from omnigate) never did.
   */
  private async targets(rtTicket: number): Promise<Array<{ rtTicket: number; ticketId: string }>> {
    const out: Array<{ rtTicket: number; ticketId: string }> = [];
    const own = await this.externalId(rtTicket);
    if (own) out.push({ rtTicket, ticketId: own });
    for (const merged of await this.merges.of(rtTicket)) {
      const ticketId = this.ours(merged.customFields[this.o.externalIdField]?.[0] ?? '');
      if (ticketId && !out.some((t) => t.ticketId === ticketId)) out.push({ rtTicket: merged.id, ticketId });
    }
    return out;
  }

  /** The omnigate ticket id in an External ID value; '' for another installation's (other prefix). */
  private ours(stored: string): string {
    return stored.startsWith(this.o.externalIdPrefix) ? stored.slice(this.o.externalIdPrefix.length) : '';
  }

  private async answer(txn: RtTransaction, id: string, ticketId: string, rtTicket: number, read: (ticketId: string) => Promise<Said>): Promise<AgentAnswer | null> {
    const base = { id, externalId: String(rtTicket), ticketId, agent: { id: txn.creator, name: txn.creator } };
    if (txn.type === 'Status') {
      const status = this.statusFromRt[txn.newValue ?? ''];
      if (!status) {
        this.log.info({ transaction: txn.id, rtStatus: txn.newValue }, 'RT status has no omnigate counterpart in statusFromRt: not synced');
        return null;
      }
      return { ...base, kind: 'status', status };
    }
    const { text, html, files } = await read(ticketId);
    if (txn.type === 'Comment') return text ? { ...base, kind: 'note', text } : null;
    if (!text && files.length === 0) return null;
    const attachments = await Promise.all(files.map((f) => this.referenced(f, ticketId)));
    return { ...base, kind: 'reply', text: text || attachments.map((a) => a.name).join(', '), ...(html ? { html } : {}), attachments };
  }

  /**
   * A transaction's text and files, read from RT once. The bytes are stored once, with the
   * reference of the first ticket that needs them; each further ticket only gets a reference of
   * its own (media.ts: the bytes are shared, a name and its owner are per ticket).
   */
  private async said(txn: RtTransaction, ticketId: string): Promise<Said> {
    const parts = await this.client.transactionParts(txn.id);
    const plain = parts.find((p) => p.contentType === 'text/plain' && p.content !== undefined)?.content;
    const html = parts.find((p) => p.contentType === 'text/html' && p.content !== undefined)?.content;
    const text = (plain ?? (html ? stripHtml(html) : '')).trim();
    const files: Said['files'] = [];
    if (txn.type !== 'Correspond') return { text, files };
    for (const part of parts.filter((p) => p.fileName)) {
      const bytes = await this.client.attachmentBytes(part.id);
      files.push({ ticketId, stored: await this.media.put(bytes, { name: part.fileName!, mimeType: part.contentType, ticketId }) });
    }
    return { text, ...(html && !plain ? { html } : {}), files };
  }

  private async referenced(f: Said['files'][number], ticketId: string): Promise<OutboundAttachment> {
    const s = f.stored;
    const ref = f.ticketId === ticketId ? s.ref : await this.media.reference({ objectKey: s.objectKey!, sha256: s.sha256!, size: s.size, name: s.name, mimeType: s.mimeType, ticketId });
    return { objectKey: s.objectKey!, ref, name: s.name, mimeType: s.mimeType, size: s.size, sha256: s.sha256 };
  }

  private async externalId(rtTicket: number): Promise<string> {
    const known = this.externalIds.get(rtTicket);
    if (known !== undefined) return known;
    let value = '';
    try {
      const t = await this.client.getTicket(rtTicket);
      const stored = t.customFields[this.o.externalIdField]?.[0] ?? '';
      // Another installation's ticket (other prefix) is not ours.
      value = this.ours(stored);
    } catch (err) {
      // A ticket we may not see (rights) is not one of ours.
      if (!(err instanceof RtRefusedError)) throw err;
    }
    // Only a found id is cached: a ticket created a moment ago may get its field later.
    if (value) {
      if (this.externalIds.size > 10_000) this.externalIds.clear();
      this.externalIds.set(rtTicket, value);
    }
    return value;
  }
}

/** What an agent's transaction says, read once (see RtPoller.said). */
interface Said {
  text: string;
  /** Only when there is no plain text part. */
  html?: string;
  /** Stored with the reference of `ticketId`. */
  files: Array<{ ticketId: string; stored: Attachment }>;
}

/** Verifies the RT webhook scrip's `X-RT-Signature: sha256=<hex HMAC-SHA256(secret, body)>`. */
export function validRtSignature(secret: string, body: Buffer, header: string | undefined): boolean {
  if (!header?.startsWith('sha256=')) return false;
  const expected = Buffer.from(createHmac('sha256', secret).update(body).digest('hex'));
  const got = Buffer.from(header.slice('sha256='.length));
  return got.length === expected.length && timingSafeEqual(got, expected);
}

function stripHtml(html: string): string {
  return html
    .replace(/<br\s*\/?>/gi, '\n')
    .replace(/<\/p>/gi, '\n\n')
    .replace(/<[^>]+>/g, '')
    .replace(/&nbsp;/g, ' ')
    .replace(/&lt;/g, '<')
    .replace(/&gt;/g, '>')
    .replace(/&quot;/g, '"')
    .replace(/&#39;/g, "'")
    .replace(/&amp;/g, '&')
    .replace(/\n{3,}/g, '\n\n');
}
