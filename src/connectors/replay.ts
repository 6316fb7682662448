/**
 * Replay of a connector's dead letters (`omnigate dlq --replay`): a request/reply service on
 * omni.replay.<channel>.<account> that hands the parked payload to the handler the connector
 * registered, so a raw mail goes back through the mail parser rather than onto the router's
 * stream. Any replica running the account answers (queue group); none answering means "not running".
 */
import type { Bus } from '../core/bus.js';
import type { Logger } from '../core/logger.js';
import { errorMessage } from '../core/errors.js';
import { Subjects } from '../core/subjects.js';
import type { ReplayHandler, ReplayOutcome } from './contract.js';

/** The request body: the payload as the letter stored it. */
export interface ReplayRequest {
  payload: string;
  payloadEncoding: 'utf8' | 'base64';
  meta?: Record<string, string>;
}

export function serveReplay(bus: Bus, channel: string, account: string, handler: ReplayHandler, log: Logger): { stop(): Promise<void> } {
  const sub = bus.nc.subscribe(Subjects.replay(channel, account), { queue: 'replay' });
  const loop = (async () => {
    for await (const m of sub) {
      let outcome: ReplayOutcome;
      try {
        const req = m.json<ReplayRequest>();
        const bytes = Buffer.from(req.payload, req.payloadEncoding === 'base64' ? 'base64' : 'utf8');
        outcome = await handler(bytes, req.meta ?? {});
      } catch (err) {
        // Replays are one at a time and rare: an error is answered, not retried here.
        log.warn({ err: errorMessage(err) }, 'replay failed');
        outcome = { outcome: 'refused', reason: `replay failed: ${errorMessage(err)}` };
      }
      m.respond(JSON.stringify(outcome));
    }
  })();
  return {
    async stop() {
      await sub.drain().catch(() => {});
      await loop;
    },
  };
}
