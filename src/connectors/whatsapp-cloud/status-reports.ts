/**
 * Meta's status webhooks as delivery reports, through the wamid → outbound records kept when
 * sending (sent-records.ts). A record goes with its final status (read, failed); a daily sweep
 * removes the records no final status came for.
 */
import { z } from 'zod';
import { errorMessage } from '../../core/errors.js';
import { describeZodError } from '../../core/schema.js';
import { metrics } from '../../core/metrics.js';
import { sleep } from '../../core/sleep.js';
import type { ConnectorContext, DeliveryReport } from '../contract.js';
import { metaReason } from './graph.js';
import type { CloudStatus } from './payload.js';
import type { SentRecords } from './sent-records.js';
import type { LetterKind } from './webhook-body.js';

const SWEEP_EVERY_MS = 24 * 3_600_000;
/** Within one wamid, the order a status is meant to arrive in; Meta may list them otherwise. */
const STATUS_RANK: Record<string, number> = { sent: 0, delivered: 1, read: 2, failed: 2 };

export interface StatusReportsOptions {
  statusWaitMs: number;
  statusRetentionDays: number;
  /** Aborted when the connector stops: waits for a record end, and the sweep. */
  signal: AbortSignal;
  /** Parks a status no delivery report can carry; rejects only when parking failed. */
  park(reason: string, payload: unknown, kind: LetterKind): Promise<void>;
}

export class StatusReports {
  /** Statuses whose send record is not there yet, waited for after Meta got its answer. */
  private readonly late = new Set<Promise<void>>();

  constructor(
    private readonly ctx: ConnectorContext,
    private readonly records: SentRecords,
    private readonly o: StatusReportsOptions,
  ) {}

  /**
   * Reports the statuses of one webhook body, by wamid. A status whose send record is there is
   * reported before Meta hears 200. One without (a wamid we never sent, or a send whose record
   * is still being written) must not hold Meta's request: it is answered at once and the record
   * waited for in the background.
   */
  async report(statuses: Map<string, CloudStatus[]>): Promise<void> {
    await Promise.all([...statuses.values()].map(async (list) => {
      const ordered = list.sort((a, b) => (STATUS_RANK[a.status] ?? 0) - (STATUS_RANK[b.status] ?? 0));
      const found = await this.records.find(ordered[0]!.id, 0, this.o.signal);
      if (found) for (const s of ordered) await this.onStatus(s, 0);
      else this.awaitRecord(ordered);
    }));
  }

  /** Resolves once every status still waiting for its record is reported or given up. */
  async settled(): Promise<void> {
    await Promise.all([...this.late]);
  }

  /** Every replica sweeps; deleting twice is harmless, and a pass is one read per record. */
  async sweepRecords(): Promise<void> {
    const signal = this.o.signal;
    while (!signal.aborted) {
      try {
        const removed = await this.records.sweep(this.o.statusRetentionDays * 86_400_000, signal);
        if (removed) this.ctx.log.info({ removed }, 'expired WhatsApp Cloud send records removed');
      } catch (err) {
        this.ctx.log.warn({ err: errorMessage(err) }, 'sweep of WhatsApp Cloud send records failed; next one in a day');
      }
      await sleep(SWEEP_EVERY_MS, signal);
    }
  }

  /** Statuses of one wamid, reported once its send record turns up (statusWaitMs at most). */
  private awaitRecord(ordered: CloudStatus[]): void {
    const task = (async () => {
      for (const s of ordered) await this.onStatus(s, this.o.statusWaitMs);
    })().catch((err) => {
      // Meta already has its 200: this status is lost, say so.
      this.ctx.log.warn({ wamid: ordered[0]!.id, err: errorMessage(err) }, 'WhatsApp Cloud status not reported: storing it failed after the webhook was answered');
    });
    this.late.add(task);
    void task.finally(() => this.late.delete(task)); // eslint-disable-line @typescript-eslint/no-floating-promises -- task ends in its own .catch
  }

  private async onStatus(s: CloudStatus, waitMs: number): Promise<void> {
    const found = await this.records.find(s.id, waitMs, this.o.signal);
    if (!found) {
      metrics.skippedUpdates.inc({ channel: this.ctx.channel, reason: 'unknown_message_status' });
      this.ctx.log.info({ wamid: s.id, status: s.status, recipient: s.recipient_id },
        'WhatsApp Cloud status dropped: no send record for this wamid (sent outside this gateway, already final, or expired)');
      return;
    }
    const { outboundId, ticketId } = found.ref;
    const err = s.errors?.[0];
    // The same documented reasons as a refused send (graph.ts metaReason), then Meta's own words.
    const code = typeof err?.code === 'number' ? err.code : Number(err?.code) || undefined;
    const words = err ? `${err.code ?? ''} ${err.title ?? err.message ?? ''}${err.error_data?.details ? `: ${err.error_data.details}` : ''}`.trim() : '';
    const report: DeliveryReport = {
      outboundId,
      ticketId,
      status: s.status as DeliveryReport['status'],
      platformMessageId: s.id,
      ...(s.status === 'failed' ? { reason: `${metaReason(code) ?? (code ? `graph_${code}` : 'failed')}${words ? `: ${words}` : ''}` } : {}),
    };
    try {
      await this.ctx.reportDelivery(report);
    } catch (err) {
      // A report the delivery schema refuses would be refused on every retry: park it instead.
      if (!(err instanceof z.ZodError)) throw err;
      await this.o.park(`whatsapp-cloud status ${s.id}: ${describeZodError(err, 'report')}`, s, 'status');
      return;
    }
    if (s.status === 'read' || s.status === 'failed') await this.records.forget(found.key);
  }
}
