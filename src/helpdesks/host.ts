/**
 * Runs the configured helpdesk adapters (contract.ts says who does what): one supervised loop per
 * helpdesk (hosted-helpdesk.ts); the other replicas stand by. Agent answers are taken on any
 * replica (answers.ts): that path is idempotent. Knows no helpdesk by name.
 */
import { durableLag } from '../core/durable-lag.js';
import { metrics } from '../core/metrics.js';
import { Streams } from '../core/subjects.js';
import { Supervisor, type SupervisedLoop } from '../core/supervisor.js';
import { HostedHelpdesk, helpdeskConsumer, type HelpdeskHostOptions, type HelpdeskSpec, type HostedHelpdeskHealth } from './hosted-helpdesk.js';

export { helpdeskConsumer, type HelpdeskHostOptions, type HelpdeskSpec, type HostedHelpdeskHealth } from './hosted-helpdesk.js';

export class HelpdeskHost {
  private readonly hosted: HostedHelpdesk[] = [];
  private readonly abort = new AbortController();
  private readonly supervisor: Supervisor;
  private readonly loops: SupervisedLoop[] = [];

  constructor(private readonly o: HelpdeskHostOptions) {
    this.supervisor = o.supervisor ?? new Supervisor(o.log);
  }

  /** Creates every adapter (mounting their webhooks) and starts the lease loops; returns at once. */
  start(specs: HelpdeskSpec[]): void {
    for (const spec of specs) {
      const log = this.o.log.child({ helpdesk: spec.id, type: spec.factory.type });
      const hosted = new HostedHelpdesk(spec, this.o, log, this.abort.signal);
      hosted.create();
      this.hosted.push(hosted);
      this.loops.push(this.supervisor.run(`helpdesk.${spec.id}`, (r) => hosted.serve(r)));
    }
  }

  health(): HostedHelpdeskHealth[] {
    return this.hosted.map((h) => h.status());
  }

  /**
   * omnigate_consumer_lag{consumer="helpdesk-<id>"}: ticket events not yet in each helpdesk, the
   * same number on every replica (see durableLag); NaN when this replica cannot read it now.
   */
  async sampleLag(): Promise<void> {
    for (const h of this.hosted) {
      const name = helpdeskConsumer(h.id);
      // Not 0 from a stalled server's view: unknown (see WebhookDispatcher.lag).
      if (h.consumerFailing) {
        metrics.consumerLag.set({ consumer: name }, Number.NaN);
        continue;
      }
      metrics.consumerLag.set({ consumer: name }, await durableLag(this.o.bus.jsm, Streams.events, name));
    }
  }

  async stop(): Promise<void> {
    await Promise.all(this.loops.map((l) => l.stop()));
    this.abort.abort();
    await Promise.all(this.hosted.map((h) => h.answers.idle()));
  }
}
