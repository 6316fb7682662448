/**
 * Time-driven ticket automation, run by one replica at a time (lease `router.sla`): SLA timers
 * (sla.ts) and satisfaction requests (satisfaction.ts) as two separate loops, each with its own
 * interval and its own error handling, so a failure in one (a scan that throws) never stops the
 * other. Both loops end when the lease is lost or the gateway stops; the supervisor then waits to
 * take the lease again.
 */
import type { Bus } from '../core/bus.js';
import { errorMessage } from '../core/errors.js';
import { acquireLease } from '../core/lease.js';
import { Supervisor, type LoopRun, type SupervisedLoop } from '../core/supervisor.js';
import type { Logger } from '../core/logger.js';
import { metrics } from '../core/metrics.js';
import type { Ticket } from '../core/schema.js';
import { sleep } from '../core/sleep.js';
import type { Texts } from '../core/texts.js';
import type { BusinessHours } from './business-hours.js';
import { Escalator, type EscalationTarget } from './escalation.js';
import type { Journal } from './journal.js';
import { SatisfactionRequests } from './satisfaction.js';
import { SlaTimers } from './sla.js';
import type { TicketStore } from './tickets.js';

export interface LifecycleOptions {
  sla: { enabled: boolean; firstResponseMs: number; noAnswerMs: number; businessHours: BusinessHours | null };
  csat: { enabled: boolean; delayMs: number; windowMs?: number; send: (ticket: Ticket) => Promise<void> };
  checkIntervalMs: number;
  escalate?: EscalationTarget;
  texts: Texts;
  /**
   * Ids of the tickets that may be due at `now` (the SQL read model's indexed query, wired by the
   * gateway): a superset is fine, each is judged again on its KV record. Without it, every
   * ticket in KV is read each pass.
   */
  due?: (kind: 'sla' | 'csat', now: number) => Promise<string[]>;
}

export class LifecycleWatcher {
  readonly sla?: SlaTimers;
  readonly satisfaction?: SatisfactionRequests;
  readonly escalator?: Escalator;
  private readonly abort = new AbortController();
  private supervised?: SupervisedLoop;

  constructor(
    private readonly bus: Bus,
    private readonly store: TicketStore,
    journal: Journal,
    private readonly o: LifecycleOptions,
    private readonly log: Logger,
    private readonly leaseTtlMs: number,
    private readonly holder: string,
    private readonly supervisor = new Supervisor(log),
  ) {
    if (o.escalate) this.escalator = new Escalator(bus, store, journal, o.escalate, log.child({ loop: 'escalation' }), this.abort.signal);
    if (o.sla.enabled) this.sla = new SlaTimers(store, journal, o.sla, o.texts, log.child({ loop: 'sla' }), this.escalator);
    if (o.csat.enabled) this.satisfaction = new SatisfactionRequests(store, { delayMs: o.csat.delayMs, windowMs: o.csat.windowMs, send: o.csat.send }, log.child({ loop: 'satisfaction' }));
  }

  start(): void {
    if (!this.sla && !this.satisfaction) return;
    this.supervised = this.supervisor.run('router.lifecycle', (r) => this.term(r));
  }

  async stop(): Promise<void> {
    this.abort.abort();
    await this.supervised?.stop();
  }

  /** One pass of each loop; exposed for tests. Returns breaches recorded plus requests sent. */
  async check(now = Date.now()): Promise<number> {
    let found = 0;
    if (this.sla) found += await this.sla.scan(await this.candidates('sla', now), now);
    if (this.satisfaction) found += await this.satisfaction.scan(await this.candidates('csat', now), now);
    return found;
  }

  /** The tickets a pass looks at: the due ones from the read model, read fresh from KV; or all of KV. */
  private async candidates(kind: 'sla' | 'csat', now: number): Promise<Ticket[]> {
    if (!this.o.due) return this.store.list();
    const out: Ticket[] = [];
    const ids = new Set(await this.o.due(kind, now));
    const retries = kind === 'sla' ? (this.sla?.retryIds() ?? []) : [];
    for (const id of retries) ids.add(id);
    for (const id of ids) {
      const t = await this.store.get(id, { fresh: true });
      if (t) out.push(t.value);
      else if (retries.includes(id)) this.sla!.forget(id);
    }
    return out;
  }

  /** Tells the lead about a low rating (same escalation path as SLA breaches). */
  async lowRating(t: Ticket, rating: number): Promise<void> {
    if (!this.escalator) return;
    const text = this.o.texts.render('lowRating', { ticket: t.id, rating, contact: t.contact.displayName ?? t.contact.id, channel: `${t.channel}/${t.account}` });
    await this.escalator.send(t, 'rating', `rating:${rating}`, text);
  }

  /**
   * One term as the scanning replica: wait for the lease, then run the SLA and satisfaction loops
   * side by side until the lease is lost (the supervisor starts the next term) or the watcher
   * stops. Separate loops: a failing pass of one never stops the other.
   */
  private async term({ signal, progress }: LoopRun): Promise<void> {
    const lease = await acquireLease(this.bus.kv.leases, 'router.sla', { ttlMs: this.leaseTtlMs, holder: this.holder, signal, log: this.log });
    const term = new AbortController();
    const endTerm = () => term.abort();
    signal.addEventListener('abort', endTerm, { once: true });
    let lost = false;
    // eslint-disable-next-line @typescript-eslint/no-floating-promises -- lease.lost only ever resolves
    void lease.lost.then(() => {
      lost = true;
      endTerm();
    });
    try {
      const loops: Array<Promise<void>> = [];
      // A breach a crashed (or another) scanner marked but did not report is finished by this
      // term: its first pass that can read the tickets remembers them (best effort, in the SLA
      // loop, so it never holds up satisfaction requests; a failed sweep is tried next pass).
      let swept = !this.o.due;
      const sweep = async () => {
        if (swept) return;
        try {
          this.sla!.rememberUnreported(await this.store.list());
          swept = true;
        } catch (err) {
          this.log.warn({ err: errorMessage(err) }, 'could not look for SLA breaches left unreported; the next pass tries again');
        }
      };
      if (this.sla) loops.push(this.loop('sla', term.signal, progress, async () => {
        await sweep();
        await this.sla!.scan(await this.candidates('sla', Date.now()), Date.now(), () => lease.valid());
      }));
      if (this.satisfaction) loops.push(this.loop('satisfaction', term.signal, progress, async () => void (await this.satisfaction!.scan(await this.candidates('csat', Date.now()), Date.now(), () => lease.valid()))));
      await Promise.all(loops);
    } finally {
      signal.removeEventListener('abort', endTerm);
      await lease.release();
    }
    if (lost && !signal.aborted) throw new Error('lease router.sla lost; waiting to take it again');
  }

  /** Runs `pass` every checkInterval until `signal`; a failed pass is logged and counted, the loop goes on. */
  private async loop(name: string, signal: AbortSignal, progress: () => void, pass: () => Promise<void>): Promise<void> {
    while (!signal.aborted) {
      try {
        await pass();
        progress();
      } catch (err) {
        metrics.lifecycleErrors.inc({ loop: name });
        this.log.warn({ loop: name, err: errorMessage(err) }, 'lifecycle pass failed; the next one retries');
      }
      await sleep(this.o.checkIntervalMs, signal);
    }
  }
}

