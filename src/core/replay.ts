/**
 * Replay of dead letters (`omnigate dlq --replay`) by the part that took the payload in or out:
 * a request/reply service on omni.replay.<dead-letter subject suffix> (inbound.<channel>.<account>
 * for a connector, webhook.<name> for a webhook). The connector hands a raw mail to its parser,
 * the webhook dispatcher POSTs the event once more; the CLI never needs to know either. Any
 * process serving the subject answers (queue group); none answering means "not running".
 */
import type { Bus } from './bus.js';
import type { Logger } from './logger.js';
import { errorMessage } from './errors.js';
import { Subjects } from './subjects.js';

/** published: taken in (or delivered) now; invalid: still cannot be used (the letter stays); refused: cannot be replayed. */
export type ReplayOutcome = { outcome: 'published'; duplicate: boolean } | { outcome: 'invalid'; reason: string } | { outcome: 'refused'; reason: string };
export type ReplayHandler = (payload: Buffer, meta: Record<string, string>) => Promise<ReplayOutcome>;

/** The request body: the payload as the letter stored it. */
export interface ReplayRequest {
  payload: string;
  payloadEncoding: 'utf8' | 'base64';
  meta?: Record<string, string>;
}

export function serveReplay(bus: Bus, suffix: string, handler: ReplayHandler, log: Logger): { stop(): Promise<void> } {
  const sub = bus.nc.subscribe(Subjects.replay(suffix), { queue: 'replay' });
  const loop = (async () => {
    for await (const m of sub) {
      let outcome: ReplayOutcome;
      try {
        const req = m.json<ReplayRequest>();
        const bytes = Buffer.from(req.payload, req.payloadEncoding === 'base64' ? 'base64' : 'utf8');
        outcome = await handler(bytes, req.meta ?? {});
      } catch (err) {
        // Replays are one at a time and rare: an error is answered, not retried here.
        log.warn({ err: errorMessage(err), subject: m.subject }, 'replay failed');
        outcome = { outcome: 'refused', reason: `replay failed: ${errorMessage(err)}` };
      }
      // A requester that gave up (its inbox gone) must not end the service for the next one.
      try {
        m.respond(JSON.stringify(outcome));
      } catch (err) {
        log.warn({ err: errorMessage(err), subject: m.subject }, 'replay answer could not be sent');
      }
    }
  })().catch((err: unknown) => {
    // The subscription itself failed (a permissions violation on omni.replay.>): say so once;
    // `dlq --replay` for this source then answers "not running", which is what it is.
    log.error({ err: errorMessage(err), subject: Subjects.replay(suffix) }, 'replay service stopped');
  });
  return {
    async stop() {
      await sub.drain().catch(() => {});
      await loop;
    },
  };
}
