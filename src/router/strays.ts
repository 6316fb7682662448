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
 * that conversation had on the right subject), anything else to the dead letters with the reason.
 * A moved copy carries a message id of its own (`stray:<seq>`), so a sweep that dies between the
 * publish and the delete publishes nothing twice within the duplicate window; past it, the
 * router's dedup by event id drops the second copy.
 */
import type { JsMsg } from '@nats-io/jetstream';
import type { Bus } from '../core/bus.js';
import { isGone, scanStream } from '../core/erasure.js';
import type { Logger } from '../core/logger.js';
import { metrics } from '../core/metrics.js';
import { InboundEvent, describeZodError } from '../core/schema.js';
import { Streams, Subjects } from '../core/subjects.js';

/** What one sweep did. */
export interface StraySweep {
  moved: number;
  parked: number;
  /** The stray subjects found, with how many messages each held. */
  subjects: Record<string, number>;
}

/** Moves what is stored on unread inbound subjects (see the file comment); one sweep at a time. */
export async function sweepStrays(bus: Bus, log: Logger): Promise<StraySweep> {
  const info = await bus.jsm.streams.info(Streams.inbound, { subjects_filter: Subjects.inboundAll });
  const subjects = Object.fromEntries(Object.entries(info.state.subjects ?? {}).filter(([subject]) => !Subjects.isInboundConsumed(subject, bus.partitions)));
  const done: StraySweep = { moved: 0, parked: 0, subjects };
  for (const subject of Object.keys(subjects)) {
    await scanStream(bus, Streams.inbound, { filter: subject }, async (m) => {
      if (await moveStray(bus, m)) done.moved++;
      else done.parked++;
      // Gone already: a sweep that overlapped this one (an ownership change) moved it; the copy's id drops the double.
      await bus.jsm.streams.deleteMessage(Streams.inbound, m.seq, false).catch((err: unknown) => (isGone(err) ? false : Promise.reject(err)));
    });
  }
  if (done.moved + done.parked > 0) {
    metrics.inboundStrays.inc({ outcome: 'moved' }, done.moved);
    metrics.inboundStrays.inc({ outcome: 'parked' }, done.parked);
    log.warn(
      { moved: done.moved, parked: done.parked, subjects: Object.entries(subjects).slice(0, 10).map(([s, n]) => `${s} (${n})`), partitions: bus.partitions },
      'inbound messages were stored on subjects no router reads (a partition computed with another count than router.partitions, or extra tokens): inbound events moved to their partition, the rest parked; fix the publisher',
    );
  }
  return done;
}

/** True: republished on its partition; false: parked. */
async function moveStray(bus: Bus, m: JsMsg): Promise<boolean> {
  let payload: unknown;
  try {
    payload = m.json();
  } catch {
    payload = undefined;
  }
  const parsed = InboundEvent.safeParse(payload);
  if (parsed.success) {
    await bus.pipe.publish(bus.inboundSubject(parsed.data), m.data, { msgID: `stray:${m.seq}` });
    return true;
  }
  const why = payload === undefined ? 'payload is not valid JSON' : `not an inbound event: ${describeZodError(parsed.error)}`;
  await bus.deadLetters.park({
    source: 'router', subject: m.subject, code: 'unread_subject', payload: m.data,
    reason: `stored on ${m.subject}, which no router reads (partitions 0–${bus.partitions - 1}, or omni.in.<channel>.<account>), and ${why}`,
  });
  return false;
}
