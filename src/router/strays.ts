/**
 * Inbound messages stored where no router consumer reads them. OMNI_IN takes all of `omni.in.>`
 * (narrowing it would refuse them, but nats-server 2.9 then refuses every consumer whose filter is
 * not inside one stream subject, `omni.in.telegram.>` included), while the router reads only
 * `omni.in.<channel>.<account>` and its partitions below `router.partitions`. A publish on any
 * other `omni.in` subject (an outside publisher hashing into another partition count, extra
 * tokens) is acknowledged by JetStream and would never be routed: lost without a word.
 *
 * The replica that owns the unpartitioned unit looks for such subjects now and then and moves
 * what it finds: an inbound event to its conversation's partition (routed from there, after what
 * that conversation had on the right subject), anything else to the dead letters with the reason
 * (left in place while they are rate-limited: a refusal is deleted only once it is stored).
 * A moved copy carries a message id of its own (`stray:<seq>`), so a sweep that dies between the
 * publish and the delete publishes nothing twice within the duplicate window; past it, the
 * router's dedup by event id drops the second copy.
 */
import type { JsMsg } from '@nats-io/jetstream';
import type { Bus } from '../core/bus.js';
import { UNREAD_SUBJECT } from '../core/dead-letter.js';
import { isGone, scanStream } from '../core/stream-scan.js';
import type { Logger } from '../core/logger.js';
import { metrics } from '../core/metrics.js';
import { InboundEvent, describeZodError } from '../core/schema.js';
import { Streams, Subjects } from '../core/subjects.js';

/** What one sweep did. */
export interface StraySweep {
  moved: number;
  parked: number;
  /** Not inbound events, left in place because the dead letters were rate-limited: the next sweep parks them. */
  left: number;
  /** The stray subjects found, with how many messages each held. */
  subjects: Record<string, number>;
}

export interface SweepOptions {
  /** Ends the sweep between two messages (shutdown). */
  signal?: AbortSignal;
  /** Asked between messages: false once another replica took the unpartitioned unit over. */
  owned?: () => boolean;
  /** Subjects handled per sweep at most (each costs a short-lived consumer); the rest wait for the next. */
  maxSubjects?: number;
}

/** A publisher that puts an id into a subject token makes one subject per message: bounded per sweep. */
const MAX_SUBJECTS = 100;

/** Moves what is stored on unread inbound subjects (see the file comment). */
export async function sweepStrays(bus: Bus, log: Logger, o: SweepOptions = {}): Promise<StraySweep> {
  const info = await bus.jsm.streams.info(Streams.inbound, { subjects_filter: Subjects.inboundAll });
  const subjects = Object.fromEntries(Object.entries(info.state.subjects ?? {}).filter(([subject]) => !Subjects.isInboundConsumed(subject, bus.partitions)));
  const done: StraySweep = { moved: 0, parked: 0, left: 0, subjects };
  const goOn = () => !o.signal?.aborted && (o.owned?.() ?? true);
  for (const subject of Object.keys(subjects).slice(0, o.maxSubjects ?? MAX_SUBJECTS)) {
    if (!goOn()) break;
    await scanStream(bus, Streams.inbound, { filter: subject, until: () => !goOn() }, async (m) => {
      const outcome = await moveStray(bus, m);
      done[outcome]++;
      metrics.inboundStrays.inc({ outcome });
      if (outcome === 'left') return;
      // Gone already: a sweep that overlapped this one (an ownership change) moved it; the copy's id drops the double.
      await bus.jsm.streams.deleteMessage(Streams.inbound, m.seq, false).catch((err: unknown) => (isGone(err) ? false : Promise.reject(err)));
    });
  }
  if (done.moved + done.parked + done.left > 0) {
    const found = Object.entries(subjects);
    log.warn(
      { moved: done.moved, parked: done.parked, left: done.left, subjects: found.slice(0, 10).map(([s, n]) => `${s} (${n})`), subjectCount: found.length, partitions: bus.partitions },
      'inbound messages were stored on subjects no router reads (a partition computed with another count than router.partitions, or extra tokens): inbound events moved to their partition, the rest parked; fix the publisher',
    );
  }
  return done;
}

/** Republished on its partition (moved), in the dead letters (parked), or not yet: the dead letters are rate-limited (left). */
async function moveStray(bus: Bus, m: JsMsg): Promise<'moved' | 'parked' | 'left'> {
  let payload: unknown;
  try {
    payload = m.json();
  } catch {
    payload = undefined;
  }
  const parsed = InboundEvent.safeParse(payload);
  if (parsed.success) {
    await bus.pipe.publish(bus.inboundSubject(parsed.data), m.data, { msgID: `stray:${m.seq}` });
    return 'moved';
  }
  const why = payload === undefined ? 'payload is not valid JSON' : `not an inbound event: ${describeZodError(parsed.error)}`;
  const parked = await bus.deadLetters.park({
    source: 'router', subject: m.subject, code: UNREAD_SUBJECT, payload: m.data,
    reason: `stored on ${m.subject}, which no router reads (partitions 0–${bus.partitions - 1}, or omni.in.<channel>.<account>), and ${why}`,
  });
  return parked === 'stored' ? 'parked' : 'left';
}
