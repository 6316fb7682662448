/**
 * What a channel bench runs beside its phase: answering every ticket, counting what arrives.
 * Never left floating: a loop or a request that fails is kept and thrown by `check()` when the
 * phase ends, so the bench fails through its clean-up. A floating one that rejected crashed the
 * process past it, and its gateway and stand-ins outlived the bench.
 */
import type { Subscription } from '@nats-io/nats-core';
import type { TestGateway } from '../../test/helpers/gateway.js';

export class Background {
  private error: unknown;
  private failed = false;

  /** Lets `work` run on; its failure is kept for `check()`. */
  run(work: Promise<unknown>): void {
    work.catch((err: unknown) => {
      if (this.failed) return;
      this.failed = true;
      this.error = err;
    });
  }

  /** Throws the first failure of what ran in the background, if any. */
  check(): void {
    if (this.failed) throw this.error instanceof Error ? this.error : new Error(`a background task of the bench failed: ${String(this.error)}`);
  }
}

/** Answers every customer message the gateway announces with `text` (the channel's reply path under load). */
export function answerEveryMessage(gw: TestGateway, background: Background, text: string): Subscription {
  const sub = gw.nc.subscribe('omni.events.ticket.message');
  background.run(
    (async () => {
      for await (const m of sub) background.run(gw.request('omni.cmd.reply', { ticketId: m.json<{ ticketId: string }>().ticketId, text }));
    })(),
  );
  return sub;
}
