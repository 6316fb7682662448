/**
 * The retention sweeper: what stream and bucket limits cannot express. Streams age out by
 * themselves (`nats.retention` for OMNI_IN/OUT/STATUS, `retention.events` for OMNI_EVENTS,
 * `deadLetters.maxAge` for OMNI_DLQ: set at provisioning, bus.ts). A ticket must go whole — its
 * log subject, record, index entries and files — and only once it has been closed long enough,
 * and attachment bytes are shared by content; both are done here, by one replica at a time
 * (lease `retention`), every `retention.sweepInterval`.
 */
import type { Logger } from 'pino';
import type { Bus } from './bus.js';
import { acquireLease } from './lease.js';
import { Eraser, type ErasureOptions, type ErasureResult } from './erasure.js';
import { scanStream } from './stream-scan.js';
import { Buckets } from './subjects.js';
import { sleep } from './sleep.js';
import type { Supervisor } from './supervisor.js';

export interface RetentionOptions {
  /** Resolved/closed tickets older than this (by closedAt) are erased whole; 0 keeps them. */
  ticketsMs: number;
  /** Attachment objects older than this are deleted; 0 keeps them. */
  attachmentsMs: number;
  sweepIntervalMs: number;
  leaseTtlMs: number;
  holder: string;
  /** Ids of tickets closed before `cutoff` (the SQL read model answers from an index); default: scan the ticket bucket. */
  expiredTickets?: (cutoff: Date, limit: number) => Promise<string[]>;
  /** Removes the tickets' rows from the read model; returns rows per table. */
  eraseRows?: (ticketIds: string[]) => Promise<Record<string, number>>;
  /** Whether a ticket that is not expiring uses a file too (the read model knows; see ErasureOptions). */
  sharedElsewhere?: ErasureOptions['sharedElsewhere'];
}

/** Tickets erased per pass: a backlog (retention switched on for a year of history) drains over several passes. */
const BATCH = 500;

export interface SweepResult {
  tickets?: ErasureResult;
  attachments: number;
  attachmentRefs: number;
}

export class RetentionSweeper {
  private readonly eraser: Eraser;

  constructor(
    private readonly bus: Bus,
    private readonly o: RetentionOptions,
    private readonly log: Logger,
  ) {
    this.eraser = new Eraser(bus, log);
  }

  get enabled(): boolean {
    return this.o.ticketsMs > 0 || this.o.attachmentsMs > 0;
  }

  start(supervisor: Supervisor): void {
    if (!this.enabled) return;
    supervisor.run('retention.sweeper', async ({ signal, progress }) => {
      const lease = await acquireLease(this.bus.kv.leases, 'retention', { ttlMs: this.o.leaseTtlMs, holder: this.o.holder, signal, log: this.log });
      try {
        while (!signal.aborted && lease.valid()) {
          await this.sweep(Date.now());
          progress();
          await sleep(this.o.sweepIntervalMs, signal);
        }
      } finally {
        await lease.release();
      }
      if (!signal.aborted) throw new Error('lease retention lost; waiting to take it again');
    });
  }

  /** One pass: expired tickets, then expired attachments. */
  async sweep(now: number): Promise<SweepResult> {
    const result: SweepResult = { attachments: 0, attachmentRefs: 0 };
    if (this.o.ticketsMs > 0) {
      const cutoff = new Date(now - this.o.ticketsMs);
      const ids = await (this.o.expiredTickets ?? ((c, n) => this.expiredFromBucket(c, n)))(cutoff, BATCH);
      if (ids.length) {
        const options: ErasureOptions = { reason: 'retention', requestedBy: 'retention', sharedElsewhere: this.o.sharedElsewhere };
        const erased = await this.eraser.erase({ ticketIds: ids, identities: [] }, options);
        if (this.o.eraseRows) erased.erased.sql = await this.o.eraseRows(ids);
        await this.eraser.announce(erased, options);
        result.tickets = erased;
        this.log.info({ tickets: ids.length, closedBefore: cutoff.toISOString() }, 'retention: expired tickets erased');
      }
    }
    if (this.o.attachmentsMs > 0) Object.assign(result, await this.sweepAttachments(new Date(now - this.o.attachmentsMs)));
    return result;
  }

  /** Without a read model: every ticket record is read (what the read model exists to avoid). */
  private async expiredFromBucket(cutoff: Date, limit: number): Promise<string[]> {
    const out: string[] = [];
    const prefix = `$KV.${Buckets.tickets}.`;
    await scanStream(this.bus, `KV_${Buckets.tickets}`, { filter: `${prefix}>`, lastPerSubject: true }, (m) => {
      if (m.data.length === 0 || out.length >= limit) return;
      const t = JSON.parse(m.string()) as { id: string; status: string; closedAt?: string };
      if ((t.status === 'resolved' || t.status === 'closed') && t.closedAt && new Date(t.closedAt) < cutoff) out.push(t.id);
    });
    return out;
  }

  /**
   * Reference records older than the cutoff go; bytes older than the cutoff go unless a younger
   * reference still points at them (the same file sent again recently).
   */
  private async sweepAttachments(cutoff: Date): Promise<{ attachments: number; attachmentRefs: number }> {
    const store = this.bus.media;
    const infos = (await store.list()).filter((i) => !i.deleted);
    const young = new Set<string>();
    let attachmentRefs = 0;
    for (const info of infos.filter((i) => i.name.startsWith('ref/'))) {
      if (new Date(info.mtime) < cutoff) {
        await store.delete(info.name);
        attachmentRefs++;
        continue;
      }
      const bytes = await store.getBlob(info.name);
      const objectKey = bytes ? (JSON.parse(Buffer.from(bytes).toString('utf8')) as { objectKey?: string }).objectKey : undefined;
      if (objectKey) young.add(objectKey);
    }
    let attachments = 0;
    for (const info of infos.filter((i) => !i.name.startsWith('ref/'))) {
      if (new Date(info.mtime) >= cutoff || young.has(info.name)) continue;
      await store.delete(info.name);
      attachments++;
    }
    if (attachments || attachmentRefs) this.log.info({ attachments, attachmentRefs, olderThan: cutoff.toISOString() }, 'retention: expired attachments deleted');
    return { attachments, attachmentRefs };
  }
}
