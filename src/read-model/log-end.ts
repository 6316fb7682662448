/**
 * Where the ticket log ends, as NATS answers it, for the two readers that judge the log by its end
 * against the read model's checkpoint: the applier asking whether the log is the one its checkpoint
 * counts in (same-log.ts), and the row check that records how far a replay must go (lost-rows.ts).
 *
 * On a NATS cluster a node that is behind (restarted after its disk was full) answers stream info
 * with an older end for a while: an outside cluster trial saw one say 68 while the log was at
 * 1083. An end before the checkpoint, which no true log of the same creation time has, is read
 * again every `recheckMs` for up to `waitMs` before a caller takes it. An answer that is behind
 * but still past the checkpoint cannot be told from the truth, here or anywhere.
 */
import type { StreamInfo } from '@nats-io/jetstream';
import type { Bus } from '../core/bus.js';
import type { Logger } from '../core/logger.js';
import { sleep } from '../core/sleep.js';
import { Streams } from '../core/subjects.js';

export class LogEnd {
  constructor(
    private readonly bus: Bus,
    private readonly log: Logger,
    private readonly recheckMs: number,
    /** How long an end before the checkpoint is asked again before the caller takes it (and refuses it). */
    readonly waitMs: number,
  ) {}

  /**
   * OMNI_LOG's stream info (`known`, or read now); while it ends before `applied`, read again until
   * it reaches it, `changed` says the log is another one (the caller refuses that at once),
   * `waitMs` pass or the signal aborts. Returns the last answer: one still short is the caller's
   * to judge.
   */
  async reaching(applied: number, signal: AbortSignal, o: { known?: StreamInfo; changed?: (i: StreamInfo) => boolean } = {}): Promise<StreamInfo> {
    const changed = o.changed ?? (() => false);
    let info = o.known ?? (await this.bus.jsm.streams.info(Streams.log));
    const short = (i: StreamInfo) => !changed(i) && applied > i.state.last_seq;
    if (!short(info)) return info;
    const answered = info.state.last_seq;
    const started = Date.now();
    this.log.info({ checkpoint: applied, logLastSeq: answered, waitMs: this.waitMs }, 'NATS says the ticket log ends before the read model\'s checkpoint: asking again before refusing it (a cluster node behind may have answered)');
    const deadline = started + this.waitMs;
    while (short(info) && Date.now() < deadline) {
      await sleep(Math.min(this.recheckMs, Math.max(0, deadline - Date.now())), signal);
      if (signal.aborted) return info;
      info = await this.bus.jsm.streams.info(Streams.log);
    }
    if (!short(info) && !changed(info)) {
      this.log.warn(
        { checkpoint: applied, answered, logLastSeq: info.state.last_seq, waitedMs: Date.now() - started },
        'a NATS node that was behind answered that the ticket log ends before the read model\'s checkpoint; it has caught up, the read model goes on',
      );
    }
    return info;
  }
}
