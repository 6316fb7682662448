/**
 * Ticket numbers: base + the sequence of the OMNI_TICKET_NO stream, so no two tickets get one
 * number on any server, and a NATS store that was lost or replaced does not hand out numbers
 * its tickets already had (see numberBase).
 */
import type { Bus } from '../core/bus.js';
import { isCasConflict } from '../core/bus.js';
import type { PipelinedKv } from '../core/js-pipeline.js';
import { Subjects } from '../core/subjects.js';

/** The counter of versions before the stream-sequence numbers: read once, to continue from it. */
const LEGACY_SEQ_KEY = 'ticket-seq';
const BASE_KEY = 'ticket-number-base';

export class TicketNumbers {
  /** The number before the first stream sequence: fixed once per deployment (see numberBase). */
  private base?: Promise<number>;

  constructor(
    private readonly bus: Bus,
    private readonly meta: PipelinedKv,
    private readonly firstNumber: number,
    /** The highest ticket number known outside NATS (the SQL read model), asked only when the base is written. */
    private readonly numberFloor?: () => Promise<number>,
    private readonly onFloor?: (floor: number, base: number) => void,
  ) {}

  /**
   * Next ticket number: one publish to the ticket-number stream, whose sequence Raft assigns
   * once per stored message, so two allocations never get the same number on any server,
   * clustered or not (a compare-and-set counter was not: nats-server < 2.9.21 let several
   * writers win one revision on R3). A publish retried after a lost ack stores a second message:
   * a gap, like a number whose ticket was never opened. Gaps are harmless.
   */
  async allocate(): Promise<number> {
    this.base ??= this.numberBase().catch((err: unknown) => {
      this.base = undefined;
      throw err;
    });
    const base = await this.base;
    const ack = await this.bus.pipe.publish(Subjects.ticketNumber, '');
    return base + ack.seq;
  }

  /**
   * numbers = base + stream sequence. The base is written once, create-only (exclusive on every
   * server, see cas-probe.ts), so every router agrees on it: firstNumber - 1 on a new
   * deployment, or the last number of the compare-and-set counter older versions kept in
   * `ticket-seq`, so numbering continues after an upgrade, or the highest number the read model
   * holds when that is higher: a NATS store lost or replaced under a deployment with history
   * (an outside ops trial wiped it) numbered new tickets T-1001 again, and a helpdesk's reply to
   * the old T-1001 reached the new T-1001's customer.
   */
  private async numberBase(): Promise<number> {
    const known = await this.meta.get(BASE_KEY);
    if (known && known.operation === 'PUT') return Number(known.string());
    const legacy = await this.meta.get(LEGACY_SEQ_KEY);
    const start = legacy && legacy.operation === 'PUT' ? Number(legacy.string()) : this.firstNumber - 1;
    const floor = this.numberFloor ? await this.numberFloor() : 0;
    const base = Math.max(start, floor);
    if (floor > start) this.onFloor?.(floor, base);
    try {
      await this.meta.create(BASE_KEY, String(base));
      return base;
    } catch (err) {
      if (!isCasConflict(err)) throw err;
      const winner = await this.meta.get(BASE_KEY);
      if (!winner || winner.operation !== 'PUT') throw err;
      return Number(winner.string());
    }
  }
}
